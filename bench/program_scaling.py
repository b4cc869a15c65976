"""Benchmark 4: evaluating the Pulumi program under mocks with 3 ... 30 workers.

Runs the real ``__main__.py`` (``components.offline.evaluate_stack``). To get more workers
than the three seed workers without a second program, ``FargateWorker.__init__`` is wrapped
for the run so that declaring the first seed worker also declares N-3 clones of it
(``<name>-x<i>``, same source folder): every extra worker goes through the real component.

Prints wall time and resource count per worker count, the resources one worker adds (and of
which types), and a linear fit. Target: linear growth, 30 workers in under 10 s.

    python -m bench.program_scaling [--counts 3,10,20,30]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import BenchResult, emit, not_available

NAME = "program evaluation, 30 workers"
UNIT = "s"
TARGET = "< 10 s, linear"
WORKER_COMPONENT = "aibatch:index:FargateWorker"


@contextmanager
def extra_workers(extra: int) -> Iterator[None]:
    """While active, the first FargateWorker declared also declares ``extra`` clones."""
    from components import fargate_worker

    cls: Any = fargate_worker.FargateWorker
    original = cls.__init__
    state = {"cloned": extra <= 0}

    def patched(self: Any, name: str, args: Any, opts: Any = None) -> None:
        original(self, name, args, opts)
        if state["cloned"]:
            return
        state["cloned"] = True
        source = args.source_dir or f"workers/{name}"
        for i in range(extra):
            clone_args = dataclasses.replace(args, source_dir=source)
            cls(f"{name[:24]}-x{i}", clone_args, opts)

    cls.__init__ = patched
    try:
        yield
    finally:
        cls.__init__ = original


def _descendants(resources: list[Any], root: str) -> list[Any]:
    children: dict[str, list[Any]] = {}
    for r in resources:
        if r.parent:
            children.setdefault(r.parent, []).append(r)
    out: list[Any] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child.name)
    return out


def measure(workers: int, stack: str = "dev") -> tuple[float, int, int]:
    """(seconds, resources, FargateWorker components) of one evaluation."""
    from components.offline import evaluate_stack

    with extra_workers(max(0, workers - 3)):
        start = time.perf_counter()
        graph = evaluate_stack(stack)
        elapsed = time.perf_counter() - start
    return elapsed, len(graph.resources), len(graph.of_type(WORKER_COMPONENT))


def run(counts: list[int]) -> BenchResult:
    from components.offline import PROGRAM, evaluate_stack

    if not PROGRAM.exists():
        return not_available(NAME, UNIT, TARGET, "__main__.py has not landed yet")
    cold_start = time.perf_counter()
    graph = evaluate_stack("dev")  # warm-up: imports, first event loop
    cold = time.perf_counter() - cold_start
    seeds = graph.of_type(WORKER_COMPONENT)
    per_worker = _descendants(graph.resources, seeds[0].name) if seeds else []
    print(f"cold first evaluation (imports included): {cold:.2f} s")
    print(
        f"one worker ({seeds[0].name if seeds else '-'}) adds {len(per_worker) + 1} "
        "resources (component included):"
    )
    for typ, n in sorted(Counter(r.type for r in per_worker).items()):
        print(f"  {n:3d}  {typ}")
    rows = []
    for n in counts:
        elapsed, resources, declared = measure(n)
        rows.append((n, elapsed, resources, declared))
    print()
    print(f"{'workers':>7}  {'declared':>8}  {'resources':>9}  {'seconds':>8}  {'ms/worker':>9}")
    for n, elapsed, resources, declared in rows:
        print(f"{n:7d}  {declared:8d}  {resources:9d}  {elapsed:8.2f}  {1000 * elapsed / n:9.1f}")
    (n0, t0, r0, _), (n1, t1, r1, _) = rows[0], rows[-1]
    slope = (t1 - t0) / (n1 - n0) if n1 != n0 else 0.0
    res_slope = (r1 - r0) / (n1 - n0) if n1 != n0 else 0.0
    # Linear: every point within 25 % (or 0.3 s) of the line through the first and last.
    worst = max(abs(t - (t0 + slope * (n - n0))) for n, t, _, _ in rows)
    linear = all(abs(t - (t0 + slope * (n - n0))) <= max(0.3, 0.25 * t) for n, t, _, _ in rows)
    res_linear = all(r == r0 + res_slope * (n - n0) for n, _, r, _ in rows)
    print(
        f"\nfit: {1000 * slope:.0f} ms and {res_slope:.1f} resources per extra worker; "
        f"worst deviation from the line {worst:.2f} s; resources exactly linear: {res_linear}"
    )
    t30 = next((t for n, t, _, _ in rows if n == 30), t1)
    ok = t30 < 10 and linear and res_linear and all(d == n for n, _, _, d in rows)
    detail = (
        f"{n1} workers {t1:.2f} s, {r1} resources; {1000 * slope:.0f} ms and "
        f"{res_slope:.0f} resources per worker; linear={linear and res_linear}"
    )
    return BenchResult(NAME, round(t30, 2), UNIT, TARGET, ok, detail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="3,10,20,30")
    args = parser.parse_args(argv)
    counts = sorted({int(c) for c in args.counts.split(",") if c.strip()})
    result = run(counts)
    if result.figure is None:
        print(f"{NAME}: not measured: {result.detail}")
    emit(result)
    return 0 if result.ok is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
