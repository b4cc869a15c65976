"""The program's scheduled tasks under mocks (``components/seed_workers.py``
``SEED_SCHEDULES``): the weekly array job's expression, the array request in its target's
overrides (within ECS's 8,192 characters, accepted by the API's checks), its role's grants
(its worker's tasks only), and the nightly job beside it unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest

import jobcontract
from components import aws_rules, seed_workers
from components.offline import StackGraph
from components.scheduled_task import MAX_OVERRIDES_CHARS
from jobcontract import Env
from jobcontract.scheduled import ScheduledRequest, plan_array

pytestmark = pytest.mark.xdist_group("pulumi")

SCHEDULE = "aws:scheduler/schedule:Schedule"
WEEKLY = "weekly-meta-descriptions"


def _env(graph: StackGraph, name: str) -> dict[str, str]:
    target = graph.named(SCHEDULE, f"{name}-schedule").inputs["target"]
    overrides = json.loads(target["input"])
    (container,) = overrides["containerOverrides"]
    assert container["name"] == jobcontract.CONTAINER_NAME
    return {e["name"]: e["value"] for e in container["environment"]}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_weekly_array_schedule_fires_mondays_with_its_items(
    stack: str, dev_graph: StackGraph, prod_graph: StackGraph
) -> None:
    graph = {"dev": dev_graph, "prod": prod_graph}[stack]
    schedule = graph.named(SCHEDULE, f"{WEEKLY}-schedule").inputs
    assert schedule["name"] == f"ai-batch-{stack}-{WEEKLY}"
    assert schedule["scheduleExpression"] == "cron(30 4 ? * MON *)"
    assert aws_rules.schedule_expression(schedule["scheduleExpression"])  # AWS's syntax
    assert schedule["scheduleExpressionTimezone"] == "UTC"
    assert schedule["state"] == "ENABLED"
    target = schedule["target"]
    assert len(target["input"]) <= MAX_OVERRIDES_CHARS  # ECS RunTask overrides limit
    task = graph.named("aws:ecs/taskDefinition:TaskDefinition", "meta-desc-generator-task")
    assert target["ecsParameters"]["taskDefinitionArn"] == task.outputs["arn"]
    assert target["ecsParameters"]["tags"] == {"batch:schedule": WEEKLY, "batch:source": "schedule"}
    # The request as the reconciler reads it from the stopped task: an array job of the
    # six pages, two a shard, the shared max_length; no job id (the reconciler makes it).
    env = _env(graph, WEEKLY)
    assert Env.JOB_ID not in env
    request = ScheduledRequest.from_env(env)
    assert request.problem is None and request.input == {"max_length": 155}
    assert request.array == {
        "items": [dict(p) for p in seed_workers.WEEKLY_PAGES],
        "shard_size": 2,
        "max_failed_item_share": 0.25,
    }
    schema = seed_workers.input_schema("meta-desc-generator")
    plan = plan_array("meta-desc-generator", schema, request.input, request.array)
    assert (plan.field, plan.total, plan.shard_size) == ("pages", 6, 2)


def _statements(graph: StackGraph, name: str) -> dict[str, dict[str, Any]]:
    policy = graph.named("aws:iam/rolePolicy:RolePolicy", f"{name}-run-task").inputs["policy"]
    return {s["Sid"]: s for s in json.loads(policy)["Statement"]}


def test_each_schedules_role_runs_only_its_own_workers_tasks(prod_graph: StackGraph) -> None:
    for seed in seed_workers.SEED_SCHEDULES:
        statements = _statements(prod_graph, seed.name)
        assert set(statements) == {"RunWorkerTasks", "TagTasksAtLaunch", "PassWorkerRoles",
                                   "DeadLetter"}  # fmt: skip
        family = f"task-definition/ai-batch-prod-{seed.worker}:*"
        assert [r.split(":", 5)[-1] for r in statements["RunWorkerTasks"]["Resource"]] == [family]
        assert statements["RunWorkerTasks"]["Condition"] == {
            "ArnEquals": {"ecs:cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/ai-batch-prod"}
        }
        roles = statements["PassWorkerRoles"]["Resource"]
        assert sorted(r.rsplit("/", 1)[-1] for r in roles) == [
            f"ai-batch-prod-{seed.worker}-exec",
            f"ai-batch-prod-{seed.worker}-task",
        ]
        assert statements["DeadLetter"]["Resource"] == [
            f"arn:aws:sqs:us-east-1:123456789012:ai-batch-prod-{seed.name}-dlq"
        ]


def test_the_nightly_schedule_stays_one_plain_job(dev_graph: StackGraph) -> None:
    env = _env(dev_graph, "nightly-content-analysis")
    assert set(env) == {Env.SCHEDULED_INPUT}  # no BATCH_SCHEDULED_ARRAY: one job
    schedule = dev_graph.named(SCHEDULE, "nightly-content-analysis-schedule").inputs
    assert schedule["scheduleExpression"] == "cron(0 3 * * ? *)"


def test_a_seed_schedule_the_api_would_reject_fails_the_program_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``check_schemas`` runs the API's checks on each array schedule (and the schema on a
    plain one), so a bad seed fails before anything is declared."""
    import dataclasses

    from jobcontract.scheduled import ScheduledArray

    weekly = seed_workers.SEED_SCHEDULES[1]
    bad_items = dataclasses.replace(weekly, array=ScheduledArray(items=[{"url": "x"}]))
    monkeypatch.setattr(seed_workers, "SEED_SCHEDULES", (bad_items,))
    with pytest.raises(ValueError, match=f"schedule {WEEKLY}: invalid_items"):
        seed_workers.check_schemas()
    plain = dataclasses.replace(weekly, array=None)  # the pages belong in 'pages'
    monkeypatch.setattr(seed_workers, "SEED_SCHEDULES", (plain,))
    with pytest.raises(ValueError, match=f"schedule {WEEKLY}: input does not match"):
        seed_workers.check_schemas()
