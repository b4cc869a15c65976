"""Reading a stack's cost model off the resources its program registers under mocks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.offline import PROGRAM, MockResource, StackGraph
from cost.estimator import estimate
from cost.model import (
    ESM,
    EVENT_RULE,
    FUNCTION,
    LIFECYCLE,
    TABLE_ITEM,
    TASK_DEFINITION,
    QueueSpec,
    Usage,
    model_from_graph,
    spot_share_of,
)


def _res(type_: str, logical: str, **inputs: Any) -> MockResource:
    return MockResource(type=type_, name=logical, inputs=inputs, outputs=dict(inputs), parent=None,
                        custom=True)


def _registration(name: str, cpu: int, memory: int, arch: str, strategy: list[dict[str, Any]],
                  family: str) -> MockResource:
    item = {
        "pk": {"S": f"worker#{name}"},
        "kind": {"S": "worker"},
        "name": {"S": name},
        "task_definition": {
            "S": f"arn:aws:ecs:us-east-1:123456789012:task-definition/{family}:1"
        },
        "cpu": {"N": str(cpu)},
        "memory": {"N": str(memory)},
        "architecture": {"S": arch},
        "capacity_strategy": {"S": json.dumps(strategy)},
    }
    return _res(TABLE_ITEM, f"{name}-registration", item=json.dumps(item))


def _graph() -> StackGraph:
    spot_70 = [{"capacityProvider": "FARGATE_SPOT", "weight": 7, "base": 0},
               {"capacityProvider": "FARGATE", "weight": 3, "base": 0}]
    return StackGraph(resources=[
        _res(TASK_DEFINITION, "alt-task", family="ai-batch-dev-alt", cpu="1024", memory="2048",
             runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}),
        _res(TASK_DEFINITION, "meta-task", family="ai-batch-dev-meta", cpu="512", memory="1024",
             runtimePlatform={"cpuArchitecture": "X86_64"}, ephemeralStorage={"sizeInGib": 30}),
        _registration("alt", 1024, 2048, "arm64", spot_70, "ai-batch-dev-alt"),
        _registration("meta", 512, 1024, "x86_64",
                      [{"capacityProvider": "FARGATE", "weight": 1, "base": 0}],
                      "ai-batch-dev-meta"),
        _res(LIFECYCLE, "alt-images", repository="ai-batch-dev-alt",
             policy=json.dumps({"rules": [{"selection": {"countType": "imageCountMoreThan",
                                                         "countNumber": 3}}]})),
        _res(FUNCTION, "api", name="ai-batch-dev-api", memorySize=512, architectures=["arm64"],
             environment={"variables": {"BATCH_ASSIGN_PUBLIC_IP": "ENABLED"}}),
        _res(FUNCTION, "launcher", name="ai-batch-dev-launcher", memorySize=256,
             architectures=["arm64"]),
        _res(FUNCTION, "reconciler", name="ai-batch-dev-reconciler", architectures=["x86_64"]),
        _res(FUNCTION, "sweep", name="ai-batch-dev-sweep", memorySize=128,
             architectures=["arm64"]),
        _res(ESM, "alt-trigger",
             eventSourceArn="arn:aws:sqs:us-east-1:123456789012:ai-batch-dev-alt.fifo",
             scalingConfig={"maximumConcurrency": 10}),
        _res(ESM, "meta-trigger",
             eventSourceArn="arn:aws:sqs:us-east-1:123456789012:ai-batch-dev-meta.fifo"),
        _res(EVENT_RULE, "task-stopped", eventPattern=json.dumps(
            {"detail-type": ["ECS Task State Change"], "detail": {"lastStatus": ["STOPPED"]}})),
        _res(EVENT_RULE, "sweep-schedule", scheduleExpression="rate(10 minutes)"),
        _res("aws:cloudwatch/metricAlarm:MetricAlarm", "dlq-depth"),
        _res("aws:cloudwatch/metricAlarm:MetricAlarm", "api-5xx"),
        _res("aws:secretsmanager/secret:Secret", "slack"),
        _res("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", vpcEndpointType="Gateway"),
        _res("aws:ec2/vpcEndpoint:VpcEndpoint", "logs", vpcEndpointType="Interface",
             subnetIds=["subnet-a", "subnet-b"]),
    ])


def test_spot_share_of_a_capacity_strategy() -> None:
    assert spot_share_of([{"capacityProvider": "FARGATE_SPOT", "weight": 3},
                          {"capacityProvider": "FARGATE", "weight": 1}]) == 0.75
    assert spot_share_of([{"capacityProvider": "FARGATE_SPOT", "weight": 1}]) == 1.0
    assert spot_share_of([{"capacityProvider": "FARGATE", "weight": 1, "base": 1}]) == 0.0


def test_model_from_a_graph() -> None:
    model = model_from_graph(_graph(), stack="dev", config={"ai-batch:jobTtlDays": "14",
                                                           "ai-batch:results": '{"expireDays": 7}'})
    alt, meta = model.worker("alt"), model.worker("meta")
    assert (alt.cpu_units, alt.memory_mib, alt.arch, alt.spot_share) == (1024, 2048, "arm64", 0.7)
    assert alt.kept_images == 3  # from its ECR lifecycle policy
    assert (meta.vcpu, meta.memory_gb, meta.arch, meta.spot_share) == (0.5, 1.0, "x86_64", 0.0)
    assert meta.ephemeral_gib == 30
    roles = {fn.role: fn for fn in model.lambdas}
    assert set(roles) == {"api", "launcher", "reconciler", "sweep"}
    assert roles["api"].memory_mb == 512
    assert roles["reconciler"].arch == "x86_64" and roles["reconciler"].memory_mb == 128
    assert {(q.name, q.max_concurrency) for q in model.queues} == {
        ("ai-batch-dev-alt.fifo", 10), ("ai-batch-dev-meta.fifo", None)}
    assert model.reconciler_events_per_task == 1  # the rule matches STOPPED only
    (sweep,) = model.schedules
    assert (sweep.target, sweep.via, sweep.invocations_per_month) == ("lambda", "rule", 4380)
    assert (model.alarms, model.secrets, model.interface_endpoint_azs) == (2, 1, 2)
    assert model.public_ip is True
    assert (model.job_ttl_days, model.results_expiry_days) == (14, 7)


def test_graph_model_prices_what_the_graph_declares() -> None:
    model = model_from_graph(_graph())
    est = estimate(model, Usage(image_gb=0.0))
    fixed = est.by_service(fixed=True)
    # 2 alarms x $0.10; 1 secret x $0.40; 2 AZ x 730 h x $0.01; polling 5 + 2 pollers
    assert fixed["CloudWatch"] == pytest.approx(0.20)
    assert fixed["Secrets Manager"] == pytest.approx(0.40)
    assert fixed["VPC"] == pytest.approx(14.60)
    assert fixed["SQS"] == pytest.approx((657_000 + 262_800) * 0.5e-6)
    assert "EventBridge Scheduler" not in fixed  # a scheduled EventBridge rule is free


@pytest.mark.skipif(not PROGRAM.exists(), reason="__main__.py has not landed yet")
def test_dev_stack_model_from_the_real_program(dev_graph: StackGraph) -> None:
    model = model_from_graph(dev_graph, stack="dev")
    names = {w.name for w in model.workers}
    assert {"image-alt-generator", "meta-desc-generator", "content-analyzer"} <= names
    for w in model.workers:
        assert w.arch == "arm64"
        assert w.spot_share == 1.0  # dev: spotShare 100
        assert w.cpu_units >= 256 and w.memory_mib >= 512
    assert {"api", "launcher", "reconciler", "sweep"} <= {fn.role for fn in model.lambdas}
    # One polled queue per stack, the launch queue (DLQs are not polled), capped at the
    # stack's launcherConcurrency (default 2).
    assert model.queues == (QueueSpec("ai-batch-dev-launch.fifo", 2),)
    assert model.alarms == 0 and model.dashboards == 0  # dev: alarms off
    assert model.nat_gateways == 0 and model.interface_endpoint_azs == 0
    assert model.public_ip is True
    # The scheduled ECS runs: the nightly job's one task, and the weekly array job's own task
    # plus its three shards (six pages, two a shard), each run.
    runs = {s.name: (s.worker, s.tasks_per_run) for s in model.schedules if s.target == "ecs"}
    assert runs == {
        "nightly-content-analysis-schedule": ("content-analyzer", 1),
        "weekly-meta-descriptions-schedule": ("meta-desc-generator", 4),
    }


@pytest.mark.skipif(not PROGRAM.exists(), reason="__main__.py has not landed yet")
def test_prod_stack_model_differs_where_prod_config_does(prod_graph: StackGraph) -> None:
    prod = model_from_graph(prod_graph, stack="prod")
    assert all(w.spot_share == pytest.approx(0.7) for w in prod.workers)  # spotShare 70
    assert prod.alarms > 0 and prod.dashboards == 1  # alarms: true
    assert prod.pitr is True
    assert prod.container_insights is True
    assert prod.log_retention_days == 90
    est = estimate(prod, Usage(image_gb=0.0))
    fixed = est.by_service(fixed=True)
    # alarms x $0.10 + one dashboard x $3.00
    assert fixed["CloudWatch"] == pytest.approx(prod.alarms * 0.10 + 3.00)
    assert any("Container Insights" in note for note in est.notes)


def _ecs_schedule(array: dict[str, Any] | None) -> MockResource:
    env = [{"name": "BATCH_SCHEDULED_INPUT", "value": "{}"}]
    if array is not None:
        env.append({"name": "BATCH_SCHEDULED_ARRAY", "value": json.dumps(array)})
    overrides = {"containerOverrides": [{"name": "worker", "environment": env}]}
    return _res("aws:scheduler/schedule:Schedule", "meta-weekly-schedule",
                scheduleExpression="cron(0 4 ? * MON *)",
                target={"arn": "arn:aws:ecs:us-east-1:123456789012:cluster/c",
                        "input": json.dumps(overrides),
                        "ecsParameters": {"taskDefinitionArn": "arn:aws:ecs:us-east-1:"
                                          "123456789012:task-definition/ai-batch-dev-meta:1"}})


@pytest.mark.parametrize(
    ("array", "tasks"),
    [
        (None, 1),  # one job
        ({"items": list(range(7)), "shard_size": 2}, 1 + 4),
        ({"items": list(range(7)), "parallelism": 3}, 1 + 3),
        ({"items": list(range(250))}, 1 + 3),  # the API's default shard size, 100
        ({"manifest": {"s3_key": "inputs/meta/m.jsonl", "items": 5000}, "shard_size": 1000}, 6),
    ],
)  # fmt: skip
def test_an_array_schedule_is_priced_with_its_shards(array: Any, tasks: int) -> None:
    model = model_from_graph(_with_schedule(array))
    (weekly,) = [s for s in model.schedules if s.target == "ecs"]
    assert (weekly.worker, weekly.tasks_per_run) == ("meta", tasks)
    fargate = estimate(model, Usage(image_gb=0.0)).by_service(fixed=True)["Fargate"]
    one = estimate(model_from_graph(_with_schedule(None)), Usage(image_gb=0.0))
    assert fargate == pytest.approx(one.by_service(fixed=True)["Fargate"] * tasks)


def _with_schedule(array: dict[str, Any] | None) -> StackGraph:
    graph = _graph()
    graph.resources.append(_ecs_schedule(array))
    return graph
