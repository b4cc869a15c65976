"""Benchmark (issue 10), warm reuse: the drain burst with reuse on.

Targets: tasks started per job at most 0.2. Reported with it (the platform's compute
overhead, no target): billed task-seconds per job-second with Fargate's rule (each task
``max(60, 30 + lifetime)`` s: a modelled 30-s start-up, the one-minute minimum) over the
jobs' run time (DISPATCHED -> end). The drain figures are printed too, for reference.

Prints PASS/FAIL lines and RESULT lines; exits nonzero only on a crash.

    python -m bench.dispatch_reuse [--jobs 300] [--cap 5] [--idle 30] [--timeout 110]
"""

from __future__ import annotations

import argparse

from bench import dispatch_metrics as dm
from bench.common import BenchResult, emit
from bench.dispatch_drain import WORKER
from bench.dispatch_drain import report as drain_report
from bench.dispatch_run import Burst, WorkerLoad, run_burst, verdict
from cost.billing import MODELLED_STARTUP_SECONDS
from jobcontract import DEFAULT_REUSE_IDLE_SECONDS

TASKS_PER_JOB_TARGET = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--cap", type=int, default=5)
    parser.add_argument("--idle", type=int, default=DEFAULT_REUSE_IDLE_SECONDS)
    parser.add_argument("--timeout", type=float, default=110.0)
    args = parser.parse_args(argv)
    burst = Burst(
        workers=(WorkerLoad(WORKER, args.cap, args.jobs),),
        reuse_idle_seconds=args.idle,
        timeout=args.timeout,
    )
    outcome = run_burst(burst)
    name = f"reuse {args.jobs} jobs, cap {args.cap}, idle {args.idle} s"
    drain = drain_report(name, outcome, args.cap)
    r = dm.reuse(outcome.jobs, outcome.tasks, now=outcome.now)
    per_task = r.jobs / r.tasks if r.tasks else 0.0
    ok = r.tasks_per_job <= TASKS_PER_JOB_TARGET
    print(
        f"  tasks started per job {r.tasks_per_job:.3f} ({r.tasks} tasks, {per_task:.1f} jobs "
        f"each) (target <= {TASKS_PER_JOB_TARGET}) {verdict(ok)}"
    )
    print(
        f"  billed task-seconds per job-second {r.billed_per_job_second:.2f} "
        f"({r.billed_task_seconds:.0f} billed s / {r.job_seconds:.0f} job s; start-up "
        f"{MODELLED_STARTUP_SECONDS:.0f} s modelled, 60-s minimum)"
    )
    unfinished = f"; {outcome.unfinished} unfinished at the timeout" if outcome.unfinished else ""
    emit(
        BenchResult(
            f"{name}: tasks started per job",
            round(r.tasks_per_job, 3),
            "tasks/job",
            f"<= {TASKS_PER_JOB_TARGET}",
            ok,
            f"{r.tasks} tasks for {r.jobs} jobs{unfinished}",
        )
    )
    emit(
        BenchResult(
            f"{name}: billed task-s per job-s (compute overhead)",
            round(r.billed_per_job_second, 2),
            "billed s / job s",
            "(informational)",
            None,
            f"{r.billed_task_seconds:.0f} billed s / {r.job_seconds:.0f} job s; "
            f"each task max(60, 30 + lifetime){unfinished}",
        )
    )
    for result in drain:  # for reference: a reused task must not slow the drain down
        emit(
            BenchResult(
                result.name,
                result.figure,
                result.unit,
                "(informational)",
                None,
                f"target {result.target} applies to the drain run; {result.detail}",
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
