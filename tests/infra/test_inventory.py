"""The deployed graph is what the baselines say it is.

``tests/infra/baselines/{dev,prod}.json`` record every resource of the real ``__main__.py``
under mocks: type, logical name, parent, earlier names (aliases), the inputs that would make
Pulumi replace it and every policy document (``tests/infra/inventory.py``). A refactor that
means to leave the graph alone must leave this test green. An intentional graph change
updates the baseline IN THE SAME COMMIT, with ``./dev inventory --update``, so the review
sees the change in the baseline's diff.
"""

from __future__ import annotations

import copy

import pytest

from components.offline import StackGraph
from tests.infra import inventory

pytestmark = pytest.mark.xdist_group("pulumi")


@pytest.mark.parametrize("stack", inventory.STACKS)
def test_the_graph_matches_its_baseline(
    stack: str, dev_graph: StackGraph, prod_graph: StackGraph
) -> None:
    graph = {"dev": dev_graph, "prod": prod_graph}[stack]
    lines = inventory.diff(inventory.load_baseline(stack), inventory.inventory(graph))
    assert not lines, (
        f"the {stack} graph differs from tests/infra/baselines/{stack}.json "
        "(intentional? run ./dev inventory --update and commit the baseline with it):\n"
        + "\n".join(lines)
    )


def test_every_renamed_resource_keeps_its_old_name_as_an_alias(dev_graph: StackGraph) -> None:
    """A logical name missing from the baseline must be an alias of a current resource of the
    same type: otherwise an existing stack would delete and recreate it."""
    current = inventory.inventory(dev_graph)
    present = {(e["type"], e["name"]) for e in current.values()}
    aliased = {(e["type"], a) for e in current.values() for a in e.get("aliases", [])}
    gone = [
        f"{e['type']} {e['name']}"
        for e in inventory.load_baseline("dev").values()
        if (e["type"], e["name"]) not in present | aliased
    ]
    assert not gone, f"renamed without an alias to the old name: {gone}"


def test_the_diff_names_what_changed(dev_graph: StackGraph) -> None:
    """The comparison catches a replacement input, a policy edit, a removal, an addition and
    a rename without alias, and says which resource and field."""
    base = inventory.inventory(dev_graph)
    assert inventory.diff(base, copy.deepcopy(base)) == []
    changed = copy.deepcopy(base)
    table_key = next(k for k in changed if k.startswith("aws:dynamodb/table:Table "))
    changed[table_key]["replace_on"]["hashKey"] = "id"
    policy_key = next(k for k in changed if k.startswith("aws:iam/rolePolicy:RolePolicy "))
    changed[policy_key]["policies"]["policy"]["Statement"][0]["Action"] = "*"
    lines = inventory.diff(base, changed)
    assert f"~ {table_key} replace_on:" in lines and '    + "id"' in "\n".join(lines)
    assert f"~ {policy_key} policies:" in lines
    # A rename: without an alias it is an addition plus a removal; with one it is matched.
    renamed = copy.deepcopy(base)
    entry = renamed.pop(table_key)
    entry = {**entry, "name": "platform-jobs-v2"}
    new_key = table_key.replace("/platform-jobs", "/platform-jobs-v2")
    renamed[new_key] = entry
    lines = inventory.diff(base, renamed)
    assert f"+ added {new_key}" in lines and f"- removed {table_key}" in lines
    renamed[new_key] = {**entry, "aliases": ["platform-jobs"]}
    lines = inventory.diff(base, renamed)
    assert lines == [f"~ renamed {table_key} -> {new_key} (aliases ['platform-jobs'])"]


def _urn_keys(graph: StackGraph) -> list[str]:
    """What Pulumi's URN of each resource is made of: its ancestors' types, its type, its
    name (parents' names are not part of it)."""
    by_name = {(r.name, r.type): r for r in graph.resources}
    parents = {r.name: r for r in graph.resources if not r.custom}
    keys = []
    for r in graph.resources:
        chain, parent = [r.type], r.parent
        while parent is not None:
            chain.insert(0, parents[parent].type)
            parent = parents[parent].parent
        keys.append("$".join(chain) + "::" + r.name)
    assert by_name
    return keys


def test_two_platforms_in_one_program_do_not_collide() -> None:
    """Child names carry their component's name, so a second platform (another name) gets
    URNs of its own: the control plane's "api", "launcher" and "launch" used to collide."""
    from components.config import load_config
    from components.offline import run_program, stack_config
    from components.platform import BatchPlatform, BatchPlatformArgs

    def program() -> None:
        BatchPlatform("blue", BatchPlatformArgs(config=load_config()))
        BatchPlatform("green", BatchPlatformArgs(config=load_config()))

    keys = _urn_keys(run_program(program, stack="dev", config=stack_config("dev")))
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, duplicates


def test_the_renamed_control_plane_children_alias_their_old_names(dev_graph: StackGraph) -> None:
    """Each child of the control plane's functions and launch queue is named
    ``platform-control-<old name>`` and carries ``<old name>`` as its alias."""
    renamed = [r for r in dev_graph.resources if r.name.startswith("platform-control-")]
    subtree = [
        r for r in renamed if r.type.startswith("aibatch:") or r.parent != "platform-control"
    ]
    assert len(subtree) >= 5 + 4 * 4  # 4 functions x (role, policy, logs, function), queue
    for r in subtree:
        assert r.aliases == (r.name.removeprefix("platform-control-"),), (r.type, r.name)
