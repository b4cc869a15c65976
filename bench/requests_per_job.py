"""Benchmark 1: billable AWS requests per job, end to end, by service and by actor.

Runs the local pipeline (``LocalPipeline``: moto server, the real handlers in this process,
each worker as its own process), submits jobs over HTTP and counts every AWS API call with a
botocore wrapper (``bench.count_hook``): in-process calls are attributed by call stack
(api, launcher, reconciler, sweep, the SQS poller standing in for the event source mapping);
worker processes count their own calls through an injected ``sitecustomize``.

Left out, and why:
- client polling: the benchmark waits by reading the table itself ("observer"), never
  through GET /jobs/{id}, so no status poll is counted;
- the pipeline's emulation of AWS (its ECS task watcher and provisioning): AWS does this
  for free;
- ECS API calls (RunTask, DescribeTasks, StopTask): ECS has no per-request charge; shown
  separately;
- empty ReceiveMessage calls of the event source mapping: the local poller short-polls;
  in AWS Lambda long-polls each queue whether or not jobs exist (a fixed monthly cost: see
  ``batchctl cost`` / bench/idle_cost.py). The receive that returns the job's message and
  the delete after the launcher succeeds ARE per-job requests and are counted.

Also printed: API Gateway requests and Lambda invocations per job (billed per request, but
not AWS SDK calls). Target: <= 8 billable requests per job.

    python -m bench.requests_per_job [--jobs-per-worker 2] [--worker NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import PROJECT_ROOT, BenchResult, emit, not_available
from bench.count_hook import WARM_IDLE

NAME = "billable AWS requests per job"
UNIT = "requests/job"
TARGET = "<= 8"
FREE_SERVICES = {"ecs", "sts", "logs", "events", "lambda"}  # no per-request charge
PER_JOB_ACTORS = ("api", "launcher", "esm", "worker", "reconciler")


def sample_input(schema: Any, depth: int = 0) -> Any:
    """A small valid instance of a worker's input JSON schema (required fields only)."""
    if not isinstance(schema, dict) or depth > 6:
        return "text"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "string")
    if typ == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        options = schema.get("oneOf") or schema.get("anyOf") or [{}]
        required = list(schema.get("required") or [])
        required += [k for k in options[0].get("required") or [] if k not in required]
        required = required or list(props)[:1]
        return {k: sample_input(props.get(k, {}), depth + 1) for k in required}
    if typ == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [sample_input(schema.get("items", {}), depth + 1) for _ in range(count)]
    if typ in ("integer", "number"):
        return schema.get("minimum", 1)
    if typ == "boolean":
        return True
    if schema.get("format") in ("uri", "url") or "url" in str(schema.get("description", "")):
        return "https://example.com/images/cat.png"
    text = (
        "Serverless batch jobs run on Fargate Spot. The launcher starts one task per job; "
        "the worker writes its result to S3 and the reconciler records how it ended."
    )
    return text[
        : max(int(schema.get("minLength", 1)), min(len(text), int(schema.get("maxLength", 200))))
    ]


