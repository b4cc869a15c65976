"""Benchmark (issue 10), mixed load: three workers burst at once under a stack vCPU cap
smaller than their caps' sum.

The three seed workers (image-alt-generator 0.5 vCPU, meta-desc-generator 0.5 vCPU,
content-analyzer 1 vCPU), cap 4 tasks each (8 vCPUs in all), stack cap 3 vCPUs. Targets:

- each worker gets its share: its mean vCPUs while every worker still had a backlog is at
  least 0.8 of its max-min fair share of the stack cap (water filling over the workers'
  cap vCPUs: 1 / 1 / 1 vCPU here);
- the cap is never exceeded: the most stack vCPUs held at once (exact sweep over task
  create/stop times) at most the cap.

Prints PASS/FAIL lines and RESULT lines; exits nonzero only on a crash.

    python -m bench.dispatch_mixed [--jobs-per-worker 30] [--cap 4] [--stack-vcpu 3]
"""

from __future__ import annotations

import argparse

from bench import dispatch_metrics as dm
from bench.common import BenchResult, emit
from bench.dispatch_run import Burst, WorkerLoad, add_startup_argument, run_burst, verdict

WORKERS = ("image-alt-generator", "meta-desc-generator", "content-analyzer")
SHARE_TARGET = 0.8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs-per-worker", type=int, default=30)
    parser.add_argument("--cap", type=int, default=4)
    parser.add_argument("--stack-vcpu", type=float, default=3.0)
    parser.add_argument("--idle", type=int, default=0, help="reuse idle window (0 = off)")
    parser.add_argument("--timeout", type=float, default=110.0)
    add_startup_argument(parser)
    args = parser.parse_args(argv)
    burst = Burst(
        workers=tuple(WorkerLoad(w, args.cap, args.jobs_per_worker) for w in WORKERS),
        reuse_idle_seconds=args.idle,
        stack_vcpu_limit=args.stack_vcpu,
        timeout=args.timeout,
        task_startup_seconds=args.startup,
    )
    outcome = run_burst(burst)
    m = dm.mixed(outcome.jobs, outcome.tasks, outcome.slots, now=outcome.now)
    waited = dm.wait_while_free(outcome.jobs, outcome.tasks, outcome.slots, now=outcome.now)
    caps_sum = sum(outcome.slots.caps[w] * outcome.slots.vcpu[w] for w in WORKERS)
    name = (
        f"mixed 3 x {args.jobs_per_worker} jobs, stack cap {args.stack_vcpu:g} vCPU, "
        f"start-up {args.startup:g} s"
    )
    finished = len(outcome.jobs) - outcome.unfinished
    print(
        f"\n{name} (caps' sum {caps_sum:g} vCPU): {finished}/{len(outcome.jobs)} finished; "
        f"outcomes {dict(outcome.statuses)}"
    )
    for note in outcome.notes:
        print(f"  note: {note}")
    span = m.window.end - m.window.start
    print(f"  contention window {span:.1f} s (first submit -> first worker's last dispatch)")
    shares = m.share_of_fair
    for w in WORKERS:
        mean = m.vcpu_seconds.get(w, 0.0) / span if span > 0 else 0.0
        print(
            f"  {w:<22} mean {mean:.2f} vCPU, fair {m.fair_vcpu[w]:.2f}: "
            f"{shares[w]:.2f} of its share; own peak {m.per_worker_peak[w]:g} vCPU"
        )
    share_ok = m.min_share >= SHARE_TARGET
    cap_ok = m.peak_vcpu <= args.stack_vcpu + 1e-9
    print(
        f"  lowest share {m.min_share:.2f} of fair (target >= {SHARE_TARGET}) {verdict(share_ok)}"
    )
    print(f"  peak stack vCPUs {m.peak_vcpu:g} (cap {args.stack_vcpu:g}) {verdict(cap_ok)}")
    print(
        f"  longest wait while a slot was free {waited.max_stretch:.1f} s; summed over one "
        f"job's whole wait at most {waited.max:.1f} s (informational)"
    )
    detail = (
        ", ".join(f"{w} {shares[w]:.2f}" for w in WORKERS)
        + f"; window {span:.0f} s; {finished}/{len(outcome.jobs)} finished"
    )
    emit(
        BenchResult(
            f"{name}: lowest share of fair vCPU",
            round(m.min_share, 2),
            "x fair",
            f">= {SHARE_TARGET}",
            share_ok,
            detail,
        )
    )
    emit(
        BenchResult(
            f"{name}: peak stack vCPUs",
            m.peak_vcpu,
            "vCPU",
            f"<= {args.stack_vcpu:g}",
            cap_ok,
            f"caps' sum {caps_sum:g} vCPU; longest wait while free {waited.max_stretch:.1f} s "
            f"(summed over one job's wait {waited.max:.1f} s)",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
