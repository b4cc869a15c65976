"""ruff and mypy are part of the suite, so `./dev test` (and CI) fails on a lint or type error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TYPED_PACKAGES = [
    "components", "handlers", "workers", "jobcontract", "cli", "local_pipeline", "cost"
]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.mark.xdist_group("lint")
def test_ruff_clean() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.xdist_group("lint")
def test_mypy_strict_clean() -> None:
    present = [p for p in TYPED_PACKAGES if (ROOT / p).is_dir()]
    result = _run("mypy", *present)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
