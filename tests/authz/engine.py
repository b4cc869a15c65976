"""IAM policy evaluation for the authorization check, as the IAM User Guide documents it.

Decides one request (principal, action, resource, request context) against identity policies,
resource policies and (for role assumption) trust policies:

- explicit ``Deny`` in any applicable policy wins;
- otherwise an ``Allow`` in the identity policies, or (same account) in the resource policy,
  allows; KMS keys are the exception: the key policy must allow too (the account root
  statement delegates to IAM policies);
- otherwise the implicit deny.
(IAM User Guide, "Policy evaluation logic" and "Determining whether a request is allowed or
denied within an account":
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html)

Condition operators implemented (every one the stack's policies use, and their families):
String*, Arn*, Bool, Numeric*, Null, each with ``IfExists``, and the ``ForAllValues:`` /
``ForAnyValue:`` set qualifiers. A key missing from the request context makes a condition
false, a negated operator (``StringNotLike``...) true, ``...IfExists`` true, ``ForAllValues``
true and ``ForAnyValue`` false
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html).
An operator not listed here raises ``UnsupportedPolicy``: the check fails instead of guessing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ContextValue = str | bool | int | Sequence[str]


class UnsupportedPolicy(ValueError):
    """A policy uses a construct this evaluator does not implement."""


@dataclass(frozen=True)
class Request:
    """One authorization request as IAM sees it."""

    principal: str  # ARN of the calling role, or "service:<name>.amazonaws.com"
    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    account: str = ""  # the principal's account (same-account rules)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    matched: tuple[str, ...] = ()  # where the deciding statements came from


@dataclass(frozen=True)
class Policy:
    """A policy document and a label saying where it came from (for messages)."""

    label: str
    document: Mapping[str, Any]

    @classmethod
    def parse(cls, label: str, text: str | Mapping[str, Any]) -> Policy:
        return cls(label, json.loads(text) if isinstance(text, str) else text)

    def statements(self) -> list[Mapping[str, Any]]:
        raw = self.document.get("Statement", [])
        return list(raw) if isinstance(raw, list) else [raw]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcards: ``*`` any run of characters, ``?`` one character (no ranges)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.IGNORECASE if ignore_case else 0
    return re.fullmatch(regex, value, flags | re.DOTALL) is not None


def action_matches(pattern: str, action: str) -> bool:
    """Action names are case-insensitive; the service prefix too."""
    return _glob(pattern, action, ignore_case=True)


def resource_matches(pattern: str, resource: str) -> bool:
    """Resource ARNs match with wildcards, case-sensitively (each ARN segment)."""
    return _glob(pattern, resource)


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike: the six ARN segments match one by one (wildcards do not cross ``:`` there)."""
    p_parts, v_parts = pattern.split(":", 5), value.split(":", 5)
    if len(p_parts) != 6 or len(v_parts) != 6:
        return False
    return all(_glob(p, v) for p, v in zip(p_parts, v_parts, strict=True))


def _numeric(value: Any) -> float:
    return float(value)


_BASE_OPERATORS: dict[str, Any] = {
    "StringEquals": lambda p, v: p == v,
    "StringNotEquals": lambda p, v: p == v,  # negated below
    "StringEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringNotEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringLike": lambda p, v: _glob(p, v),
    "StringNotLike": lambda p, v: _glob(p, v),
    "ArnEquals": lambda p, v: _arn_like(p, v),  # AWS: ArnEquals and ArnLike behave alike
    "ArnLike": lambda p, v: _arn_like(p, v),
    "ArnNotEquals": lambda p, v: _arn_like(p, v),
    "ArnNotLike": lambda p, v: _arn_like(p, v),
    "Bool": lambda p, v: p.lower() == v.lower(),
    "NumericEquals": lambda p, v: _numeric(v) == _numeric(p),
    "NumericNotEquals": lambda p, v: _numeric(v) == _numeric(p),
    "NumericLessThan": lambda p, v: _numeric(v) < _numeric(p),
    "NumericLessThanEquals": lambda p, v: _numeric(v) <= _numeric(p),
    "NumericGreaterThan": lambda p, v: _numeric(v) > _numeric(p),
    "NumericGreaterThanEquals": lambda p, v: _numeric(v) >= _numeric(p),
}
_NEGATED = {
    "StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals",
    "ArnNotLike", "NumericNotEquals",
}  # fmt: skip


