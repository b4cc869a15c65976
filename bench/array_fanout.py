"""Array-job fan-out: what ``POST /jobs`` and the launcher's fan-out steps cost for N children.

Against a moto server in this process (with the tests' ``local_pipeline.moto_fidelity``:
stock moto copies the whole table per transaction), for an array job of N items in shards of
one item (N children):

- the API request: validation of every item, the parent, and either the children (up to
  ``BATCH_ARRAY_SYNC_CHILDREN``, default 100) or the manifest and a fan-out message;
- the launcher's fan-out steps (``FANOUT_STEP_CHILDREN`` children each), run back to back.

Figures are wall seconds (moto's time included: on AWS a 100-put transaction takes tens of
milliseconds) and the handler's own CPU (its thread only). The targets are the defaults'
timeouts: the API Lambda 10 s (29 s at most, API Gateway's cap), a launcher step 60 s.

Second, what the array job saves (issue 11): ``--items`` (10,000) small items as one array
job (the API's default shard size, children counted as the real API and launcher write them)
and as that many single jobs. One task per job (warm reuse off), so tasks started = jobs.
Billed task-seconds per item use Fargate's rule (``cost.billing.billed_task_seconds``: per
second from the image pull, one-minute minimum) with a modelled start-up (``--startup``,
default ``cost.billing.MODELLED_STARTUP_SECONDS``, 30 s) and the item's work as measured here:
the content-analyzer's offline analysis of a small document, median of ``--sample`` runs.

    python -m bench.array_fanout [--children 1000 10000] [--sync-children 100]
                                 [--items 10000] [--startup 30] [--sample 200]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from bench.common import BenchResult, emit, point_boto3_at

NAME = "array fan-out, 10,000 children"
UNIT = "s"
TARGET = "API request < 10, launcher step < 60"
WORKER_SCHEMA = {
    "type": "object",
    "required": ["documents"],
    "properties": {"documents": {"type": "array", "items": {"type": "object"}}},
}


def _timed(fn: Any, *args: Any) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.thread_time()  # the handler's thread, not moto's
    out = fn(*args)
    return time.perf_counter() - wall, time.thread_time() - cpu, out


def _submit(n: int, shard_size: int | None = 1) -> tuple[float, float, str]:
    """(wall s, cpu s, parent id) of one POST /jobs of ``n`` items in shards of
    ``shard_size`` (None: the API's default)."""
    from handlers import api

    items = [{"id": str(i), "text": f"document {i}"} for i in range(n)]
    request: dict[str, Any] = {"worker": "bench", "items": items}
    if shard_size is not None:
        request["shard_size"] = shard_size
    event = {
        "httpMethod": "POST",
        "path": "/jobs",
        "headers": {"Idempotency-Key": f"bench-{n}-{shard_size}"},
        "body": json.dumps(request),
        "requestContext": {},
    }
    wall, cpu, out = _timed(api.handler, event, None)
    assert out["statusCode"] == 202, out
    return wall, cpu, str(json.loads(out["body"])["job_id"])


def _steps(parent_id: str) -> tuple[float, float, int]:
    """Run the launcher's fan-out steps until every child exists: (worst wall, worst cpu,
    steps)."""
    from handlers import launcher
    from jobcontract.arrays import all_created
    from jobcontract.store import JobStore

    store = JobStore(os.environ["BATCH_JOBS_TABLE"])
    worst_wall = worst_cpu = 0.0
    steps = 0
    while not all_created(store.get(parent_id) or {}):
        wall, cpu, _ = _timed(launcher.Launcher().fan_out, parent_id)
        worst_wall, worst_cpu, steps = max(worst_wall, wall), max(worst_cpu, cpu), steps + 1
    return worst_wall, worst_cpu, steps


def _fresh(endpoint: str) -> None:
    from handlers import _aws, registry
    from tests.fixtures.moto_server import WorkerSpec, create_pipeline_resources, reset_moto

    reset_moto(endpoint)  # moto's state is per process: each size starts from nothing
    registry.clear_cache()
    point_boto3_at(endpoint)
    spec = WorkerSpec("bench", input_schema=WORKER_SCHEMA)
    os.environ.update(create_pipeline_resources(endpoint, [spec]).env())
    _aws.reset_clients()


def _measure(endpoint: str, n: int) -> dict[str, float]:
    _fresh(endpoint)
    api_wall, api_cpu, parent_id = _submit(n)
    step_wall, step_cpu, steps = _steps(parent_id)
    return {
        "api_wall": api_wall,
        "api_cpu": api_cpu,
        "step_wall": step_wall,
        "step_cpu": step_cpu,
        "steps": steps,
    }


def _children_written(endpoint: str, n: int) -> tuple[int, int]:
    """(children, shard size) the real API and launcher write for ``n`` items at the
    default shard size: the tasks one array job starts."""
    from jobcontract import JobField
    from jobcontract.arrays import children_created
    from jobcontract.store import JobStore

    _fresh(endpoint)
    _, _, parent_id = _submit(n, shard_size=None)
    _steps(parent_id)
    parent = JobStore(os.environ["BATCH_JOBS_TABLE"]).get(parent_id) or {}
    return children_created(parent), int(parent[JobField.ARRAY]["shard_size"])


def _item_seconds(sample: int) -> float:
    """Median seconds of the content-analyzer's offline analysis of one small document."""
    import importlib.util
    import statistics

    from bench.common import PROJECT_ROOT

    path = PROJECT_ROOT / "workers" / "content-analyzer" / "main.py"
    spec = importlib.util.spec_from_file_location("bench_content_analyzer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    analyzer = module.OfflineAnalyzer()
    text = (
        "Serverless batch jobs scale to zero. Queues absorb bursts of work. "
        "Each item is a short document, analysed on its own."
    )
    times = []
    for i in range(sample):
        start = time.perf_counter()
        analyzer.analyze(f"{text} Item {i}.")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def billing(items: int, shard_size: int, item_seconds: float, startup: float) -> dict[str, Any]:
    """Tasks started and billed task-seconds per item of ``items`` as one array job (shards
    of ``shard_size``, one task each) and as ``items`` single jobs (one task each)."""
    from cost.billing import billed_task_seconds

    full, rest = divmod(items, shard_size)
    shards = [shard_size] * full + ([rest] if rest else [])
    array_billed = sum(
        billed_task_seconds(1, k * item_seconds, 0.0, startup_seconds=startup) for k in shards
    )
    single_billed = items * billed_task_seconds(1, item_seconds, 0.0, startup_seconds=startup)
    return {
        "array_tasks": len(shards),
        "single_tasks": items,
        "array_per_item": array_billed / items,
        "single_per_item": single_billed / items,
    }


def main() -> None:
    from bench.dispatch_run import add_startup_argument
    from cost.billing import MODELLED_STARTUP_SECONDS

    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--sync-children", type=int, default=None)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=200)
    add_startup_argument(parser, default=MODELLED_STARTUP_SECONDS)
    args = parser.parse_args()
    from local_pipeline.moto_fidelity import apply_fixes

    if args.sync_children is not None:
        os.environ["BATCH_ARRAY_SYNC_CHILDREN"] = str(args.sync_children)
    from moto.server import ThreadedMotoServer

    apply_fixes()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        figures = {n: _measure(endpoint, n) for n in args.children}
        tasks, size = _children_written(endpoint, args.items)
    finally:
        server.stop()
    item_seconds = _item_seconds(args.sample)
    bill = billing(args.items, size, item_seconds, args.startup)
    assert bill["array_tasks"] == tasks, (bill, tasks)  # the model shards as the API did
    for n, f in figures.items():
        print(
            f"{n:>6} children: POST /jobs {f['api_wall']:5.2f} s wall {f['api_cpu']:5.2f} s CPU;"
            f" {f['steps']:.0f} launcher steps, worst {f['step_wall']:5.2f} s wall"
            f" {f['step_cpu']:5.2f} s CPU"
        )
    top = figures[max(figures)]
    ok = top["api_wall"] < 10 and top["step_wall"] < 60
    detail = "; ".join(
        f"{n}: API {f['api_wall']:.1f} s ({f['api_cpu']:.1f} s CPU), {f['steps']:.0f} steps of "
        f"<= {f['step_wall']:.1f} s ({f['step_cpu']:.1f} s CPU)"
        for n, f in figures.items()
    )
    emit(BenchResult(NAME, round(top["api_wall"], 2), UNIT, TARGET, ok, detail))
    saving = bill["single_per_item"] / bill["array_per_item"]
    print(
        f"{args.items} items (one item {item_seconds * 1000:.2f} ms, start-up {args.startup:g} s):"
        f" one array job: {bill['array_tasks']} tasks (shards of {size}),"
        f" {bill['array_per_item']:.3f} billed task-s an item;"
        f" {args.items} single jobs: {bill['single_tasks']} tasks,"
        f" {bill['single_per_item']:.3f} billed task-s an item ({saving:.0f}x)"
    )
    emit(
        BenchResult(
            f"array job vs single jobs, {args.items:,} items: billed task-s per item",
            round(bill["array_per_item"], 3),
            "task-s/item",
            "array < single jobs",
            bill["array_per_item"] < bill["single_per_item"],
            f"array: {bill['array_tasks']} tasks, {bill['array_per_item']:.3f} task-s/item; "
            f"single jobs: {bill['single_tasks']} tasks, {bill['single_per_item']:.3f} "
            f"task-s/item ({saving:.0f}x); item {item_seconds * 1000:.2f} ms measured, "
            f"start-up {args.startup:g} s modelled, Fargate per-second billing, 60 s minimum",
        )
    )


if __name__ == "__main__":
    main()
