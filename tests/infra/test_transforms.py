"""Pulumi's ``transforms`` resource option, the escape hatch for what a component does not
expose, reaches every child of a component, grandchildren included (every child is declared
with ``parent=`` its component). Offline, ``components.offline`` plays the engine's part and
calls the transforms, as ``pulumi up`` would."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.config import load_config
from components.offline import StackGraph, run_program, stack_config

pytestmark = pytest.mark.xdist_group("pulumi")

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def _platform_with(transform: Any, stack: str = "dev") -> StackGraph:
    """The platform, the API, a worker and its schedule, each given ``transform``."""
    from components import seed_workers
    from components.batch_api import BatchApi, BatchApiArgs
    from components.fargate_worker import FargateWorker, FargateWorkerArgs
    from components.platform import BatchPlatform, BatchPlatformArgs
    from components.scheduled_task import ScheduledTask, ScheduledTaskArgs

    def program() -> None:
        opts = pulumi.ResourceOptions(transforms=[transform])
        platform = BatchPlatform("platform", BatchPlatformArgs(config=load_config()), opts=opts)
        BatchApi("api", BatchApiArgs(platform=platform), opts=opts)
        worker = FargateWorker("content-analyzer", FargateWorkerArgs(platform=platform), opts=opts)
        schedule = ScheduledTaskArgs(
            platform=platform,
            worker=worker,
            schedule="rate(1 day)",
            input=dict(seed_workers.SEED_SCHEDULES[0].input),
        )
        ScheduledTask("nightly", schedule, opts=opts)

    return run_program(program, stack=stack, config=stack_config(stack))


def test_a_transform_given_to_a_component_reaches_every_child() -> None:
    seen: list[tuple[str, str]] = []

    def keep_logs_a_month(args: pulumi.ResourceTransformArgs) -> Any:
        seen.append((args.type_, args.name))
        if args.type_ == LOG_GROUP:
            return pulumi.ResourceTransformResult(
                props={**args.props, "retentionInDays": 30}, opts=args.opts
            )
        return None

    graph = _platform_with(keep_logs_a_month)
    # Every resource of both components went through the transform...
    assert sorted(seen) == sorted((r.type, r.name) for r in graph.resources)
    # ... including the grandchildren: the control plane's functions' log groups.
    groups = {g.name: g.inputs["retentionInDays"] for g in graph.of_type(LOG_GROUP)}
    assert {
        "platform-control-api-logs",
        "platform-control-launcher-logs",
        "api-access-logs",
        "content-analyzer-logs",
    } <= set(groups)
    assert set(groups.values()) == {30}, groups
    # A schedule's children too: its schedule, role, policy and dead-letter queue.
    assert {
        ("aws:scheduler/schedule:Schedule", "nightly-schedule"),
        ("aws:iam/rolePolicy:RolePolicy", "nightly-run-task"),
        ("aws:sqs/queue:Queue", "nightly-dlq"),
    } <= set(seen)


def test_a_transform_reaches_what_a_scheduled_task_does_not_expose() -> None:
    """The escape hatch on a ``ScheduledTask``: its DLQ keeps messages 4 days instead of 14."""

    def shorter_dlq(args: pulumi.ResourceTransformArgs) -> Any:
        if args.type_ == "aws:sqs/queue:Queue" and args.name == "nightly-dlq":
            props = {**args.props, "messageRetentionSeconds": 345_600}
            return pulumi.ResourceTransformResult(props=props, opts=args.opts)
        return None

    graph = _platform_with(shorter_dlq)
    assert (
        graph.named("aws:sqs/queue:Queue", "nightly-dlq").inputs["messageRetentionSeconds"]
        == 345_600
    )


def test_without_the_transform_the_stack_setting_holds() -> None:
    graph = _platform_with(lambda args: None)
    assert {g.inputs["retentionInDays"] for g in graph.of_type(LOG_GROUP)} == {7}
