"""Each worker's ``main.py`` passes ``mypy --strict`` on its own.

Worker folders are named after workers (hyphens, no ``__init__.py``), so mypy names every
``workers/<name>/main.py`` module ``main`` and cannot check two in one run ("Duplicate module
named main"). The combined run excludes them (``^workers/(?!runtime/)[^/]+/main\\.py$``); this
test checks each one separately instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MAINS = sorted(p for p in (REPO_ROOT / "workers").glob("*/main.py") if p.parent.name != "runtime")


@pytest.mark.parametrize("main", MAINS, ids=lambda p: p.parent.name)
def test_worker_main_is_mypy_strict_clean(main: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(main.relative_to(REPO_ROOT)),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_there_are_worker_mains_to_check() -> None:
    assert {p.parent.name for p in MAINS} >= {
        "image-alt-generator",
        "meta-desc-generator",
        "content-analyzer",
    }
