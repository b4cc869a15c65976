"""A task's process in the traced local pipeline: records the worker's AWS calls, then runs
``tests/e2e/fault_worker.py`` (the real runtime, or a crash/hang on the job's fault marker).

Usage: ``python tests/authz/trace_worker.py TRACE_FILE --worker NAME``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.authz.recorder import Trace, install  # noqa: E402
from tests.e2e import fault_worker  # noqa: E402


def main() -> None:
    trace = Trace(Path(sys.argv[1]))
    install(trace.append)
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    fault_worker.main()


if __name__ == "__main__":
    main()
