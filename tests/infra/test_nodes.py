"""Every child of the control plane is reachable through ``nodes`` (SST's ``nodes``): a typed
property per component naming each child, recursively through child components."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components import seed_workers
from components.config import load_config
from components.offline import run_program, stack_config


def _reachable(component: Any) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for r in component.nodes.resources():
        out.add((r._type, r._name))
        if hasattr(r, "nodes"):
            out |= _reachable(r)
    return out


def test_every_child_of_the_control_plane_is_a_node() -> None:
    from components.platform import BatchPlatform, BatchPlatformArgs

    held: dict[str, Any] = {}

    def program() -> None:
        held["platform"] = BatchPlatform("platform", BatchPlatformArgs(config=load_config()))

    graph = run_program(program, stack="prod", config=stack_config("prod"))
    control = held["platform"].functions
    parents = {r.name: r.parent for r in graph.resources}

    def under(name: str | None) -> bool:
        while name is not None:
            if name == "platform-control":
                return True
            name = parents.get(name)
        return False

    descendants = {(r.type, r.name) for r in graph.resources if under(r.parent)}
    assert len(descendants) > 30
    assert _reachable(control) == descendants
    nodes = control.nodes
    assert nodes.launcher.nodes.policy is control.launcher.policy  # typed, by role
    assert nodes.launch_queue.nodes.event_source_mapping is not None
    assert isinstance(nodes.sweep_rule, pulumi.Resource)


def _descendants(graph: Any, root: str) -> set[tuple[str, str]]:
    parents = {r.name: r.parent for r in graph.resources}

    def under(name: str | None) -> bool:
        while name is not None:
            if name == root:
                return True
            name = parents.get(name)
        return False

    return {(r.type, r.name) for r in graph.resources if under(r.parent)}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_child_of_the_platform_the_api_and_a_schedule_is_a_node(stack: str) -> None:
    """``BatchPlatform``, ``BatchApi`` and ``ScheduledTask`` name each of their children in
    ``nodes``, with the stack's options (prod: alarms, topic key, email, protected data)."""
    from components.batch_api import BatchApi, BatchApiArgs
    from components.fargate_worker import FargateWorker, FargateWorkerArgs
    from components.platform import BatchPlatform, BatchPlatformArgs
    from components.scheduled_task import ScheduledTask, ScheduledTaskArgs

    held: dict[str, Any] = {}

    def program() -> None:
        platform = BatchPlatform("platform", BatchPlatformArgs(config=load_config()))
        worker = FargateWorker("content-analyzer", FargateWorkerArgs(platform=platform))
        held["platform"] = platform
        held["api"] = BatchApi("api", BatchApiArgs(platform=platform))
        held["nightly"] = ScheduledTask(
            "nightly",
            ScheduledTaskArgs(
                platform=platform,
                worker=worker,
                schedule="rate(1 day)",
                input=dict(seed_workers.SEED_SCHEDULES[0].input),
            ),
        )

    graph = run_program(program, stack=stack, config=stack_config(stack))
    for root, component in held.items():  # keyed by the component's logical name
        descendants = _descendants(graph, root)
        assert descendants, root
        assert _reachable(component) == descendants, root
        # Child names start with the component's: two platforms (or APIs, schedules) in one
        # program cannot declare one URN twice.
        unprefixed = sorted(n for _, n in descendants if not n.startswith(f"{root}-"))
        assert not unprefixed, (root, unprefixed)
    nodes = held["platform"].nodes
    assert nodes.control_plane is held["platform"].functions
    assert nodes.jobs_table is held["platform"].jobs_table
    assert len(nodes.results_bucket_settings) == 5
    assert held["api"].nodes.stage is held["api"].stage
    schedule = held["nightly"].nodes
    assert schedule.role is held["nightly"].role
    assert (schedule.dlq_alarm is not None) == (stack == "prod")  # alarms on in prod only