def _http(method: str, url: str, api_key: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"x-api-key": api_key, "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def run(jobs_per_worker: int, only: list[str], timeout: float) -> BenchResult:
    from components.offline import PROGRAM

    if not PROGRAM.exists():
        return not_available(NAME, UNIT, TARGET, "__main__.py has not landed yet")
    try:
        from local_pipeline.pipeline import LocalPipeline
    except ImportError as exc:
        return not_available(NAME, UNIT, TARGET, f"local pipeline not importable: {exc}")
    import logging

    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log

    from bench.count_hook import (
        CALLS_FILE_ENV,
        CallRecorder,
        read_calls_file,
        write_sitecustomize,
    )
    from local_pipeline import lambdas as local_lambdas

    tmp = Path(tempfile.mkdtemp(prefix="bench-requests-"))
    calls_file = tmp / "worker-calls.jsonl"
    hook_dir = write_sitecustomize(tmp / "hook")
    pythonpath = os.pathsep.join([str(hook_dir), str(PROJECT_ROOT)])
    worker_env = {"PYTHONPATH": pythonpath, CALLS_FILE_ENV: str(calls_file)}

    invocations: Counter[str] = Counter()
    original_handler = local_lambdas.LocalLambda.handler  # a property, read on every invoke

    def counting_handler(self: Any) -> Any:
        handler = original_handler.fget(self)  # type: ignore[attr-defined]
        role = self.function.role

        def invoke(event: Any, context: Any) -> Any:
            invocations[role] += 1
            return handler(event, context)

        return invoke

    recorder = CallRecorder()
    statuses: Counter[str] = Counter()
    with LocalPipeline(
        stack="dev",
        state_dir=tmp / "state",
        sweep_interval=3600,
        worker_env=worker_env,
        max_tasks=4,
    ) as pipeline:
        status, listing = _http("GET", f"{pipeline.api_url}/workers", pipeline.api_key)
        if status != 200:
            return not_available(NAME, UNIT, TARGET, f"GET /workers answered {status}")
        workers = listing.get("workers", listing) if isinstance(listing, dict) else listing
        names = [w["name"] for w in workers if not only or w["name"] in only]
        schemas = {w["name"]: w.get("input_schema") or {} for w in workers}
        table = os.environ["BATCH_JOBS_TABLE"]
        observer = boto3.session.Session().client("dynamodb")
        local_lambdas.LocalLambda.handler = property(counting_handler)  # type: ignore[method-assign,assignment]
        recorder.install()
        try:
            job_ids: list[str] = []
            submitted = 0
            for name in names:
                for _ in range(jobs_per_worker):
                    code, body = _http(
                        "POST",
                        f"{pipeline.api_url}/jobs",
                        pipeline.api_key,
                        # The sample of an image worker names an image that cannot be
                        # fetched offline: the job is measured, not its items' outcome.
                        {
                            "worker": name,
                            "input": sample_input(schemas[name]),
                            "max_failed_item_share": 1,
                        },
                    )
                    submitted += 1
                    if code == 202:
                        job_ids.append(body["job_id"])
                    else:
                        print(f"  submit to {name} refused: {code} {body}")
            deadline = time.monotonic() + timeout
            pending = set(job_ids)
            while pending and time.monotonic() < deadline:
                for job_id in list(pending):
                    item = (
                        observer.get_item(
                            TableName=table, Key={"pk": {"S": f"job#{job_id}"}}, ConsistentRead=True
                        ).get("Item")
                        or {}
                    )
                    state = item.get("status", {}).get("S", "")
                    if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                        statuses[state] += 1
                        pending.discard(job_id)
                time.sleep(0.5)
            time.sleep(3)  # let the reconciler see the last STOPPED events
        finally:
            recorder.uninstall()
            local_lambdas.LocalLambda.handler = original_handler  # type: ignore[method-assign]
    if pending:
        statuses["unfinished"] += len(pending)
    calls = recorder.calls + read_calls_file(calls_file)
    return _report(calls, len(job_ids), submitted, statuses, invocations)


def _report(
    calls: list[Any], jobs: int, submitted: int, statuses: Counter[str], invocations: Counter[str]
) -> BenchResult:
    if not jobs:
        return not_available(NAME, UNIT, TARGET, f"no job accepted of {submitted} submitted")
    print(f"{jobs} jobs accepted of {submitted}; outcomes: {dict(statuses)}")
    billable = [
        c
        for c in calls
        if c.actor in PER_JOB_ACTORS and c.service not in FREE_SERVICES and not c.empty
    ]
    by_service = Counter(c.service for c in billable)
    by_actor = Counter(c.actor for c in billable)
    by_op = Counter((c.actor, c.service, c.operation) for c in billable)
    print("\nBillable requests per job, by service:")
    for service, n in by_service.most_common():
        print(f"  {service:<16} {n / jobs:6.2f}")
    print("\nBy actor:")
    for actor in PER_JOB_ACTORS:
        print(f"  {actor:<16} {by_actor.get(actor, 0) / jobs:6.2f}")
    print("\nBy actor and operation (per job):")
    for (actor, service, op), n in sorted(by_op.items()):
        print(f"  {actor:<11} {service:<10} {op:<24} {n / jobs:6.2f}")
    writes = Counter((c.actor, c.what) for c in billable if c.what)
    if writes:
        print("\nUpdateItem calls by the attributes they touch (per job):")
        for (actor, what), n in sorted(writes.items()):
            print(f"  {actor:<11} {n / jobs:5.2f}  {what}")
    free = Counter(
        (c.actor, c.service, c.operation)
        for c in calls
        if c.actor in PER_JOB_ACTORS and c.service in FREE_SERVICES
    )
    if free:
        print("\nFree API calls (no per-request charge), per job:")
        for (actor, service, op), n in sorted(free.items()):
            print(f"  {actor:<11} {service:<10} {op:<24} {n / jobs:6.2f}")
    empty = sum(1 for c in calls if c.actor == "esm" and c.empty)
    idle_polls = sum(1 for c in calls if c.actor == WARM_IDLE)
    left_out = Counter(
        c.actor for c in calls if c.actor not in PER_JOB_ACTORS and c.actor != WARM_IDLE
    )
    print(
        f"\nLeft out: {empty} empty ReceiveMessage polls of the local poller (idle polling "
        f"is a fixed cost, see bench/idle_cost.py); {idle_polls} reads of warm tasks polling "
        "for a next job while idle (one per second of a reuse window: a cost of the window, "
        f"like its idle compute, not of a job); other actors: {dict(left_out)}"
    )
    print(
        "Also billed per job, not SDK calls: 1 API Gateway request (the submit) and these "
        f"Lambda invocations: { {k: round(v / jobs, 2) for k, v in invocations.items()} }"
    )
    per_job = len(billable) / jobs
    print(f"\nTotal: {per_job:.2f} billable AWS requests per job (target {TARGET})")
    detail = (
        "by service: "
        + ", ".join(f"{s} {n / jobs:.1f}" for s, n in by_service.most_common())
        + "; by actor: "
        + ", ".join(f"{a} {by_actor.get(a, 0) / jobs:.1f}" for a in PER_JOB_ACTORS)
        + f"; {jobs} jobs; left out: {idle_polls} idle-window polls of warm tasks"
    )
    ok = per_job <= 8 and statuses.get("SUCCEEDED", 0) == jobs
    if statuses.get("SUCCEEDED", 0) != jobs:
        detail += f"; outcomes {dict(statuses)}"
    return BenchResult(NAME, round(per_job, 2), UNIT, TARGET, ok, detail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs-per-worker", type=int, default=2)
    parser.add_argument("--worker", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    result = run(args.jobs_per_worker, args.worker, args.timeout)
    if result.figure is None:
        print(f"{NAME}: not measured: {result.detail}")
    emit(result)
    return 0 if result.ok is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
