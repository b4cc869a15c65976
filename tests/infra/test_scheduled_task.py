"""ScheduledTask under Pulumi mocks: expression/timezone checks, target, overrides, role, DLQ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import jobcontract
from components.aws_rules import AwsConstraintError
from components.config import StackConfig
from components.fargate_worker import FargateWorker, FargateWorkerArgs
from components.offline import StackGraph, run_program
from components.scheduled_task import ScheduledTask, ScheduledTaskArgs
from jobcontract import Env
from tests.infra.test_fargate_worker import fake_platform, stack_config, worker_dir

SCHEDULE = "aws:scheduler/schedule:Schedule"
SCHEMA = {
    "type": "object",
    "required": ["urls"],
    "properties": {"urls": {"type": "array", "items": {"type": "string"}}},
}


def run_schedule(source: Path, config: StackConfig | None = None, **overrides: Any) -> StackGraph:
    config = config or stack_config(spotShare=70)

    def program() -> None:
        platform = fake_platform(config)
        worker = FargateWorker(
            "audit",
            FargateWorkerArgs(platform=platform, source_dir=str(source), input_schema=SCHEMA),
        )
        args: dict[str, Any] = {
            "schedule": "cron(0 3 * * ? *)",
            "timezone": "Europe/Berlin",
            "input": {"urls": ["https://example.com/"]},
        }
        args.update(overrides)
        ScheduledTask("nightly", ScheduledTaskArgs(platform=platform, worker=worker, **args))

    return run_program(program, stack=config.stack)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return worker_dir(tmp_path_factory.mktemp("workers"), "audit")


@pytest.fixture(scope="module")
def graph(source: Path) -> StackGraph:
    return run_schedule(source, flexible_window_minutes=15, retry_attempts=3)


def test_schedule_expression_timezone_and_window(graph: StackGraph) -> None:
    s = graph.named(SCHEDULE, "nightly-schedule").inputs
    assert s["name"] == "ai-batch-dev-nightly"
    assert s["scheduleExpression"] == "cron(0 3 * * ? *)"
    assert s["scheduleExpressionTimezone"] == "Europe/Berlin"
    assert s["flexibleTimeWindow"] == {"mode": "FLEXIBLE", "maximumWindowInMinutes": 15}
    assert s["state"] == "ENABLED"


def test_target_runs_the_worker_task_in_the_cluster(graph: StackGraph) -> None:
    target = graph.named(SCHEDULE, "nightly-schedule").inputs["target"]
    cluster = graph.named("aws:ecs/cluster:Cluster", "cluster").outputs
    task = graph.named("aws:ecs/taskDefinition:TaskDefinition", "audit-task").outputs
    assert target["arn"] == cluster["arn"]
    ecs = target["ecsParameters"]
    assert ecs["taskDefinitionArn"] == task["arn"]
    assert ecs["taskCount"] == 1
    # Public mode: Scheduler takes AssignPublicIp ENABLED only with LaunchType FARGATE, and a
    # launch type excludes a capacity provider strategy (AWS Scheduler API reference).
    assert ecs["launchType"] == "FARGATE"
    assert "capacityProviderStrategies" not in ecs
    net = ecs["networkConfiguration"]
    assert net["subnets"] == ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]
    sg = graph.named("aws:ec2/securityGroup:SecurityGroup", "tasks").outputs["id"]
    assert net["securityGroups"] == [sg]
    assert net["assignPublicIp"] is True  # public network mode
    assert ecs["tags"] == {"batch:schedule": "nightly", "batch:source": "schedule"}


def test_input_arrives_as_container_environment(graph: StackGraph) -> None:
    target = graph.named(SCHEDULE, "nightly-schedule").inputs["target"]
    overrides = json.loads(target["input"])
    (container,) = overrides["containerOverrides"]
    assert container["name"] == jobcontract.CONTAINER_NAME
    (env,) = container["environment"]
    assert env["name"] == Env.SCHEDULED_INPUT == "BATCH_SCHEDULED_INPUT"
    assert json.loads(env["value"]) == {"urls": ["https://example.com/"]}
    # No job id: the runtime records the run as its own job.
    assert Env.JOB_ID not in json.dumps(overrides)


def test_retry_policy_and_dead_letter_queue(graph: StackGraph) -> None:
    target = graph.named(SCHEDULE, "nightly-schedule").inputs["target"]
    assert target["retryPolicy"] == {"maximumRetryAttempts": 3, "maximumEventAgeInSeconds": 3600}
    dlq = graph.named("aws:sqs/queue:Queue", "nightly-dlq")
    assert target["deadLetterConfig"] == {"arn": dlq.outputs["arn"]}
    assert dlq.inputs["sqsManagedSseEnabled"] is True
    assert "fifoQueue" not in dlq.inputs or dlq.inputs["fifoQueue"] is False
    pol = graph.named("aws:sqs/queuePolicy:QueuePolicy", "nightly-dlq-tls-only").inputs
    (stmt,) = json.loads(pol["policy"])["Statement"]
    assert stmt["Effect"] == "Deny"
    assert stmt["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_schedule_waits_for_role_policy_and_capacity_providers(graph: StackGraph) -> None:
    # Scheduler's RunTask uses a capacity provider strategy: the providers must be attached.
    schedule = graph.named(SCHEDULE, "nightly-schedule")
    assert {"capacity", "nightly-run-task"} <= set(schedule.depends_on)


def test_role_trust_and_scope(graph: StackGraph) -> None:
    role = graph.named("aws:iam/role:Role", "nightly-role")
    target = graph.named(SCHEDULE, "nightly-schedule").inputs["target"]
    assert target["roleArn"] == role.outputs["arn"]
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    # AWS rule: Scheduler's aws:SourceArn is the schedule group's ARN, not the schedule's.
    assert trust["Condition"]["ArnEquals"] == {
        "aws:SourceArn": "arn:aws:scheduler:us-east-1:123456789012:schedule-group/default"
    }
    assert "ArnLike" not in trust["Condition"]

    statements = {
        s["Sid"]: s
        for s in json.loads(
            graph.named("aws:iam/rolePolicy:RolePolicy", "nightly-run-task").inputs["policy"]
        )["Statement"]
    }
    cluster_arn = graph.named("aws:ecs/cluster:Cluster", "cluster").outputs["arn"]
    task = graph.named("aws:ecs/taskDefinition:TaskDefinition", "audit-task").outputs
    run = statements["RunWorkerTasks"]  # grants.grant_run, as the launcher's
    assert run["Action"] == ["ecs:RunTask"]
    assert run["Resource"] == [task["arnWithoutRevision"] + ":*"]
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    passes = statements["PassWorkerRoles"]
    worker_roles = {
        graph.named("aws:iam/role:Role", n).outputs["arn"]
        for n in ("audit-task-role", "audit-exec-role")
    }
    assert set(passes["Resource"]) == worker_roles and len(passes["Resource"]) == 2
    assert passes["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert statements["DeadLetter"]["Action"] == ["sqs:SendMessage"]
    assert statements["DeadLetter"]["Resource"] == [
        graph.named("aws:sqs/queue:Queue", "nightly-dlq").outputs["arn"]
    ]
    assert statements["TagTasksAtLaunch"]["Condition"] == {
        "StringEquals": {"ecs:CreateAction": "RunTask"}
    }
    for s in statements.values():
        assert all("*" not in a for a in s["Action"])
        assert "*" not in s["Resource"]
    assert set(statements) == {
        "RunWorkerTasks",
        "PassWorkerRoles",
        "DeadLetter",
        "TagTasksAtLaunch",
    }


def test_no_alarm_in_dev_alarm_in_prod(graph: StackGraph, source: Path) -> None:
    assert graph.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") == []
    prod = run_schedule(source, stack_config("prod", alarms=True))
    alarm = prod.named("aws:cloudwatch/metricAlarm:MetricAlarm", "nightly-dlq-depth").inputs
    topic_arn = prod.named("aws:sns/topic:Topic", "failures").outputs["arn"]
    assert alarm["alarmActions"] == [topic_arn] and alarm["okActions"] == [topic_arn]
    assert alarm["metricName"] == "ApproximateNumberOfMessagesVisible" and alarm["threshold"] == 0


def test_long_names_are_refused_not_truncated(source: Path) -> None:
    def program() -> None:
        platform = fake_platform(stack_config())
        worker = FargateWorker(
            "audit", FargateWorkerArgs(platform=platform, source_dir=str(source))
        )
        ScheduledTask(
            "a-rather-long-schedule-name-for-a-nightly-job",
            ScheduledTaskArgs(platform=platform, worker=worker, schedule="rate(1 day)"),
        )

    with pytest.raises(AwsConstraintError, match="role name"):
        run_program(program)


def test_on_time_and_disabled(source: Path) -> None:
    g = run_schedule(source, schedule="rate(1 hour)", enabled=False, timezone="UTC")
    s = g.named(SCHEDULE, "nightly-schedule").inputs
    assert s["flexibleTimeWindow"] == {"mode": "OFF"}
    assert s["state"] == "DISABLED"
    assert s["scheduleExpression"] == "rate(1 hour)"


@pytest.mark.parametrize(
    ("overrides", "key_part"),
    [
        ({"schedule": "cron(0 3 * * * *)"}, "schedule"),  # both day fields set
        ({"schedule": "cron(0 3 * *)"}, "schedule"),  # five fields
        ({"schedule": "rate(1 hours)"}, "schedule"),
        ({"schedule": "every day"}, "schedule"),
        ({"schedule": "cron(0 25 * * ? *)"}, "schedule"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "CEST"}, "timezone"),
        ({"flexible_window_minutes": 0}, "flexible_window_minutes"),
        ({"flexible_window_minutes": 1441}, "flexible_window_minutes"),
        ({"retry_attempts": 186}, "retry"),
        ({"max_event_age_seconds": 30}, "retry"),
        ({"input": {"urls": "not-a-list"}}, "input"),
        ({"input": {}}, "input"),  # required "urls" missing
        ({"input": {"urls": ["x" * 9000]}}, "input"),  # over the 8192-char overrides limit
    ],
)
def test_invalid_settings_are_refused(
    source: Path, overrides: dict[str, Any], key_part: str
) -> None:
    with pytest.raises(AwsConstraintError) as info:
        run_schedule(source, **overrides)
    assert info.value.key.startswith("nightly: ")
    assert key_part in info.value.key


def test_security_checklist_passes(graph: StackGraph) -> None:
    from tests.infra.test_fargate_worker import checklist_violations

    assert checklist_violations(graph, "nightly") == []
    assert checklist_violations(graph, "audit") == []


def test_private_mode_keeps_the_spot_strategy_without_public_ip(source: Path) -> None:
    private = {
        "mode": "private",
        "vpcId": "vpc-0abc1234",
        "subnetIds": ["subnet-0abc1234", "subnet-0abc1235"],
        "routeTableIds": ["rtb-0abc1234", "rtb-0abc1235"],
    }
    graph = run_schedule(source, stack_config(spotShare=70, network=private))
    ecs = graph.named(SCHEDULE, "nightly-schedule").inputs["target"]["ecsParameters"]
    assert "launchType" not in ecs  # a capacity provider strategy replaces it
    assert ecs["capacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE_SPOT", "weight": 7, "base": 0},
        {"capacityProvider": "FARGATE", "weight": 3, "base": 0},
    ]
    assert ecs["networkConfiguration"]["assignPublicIp"] is False


# --- an array-job schedule (``array``: jobcontract.scheduled.ScheduledArray) -----------------
def test_an_array_schedule_carries_its_items_for_the_reconciler(source: Path) -> None:
    from jobcontract.scheduled import ScheduledArray

    urls = [f"https://example.com/{i}" for i in range(25)]
    g = run_schedule(source, input={}, array=ScheduledArray(items=urls, shard_size=10))
    overrides = json.loads(g.named(SCHEDULE, "nightly-schedule").inputs["target"]["input"])
    env = {e["name"]: e["value"] for e in overrides["containerOverrides"][0]["environment"]}
    assert json.loads(env[Env.SCHEDULED_INPUT]) == {}
    # The array fields of POST /jobs, as the reconciler reads them (ScheduledRequest).
    assert json.loads(env[Env.SCHEDULED_ARRAY]) == {"items": urls, "shard_size": 10}


@pytest.mark.parametrize(
    ("array", "code", "needle"),
    [
        # The API's limits and messages (jobcontract.arrays), named in the error.
        ({"items": ["a", "b"], "shard_size": 0}, "invalid_request", "positive integer"),
        ({"items": ["a"] * 3, "shard_size": 1, "parallelism": 2}, "invalid_request", "not both"),
        ({"items": ["a", 7]}, "invalid_items", "items[1]"),
        ({"items": []}, "invalid_request", "non-empty"),
        ({"items": ["a"], "max_failed_item_share": 2}, "invalid_request", "0 to 1"),
        ({"manifest_key": "inputs/other/m.jsonl", "manifest_items": 5}, "invalid_manifest",
         "inputs/audit/"),
        ({"manifest_key": "inputs/audit/m.jsonl"}, "invalid_manifest", "manifest.items"),
        ({"items": ["x"] * 10_001, "shard_size": 1}, "array_limit (limit max_shards)", "10000"),
    ],
)  # fmt: skip
def test_an_invalid_array_schedule_is_refused_at_preview(
    source: Path, array: dict[str, Any], code: str, needle: str
) -> None:
    from jobcontract.scheduled import ScheduledArray

    with pytest.raises(AwsConstraintError) as info:
        run_schedule(source, input={}, array=ScheduledArray(**array))
    assert info.value.key == "nightly: array"
    assert info.value.value == code
    assert needle in info.value.allowed and "POST /jobs" in info.value.allowed


def test_an_array_schedule_whose_input_holds_the_items_is_refused(source: Path) -> None:
    from jobcontract.scheduled import ScheduledArray

    with pytest.raises(AwsConstraintError, match="give the items in 'items'"):
        run_schedule(source, array=ScheduledArray(items=["https://example.com/"]))
