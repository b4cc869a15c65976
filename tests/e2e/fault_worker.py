"""Worker process used by the end-to-end test in place of ``python -m workers.runtime.run``.

It looks at the job's input first: ``E2E-CRASH`` makes the process die with exit code 1
before the runtime starts (a container crash: the job is left DISPATCHED, as after an OOM
kill), ``E2E-HANG`` makes it wait until SIGTERM (a task stopped by cancel), anything else
runs the real worker runtime unchanged."""

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
    return next((m for m in ("E2E-CRASH", "E2E-HANG") if m in text), None)


def main() -> None:
    marker = _marker()
    if marker == "E2E-CRASH":
        print("e2e: simulated crash", flush=True)
        os._exit(1)
    if marker == "E2E-HANG":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        print("e2e: hanging until SIGTERM", flush=True)
        while True:
            time.sleep(0.05)
    sys.argv = ["workers.runtime.run", *sys.argv[1:]]
    runpy.run_module("workers.runtime.run", run_name="__main__")


if __name__ == "__main__":
    main()
