"""Benchmark 3: launcher dispatch throughput against a local moto server (jobs/s, one core).

Pre-creates N QUEUED jobs and a worker registration in a moto server running in ANOTHER
process, then calls ``handlers.launcher.handler`` in this process with SQS events of 10
messages (the FIFO maximum), as the event source mapping would, and times it. Each dispatch
is the launcher's real work: read the job, check the worker's concurrency, ``ecs.RunTask``,
record the task ARN. moto answers more slowly than AWS, so the figure is a lower bound.

Target: >= 100 jobs/s, five times the account's sustained Fargate launch rate (20 tasks/s).

    python -m bench.launcher_throughput [--jobs 300]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from typing import Any

from bench.common import (
    REGION,
    BenchResult,
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


def run(jobs: int) -> BenchResult:
    try:
        import handlers.launcher  # noqa: F401  (availability check)
    except ImportError as exc:
        return not_available(NAME, UNIT, TARGET, f"handlers.launcher not importable: {exc}")
    import os

    from jobcontract import JobStatus, new_job_id
    from jobcontract.store import JobStore
    from tests.fixtures.moto_server import WorkerSpec, create_pipeline_resources

    with moto_server_process() as endpoint:
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
        warm, measured = job_ids[:10], job_ids[10:]
        launcher.handler(_event(warm, 0, worker.queue_arn), None)  # first call: clients
        failures = 0
        start = time.perf_counter()
        for i in range(0, len(measured), 10):
            batch = measured[i : i + 10]
            out = launcher.handler(_event(batch, 0, worker.queue_arn), None) or {}
            failures += len(out.get("batchItemFailures") or [])
        elapsed = time.perf_counter() - start
        dispatched = sum(
            1
            for j in measured
            if (store.get(j) or {}).get("status") in (JobStatus.DISPATCHED, "DISPATCHED")
        )
    rate = len(measured) / elapsed
    print(f"launcher: {len(measured)} jobs in {len(measured) // 10} SQS batches of 10")
    print(f"  elapsed        {elapsed:8.3f} s")
    print(f"  throughput     {rate:8.1f} jobs/s  (target {TARGET})")
    print(f"  per job        {1000 * elapsed / len(measured):8.2f} ms")
    print(f"  dispatched     {dispatched}/{len(measured)}; batch item failures {failures}")
    ok = rate >= 100 and dispatched == len(measured) and failures == 0
    detail = f"{len(measured)} jobs, {dispatched} dispatched, {failures} failures"
    return BenchResult(NAME, round(rate, 1), UNIT, TARGET, ok, detail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args(argv)
    result = run(args.jobs)
    if result.figure is None:
        print(f"{NAME}: not measured: {result.detail}")
    emit(result)
    return 0 if result.ok is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
