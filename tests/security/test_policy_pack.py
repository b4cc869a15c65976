"""The Pulumi policy pack registers every rule of policy/rules.py and its callbacks call
those same rule objects (so `pulumi preview --policy-pack policy` and the tests cannot drift).

The pack module is executed with ``pulumi_policy.PolicyPack`` replaced by a recorder: the real
constructor starts the analyzer gRPC server that only the Pulumi engine talks to.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pulumi_policy
import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from policy import rules
from tests.security import cases

PACK = Path(__file__).resolve().parents[2] / "policy" / "__main__.py"
URN_PROD = "urn:pulumi:prod::ai-batch::aws:dynamodb/table:Table::jobs"
URN_DEV = "urn:pulumi:dev::ai-batch::aws:dynamodb/table:Table::jobs"


@pytest.fixture
def pack(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    recorded: dict[str, Any] = {}

    def fake_pack(**kwargs: Any) -> None:
        recorded.update(kwargs)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", fake_pack)
    runpy.run_path(str(PACK), run_name="__main__")
    return recorded


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _resource_args(
    rtype: str, props: dict[str, Any], urn: str = URN_DEV
) -> ResourceValidationArgs:
    return ResourceValidationArgs(
        rtype, unknown_checking_proxy(props), urn, urn.rsplit("::", 1)[-1], _opts(), None
    )


def _run_resource(policy: ResourceValidationPolicy, args: ResourceValidationArgs) -> list[str]:
    found: list[str] = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


def test_every_rule_registered_once_with_its_severity(pack: dict[str, Any]) -> None:
    assert pack["name"] == "ai-batch-security"
    policies = pack["policies"]
    names = [p.name for p in policies]
    assert sorted(names) == sorted(rules.ALL_RULE_IDS)
    assert len(set(names)) == len(names), "policy ids must be unique"
    by_name = {p.name: p for p in policies}
    for rule in (*rules.RESOURCE_RULES, *rules.STACK_RULES):
        policy = by_name[rule.id]
        expected = (
            EnforcementLevel.MANDATORY if rule.severity.mandatory else EnforcementLevel.ADVISORY
        )
        assert policy.enforcement_level == expected, rule.id
        kind = ResourceValidationPolicy if rule in rules.RESOURCE_RULES else StackValidationPolicy
        assert isinstance(policy, kind), rule.id


def test_wrappers_hold_the_rules_module_objects(pack: dict[str, Any]) -> None:
    """Each callback wraps the very rule object of policy.rules (not a copy of its check)."""
    for policy in pack["policies"]:
        private = "_ResourceValidationPolicy__validate" if isinstance(
            policy, ResourceValidationPolicy) else "_StackValidationPolicy__validate"
        callback = getattr(policy, private)
        all_rules = {r.id: r for r in (*rules.RESOURCE_RULES, *rules.STACK_RULES)}
        assert callback.rule is all_rules[policy.name]


@pytest.mark.parametrize("case", cases.RESOURCE_CASES, ids=lambda c: f"{c.rule_id}-{c.type}")
def test_pack_reports_exactly_what_the_rule_reports(
    pack: dict[str, Any], case: cases.Case
) -> None:
    policy = {p.name: p for p in pack["policies"]}[case.rule_id]
    urn = f"urn:pulumi:{case.context.stack}::ai-batch::{case.type}::res"
    rule = next(r for r in rules.RESOURCE_RULES if r.id == case.rule_id)
    for inputs in (case.good, case.bad):
        via_pack = _run_resource(policy, _resource_args(case.type, inputs, urn))
        direct = [f"res: {m}" for m in rule.check(case.type, inputs, case.context)]
        assert via_pack == direct
    assert _run_resource(policy, _resource_args(case.type, case.bad, urn)), "bad case must fail"


def test_resource_wrapper_reports_real_violation_and_respects_production_config(
    pack: dict[str, Any],
) -> None:
    policies = {p.name: p for p in pack["policies"]}
    table = {"serverSideEncryption": {"enabled": True}, "pointInTimeRecovery": {"enabled": False}}
    pitr = policies["dynamodb-pitr-in-production"]
    assert _run_resource(pitr, _resource_args(rules.T_TABLE, table, URN_DEV)) == []
    found = _run_resource(pitr, _resource_args(rules.T_TABLE, table, URN_PROD))
    assert len(found) == 1 and "pointInTimeRecovery" in found[0]
    # An unknown-during-preview value is never a violation.
    unknown = {"pointInTimeRecovery": {"enabled": rules_unknown_bool()}}
    assert _run_resource(pitr, _resource_args(rules.T_TABLE, unknown, URN_PROD)) == []


def rules_unknown_bool() -> str:
    from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE

    return UNKNOWN_BOOLEAN_VALUE


def test_plain_unwraps_proxies_secrets_and_unknowns(pack: dict[str, Any]) -> None:
    module = runpy.run_path(str(PACK), init_globals={}, run_name="pack_under_test")
    plain = module["plain"]
    proxied = unknown_checking_proxy(
        {"a": [1, {"b": UNKNOWN_STRING_VALUE}], "s": pulumi_policy.Secret("xoxb-123")}
    )
    assert plain(proxied) == {"a": [1, {"b": rules.UNKNOWN}], "s": "xoxb-123"}


def test_stack_wrapper_reports_against_the_resource_urn(pack: dict[str, Any]) -> None:
    policies = {p.name: p for p in pack["policies"]}
    queue_urn = "urn:pulumi:dev::ai-batch::aws:sqs/queue:Queue::orphan"
    queue = pulumi_policy.PolicyResource(
        rules.T_QUEUE,
        unknown_checking_proxy({"arn": "arn:aws:sqs:us-east-1:1:orphan"}),
        queue_urn, "orphan", _opts(), None, None, [], {},
    )
    found: list[tuple[str, str | None]] = []
    policies["sqs-dlq"].validate(
        StackValidationArgs([queue]), lambda message, urn=None: found.append((message, urn))
    )
    assert found == [("neither has a DLQ nor is one", queue_urn)]
