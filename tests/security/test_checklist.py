"""The security checklist (policy/rules.py) proven on both sides, then run over the real
program: every rule fails on a small non-compliant input and passes the compliant twin
(cdk-nag validateStack style), and the mocked dev and prod stacks have zero violations.
"""

from __future__ import annotations

import pytest

from components.offline import StackGraph, evaluate_stack
from policy import rules
from policy.rules import RuleContext
from tests.security import cases
from tests.security.conftest import require_program


@pytest.mark.parametrize("case", cases.RESOURCE_CASES, ids=lambda c: f"{c.rule_id}-{c.type}")
def test_resource_rule_fails_bad_and_passes_good(case: cases.Case) -> None:
    rule = next(r for r in rules.RESOURCE_RULES if r.id == case.rule_id)
    assert rule.check(case.type, case.good, case.context) == []
    found = rule.check(case.type, case.bad, case.context)
    assert found and any(case.expect in m for m in found), found
    # The full checklist agrees and names the rule.
    assert (case.rule_id, found[0]) in rules.check_resource(case.type, case.bad, case.context)


@pytest.mark.parametrize("case", cases.STACK_CASES, ids=lambda c: c.rule_id)
def test_stack_rule_fails_bad_and_passes_good(case: cases.StackCase) -> None:
    rule = next(r for r in rules.STACK_RULES if r.id == case.rule_id)
    assert rule.check(case.good, case.context) == []
    found = rule.check(case.bad, case.context)
    assert found and any(case.expect in v.message for v in found), found
    assert all(v.rule_id == case.rule_id for v in found)


def test_every_rule_has_a_failing_case() -> None:
    covered = {c.rule_id for c in cases.RESOURCE_CASES} | {c.rule_id for c in cases.STACK_CASES}
    assert covered == set(rules.ALL_RULE_IDS)


def test_production_rules_only_bind_production_stacks() -> None:
    table = {"serverSideEncryption": {"enabled": True}}
    dev = rules.check_resource(rules.T_TABLE, table, cases.DEV)
    prod = {rid for rid, _ in rules.check_resource(rules.T_TABLE, table, cases.PROD)}
    assert dev == []
    assert prod == {"dynamodb-pitr-in-production", "deletion-protection-in-production"}
    assert rules.context_for("prod").production and not rules.context_for("dev").production
    assert rules.context_for("live", ["live"]).production


def test_public_mode_departure_is_explicit() -> None:
    """No gateway endpoints = public mode: a public IP is the design (no NAT), not a finding."""
    public = [cases.LAUNCHER_PUBLIC]
    assert rules.network_mode(public) == "public"
    assert next(r for r in rules.STACK_RULES if r.id == "no-public-ip-in-private-mode").check(
        public, cases.DEV) == []
    assert any("NAT" in why for why in rules.DEPARTURES.values())


def test_unknown_values_never_violate() -> None:
    unknown = rules.UNKNOWN
    assert rules.check_resource(rules.T_QUEUE, {"sqsManagedSseEnabled": unknown}) == []
    assert rules.check_resource(rules.T_ROLE_POLICY, {"policy": unknown}) == []
    assert rules.check_resource(rules.T_REST_API, {"body": unknown}) == []


def test_secret_detection_spares_references_and_plain_settings() -> None:
    benign = {
        "BATCH_SLACK_WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x",
        "BATCH_NOTION_SECRET_ARN": "",
        "BATCH_RESULT_URL_TTL_SECONDS": "900",
        "BATCH_API_URL": "https://abc.execute-api.us-east-1.amazonaws.com/v1",
        "API_KEY_ID": "abc123",
    }
    assert rules.secret_env_findings(benign) == []
    hostile = {"DB_PASSWORD": "hunter2", "X": "-----BEGIN RSA PRIVATE KEY-----"}
    assert len(rules.secret_env_findings(hostile)) == 2


# --- the real program under mocks ---------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_mocked_stack_has_zero_violations(
    stack: str, security_graphs: dict[str, StackGraph]
) -> None:
    graph = security_graphs[stack]
    violations = rules.check_graph(graph.resources, rules.context_for(stack))
    assert violations == [], "\n".join(str(v) for v in violations)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_checklist_is_not_vacuous_on_the_stack(
    stack: str, security_graphs: dict[str, StackGraph]
) -> None:
    """Every resource type a rule is about is actually present, so zero violations means
    the rules ran on real resources, not on an empty graph."""
    graph = security_graphs[stack]
    present = set(graph.types())
    wanted = {rules.T_TABLE, rules.T_QUEUE, rules.T_TOPIC, rules.T_REPO, rules.T_LOG_GROUP,
              rules.T_FUNCTION, rules.T_TASK_DEF, rules.T_ROLE, rules.T_REST_API,
              rules.T_STAGE, rules.T_SCHEDULE}
    assert wanted <= present, f"missing from the {stack} graph: {sorted(wanted - present)}"
    assert present & rules.T_BUCKETS
    assert len(graph.of_type(rules.T_QUEUE)) >= 3  # launch queue + its DLQ + scheduler DLQ


def test_breaking_a_graph_resource_is_caught(security_graphs: dict[str, StackGraph]) -> None:
    """Mutate one copy of a real recorded resource: the checklist must notice."""
    graph = security_graphs["dev"]
    queue = graph.of_type(rules.T_QUEUE)[0]
    broken = dict(queue.inputs)
    broken.pop("sqsManagedSseEnabled", None)
    broken.pop("kmsMasterKeyId", None)
    assert ("sqs-encryption" in {rid for rid, _ in rules.check_resource(
        rules.T_QUEUE, broken, RuleContext())})


def test_private_mode_has_no_public_ip() -> None:
    require_program("dev")
    overrides = {
        "network": '{"mode": "private", "vpcId": "vpc-0123456789abcdef0", '
        '"subnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"], '
        '"routeTableIds": ["rtb-0123456789abcdef0"]}'
    }
    graph = evaluate_stack("dev", overrides)
    cloud = [rules.Resource(r.type, r.name, {**r.outputs, **r.inputs}) for r in graph.resources]
    assert rules.network_mode(cloud) == "private"
    violations = rules.check_graph(graph.resources, rules.context_for("dev"))
    assert violations == [], "\n".join(str(v) for v in violations)
