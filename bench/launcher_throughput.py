"""Benchmark 3: launcher dispatch throughput against a local moto server (jobs/s, one core).

Pre-creates N QUEUED jobs and a worker registration in a moto server running in ANOTHER
process, then calls ``handlers.launcher.handler`` in this process with SQS events of 10
messages (the FIFO maximum), as the event source mapping would, and times it. Each dispatch
is the launcher's real work: read the job, check the worker's concurrency, ``ecs.RunTask``,
record the task ARN.

Two figures, both in ONE process (one core for the launcher code; the GIL serialises it):
- sequential: one invocation at a time (what one Lambda instance does);
- concurrent: ``--concurrency`` invocations at once (default 10, the seed workers' event
  source mapping maximum concurrency: how the launcher really runs under load). This is
  the headline figure.
The launcher's calls are network-bound, so wall-clock figures mostly measure moto (which
spends more CPU per job than the launcher). The figure compared with the target is the
launcher's own ceiling on one core: jobs per CPU-second of the launcher process (handler +
boto3 serialisation) in the concurrent run; the wall-clock rate is printed next to it.

Target: >= 100 jobs/s, five times the account's sustained Fargate launch rate (20 tasks/s).

    python -m bench.launcher_throughput [--jobs 300]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    REGION,
    BenchResult,
    cpu_seconds,
    emit,
    moto_server_process,
    not_available,
    point_boto3_at,
)

NAME = "launcher dispatch throughput"
UNIT = "jobs/s"
TARGET = ">= 100"
WORKER = "bench-worker"


def _event(job_ids: list[str], attempt: int, queue_arn: str) -> dict[str, Any]:
    """An SQS event as the Lambda event source mapping delivers it (FIFO attributes)."""
    from jobcontract import queue_message

    records = []
    now_ms = str(int(time.time() * 1000))
    for job_id in job_ids:
        msg = queue_message(job_id, attempt)
        body = msg["MessageBody"]
        records.append(
            {
                "messageId": hashlib.md5(f"{job_id}-{attempt}".encode()).hexdigest(),
                "receiptHandle": f"rh-{job_id}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now_ms,
                    "SenderId": "AIDABENCH",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                    "SequenceNumber": "1",
                    "MessageGroupId": msg["MessageGroupId"],
                    "MessageDeduplicationId": msg["MessageDeduplicationId"],
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


def run(jobs: int, concurrency: int = 10) -> list[BenchResult]:
    try:
        import handlers.launcher  # noqa: F401  (availability check)
    except ImportError as exc:
        return [not_available(NAME, UNIT, TARGET, f"handlers.launcher not importable: {exc}")]
    import os

    from jobcontract import JobStatus, new_job_id
    from jobcontract.store import JobStore
    from tests.fixtures.moto_server import WorkerSpec, create_pipeline_resources

    with moto_server_process() as moto:
        endpoint = moto.endpoint
        point_boto3_at(endpoint)
        res = create_pipeline_resources(
            endpoint, [WorkerSpec(WORKER, max_concurrency=100_000)], prefix="bench"
        )
        os.environ.update(res.env())
        from handlers import _aws, launcher

        _aws.reset_clients()
        store = JobStore(res.table_name)
        worker = res.workers[WORKER]
        job_ids = [new_job_id(WORKER) for _ in range(jobs + 10)]
        for job_id in job_ids:
            store.create(
                {
                    "job_id": job_id,
                    "worker": WORKER,
                    "input": {"items": ["x"]},
                    "task_definition": worker.task_definition_arn,
                    "max_attempts": 3,
                    "timeout_seconds": 900,
                }
            )
        warm, rest = job_ids[:10], job_ids[10:]
        half = len(rest) // 2 // 10 * 10
        sequential_ids, concurrent_ids = rest[:half], rest[half:]
        # The launcher logs JSON lines to stdout (as Lambda captures them): keep the writes,
        # send them to /dev/null so the figures stay readable.
        quiet = contextlib.redirect_stdout(open(os.devnull, "w"))  # noqa: SIM115
        quiet.__enter__()
        launcher.handler(_event(warm, 0, worker.queue_arn), None)  # first call: clients

        def dispatch(batch: list[str]) -> int:
            out = launcher.handler(_event(batch, 0, worker.queue_arn), None) or {}
            return len(out.get("batchItemFailures") or [])

        batches = [sequential_ids[i : i + 10] for i in range(0, len(sequential_ids), 10)]
        start = time.perf_counter()
        failures = sum(dispatch(b) for b in batches)
        sequential_s = time.perf_counter() - start
        batches = [concurrent_ids[i : i + 10] for i in range(0, len(concurrent_ids), 10)]
        start, cpu0, moto0 = time.perf_counter(), cpu_seconds(), cpu_seconds(moto.pid)
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            failures += sum(pool.map(dispatch, batches))
        concurrent_s = time.perf_counter() - start
        launcher_cpu = cpu_seconds() - cpu0
        moto_cpu = cpu_seconds(moto.pid) - moto0
        quiet.__exit__(None, None, None)
        measured = sequential_ids + concurrent_ids
        dispatched = sum(
            1 for j in measured
            if (store.get(j) or {}).get("status") in (JobStatus.DISPATCHED, "DISPATCHED")
        )
    seq_rate = len(sequential_ids) / sequential_s
    rate = len(concurrent_ids) / concurrent_s
    print(f"launcher: {len(measured)} jobs in SQS batches of 10 (moto in another process)")
    print(f"  sequential (1 invocation at a time): {seq_rate:7.1f} jobs/s, "
          f"{1000 * sequential_s / len(sequential_ids):6.1f} ms/job")
    print(f"  concurrent ({concurrency} invocations at once):  {rate:7.1f} jobs/s  "
          f"(target {TARGET})")
    n = len(concurrent_ids)
    print(f"  CPU per job in the concurrent run: launcher process (handler + boto3) "
          f"{1000 * launcher_cpu / n:.1f} ms -> {n / launcher_cpu:.0f} jobs/s per core if AWS "
          f"answered instantly; moto server {1000 * moto_cpu / n:.1f} ms")
    print(f"  dispatched {dispatched}/{len(measured)}; batch item failures {failures}")
    complete = dispatched == len(measured) and failures == 0
    ceiling = n / launcher_cpu
    outcome = f"{dispatched}/{len(measured)} dispatched, {failures} failures"
    cpu_bound = BenchResult(
        NAME + " (launcher CPU, one core)", round(ceiling, 1), UNIT, TARGET,
        ceiling >= 100 and complete,
        f"{1000 * launcher_cpu / n:.1f} ms launcher CPU per job (handler + boto3); {outcome}",
    )
    wall = BenchResult(
        NAME + " (wall clock against moto)", round(rate, 1), UNIT, "(informational)", None,
        f"{concurrency} concurrent invocations, sequential {seq_rate:.0f} jobs/s; moto spends "
        f"{1000 * moto_cpu / n:.1f} ms CPU per job, so moto is the limit here, not the launcher",
    )
    return [cpu_bound, wall]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args(argv)
    results = run(args.jobs, args.concurrency)
    for result in results:
        if result.figure is None:
            print(f"{NAME}: not measured: {result.detail}")
        emit(result)
    return 0 if all(r.ok is not False for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