def _text(value: ContextValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _context_values(context: Mapping[str, ContextValue], key: str) -> list[str] | None:
    """Condition keys are case-insensitive; a multivalued key gives a list."""
    for name, value in context.items():
        if name.lower() == key.lower():
            if isinstance(value, list | tuple):
                return [_text(v) for v in value]
            return [_text(value)]
    return None


def condition_holds(
    operator: str, key: str, policy_values: Any, context: Mapping[str, Any]
) -> bool:
    """One operator/key pair of a Condition block against the request context."""
    qualifier = ""
    if ":" in operator:
        qualifier, _, operator = operator.partition(":")
        if qualifier not in ("ForAllValues", "ForAnyValue"):
            raise UnsupportedPolicy(f"condition qualifier {qualifier!r}")
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    values = [_text(v) for v in _as_list(policy_values)]
    present = _context_values(context, key)

    if base == "Null":
        if qualifier:
            raise UnsupportedPolicy("Null with a set qualifier")
        wanted_absent = values[0].lower() == "true"
        return (present is None) == wanted_absent
    test = _BASE_OPERATORS.get(base)
    if test is None:
        raise UnsupportedPolicy(f"condition operator {operator!r}")
    negated = base in _NEGATED

    def matches_one(value: str) -> bool:
        hit = any(test(p, value) for p in values)
        return not hit if negated else hit

    if present is None or (qualifier and not present):
        if if_exists:
            return True
        if qualifier == "ForAllValues":
            return True  # AWS: true for a missing key or an empty set
        if qualifier == "ForAnyValue":
            return False
        return negated  # a negated operator is true for a missing key
    if qualifier == "ForAllValues":
        return all(matches_one(v) for v in present)
    if qualifier == "ForAnyValue":
        return any(matches_one(v) for v in present)
    if len(present) > 1:
        raise UnsupportedPolicy(f"{key} is multivalued: use ForAllValues/ForAnyValue")
    return matches_one(present[0])


def _conditions_hold(statement: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    block = statement.get("Condition") or {}
    return all(
        condition_holds(operator, key, values, context)
        for operator, pairs in block.items()
        for key, values in pairs.items()
    )


def _principal_matches(principal_element: Any, request: Request) -> bool:
    """Resource/trust policy ``Principal``: ``*``, ``{"AWS": ...}`` or ``{"Service": ...}``."""
    if principal_element == "*":
        return True
    if not isinstance(principal_element, Mapping):
        raise UnsupportedPolicy(f"Principal {principal_element!r}")
    if "*" in _as_list(principal_element.get("AWS")):
        return True
    if request.principal.startswith("service:"):
        service = request.principal.removeprefix("service:")
        return service in _as_list(principal_element.get("Service"))
    for aws in _as_list(principal_element.get("AWS")):
        if aws == request.principal:
            return True
        # The account (root or bare id) as principal: any principal of that account, when
        # that account's identity policies allow it too (checked separately).
        account = aws.split(":")[4] if aws.startswith("arn:") else aws
        if (aws.endswith(":root") or aws.isdigit()) and account == request.account:
            return True
    return False


def statement_applies(
    statement: Mapping[str, Any], request: Request, *, resource_policy: bool
) -> bool:
    """Does this statement cover the request (principal, action, resource, conditions)?"""
    if "NotPrincipal" in statement:
        raise UnsupportedPolicy("NotPrincipal")
    if resource_policy and not _principal_matches(statement.get("Principal"), request):
        return False
    if "Action" in statement:
        if not any(action_matches(a, request.action) for a in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(action_matches(a, request.action) for a in _as_list(statement["NotAction"])):
            return False
    else:
        raise UnsupportedPolicy("statement without Action/NotAction")
    if "Resource" in statement:
        if not any(resource_matches(r, request.resource) for r in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(resource_matches(r, request.resource) for r in _as_list(statement["NotResource"])):
            return False
    elif not resource_policy:
        raise UnsupportedPolicy("identity statement without Resource")
    return _conditions_hold(statement, request.context)


def _matching(
    policies: Iterable[Policy], request: Request, effect: str, *, resource_policy: bool
) -> list[str]:
    found = []
    for policy in policies:
        for index, statement in enumerate(policy.statements()):
            if statement.get("Effect") != effect:
                continue
            if statement_applies(statement, request, resource_policy=resource_policy):
                sid = statement.get("Sid") or f"#{index}"
                found.append(f"{policy.label}:{sid}")
    return found


def evaluate(
    request: Request,
    identity: Sequence[Policy],
    resource: Sequence[Policy] = (),
    *,
    resource_policy_required: bool = False,
) -> Decision:
    """The decision for one request. ``resource_policy_required``: KMS key policies and IAM
    trust policies must allow the request themselves (an identity Allow is not enough)."""
    denies = _matching(identity, request, "Deny", resource_policy=False) + _matching(
        resource, request, "Deny", resource_policy=True
    )
    if denies:
        return Decision(False, "explicit Deny", tuple(denies))
    by_resource = _matching(resource, request, "Allow", resource_policy=True)
    by_identity = _matching(identity, request, "Allow", resource_policy=False)
    if resource_policy_required:
        if not by_resource:
            return Decision(False, "the resource (key/trust) policy does not allow it")
        # A key policy naming the account root delegates to the identity policies.
        delegated = all(_delegates_to_iam(s) for s in by_resource)
        if delegated and not by_identity:
            return Decision(False, "no identity policy allows it (key policy delegates to IAM)")
        return Decision(True, "allowed", tuple(by_resource + by_identity))
    if by_identity or by_resource:
        return Decision(True, "allowed", tuple(by_identity + by_resource))
    return Decision(False, "no statement allows it (implicit deny)")


def _delegates_to_iam(label: str) -> bool:
    return label.endswith(":root-delegation")


def with_root_delegation(policy: Policy, account: str) -> Policy:
    """Mark key-policy statements that allow the account root (they delegate to IAM)."""
    statements = []
    for statement in policy.statements():
        principal = statement.get("Principal")
        aws = _as_list(principal.get("AWS")) if isinstance(principal, Mapping) else []
        root = f"arn:aws:iam::{account}:root"
        if root in aws or account in aws:
            statement = {**statement, "Sid": "root-delegation"}
        statements.append(statement)
    return Policy(policy.label, {**policy.document, "Statement": statements})
