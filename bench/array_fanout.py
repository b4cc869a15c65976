"""Array-job fan-out: how long ``POST /jobs`` takes to write N children (moto, one process).

Calls the real API handler against a moto server (in this process, with the tests'
``local_pipeline.moto_fidelity``: stock moto copies the whole table per transaction), with
an array job of N items in shards of one item (N children), and times the request end to end:
validation, the parent, the children in transactions of 100 conditional puts, the drain.
Figures: wall seconds per request (moto's time included: on AWS a 100-put transaction takes
tens of milliseconds) and the handler's own CPU (its thread: validation, JSON, boto3); the
target is the API Lambda's timeout (API Gateway caps it at 29 s) with room to spare.

    python -m bench.array_fanout [--children 1000 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench.common import BenchResult, emit, point_boto3_at

NAME = "array fan-out, 10,000 children in one POST /jobs"
UNIT = "s"
TARGET = "< 20 (API Lambda limit 29 s)"
WORKER_SCHEMA = {
    "type": "object",
    "required": ["documents"],
    "properties": {"documents": {"type": "array", "items": {"type": "object"}}},
}


def _submit(n: int) -> tuple[float, float, int]:
    """(wall s, cpu s, status) of one array job of ``n`` one-item shards."""
    from handlers import api

    items = [{"id": str(i), "text": f"document {i}"} for i in range(n)]
    event = {
        "httpMethod": "POST",
        "path": "/jobs",
        "headers": {"Idempotency-Key": f"bench-{n}"},
        "body": json.dumps({"worker": "bench", "items": items, "shard_size": 1}),
        "requestContext": {},
    }
    wall, cpu = time.perf_counter(), time.thread_time()  # the handler's thread, not moto's
    out = api.handler(event, None)
    return time.perf_counter() - wall, time.thread_time() - cpu, int(out["statusCode"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    from handlers import _aws
    from tests.fixtures.moto_server import WorkerSpec, create_pipeline_resources

    figures: dict[int, tuple[float, float]] = {}
    from moto.server import ThreadedMotoServer

    from local_pipeline.moto_fidelity import serialize_dynamodb

    serialize_dynamodb()
    for n in args.children:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        try:
            point_boto3_at(endpoint)
            made = create_pipeline_resources(
                endpoint, [WorkerSpec("bench", input_schema=WORKER_SCHEMA)]
            )
            os.environ.update(made.env())
            _aws.reset_clients()
            wall, cpu, status = _submit(n)
        finally:
            server.stop()
        print(f"{n:>6} children: {wall:6.2f} s wall, {cpu:6.2f} s handler CPU, HTTP {status}")
        figures[n] = (wall, cpu)
    top = max(figures)
    wall, cpu = figures[top]
    detail = "; ".join(
        f"{n}: {w:.1f} s wall, {c:.1f} s handler CPU" for n, (w, c) in figures.items()
    )
    emit(BenchResult(NAME, round(wall, 2), UNIT, TARGET, wall < 20, detail))


if __name__ == "__main__":
    main()
