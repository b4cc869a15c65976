"""Any number of workers per stack: the real ``__main__.py`` with 60 workers, under mocks.

The 57 extra workers are clones of the first seed worker declared through the real
``FargateWorker`` (``bench.program_scaling.extra_workers``; mocks build no image), for the dev
and prod settings. Every IAM role in the graph keeps at least 2x headroom on each of IAM's
per-role quotas, and the control-plane roles' policies are the same, character for character,
with 3 and with 60 workers: nothing a worker declares grows them.
"""

from __future__ import annotations

import pytest

from bench.program_scaling import extra_workers
from components import aws_rules
from components.offline import StackGraph, evaluate_stack
from tests.infra.policies import role_quotas

pytestmark = pytest.mark.xdist_group("pulumi")

MANY = 60
CONTROL_PLANE_ROLES = (
    "platform-control-api-role",
    "platform-control-launcher-role",
    "platform-control-reconciler-role",
    "platform-control-sweep-role",
)
# 2x headroom on every IAM quota (aws_rules: IAM User Guide, "IAM and AWS STS quotas").
INLINE_BUDGET = aws_rules.IAM_ROLE_INLINE_POLICY_CHARS // 2  # 5,120
MANAGED_BUDGET = aws_rules.IAM_MANAGED_POLICIES_PER_ROLE // 2  # 5
TRUST_BUDGET = aws_rules.IAM_TRUST_POLICY_CHARS // 2  # 1,024


def _many(stack: str) -> StackGraph:
    with extra_workers(MANY - 3):
        return evaluate_stack(stack)


@pytest.fixture(scope="module")
def many_dev() -> StackGraph:
    return _many("dev")


@pytest.fixture(scope="module")
def many_prod() -> StackGraph:
    return _many("prod")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_sixty_workers_keep_every_role_at_half_of_each_iam_quota(
    stack: str, request: pytest.FixtureRequest
) -> None:
    graph: StackGraph = request.getfixturevalue(f"many_{stack}")
    assert len(graph.of_type("aibatch:index:FargateWorker")) == MANY
    quotas = role_quotas(graph)
    assert len(quotas) >= 2 * MANY + len(CONTROL_PLANE_ROLES)  # every worker's two roles too
    over = {
        role: q
        for role, q in quotas.items()
        if q["inline_chars"] > INLINE_BUDGET
        or q["managed_policies"] > MANAGED_BUDGET
        or q["trust_chars"] > TRUST_BUDGET
    }
    assert over == {}
    # One launch queue and one trigger, whatever the number of workers.
    assert len(graph.of_type("aibatch:index:JobQueue")) == 1
    assert len(graph.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")) == 1


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_control_plane_policies_do_not_grow_with_the_workers(
    stack: str, request: pytest.FixtureRequest
) -> None:
    few: StackGraph = request.getfixturevalue(f"{stack}_graph")
    many: StackGraph = request.getfixturevalue(f"many_{stack}")
    few_q, many_q = role_quotas(few), role_quotas(many)
    for role in CONTROL_PLANE_ROLES:
        assert many_q[role] == few_q[role], role
    policies = {
        p.name: p.inputs["policy"]
        for p in many.of_type("aws:iam/rolePolicy:RolePolicy")
        if p.name.removesuffix("-policy") + "-role" in CONTROL_PLANE_ROLES
    }
    assert len(policies) == len(CONTROL_PLANE_ROLES)
    for name, document in policies.items():
        assert document == few.named("aws:iam/rolePolicy:RolePolicy", name).inputs["policy"]
