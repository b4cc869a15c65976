"""A 1,000,000-item JSON Lines manifest: the launcher's validation and fan-out steps.

moto runs in its own process, so this process's peak RSS (``ru_maxrss``) is the handler's:
the manifest (about 125 MB) is streamed in 8 MiB ranged reads, never held. Reports the
wall time of ``POST /jobs`` and of all steps, the steps' CPU, their count, and the peak RSS
over the RSS before the first step.

    python -m bench.manifest_fanout [--items 1000000] [--shard-size 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

from bench.common import BenchResult, emit, moto_server_process, point_boto3_at

NAME = "manifest fan-out, 1,000,000 items"
UNIT = "MB peak RSS growth"
TARGET = "bounded (< 100 MB over start), no step > 60 s"
SCHEMA = {
    "type": "object",
    "properties": {
        "documents": {
            "type": "array",
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["id", "text"],
                "properties": {"id": {"type": "string"}, "text": {"type": "string"}},
            },
        }
    },
}


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=1000)
    args = parser.parse_args()
    import boto3

    from handlers import _aws, api, launcher, registry
    from tests.fixtures.moto_server import WorkerSpec, create_pipeline_resources

    with moto_server_process() as moto:
        point_boto3_at(moto.endpoint)
        made = create_pipeline_resources(moto.endpoint, [WorkerSpec("bulk", input_schema=SCHEMA)])
        os.environ.update(made.env())
        registry.clear_cache()
        _aws.reset_clients()
        key = "inputs/bulk/" + "0" * 32 + "/items.jsonl"
        body = b"".join(b'{"id":"%d","text":"%s"}\n' % (i, b"t" * 100) for i in range(args.items))
        boto3.client("s3").put_object(Bucket=made.bucket, Key=key, Body=body)
        size = len(body)
        del body
        request = {
            "worker": "bulk",
            "manifest": {"s3_key": key, "items": args.items},
            "shard_size": args.shard_size,
        }
        event = {"httpMethod": "POST", "path": "/jobs", "body": json.dumps(request),
                 "headers": {}, "requestContext": {}}  # fmt: skip
        t0 = time.perf_counter()
        out = api.handler(event, None)
        api_wall = time.perf_counter() - t0
        assert out["statusCode"] == 202, out
        parent_id = json.loads(out["body"])["job_id"]
        rss_start = _rss_mb()
        steps, worst, cpu0, t0 = 0, 0.0, time.process_time(), time.perf_counter()
        while True:
            s0 = time.perf_counter()
            detail = launcher.Launcher().fan_out(parent_id).detail
            worst = max(worst, time.perf_counter() - s0)
            steps += 1
            if detail in ("children created already", "array job ended"):
                break
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    growth = peak - rss_start
    print(
        f"{args.items} items ({size / 1e6:.0f} MB): POST /jobs {api_wall:.2f} s; {steps} steps "
        f"in {wall:.0f} s wall ({cpu:.0f} s CPU), worst step {worst:.1f} s; RSS {rss_start:.0f} "
        f"MB before, peak {peak:.0f} MB"
    )
    ok = growth < 100 and worst < 60
    detail = f"{steps} steps, {wall:.0f} s wall, {cpu:.0f} s CPU, worst step {worst:.1f} s"
    emit(BenchResult(NAME, round(growth, 1), UNIT, TARGET, ok, detail))


if __name__ == "__main__":
    main()
