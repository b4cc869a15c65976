"""Functions read as a table of contents: none in ``components/``, ``handlers/``,
``jobcontract/`` or ``workers/`` is longer than ``MAX_LINES`` (issue 13), except those in
``ALLOWED``, each at most as long as it is listed. The list can only shrink: a listed
function that is gone or now short enough must leave it, one that grew fails."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.fresh_interpreter import call_in_fresh_interpreter

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("components", "handlers", "jobcontract", "workers")
MAX_LINES = 60

# "<path>::<qualified name>": its length in lines (def line to last line) when listed.
ALLOWED: dict[str, int] = {
}


def function_lengths(root: Path = ROOT, folders: tuple[str, ...] = FOLDERS) -> dict[str, int]:
    """``"<path>::<Class.function>"`` -> lines, for every function and method (nested ones
    too, named through their parents) in the ``.py`` files under ``folders``."""
    lengths: dict[str, int] = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            _walk(ast.parse(path.read_text(), rel), f"{rel}::", lengths)
    return lengths


def _walk(node: ast.AST, prefix: str, lengths: dict[str, int]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                lengths[name] = (child.end_lineno or child.lineno) - child.lineno + 1
            _walk(child, f"{name}.", lengths)
        else:
            _walk(child, prefix, lengths)


def lengths_in_a_fresh_interpreter(root: Path = ROOT) -> dict[str, int]:
    """``function_lengths`` in its own process (``tests.fresh_interpreter``)."""
    lengths: dict[str, int] = call_in_fresh_interpreter(
        "tests.test_code_shape", "function_lengths", root
    )
    return lengths


def problems(lengths: dict[str, int], allowed: dict[str, int]) -> list[str]:
    """What breaks the rule: a long function not listed, a listed one that grew, a listed
    one that is gone or short now (the list then shrinks with it)."""
    found = []
    for name, lines in sorted(lengths.items()):
        limit = allowed.get(name, MAX_LINES)
        if lines > limit:
            found.append(f"{name}: {lines} lines (at most {limit}); split it into named steps")
    for name, listed in sorted(allowed.items()):
        if name not in lengths:
            found.append(f"{name}: listed ({listed} lines) but gone; remove it from ALLOWED")
        elif lengths[name] <= MAX_LINES:
            found.append(f"{name}: {lengths[name]} lines now; remove it from ALLOWED")
    return found


def test_no_function_is_longer_than_the_limit_or_its_listed_length() -> None:
    assert problems(lengths_in_a_fresh_interpreter(), ALLOWED) == []


def test_the_check_finds_long_grown_and_stale_entries(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))  # + the def line: 61
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "m.py").write_text(
        f"def long():\n{body}\n\nclass C:\n    def short(self):\n        return 1\n"
    )
    lengths = function_lengths(tmp_path, ("handlers",))
    assert lengths == {"handlers/m.py::long": MAX_LINES + 1, "handlers/m.py::C.short": 2}
    assert [p.split(":")[0] for p in problems(lengths, {})] == ["handlers/m.py"]
    assert problems(lengths, {"handlers/m.py::long": MAX_LINES + 1}) == []
    grown = problems(lengths, {"handlers/m.py::long": MAX_LINES + 0})
    assert grown and "at most 60" in grown[0]
    stale = problems(lengths, {"handlers/m.py::long": 61, "handlers/m.py::C.short": 70})
    assert stale == ["handlers/m.py::C.short: 2 lines now; remove it from ALLOWED"]
    gone = problems(lengths, {"handlers/m.py::long": 61, "handlers/gone.py::f": 80})
    assert gone == ["handlers/gone.py::f: listed (80 lines) but gone; remove it from ALLOWED"]
