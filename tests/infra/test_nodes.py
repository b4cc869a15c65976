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


def _assert_nodes(graph: Any, held: dict[str, Any]) -> None:
    """Each component in ``held`` (keyed by its logical name) names exactly its descendants
    in ``nodes``, and each of their names starts with the component's."""
    for root, component in held.items():
        descendants = _descendants(graph, root)
        assert descendants, root
        assert _reachable(component) == descendants, root
        # Child names start with the component's: two platforms (or APIs, schedules,
        # workers) in one program cannot declare one URN twice.
        unprefixed = sorted(n for _, n in descendants if not n.startswith(f"{root}-"))
        assert not unprefixed, (root, unprefixed)


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
        held["content-analyzer"] = worker
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
    _assert_nodes(graph, held)
    nodes = held["platform"].nodes
    assert nodes.control_plane is held["platform"].functions
    assert nodes.jobs_table is held["platform"].jobs_table
    assert len(nodes.results_bucket_settings) == 5
    assert held["api"].nodes.stage is held["api"].stage
    assert held["content-analyzer"].nodes.task_policy is held["content-analyzer"].task_policy
    schedule = held["nightly"].nodes
    assert schedule.role is held["nightly"].role
    assert (schedule.dlq_alarm is not None) == (stack == "prod")  # alarms on in prod only


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_child_of_a_fargate_and_an_instance_worker_is_a_node(stack: str) -> None:
    """``FargateWorker`` and ``InstanceWorker`` (``gpu_program``: a GPU worker with a Fargate
    fallback) name each of their children in ``nodes``."""
    from components.instance_worker import InstanceWorker
    from tests.infra.gpu_program import declare

    held: dict[str, Any] = {}
    graph = run_program(lambda: held.update(declare()), stack=stack, config=stack_config(stack))
    assert set(held) == {"content-analyzer", "image-embedder-cpu", "image-embedder"}
    _assert_nodes(graph, held)
    text, gpu = held["content-analyzer"].nodes, held["image-embedder"]
    assert text.image is held["content-analyzer"].image  # typed, by role
    assert text.execution_policy is held["content-analyzer"].exec_policy
    assert isinstance(gpu, InstanceWorker)
    nodes = gpu.nodes
    assert nodes.task_definition is gpu.task_definition
    assert nodes.instance_profile is gpu.instance_profile
    assert len(nodes.capacity_providers) == 2 * len(gpu.gpu_names)  # Spot + on-demand each
    assert nodes.fallback_policy is gpu.fallback_policy is not None
    assert nodes.infrastructure_policy._name == "image-embedder-infra-policy"


def test_every_child_of_observability_is_a_node() -> None:
    """``Observability`` (prod: alarms on) names its alarms and its dashboard in ``nodes``."""
    from components.batch_api import BatchApi, BatchApiArgs
    from components.observability import Observability, ObservabilityArgs
    from components.platform import BatchPlatform, BatchPlatformArgs

    held: dict[str, Any] = {}

    def program() -> None:
        platform = BatchPlatform("platform", BatchPlatformArgs(config=load_config()))
        api = BatchApi("api", BatchApiArgs(platform=platform))
        launch = platform.functions.launch_queue
        held["observability"] = Observability(
            "observability",
            ObservabilityArgs(
                platform=platform,
                api_name=api.rest_api.name,
                api_stage=api.stage.stage_name,
                queues={"launch": launch.queue.name},
                dlqs={"launch": launch.dlq.name},
            ),
        )

    graph = run_program(program, stack="prod", config=stack_config("prod"))
    _assert_nodes(graph, held)
    observability = held["observability"]
    assert observability.nodes.dashboard is observability.dashboard
    assert list(observability.nodes.alarms) == observability.alarms
    assert len(observability.alarms) == 4 * 2 + 2  # 4 Lambdas x (Errors, Throttles) + API
