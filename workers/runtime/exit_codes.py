"""Exit codes of a worker process, in one place (re-exported from ``jobcontract.WorkerExit``,
which the reconciler shares).

| code | meaning | job item afterwards |
|---|---|---|
| 0 | handler finished and this attempt recorded SUCCEEDED (nothing else exits 0) | SUCCEEDED |
| 1 | crash: unexpected exception | RUNNING, ``error`` recorded: the reconciler retries |
| 2 | configuration error (missing/invalid environment) | unchanged |
| 3 | job not DISPATCHED to this attempt, cancelled, or taken over | unchanged (not ours) |
| 10 | ``PermanentError`` (bad input) or ``ItemsFailed``: recorded, nothing to retry | FAILED |
| 11 | AWS denied a call needed to record the job (its own row) | reconciler: FAILED |
| 124 | worker timeout reached | FAILED, ``error.type == "Timeout"`` |
| 143 | SIGTERM (Spot interruption, StopTask): no new items | RUNNING, progress saved: retry |
"""

from __future__ import annotations

from typing import Final

from jobcontract import WorkerExit

OK: Final = WorkerExit.OK
CRASH: Final = WorkerExit.CRASH
CONFIG: Final = WorkerExit.CONFIG
NOT_RUNNABLE: Final = WorkerExit.NOT_RUNNABLE
FAILED: Final = WorkerExit.FAILED
TIMEOUT: Final = WorkerExit.TIMEOUT
INTERRUPTED: Final = WorkerExit.INTERRUPTED
ACCESS_DENIED: Final = WorkerExit.ACCESS_DENIED
