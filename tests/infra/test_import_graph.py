"""No import cycle between the component modules: each ``components/*.py`` can be read (and
imported) on its own, whichever is imported first. Every ``components.*`` import counts,
including those under ``if TYPE_CHECKING:`` and inside functions: a cycle there is still two
modules that cannot be understood one without the other (``control_plane`` and ``platform``
used to import each other)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.fresh_interpreter import call_in_fresh_interpreter

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "components"


def graph_in_a_fresh_interpreter(folder: Path = COMPONENTS) -> dict[str, set[str]]:
    """``import_graph`` in its own process (``tests.fresh_interpreter``)."""
    graph = call_in_fresh_interpreter(
        "tests.infra.test_import_graph", "sorted_import_graph", folder
    )
    return {k: set(v) for k, v in graph.items()}


def sorted_import_graph(folder: Path) -> dict[str, list[str]]:
    """``import_graph`` as JSON-ready lists."""
    return {k: sorted(v) for k, v in import_graph(folder).items()}


def import_graph(folder: Path = COMPONENTS) -> dict[str, set[str]]:
    """Module name -> the ``components`` modules it imports (``from components import x``
    counts as importing ``components.x`` where that is a module)."""
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in modules:
        tree = ast.parse((folder / f"{name}.py").read_text())
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "components":
                    deps.update(a.name for a in node.names if a.name in modules)
                elif node.module.startswith("components."):
                    deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("components."):
                        deps.add(alias.name.split(".")[1])
        graph[name] = deps - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_between_component_modules() -> None:
    graph = graph_in_a_fresh_interpreter()
    assert {"platform", "control_plane", "grants", "batch_api"} <= set(graph)
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"
    assert "platform" not in graph["control_plane"]


def test_the_check_finds_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from components import b\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from components.a import X\n"
    )
    (tmp_path / "c.py").write_text("import components.a\n")
    graph = graph_in_a_fresh_interpreter(tmp_path)
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert find_cycle(graph) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
