"""Reading IAM policy documents out of a recorded stack graph (test helper)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from components.offline import MockResource, StackGraph

IDENTITY_POLICY_TYPES = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy")
RESOURCE_POLICY_TYPES = (
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:sns/topicPolicy:TopicPolicy",
    "aws:sqs/queuePolicy:QueuePolicy",
)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(doc: str | dict[str, Any]) -> list[dict[str, Any]]:
    parsed = json.loads(doc) if isinstance(doc, str) else doc
    return [dict(s) for s in as_list(parsed["Statement"])]


def identity_policies(graph: StackGraph) -> Iterator[tuple[MockResource, list[dict[str, Any]]]]:
    """Every identity policy: RolePolicy / Policy resources and roles' inline policies."""
    for type_token in IDENTITY_POLICY_TYPES:
        for r in graph.of_type(type_token):
            yield r, statements(r.inputs["policy"])
    for role in graph.of_type("aws:iam/role:Role"):
        for inline in role.inputs.get("inlinePolicies") or []:
            if inline.get("policy"):
                yield role, statements(inline["policy"])


def role_policy(graph: StackGraph, name: str) -> list[dict[str, Any]]:
    return statements(graph.named("aws:iam/rolePolicy:RolePolicy", name).inputs["policy"])


def actions_of(stmts: list[dict[str, Any]]) -> set[str]:
    return {a for s in stmts if s["Effect"] == "Allow" for a in as_list(s["Action"])}


def grants(stmts: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in stmts if s["Effect"] == "Allow" and action in as_list(s["Action"])]


def role_quotas(graph: StackGraph) -> dict[str, dict[str, int]]:
    """What IAM counts against each role's quotas, by the role's logical name: all its inline
    policies' characters (whitespace not counted, as IAM counts them), managed policies
    attached, and its trust policy's characters."""
    from components.aws_rules import policy_chars

    out: dict[str, dict[str, int]] = {}
    for role in graph.of_type("aws:iam/role:Role"):
        ids = {role.outputs.get("id"), role.outputs.get("name"), role.outputs.get("arn")}
        ids.discard(None)
        inline = [
            str(p.inputs["policy"])
            for p in graph.of_type("aws:iam/rolePolicy:RolePolicy")
            if p.inputs.get("role") in ids
        ]
        inline += [
            str(i["policy"]) for i in role.inputs.get("inlinePolicies") or [] if i.get("policy")
        ]
        managed = [
            a
            for a in graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if a.inputs.get("role") in ids
        ]
        out[role.name] = {
            "inline_chars": sum(policy_chars(d) for d in inline),
            "managed_policies": len(managed) + len(role.inputs.get("managedPolicyArns") or []),
            "trust_chars": policy_chars(str(role.inputs["assumeRolePolicy"])),
        }
    return out
