"""A JSON Lines manifest of up to 1,000,000 items: the launcher's validation and fan-out steps
against moto (``local_pipeline.moto_fidelity``, in its own process), memory against N.

For each ``--items`` N: a fresh moto server; the manifest (``tests.fixtures.manifests``) is
written to a temporary file and uploaded from it (never held in memory); ``POST /jobs`` runs
the real API handler. The steps then run in a process of their own, so its peak RSS
(``VmHWM``; not ``ru_maxrss``, which keeps the parent's peak across ``execve``) is the
fan-out's alone, not the set-up's (the earlier figure of 96 MB at 400,000 items was the
bench's own peak while it built the whole manifest in memory). That process also samples
its RSS after every step and, with ``--tracemalloc``, the peak of Python allocations over
the steps (slower). Items/s: validation (all items read and checked) and the whole fan-out
(validation + children).

    python -m bench.manifest_fanout [--items 100000,300000,1000000] [--shard-size 1000]
        [--tracemalloc] [--moto-log FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PROJECT_ROOT, BenchResult, emit, moto_server_process, point_boto3_at

UNIT = "MB peak RSS of the fan-out process"
TARGET = "flat in N (< 10 MB more at 1,000,000 than at 100,000 items), no step > 60 s"
DONE = ("children created already", "array job ended")


def _status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def steps(parent_id: str, trace: bool) -> dict[str, Any]:
    """Every fan-out step of ``parent_id`` in this process (boto3 already pointed at moto):
    wall, CPU, step count, the worst step, RSS before and after each step, peaks."""
    import tracemalloc

    from handlers import _aws, launcher
    from jobcontract import JobField
    from jobcontract.store import JobStore

    store = JobStore(os.environ["BATCH_JOBS_TABLE"])
    launcher.Launcher()  # imports made before the baseline, and every client the steps use
    for service in ("dynamodb", "s3", "sqs"):  # (else the first step that needs one, or
        _aws.client(service)  # this loop's own reads, would count its client as growth)
    store.get(parent_id)
    rss_before, samples = _rss_mb(), []
    if trace:
        tracemalloc.start(int(os.environ.get("BENCH_TRACE_FRAMES", "1")))
    count, worst, validated_at = 0, 0.0, None
    cpu0, t0 = time.process_time(), time.perf_counter()
    step_heap: list[list[float]] = []  # per step: Python heap peak and after, MB (--tracemalloc)
    while True:
        s0 = time.perf_counter()
        detail = launcher.Launcher().fan_out(parent_id).detail
        worst = max(worst, time.perf_counter() - s0)
        if trace:
            now_b, peak_b = tracemalloc.get_traced_memory()
            step_heap.append([round(peak_b / 2**20, 1), round(now_b / 2**20, 1)])
            tracemalloc.reset_peak()
            if os.environ.get("BENCH_SNAPSHOT_DIR"):
                tracemalloc.take_snapshot().dump(
                    os.path.join(os.environ["BENCH_SNAPSHOT_DIR"], f"step{count}.snap")
                )
        count += 1
        array = (store.get(parent_id) or {}).get(JobField.ARRAY) or {}
        if validated_at is None and array.get("manifest", {}).get("validated"):
            validated_at = time.perf_counter() - t0
        samples.append(
            [int(array.get("manifest", {}).get("items", 0)), int(array.get("created", 0)),
             round(_rss_mb(), 1)]
        )  # fmt: skip
        if detail in DONE:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    heap_peak = max(peak for peak, _ in step_heap) if step_heap else None
    parent = store.get(parent_id) or {}
    return {
        "steps": count,
        "wall": wall,
        "cpu": cpu,
        "worst": worst,
        "validation_wall": validated_at,
        "rss_before": rss_before,
        # Not getrusage's ru_maxrss: it is "preserved across an execve" (getrusage(2)), and
        # the kernel folds the parent's high-water mark into it when the child execs, so it
        # reported the set-up process's peak. VmHWM is this process's own image's peak.
        "peak_rss": _status_mb("VmHWM"),
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "heap_peak": heap_peak,
        "step_heap": step_heap,
        "samples": samples,
        "status": parent.get(JobField.STATUS),
        "created": int((parent.get(JobField.ARRAY) or {}).get("created", 0)),
    }


def run(n: int, shard_size: int, trace: bool, moto_log: Path | None) -> dict[str, Any]:
    import boto3

    from handlers import _aws, api, registry
    from tests.fixtures.manifests import BULK_SCHEMA, write_bulk_manifest
    from tests.fixtures.moto_server import WorkerSpec, create_pipeline_resources

    with moto_server_process(moto_log) as moto, tempfile.TemporaryDirectory() as tmp:
        point_boto3_at(moto.endpoint)
        made = create_pipeline_resources(
            moto.endpoint, [WorkerSpec("bulk", input_schema=BULK_SCHEMA)]
        )
        os.environ.update(made.env())
        registry.clear_cache()
        _aws.reset_clients()
        key = "inputs/bulk/" + "0" * 32 + "/items.jsonl"
        path = Path(tmp) / "items.jsonl"
        size = write_bulk_manifest(path, n)
        with path.open("rb") as body:  # one PutObject, streamed from the file
            boto3.client("s3").put_object(Bucket=made.bucket, Key=key, Body=body)
        request = {
            "worker": "bulk",
            "manifest": {"s3_key": key, "items": n},
            "shard_size": shard_size,
        }
        event = {"httpMethod": "POST", "path": "/jobs", "body": json.dumps(request),
                 "headers": {}, "requestContext": {}}  # fmt: skip
        t0 = time.perf_counter()
        out = api.handler(event, None)
        api_wall = time.perf_counter() - t0
        assert out["statusCode"] == 202, out
        parent_id = json.loads(out["body"])["job_id"]
        argv = [sys.executable, "-m", "bench.manifest_fanout", "--steps-of", parent_id]
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        proc = subprocess.run(
            [*argv, *(["--tracemalloc"] if trace else [])],
            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("STEPS: ")]
        if proc.returncode or not lines:
            raise RuntimeError(f"fan-out process failed ({proc.returncode}): {proc.stderr[-2000:]}")
        got: dict[str, Any] = json.loads(lines[-1].removeprefix("STEPS: "))
    return {"items": n, "bytes": size, "api_wall": api_wall, "shards": -(-n // shard_size), **got}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", default="100000,300000,1000000", help="N, comma-separated")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--tracemalloc", action="store_true", help="also trace Python heap")
    parser.add_argument("--moto-log", type=Path, help="keep moto's stderr (its 500s) here")
    parser.add_argument("--steps-of", help=argparse.SUPPRESS)  # the fan-out process
    args = parser.parse_args()
    if args.steps_of:
        import contextlib

        with contextlib.redirect_stdout(open(os.devnull, "w")):  # the handlers log JSON lines
            got = steps(args.steps_of, args.tracemalloc)
        print("STEPS: " + json.dumps(got), flush=True)
        return
    rows = []
    for n in (int(x) for x in args.items.split(",")):
        row = run(n, args.shard_size, args.tracemalloc, args.moto_log)
        rows.append(row)
        rss = [s[2] for s in row["samples"]]
        heap = ""
        if row["heap_peak"] is not None:  # per step: Python heap peak/after (MB)
            per_step = " ".join(f"{p:.0f}/{a:.0f}" for p, a in row["step_heap"])
            heap = f", heap peak {row['heap_peak']:.1f} MB (per step peak/after: {per_step})"
        print(
            f"{n:>9} items ({row['bytes'] / 1e6:.1f} MB, {row['shards']} shards): "
            f"POST /jobs {row['api_wall']:.2f} s; {row['steps']} steps, {row['wall']:.1f} s "
            f"wall ({row['cpu']:.1f} s CPU), worst step {row['worst']:.1f} s; "
            f"{n / row['validation_wall']:,.0f} items/s validated, "
            f"{n / row['wall']:,.0f} items/s fanned out; {row['status']}, "
            f"{row['created']} children; RSS {row['rss_before']:.1f} MB before the steps, "
            f"{min(rss):.1f}-{max(rss):.1f} MB after them, peak {row['peak_rss']:.1f} MB{heap}",
            flush=True,
        )
    first, last = rows[0], rows[-1]
    spread = last["peak_rss"] - first["peak_rss"]
    complete = all(r["created"] == r["shards"] and r["status"] == "RUNNING" for r in rows)
    ok = complete and spread < 10 and max(r["worst"] for r in rows) < 60
    detail = "; ".join(
        f"{r['items']:,}: peak {r['peak_rss']:.1f} MB, {r['items'] / r['wall']:,.0f} items/s"
        for r in rows
    )
    emit(BenchResult(f"manifest fan-out, {last['items']:,} items", round(last["peak_rss"], 1),
                     UNIT, TARGET, ok, detail))  # fmt: skip


if __name__ == "__main__":
    main()
