"""Worker process used by the end-to-end test in place of ``python -m workers.runtime.run``.

It looks at the job's input first: ``E2E-CRASH`` makes the process die with exit code 1
before the runtime starts (a container crash: the job is left DISPATCHED, as after an OOM
kill), ``E2E-HANG`` makes it wait until SIGTERM (a task stopped by cancel), ``E2E-SLOW``
runs the real runtime with a handler that maps over the input's ``documents`` slowly (0.3 s
an item, so a Spot interruption lands mid-job and the retry resumes from the checkpoint),
``E2E-ARRAY`` (an array job's shards, ``tests/e2e/test_array_pipeline.py``) runs the real
runtime with a handler that maps over ``documents`` quickly and returns one entry per item
(``{"id", "attempt"}``, or the item's error for a text holding ``E2E-ARRAY-BADITEM``); a
shard holding ``E2E-ARRAY-CRASH`` dies like ``E2E-CRASH`` on its first attempt only, one
holding ``E2E-ARRAY-SPOT`` runs slowly on its first attempt (so the test's Spot interruption
lands mid-shard), anything else runs the real worker runtime unchanged."""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import time

import boto3

from jobcontract import Env, Table, job_pk


def _marker() -> str | None:
    job_id = os.environ.get(Env.JOB_ID)
    if not job_id:
        return None
    item = (
        boto3.client("dynamodb")
        .get_item(TableName=os.environ[Env.JOBS_TABLE], Key={Table.PK: {"S": job_pk(job_id)}})
        .get("Item", {})
    )
    text = json.dumps(item)
    if "E2E-ARRAY-CRASH" in text and os.environ.get(Env.JOB_ATTEMPT) == "1":
        return "E2E-CRASH"
    markers = ("E2E-CRASH", "E2E-HANG", "E2E-SLOW", "E2E-ARRAY-SPOT", "E2E-ARRAY")
    return next((m for m in markers if m in text), None)


def _slow_worker(name: str) -> int:
    from workers.runtime.context import JobContext
    from workers.runtime.definition import WorkerDefinition
    from workers.runtime.lifecycle import run_worker

    def handler(ctx: JobContext) -> dict[str, object]:
        def one(document: dict[str, str]) -> dict[str, str]:
            time.sleep(0.3)
            return {"id": document["id"], "attempt": str(ctx.attempt)}

        results = ctx.map(one, ctx.input["documents"], concurrency=1)
        return {"items": [r.value for r in results]}

    return run_worker(WorkerDefinition(name=name, handler=handler))


def _array_worker(name: str, slow: bool) -> int:
    from workers.runtime.context import JobContext
    from workers.runtime.definition import WorkerDefinition
    from workers.runtime.lifecycle import run_worker

    def handler(ctx: JobContext) -> dict[str, object]:
        pause = 0.1 if slow and ctx.attempt == 1 else 0.002

        def one(document: dict[str, str]) -> dict[str, str]:
            time.sleep(pause)
            if "E2E-ARRAY-BADITEM" in document["text"]:
                raise ValueError(f"bad item {document['id']}")
            return {"id": document["id"], "attempt": str(ctx.attempt)}

        results = ctx.map(one, ctx.input["documents"], concurrency=1)
        return {"documents": [r.value if r.ok else {"error": r.error} for r in results]}

    return run_worker(WorkerDefinition(name=name, handler=handler))


def main() -> None:
    # A scheduled run has no job id to carry a marker: the test sets it in the task env.
    marker = os.environ.get("E2E_FAULT") or _marker()
    if marker == "E2E-CRASH":
        print("e2e: simulated crash", flush=True)
        os._exit(1)
    if marker == "E2E-HANG":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        print("e2e: hanging until SIGTERM", flush=True)
        while True:
            time.sleep(0.05)
    if marker == "E2E-SLOW":
        sys.exit(_slow_worker(os.environ[Env.WORKER_NAME]))
    if marker in ("E2E-ARRAY", "E2E-ARRAY-SPOT"):
        sys.exit(_array_worker(os.environ[Env.WORKER_NAME], slow=marker == "E2E-ARRAY-SPOT"))
    sys.argv = ["workers.runtime.run", *sys.argv[1:]]
    runpy.run_module("workers.runtime.run", run_name="__main__")


if __name__ == "__main__":
    main()
