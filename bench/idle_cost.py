"""Benchmark 5: the dev stack's idle monthly cost, from the estimator (no jobs at all).

Evaluates the real ``__main__.py`` for ``dev`` under mocks, reads its cost model (the three
seed workers, their queues, Lambdas, schedules, alarms...) and prices a month with zero API
jobs. Also shows the same month with the always-free allowances applied, since a small
account usually has them. Target: <= $0.50 without the free tier.

    python -m bench.idle_cost [--stack dev]
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import BenchResult, emit, not_available

NAME = "dev stack idle cost"
UNIT = "$/month"
TARGET = "<= 0.50"


def run(stack: str) -> BenchResult:
    from components.offline import PROGRAM
    from cost.estimator import estimate, format_estimate
    from cost.model import Usage, model_from_stack
    from cost.prices import load_prices

    if not PROGRAM.exists():
        return not_available(NAME, UNIT, TARGET, "__main__.py has not landed yet")
    model = model_from_stack(stack)
    idle = estimate(model, Usage())
    free = estimate(model, Usage(apply_free_tier=True))
    print(format_estimate(idle).split("\nPer-job monthly costs")[0])
    print()
    prices = load_prices()
    print(f"ECR assumption: {prices.assumption('worker_image_gb'):g} GB per image, "
          f"{prices.assumption('image_changed_share'):.0%} of it new on each push, "
          "shared layers stored once per repository (cost/prices.json)")
    print(f"idle, free tier not applied: ${idle.fixed_total:.4f}/month")
    print(f"idle, always-free allowances applied: ${free.fixed_total:.4f}/month")
    for service, cost in idle.by_service(fixed=True).items():
        print(f"  {service:<22} ${cost:.4f}")
    print("\nWhat would change the idle figure (estimator what-ifs, free tier not applied):")
    for label, variant in _what_ifs(model):
        print(f"  ${estimate(variant, Usage()).fixed_total:.4f}  {label}")
    top = ", ".join(
        f"{svc} ${cost:.2f}" for svc, cost in list(idle.by_service(fixed=True).items())[:2]
    )
    detail = (
        f"{len(model.workers)} workers, {len(model.queues)} polled queues; mostly {top}; "
        f"with the free tier ${free.fixed_total:.2f}"
    )
    return BenchResult(
        NAME, round(idle.fixed_total, 4), UNIT, TARGET, idle.fixed_total <= 0.50, detail
    )


def _what_ifs(model: Any) -> list[tuple[str, Any]]:
    from dataclasses import replace

    from cost.model import QueueSpec

    lean_queues = tuple(QueueSpec(q.name, None) for q in model.queues)
    fewer_images = tuple(replace(w, kept_images=2) for w in model.workers)
    kept = model.workers[0].kept_images if model.workers else 0
    out: list[tuple[str, Any]] = []
    if any(q.max_concurrency for q in model.queues):
        out.append(("no maximum concurrency on the event source mappings (AWS may poll with 2,"
                    " not 5)", replace(model, queues=lean_queues)))
    out += [
        ("one shared FIFO queue for every worker", replace(model, queues=model.queues[:1])),
        (f"ECR lifecycle keeping 2 images instead of {kept}",
         replace(model, workers=fewer_images)),
        ("one shared queue without maximum concurrency and 2 images",
         replace(model, queues=lean_queues[:1], workers=fewer_images)),
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    result = run(args.stack)
    if result.figure is None:
        print(f"{NAME}: not measured: {result.detail}")
    emit(result)
    return 0 if result.ok is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
