"""IAM policy documents: ``Statement`` (checked: action-level Allow grants, ``Resource "*"``
only for the actions AWS authorizes on ``*``), ``policy_document`` (the JSON text a policy
takes, Outputs inside resolved), trust and TLS-only documents. Importable from
``components.iam`` too."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.iam_actions import STAR_RESOURCE_ACTIONS

Resource = str | pulumi.Output[str]
Conditions = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Statement:
    """One IAM statement; resources and condition values may be pulumi Outputs."""

    actions: Sequence[str]
    resources: Sequence[Resource]
    conditions: Conditions | None = None
    sid: str | None = None
    effect: str = "Allow"
    principals: Mapping[str, Any] | str | None = None
    """Resource policies only: ``"*"`` or ``{"Service": ...}`` / ``{"AWS": ...}``."""

    def __post_init__(self) -> None:
        if self.effect not in ("Allow", "Deny"):
            raise ValueError(f"effect {self.effect!r}: Allow or Deny")
        if not self.actions:
            raise ValueError(f"statement {self.sid}: at least one action")
        for action in self.actions:
            service, _, name = action.partition(":")
            if not service or not name:
                raise ValueError(f"IAM action {action!r}: service:Action")
            # Our rule: Allow grants are action-level; a wildcard would grant future actions.
            if "*" in action and self.effect == "Allow":
                raise ValueError(f"IAM action {action!r}: name one action, no wildcards")
        if not self.resources:
            raise ValueError(f"statement {self.sid or self.actions}: at least one resource")
        if any(isinstance(r, str) and r == "*" for r in self.resources):
            unscoped = [a for a in self.actions if a not in STAR_RESOURCE_ACTIONS]
            if unscoped and self.effect == "Allow":
                raise ValueError(f'Resource "*" for resource-scoped actions {unscoped}')


def _statement_json(s: Statement) -> pulumi.Output[dict[str, Any]]:
    body: dict[str, Any] = {
        "Effect": s.effect,
        "Action": sorted(set(s.actions)),
        "Resource": list(s.resources),
    }
    if s.sid:
        body["Sid"] = s.sid
    if s.conditions:
        body["Condition"] = {k: dict(v) for k, v in s.conditions.items()}
    if s.principals:
        body["Principal"] = s.principals if isinstance(s.principals, str) else dict(s.principals)
    resolved: pulumi.Output[dict[str, Any]] = pulumi.Output.from_input(body)  # type: ignore[arg-type]
    return resolved


def policy_document(*statements: Statement) -> pulumi.Output[str]:
    """JSON policy document from statements (Outputs inside are resolved)."""
    if not statements:
        raise ValueError("a policy needs at least one statement")
    parts = [_statement_json(s) for s in statements]
    return pulumi.Output.all(*parts).apply(
        lambda resolved: json.dumps({"Version": "2012-10-17", "Statement": list(resolved)})
    )


def assume_role_policy(service: str) -> str:
    """Trust policy letting one AWS service assume the role, in the form the service documents.
    Confused-deputy conditions are added by the caller only where the service documents the
    keys it sends (ECS task roles, Scheduler): a key the service does not send denies it."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def guarded_trust_policy(
    service: str, account: Resource, source_arn: Resource, *, arn_operator: str
) -> pulumi.Output[str]:
    """Trust policy letting one AWS service assume the role for this account only, with the
    confused-deputy keys the service documents it sends: ``aws:SourceAccount`` and
    ``aws:SourceArn`` (compared with ``arn_operator``, ``ArnLike`` or ``ArnEquals``)."""
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": account},
            arn_operator: {"aws:SourceArn": source_arn},
        },
    }
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [statement]})


def deny_insecure_transport(actions: Sequence[str], resources: Sequence[Resource]) -> Statement:
    """Resource-policy statement denying every request not made over TLS.

    A Deny may use a service wildcard (``s3:*``): denying more is never a privilege grant.
    """
    return Statement(
        actions,
        resources,
        {"Bool": {"aws:SecureTransport": "false"}},
        sid="DenyInsecureTransport",
        effect="Deny",
        principals="*",
    )
