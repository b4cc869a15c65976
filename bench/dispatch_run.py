"""Run a burst of jobs through the local pipeline and read back the dispatch timelines.

Shared by ``bench/dispatch_drain.py``, ``dispatch_reuse.py`` and ``dispatch_mixed.py``. The
pipeline runs in this process (moto, the real handlers, the real worker runtime as local
processes, ``LocalFargate`` with room for every task so the emulation never limits). Per
burst it sets:

- each worker's cap: its registration item's ``max_concurrency`` (what the launcher reads);
- warm reuse: stack setting ``taskReuse`` when the stack config knows it, the registration's
  ``reuse_idle_seconds``, and ``BATCH_REUSE_IDLE_SECONDS`` on every worker process;
- the stack vCPU cap: stack setting ``fargateVcpuLimit`` when the stack config knows it, and
  ``BATCH_FARGATE_VCPU_LIMIT`` in the control-plane environment (the handlers run here).

Submission is over HTTP (the local API gateway), from a few threads so the burst arrives
within seconds. At the end the job items (``created_at``, ``timestamps``, ``task_arn``) and
``LocalFargate.task_timelines()`` become ``bench.dispatch_metrics`` timelines.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.dispatch_metrics import JobTimeline, Slots, TaskTimeline

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
# The modelled Fargate start-up of the drain and mixed runs (``--startup``). On AWS a task
# spends 30-60 s from RunTask to RUNNING (ENI, image pull), so the platform's hand-off per
# freed slot (tenths of a second) weighs little; a local task without it lives about a
# second and the same hand-off weighs tens of percent. 3 s is far below AWS's figure, so
# the ratio measured with it still overstates what the hand-off costs there.
MODELLED_STARTUP_SECONDS = 3.0
REUSE_SETTING = "taskReuse"
VCPU_SETTING = "fargateVcpuLimit"


@dataclass(frozen=True)
class WorkerLoad:
    name: str
    cap: int  # max tasks at once
    jobs: int


@dataclass(frozen=True)
class Burst:
    workers: tuple[WorkerLoad, ...]
    reuse_idle_seconds: int  # 0 = reuse off
    stack_vcpu_limit: float = 0.0  # 0 = no stack cap
    timeout: float = 110.0  # stop waiting after this many seconds from the first submit
    submit_threads: int = 4
    # Modelled Fargate start-up (PROVISIONING -> RUNNING: ENI, image pull) before a task's
    # process starts; 0 = none, so a local task lives about a second.
    task_startup_seconds: float = 0.0


@dataclass
class Outcome:
    jobs: list[JobTimeline]
    tasks: list[TaskTimeline]
    slots: Slots
    now: float  # when the benchmark stopped looking
    statuses: Counter[str]
    submit_seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def unfinished(self) -> int:
        return sum(1 for j in self.jobs if j.ended is None)


def _http(method: str, url: str, api_key: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"x-api-key": api_key, "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def config_knows(key: str, value: str, stack: str = "dev") -> bool:
    """True when the stack config accepts ``key`` (the dispatch settings land later)."""
    from components.config import PROJECT, ConfigError, parse_config
    from components.offline import stack_config

    values: dict[str, Any] = {}
    for full, raw in stack_config(stack, {f"{PROJECT}:{key}": value}).items():
        ns, _, name = full.partition(":")
        if ns == PROJECT:
            values[name] = json.loads(raw) if raw[:1] in "[{" else raw
    try:
        parse_config(values, project=PROJECT, stack=stack)
    except ConfigError as exc:
        if key in str(exc):
            return False
        raise
    return True


def worker_input(name: str, schema: Mapping[str, Any]) -> Any:
    """A small, fast, valid input (the seed workers' offline backends take well under 1 s)."""
    from bench.requests_per_job import sample_input

    if name == "meta-desc-generator":
        text = (
            "Serverless batch jobs run on Fargate Spot. The launcher starts one task per job. "
            "The worker writes its result to S3 and the reconciler records how it ended."
        )
        return {"pages": [{"url": "https://example.com/a", "text": text}]}
    return sample_input(schema)


def run_burst(burst: Burst, *, stack: str = "dev") -> Outcome:
    from jobcontract import Env
    from local_pipeline.pipeline import LocalPipeline

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    notes: list[str] = []
    reuse = burst.reuse_idle_seconds
    overrides: dict[str, str] = {}
    if config_knows(REUSE_SETTING, "true" if reuse else "false", stack):
        overrides[REUSE_SETTING] = "true" if reuse else "false"
    else:
        notes.append(f"stack config has no {REUSE_SETTING!r} yet: set through env + registration")
    limit = burst.stack_vcpu_limit
    if limit and config_knows(VCPU_SETTING, str(limit), stack):
        overrides[VCPU_SETTING] = str(limit)
    elif limit:
        notes.append(f"stack config has no {VCPU_SETTING!r} yet: set {Env.FARGATE_VCPU_LIMIT}")
    elif config_knows(VCPU_SETTING, "0", stack):
        overrides[VCPU_SETTING] = "0"  # no stack cap (the setting's default may be 6)

    def command(worker: str) -> list[str]:
        # The task definition's env would override the pipeline's base env: force it here.
        return [
            "env",
            f"{Env.REUSE_IDLE_SECONDS}={reuse}",
            sys.executable,
            "-m",
            "workers.runtime.run",
            "--worker",
            worker,
        ]

    tmp = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    total_cap = sum(w.cap for w in burst.workers)
    pipeline = LocalPipeline(
        stack=stack,
        overrides=overrides,
        state_dir=tmp / "state",
        sweep_interval=60,  # the stack's sweep is a backstop: minutes in dev; keep it in view
        max_tasks=max(64, 4 * total_cap),  # the emulation must never be the limit
        worker_env={Env.REUSE_IDLE_SECONDS: str(reuse)},
        worker_command=command,
        task_startup_seconds=burst.task_startup_seconds,
    )
    saved_limit = os.environ.get(Env.FARGATE_VCPU_LIMIT)
    from jobcontract import logs

    saved_logger = logs.DEFAULT
    handler_log = (tmp / "handlers.jsonl").open("w")
    logs.DEFAULT = logs.JsonLogger(handler_log)  # the handlers' lines, off stdout
    print(f"handler log lines: {handler_log.name}", flush=True)
    try:
        outcome = _run(burst, pipeline, reuse, limit, notes)
    finally:
        logs.DEFAULT = saved_logger
        handler_log.close()
        if saved_limit is None:
            os.environ.pop(Env.FARGATE_VCPU_LIMIT, None)
        else:
            os.environ[Env.FARGATE_VCPU_LIMIT] = saved_limit
    return outcome


def _run(burst: Burst, pipeline: Any, reuse: int, limit: float, notes: list[str]) -> Outcome:
    from handlers import registry
    from jobcontract import Env, Table, worker_pk
    from jobcontract.registration import WorkerRegistration
    from jobcontract.store import from_item

    with pipeline:
        import boto3

        os.environ[Env.FARGATE_VCPU_LIMIT] = str(limit) if limit else "0"
        ddb = boto3.session.Session().client("dynamodb")
        table = os.environ[Env.JOBS_TABLE]
        status, listing = _http("GET", f"{pipeline.api_url}/workers", pipeline.api_key)
        if status != 200:
            raise RuntimeError(f"GET /workers answered {status}: {listing}")
        described = {w["name"]: w for w in listing.get("workers", [])}
        vcpu: dict[str, float] = {}
        for load in burst.workers:
            if load.name not in described:
                raise RuntimeError(f"no worker {load.name!r} in the stack")
            key = {Table.PK: {"S": worker_pk(load.name)}}
            item = ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
            worker = WorkerRegistration.from_item(from_item(item))
            tuned = dataclasses.replace(worker, max_concurrency=load.cap, reuse_idle_seconds=reuse)
            ddb.put_item(TableName=table, Item=tuned.to_dynamodb())
            vcpu[load.name] = worker.cpu / 1024
        registry.clear_cache()

        bodies = [
            {
                "worker": load.name,
                "input": worker_input(load.name, described[load.name].get("input_schema") or {}),
                "max_failed_item_share": 1,  # dispatch is measured, not the items' outcome
            }
            for load in burst.workers
            for _ in range(load.jobs)
        ]
        # Interleave workers so every worker's burst arrives at once.
        bodies = _interleave(bodies)
        t0 = time.time()
        with ThreadPoolExecutor(burst.submit_threads) as pool:
            answers = list(
                pool.map(
                    lambda b: _http("POST", f"{pipeline.api_url}/jobs", pipeline.api_key, b), bodies
                )
            )
        submit_seconds = time.time() - t0
        job_ids = [body["job_id"] for code, body in answers if code == 202]
        refused = [(code, body) for code, body in answers if code != 202]
        if refused:
            notes.append(f"{len(refused)} submits refused, first: {refused[0]}")
        print(f"submitted {len(job_ids)} jobs in {submit_seconds:.1f} s", flush=True)

        pending = set(job_ids)
        items: dict[str, dict[str, Any]] = {}
        deadline = t0 + burst.timeout
        last_report = 0.0
        while pending and time.time() < deadline:
            # The observer must not slow what it measures: every 2 s, statuses only (a full
            # read of every item takes moto's DynamoDB lock for long); full items at the end.
            time.sleep(2.0)
            for job_id, item in _scan_jobs(ddb, table, statuses_only=True).items():
                if job_id in pending and item.get("status") in TERMINAL:
                    pending.discard(job_id)
            if time.time() - last_report > 10:
                last_report = time.time()
                print(
                    f"  t+{time.time() - t0:5.1f} s: {len(job_ids) - len(pending)}/"
                    f"{len(job_ids)} done",
                    flush=True,
                )
        now = time.time()
        items.update({j: i for j, i in _scan_jobs(ddb, table).items() if j in set(job_ids)})
        assert pipeline.fargate is not None
        if not pending:
            # Let the last tasks stop (warm ones after their idle window): a task's STOPPED
            # time is part of what it is billed.
            stop_by = time.time() + reuse + 15
            time.sleep(1)
            while time.time() < stop_by and any(
                t["stopped"] is None for t in pipeline.fargate.task_timelines()
            ):
                time.sleep(0.5)
        tasks = [TaskTimeline(**t) for t in pipeline.fargate.task_timelines()]
    jobs = [JobTimeline.from_item(items[j]) for j in job_ids]
    statuses = Counter(j.status if j.ended is not None else f"unfinished:{j.status}" for j in jobs)
    slots = Slots(
        caps={w.name: w.cap for w in burst.workers},
        vcpu=vcpu,
        stack_vcpu_limit=limit,
        reuse=reuse > 0,
    )
    return Outcome(jobs, tasks, slots, now, statuses, submit_seconds, notes)


def _interleave(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for b in bodies:
        by_worker.setdefault(b["worker"], []).append(b)
    out: list[dict[str, Any]] = []
    lists = list(by_worker.values())
    for i in range(max((len(v) for v in lists), default=0)):
        out += [v[i] for v in lists if i < len(v)]
    return out


def _scan_jobs(ddb: Any, table: str, *, statuses_only: bool = False) -> dict[str, dict[str, Any]]:
    """Every job item, by job id (one paginated Scan: far cheaper than a read per job);
    ``statuses_only``: just the key and the status."""
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    found: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    if statuses_only:
        kwargs.update(ProjectionExpression="pk, #s", ExpressionAttributeNames={"#s": "status"})
    for page in ddb.get_paginator("scan").paginate(**kwargs):
        for raw in page.get("Items", []):
            pk = raw.get("pk", {}).get("S", "")
            if not pk.startswith("job#"):
                continue
            item = {k: des.deserialize(v) for k, v in raw.items()}
            item.setdefault("job_id", pk.removeprefix("job#"))
            found[item["job_id"]] = item
    return found


def add_startup_argument(parser: Any, default: float = MODELLED_STARTUP_SECONDS) -> None:
    parser.add_argument(
        "--startup",
        type=float,
        default=default,
        help=f"modelled Fargate start-up per task, seconds (default {default:g}; 0 = none)",
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
