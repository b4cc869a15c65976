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
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import BenchResult, emit, not_available

NAME = "program evaluation, 30 workers"
UNIT = "s CPU"
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
    """Resources under the component named ``root`` (parents are logical names, which a
    child may share with its parent: each name is expanded once)."""
    children: dict[str, list[Any]] = {}
    for r in resources:
        if r.parent:
            children.setdefault(r.parent, []).append(r)
    out: list[Any] = []
    seen = {root}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            if child.name not in seen:
                seen.add(child.name)
                stack.append(child.name)
    return out


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares slope, intercept and R^2."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, my, 1.0
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, intercept, 1.0 - ss_res / ss_tot if ss_tot else 1.0


def measure(workers: int, stack: str = "dev") -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, resources, FargateWorker components) of one evaluation.

    CPU seconds are the figure compared: on a shared machine wall time mostly measures the
    neighbours (the evaluation is single-threaded and does no I/O)."""
    from components.offline import evaluate_stack

    with extra_workers(max(0, workers - 3)):
        start, cpu = time.perf_counter(), time.process_time()
        graph = evaluate_stack(stack)
        cpu = time.process_time() - cpu
        elapsed = time.perf_counter() - start
    return elapsed, cpu, len(graph.resources), len(graph.of_type(WORKER_COMPONENT))


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
    walls: dict[int, float] = {}
    for n in counts:
        elapsed, cpu, resources, declared = measure(n)
        walls[n] = elapsed
        rows.append((n, cpu, resources, declared))
    print(f"\nload average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'workers':>7}  {'declared':>8}  {'resources':>9}  {'CPU s':>7}  {'wall s':>7}  "
          f"{'CPU ms/worker':>13}")
    for n, cpu, resources, declared in rows:
        print(f"{n:7d}  {declared:8d}  {resources:9d}  {cpu:7.2f}  {walls[n]:7.2f}  "
              f"{1000 * cpu / n:13.1f}")
    (n0, _, r0, _), (n1, t1, r1, _) = rows[0], rows[-1]
    slope, intercept, r2 = _fit([float(n) for n, *_ in rows], [t for _, t, _, _ in rows])
    res_slope = (r1 - r0) / (n1 - n0) if n1 != n0 else 0.0
    # Linear: every point within 25 % (or 0.3 s) of the least-squares line.
    worst = max(abs(t - (intercept + slope * n)) for n, t, _, _ in rows)
    linear = all(abs(t - (intercept + slope * n)) <= max(0.3, 0.25 * t) for n, t, _, _ in rows)
    res_linear = all(r == r0 + res_slope * (n - n0) for n, _, r, _ in rows)
    print(f"\nleast-squares fit of CPU time: {intercept:.2f} s + {1000 * slope:.0f} ms per "
          f"worker (R^2 {r2:.3f}); worst deviation {worst:.2f} s; {res_slope:.1f} resources "
          f"per extra worker, exactly linear: {res_linear}")
    t30 = next((t for n, t, _, _ in rows if n == 30), t1)
    ok = t30 < 10 and linear and res_linear and all(d == n for n, _, _, d in rows)
    detail = (
        f"{n1} workers: {t1:.2f} s CPU ({walls[n1]:.2f} s wall, load "
        f"{os.getloadavg()[0]:.1f}), {r1} resources; {1000 * slope:.0f} ms CPU and "
        f"{res_slope:.0f} resources per worker; linear={linear and res_linear} (R^2 {r2:.3f})"
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
