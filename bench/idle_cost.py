"""Benchmark 5: idle monthly cost of the default (dev) stack with 3 and with 60 workers.

Evaluates the real ``__main__.py`` under mocks (the 57 extra workers are clones of a seed
worker declared through the real ``FargateWorker``, ``bench.program_scaling.extra_workers``),
reads each cost model and prices a month with zero API jobs, as ``batchctl cost`` does. Prints
the total idle $/month for each, what each worker costs idle on its own (the estimator's
per-worker figure: ECR storage of its kept images), and the idle $/month each added worker
adds (the 60-worker total minus the 3-worker total, over 57). Targets: the 3-worker stack at
most $0.50/month, and at most $0.02/month per added worker, ECR storage included.

    python -m bench.idle_cost [--stack dev] [--workers 3,60]
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import BenchResult, emit, not_available

NAME = "dev stack idle cost"
UNIT = "$/month"
TARGET = "<= 0.50"
PER_WORKER_NAME = "idle cost per added worker"
PER_WORKER_TARGET = "<= 0.02"
PER_WORKER_MAX = 0.02


def idle_estimates(stack: str, counts: tuple[int, ...]) -> dict[int, Any]:
    """``{workers: Estimate}`` of an idle month (no jobs) for each worker count."""
    from bench.program_scaling import extra_workers
    from components.offline import evaluate_stack, stack_config
    from cost.estimator import estimate
    from cost.model import Usage, model_from_graph

    out: dict[int, Any] = {}
    for n in counts:
        with extra_workers(max(0, n - 3)):
            graph = evaluate_stack(stack)
        model = model_from_graph(graph, stack=stack, config=stack_config(stack))
        assert len(model.workers) == n, (n, len(model.workers))
        out[n] = estimate(model, Usage())
    return out


def run(stack: str, counts: tuple[int, int]) -> list[BenchResult]:
    from components.offline import PROGRAM
    from cost.estimator import format_estimate
    from cost.prices import load_prices

    if not PROGRAM.exists():
        return [not_available(NAME, UNIT, TARGET, "__main__.py has not landed yet")]
    few, many = counts
    estimates = idle_estimates(stack, counts)
    base, big = estimates[few], estimates[many]
    print(format_estimate(base).split("\nPer-job monthly costs")[0])
    print()
    prices = load_prices()
    print(
        f"ECR assumption: {prices.assumption('worker_image_gb'):g} GB per image, "
        f"{prices.assumption('image_changed_share'):.0%} of it new on each push, "
        "shared layers stored once per repository (cost/prices.json)"
    )
    print(
        f"\n{'workers':>7}  {'idle $/month':>12}  {'shared by the stack':>19}  "
        f"{'per worker (max)':>16}  {'polled queues':>13}  {'alarms':>6}"
    )
    for n, est in estimates.items():
        per = est.idle_by_worker()
        shared = est.fixed_total - sum(per.values())
        queues = sum(1 for ln in est.lines if ln.fixed and ln.service == "SQS")
        alarms = sum(ln.quantity for ln in est.lines if ln.fixed and ln.item == "alarms")
        print(
            f"{n:7d}  {est.fixed_total:12.4f}  {shared:19.4f}  {est.idle_per_worker:16.4f}  "
            f"{queues:13d}  {alarms:6g}"
        )
    added = (big.fixed_total - base.fixed_total) / (many - few)
    print(
        f"\nper added worker: ${added:.4f}/month idle "
        f"(({big.fixed_total:.4f} - {base.fixed_total:.4f}) / {many - few}); "
        f"the estimator's per-worker figure: ${base.idle_per_worker:.4f}"
    )
    for service, cost in base.by_service(fixed=True).items():
        print(f"  {few} workers: {service:<22} ${cost:.4f}")
    top = ", ".join(
        f"{svc} ${cost:.2f}" for svc, cost in list(base.by_service(fixed=True).items())[:2]
    )
    return [
        BenchResult(
            NAME, round(base.fixed_total, 4), UNIT, TARGET, base.fixed_total <= 0.50,
            f"{few} workers, one polled launch queue; mostly {top}; "
            f"{many} workers: ${big.fixed_total:.2f}",
        ),
        BenchResult(
            PER_WORKER_NAME, round(added, 4), UNIT, PER_WORKER_TARGET,
            added <= PER_WORKER_MAX and base.idle_per_worker <= PER_WORKER_MAX,
            f"({many} workers ${big.fixed_total:.4f} - {few} workers ${base.fixed_total:.4f}) "
            f"/ {many - few}; ECR storage of the kept images only "
            f"(estimator per worker: ${base.idle_per_worker:.4f})",
        ),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--workers", default="3,60", help="two worker counts, e.g. 3,60")
    args = parser.parse_args(argv)
    few, many = sorted(int(n) for n in args.workers.split(","))
    results = run(args.stack, (few, many))
    ok = True
    for result in results:
        if result.figure is None:
            print(f"{result.name}: not measured: {result.detail}")
        emit(result)
        ok = ok and result.ok is not False
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
