"""The ``ai-batch-security`` Pulumi policy pack: thin wrappers over ``rules.py``.

Run it with ``pulumi preview --policy-pack policy`` (the CI workflow does). Every check is a
function of ``rules.py``, the module the test suite runs over the mocked resource graph, so
the gate and the tests cannot drift. HIGH/CRITICAL rules are mandatory, lower ones advisory.

Which stacks count as production (PITR, deletion protection) is pack config:
``productionStacks`` (default ``["prod"]``); the stack name is read from each resource URN.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
)

try:  # tests import the pack from the repository root
    from policy import rules
except ImportError:  # pulumi runs the pack with policy/ as its working directory
    rules = importlib.import_module("rules")

PACK_NAME = "ai-batch-security"
_UNKNOWN_SENTINELS = frozenset(
    {
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_OBJECT_VALUE,
        UNKNOWN_STRING_VALUE,
    }
)
PRODUCTION_CONFIG = PolicyConfigSchema(
    properties={
        "productionStacks": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["prod"],
        }
    }
)


def plain(value: Any) -> Any:
    """The engine's (proxied, secret-wrapped) property value as plain data for rules.py:
    unknown-during-preview sentinels become ``rules.UNKNOWN``; secrets are unwrapped."""
    if hasattr(value, "value") and type(value).__name__ == "Secret":
        return plain(value.value)
    if isinstance(value, str):
        return rules.UNKNOWN if value in _UNKNOWN_SENTINELS else value
    if isinstance(value, Mapping):
        target = value["__target"] if type(value).__name__ == "_DictProxy" else value
        return {str(k): plain(v) for k, v in target.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "_ListProxy":
        target = value["__target"] if type(value).__name__ == "_ListProxy" else value
        return [plain(v) for v in target]
    return value


def _context(urn: str, config: Mapping[str, Any]) -> rules.RuleContext:
    stacks = config.get("productionStacks") or ["prod"]
    return rules.context_for(rules.urn_stack(urn), [str(s) for s in stacks])


def _enforcement(severity: rules.Severity) -> EnforcementLevel:
    return EnforcementLevel.MANDATORY if severity.mandatory else EnforcementLevel.ADVISORY


def resource_validator(
    rule: rules.ResourceRule,
) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    """The pulumi-policy callback of one resource rule: calls ``rule.check`` and reports."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in rule.resource_types:
            return
        context = _context(args.urn, args.get_config())
        for message in rule.check(args.resource_type, plain(args.props), context):
            report_violation(f"{args.name}: {message}", None)

    validate.rule = rule  # type: ignore[attr-defined]
    return validate


def stack_validator(
    rule: rules.StackRule,
) -> Callable[[StackValidationArgs, ReportViolation], None]:
    """The pulumi-policy callback of one stack rule: calls ``rule.check`` and reports."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [
            rules.Resource(r.resource_type, r.name, plain(r.props)) for r in args.resources
        ]
        urns = {f"{r.resource_type} {r.name}": r.urn for r in args.resources}
        stack = rules.urn_stack(args.resources[0].urn) if args.resources else ""
        stacks = args.get_config().get("productionStacks") or ["prod"]
        context = rules.context_for(stack, [str(s) for s in stacks])
        for violation in rule.check(resources, context):
            report_violation(violation.message, urns.get(violation.resource))

    validate.rule = rule  # type: ignore[attr-defined]
    return validate


def build_policies() -> list[Policy]:
    """One pulumi-policy policy per rule of ``rules.py``, same id, severity-based enforcement."""
    policies: list[Policy] = []
    for rule in rules.RESOURCE_RULES:
        policies.append(
            ResourceValidationPolicy(
                name=rule.id,
                description=rule.description,
                validate=resource_validator(rule),
                enforcement_level=_enforcement(rule.severity),
                config_schema=PRODUCTION_CONFIG,
                tags=list(rule.references) or None,
            )
        )
    for stack_rule in rules.STACK_RULES:
        policies.append(
            StackValidationPolicy(
                name=stack_rule.id,
                description=stack_rule.description,
                validate=stack_validator(stack_rule),
                enforcement_level=_enforcement(stack_rule.severity),
                config_schema=PRODUCTION_CONFIG,
                tags=list(stack_rule.references) or None,
            )
        )
    return policies


PolicyPack(name=PACK_NAME, policies=build_policies())
