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

    python -m bench.array_fanout [--children 1000 10000] [--sync-children 100]
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


def _submit(n: int) -> tuple[float, float, str]:
    """(wall s, cpu s, parent id) of one POST /jobs of ``n`` one-item shards."""
    from handlers import api

    items = [{"id": str(i), "text": f"document {i}"} for i in range(n)]
    event = {
        "httpMethod": "POST",
        "path": "/jobs",
        "headers": {"Idempotency-Key": f"bench-{n}"},
        "body": json.dumps({"worker": "bench", "items": items, "shard_size": 1}),
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


def _measure(endpoint: str, n: int) -> dict[str, float]:
    from handlers import _aws, registry
    from tests.fixtures.moto_server import WorkerSpec, create_pipeline_resources, reset_moto

    reset_moto(endpoint)  # moto's state is per process: each size starts from nothing
    registry.clear_cache()
    point_boto3_at(endpoint)
    spec = WorkerSpec("bench", input_schema=WORKER_SCHEMA)
    os.environ.update(create_pipeline_resources(endpoint, [spec]).env())
    _aws.reset_clients()
    api_wall, api_cpu, parent_id = _submit(n)
    step_wall, step_cpu, steps = _steps(parent_id)
    return {
        "api_wall": api_wall,
        "api_cpu": api_cpu,
        "step_wall": step_wall,
        "step_cpu": step_cpu,
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--sync-children", type=int, default=None)
    args = parser.parse_args()
    from local_pipeline.moto_fidelity import serialize_dynamodb

    if args.sync_children is not None:
        os.environ["BATCH_ARRAY_SYNC_CHILDREN"] = str(args.sync_children)
    from moto.server import ThreadedMotoServer

    serialize_dynamodb()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        figures = {n: _measure(f"http://{host}:{port}", n) for n in args.children}
    finally:
        server.stop()
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


if __name__ == "__main__":
    main()
