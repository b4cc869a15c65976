"""Every child of the control plane is reachable through ``nodes`` (SST's ``nodes``): a typed
property per component naming each child, recursively through child components."""

from __future__ import annotations

from typing import Any

import pulumi

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
