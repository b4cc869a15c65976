"""Nothing lost: 1,000 jobs through the real handlers and the real worker runtime, with faults.

Wiring (the same the local pipeline uses, driven step by step so faults land where we want):
API handler (``handlers.api``) -> jobs table + SQS FIFO -> an SQS event source emulation
(receive up to 10, ``ReportBatchItemFailures``, redrive to the DLQ after maxReceiveCount) ->
``handlers.launcher`` -> ECS ``RunTask`` in moto -> the worker runtime
(``workers.runtime.lifecycle.run_worker``, in-process) -> ECS "Task State Change" STOPPED
events -> ``handlers.reconciler``; ``handlers.sweep`` runs every few rounds with its clock set
past the hung tasks' timeout. Everything talks to its own moto server process over HTTP
(a subprocess, so the server has the second core to itself).

Injected faults (seeded, so a failure reproduces): worker crashes (exception -> exit 1;
killed outright -> exit 137), permanent worker errors, Spot interruptions (the stop flag the
SIGTERM handler sets, mid-job, then a STOPPED event with stopCode SpotInterruption), RunTask
throttling (ThrottlingException) and capacity errors (RunTask ``failures``), a launcher crash
in the middle of a batch (after RunTask succeeded, before the task ARN is recorded), duplicate
SQS deliveries (a processed message made visible again, and extra copies sent), reconciler
events delivered twice (and late), hung workers past their timeout (only the sweep ends them),
cancels through the API, and Idempotency-Key replays. Array jobs run in the same burst
(``ARRAYS``, fanned out by the launcher's fan-out step, one cancelled before it runs): each is
merged exactly once (one ``results.jsonl`` write), one line per item in item order, every
child counted once, and its end follows from its children's items and its tolerance.

A DLQ may hold, besides jobs' launch messages, drain and fan-out requests a crashing launcher
kept failing: they name no job and nothing waits on them (``_dlq_jobs``).

Why in-process workers: spawning 1,000 ``python -m workers.runtime.run`` processes takes
minutes on 2 cores; the bulk runs the same runtime code (``run_worker``) in this process with
a tiny worker definition. Real worker processes, including a real SIGTERM mid-job, are
exercised by the worker runtime's own tests and the local pipeline's e2e tests.

ECS is moto's, with one fidelity fix: RunTask honours ``clientToken`` as ECS documents it (a
repeated token gets the first answer for 24 hours, a task or a "no capacity" failure alike;
moto ignores the token), so a launcher that resumes a launch whose response it lost does
not double-launch here either, and one that retried a capacity failure under the same
token would never launch.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from components.offline import ACCOUNT_ID, REGION, evaluate_stack

# Everything the pool's threads run is imported here, once: threads importing a package for
# the first time at the same moment can see it partially initialised (ImportError).
from handlers import api, launcher, reconciler
from handlers.sweep import Sweeper
from jobcontract import CONTAINER_NAME, TAG_JOB_ID, Env, JobField, JobStatus
from jobcontract.arrays import child_id, fanout_parent
from jobcontract.dispatch import DRAIN_MESSAGE
from jobcontract.store import JobStore
from tests.authz import recorder
from tests.authz.bindings import fixture_to_stack
from tests.authz.check import problems_in_stacks, rebind
from tests.fixtures.moto_server import WorkerSpec, create_pipeline_resources, topic_tap
from tests.security.moto_process import moto_server_process
from workers.runtime.context import PermanentError, StopRequested
from workers.runtime.definition import WorkerDefinition
from workers.runtime.lifecycle import run_worker

pytestmark = pytest.mark.xdist_group("faults")

SEED = int(os.environ.get("FAULTS_SEED", "20261123"))  # vary it to explore other interleavings
JOBS = int(os.environ.get("FAULTS_JOBS", "1000"))  # the test asserts 1,000 unless overridden
WORKERS = (
    # Named as the stack's seed workers, so the recorded calls are checked against their roles.
    # Caps far below the ~500-job bursts each gets: most jobs park and are started by the
    # dispatch as slots free (jobcontract/dispatch.py), under every fault below.
    WorkerSpec("content-analyzer", max_attempts=3, timeout_seconds=60, max_concurrency=60),
    WorkerSpec("meta-desc-generator", max_attempts=2, timeout_seconds=60, max_concurrency=40),
)
CAPS = {w.name: w.max_concurrency for w in WORKERS}
MAX_ATTEMPTS = {w.name: w.max_attempts for w in WORKERS}
# Worker fates per launched task (the rest succeed).
FATES = {
    "crash": 0.06,  # handler raises -> runtime records the error, exit 1
    "killed": 0.03,  # the process dies without the runtime noticing (OOM kill), exit 137
    "spot": 0.06,  # SIGTERM mid-job (stop flag) + stopCode SpotInterruption, exit 143
    "permanent": 0.02,  # PermanentError -> FAILED by the runtime, exit 0
    "hung": 0.02,  # never finishes, no event: only the sweep can end it
}
RUN_TASK_THROTTLE = 0.05
LAUNCHER_CRASH_AFTER_RUN_TASK = 0.02
RUN_TASK_NO_CAPACITY = 0.05
DUPLICATE_DELIVERY = 0.05
DUPLICATE_EVENT = 0.10
CANCEL_SHARE = 0.02
REPLAY_SHARE = 0.03
# Array jobs in the same burst: ARRAYS parents of ARRAY_ITEMS items in shards of ARRAY_SHARD
# (5 children each, the last of 3 items), every one fanned out by the launcher's fan-out step
# (BATCH_ARRAY_SYNC_CHILDREN below their shard count), so fan-out messages meet the faults too.
# Even-numbered arrays tolerate every failed item (they end SUCCEEDED), odd ones none (one
# child failing its attempts makes them FAILED); the last is cancelled before it runs.
ARRAYS = int(os.environ.get("FAULTS_ARRAYS", "8"))
ARRAY_ITEMS, ARRAY_SHARD = 23, 5
ARRAY_SYNC_CHILDREN = 3


def roll(*parts: object) -> float:
    """A seeded, order-independent random number in [0, 1) for one decision: the same job,
    attempt and delivery always get the same fault, however threads interleave."""
    digest = hashlib.sha256("|".join(map(str, (SEED, *parts))).encode()).hexdigest()
    return int(digest[:13], 16) / 16**13


# --- a moto server of our own ---------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_process() -> Iterator[str]:
    with moto_server_process() as url:
        yield url


# --- fault-injecting ECS client -------------------------------------------------------------


class LauncherCrash(Exception):
    """The launcher Lambda dies mid-batch (not a boto error: nothing in the handler catches
    it, so the whole invocation fails and every message of the batch comes back)."""


@dataclass
class Launch:
    job_id: str
    attempt: int
    task_arn: str
    worker: str


class FaultyEcs:
    """The real (moto) ECS client, plus injected RunTask faults, clientToken idempotency and
    a record of every task actually started."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.lock = threading.Lock()
        self.by_token: dict[str, dict[str, Any]] = {}
        # Calls with one token are one request to ECS: two launchers resuming the same launch
        # at once get one task between them, not one each.
        self.token_locks: dict[str, threading.Lock] = {}
        self.calls: Counter[str] = Counter()
        self.started: list[Launch] = []
        self.live: dict[str, set[str]] = {}  # worker -> tasks started, STOPPED not yet handled
        self.peak: Counter[str] = Counter()  # the most such tasks at once, per worker
        self.stopped_by_api: list[tuple[str, str]] = []  # (task arn, reason)
        self.faults: Counter[str] = Counter()
        # The launcher dies right after this share of successful RunTask calls (whichever
        # thread of the invocation made it: a drain launches side by side).
        self.crash_rate = LAUNCHER_CRASH_AFTER_RUN_TASK

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def run_task(self, **kwargs: Any) -> dict[str, Any]:
        token = str(kwargs.get("clientToken"))
        with self.lock:
            token_lock = self.token_locks.setdefault(token, threading.Lock())
        with token_lock:
            return self._run_task(token, kwargs)

    def _run_task(self, token: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if token in self.by_token:
                self.faults["client_token_replay"] += 1
                return self.by_token[token]
            self.calls[token] += 1
            chance = roll("run_task", token, self.calls[token])
        if chance < RUN_TASK_THROTTLE:
            with self.lock:
                self.faults["run_task_throttled"] += 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "RunTask"
            )
        if chance < RUN_TASK_THROTTLE + RUN_TASK_NO_CAPACITY:
            answer: dict[str, Any] = {
                "tasks": [],
                "failures": [{"reason": "Capacity is unavailable at this time. Please try "
                                        "again later or in a different availability zone"}],
            }
            with self.lock:
                self.faults["run_task_no_capacity"] += 1
                self.by_token[token] = answer  # ECS replays an answer, failures included
            return answer
        response: dict[str, Any] = self.real.run_task(**kwargs)
        env = {
            e["name"]: e["value"]
            for o in kwargs["overrides"]["containerOverrides"]
            for e in o.get("environment", [])
        }
        task_arn = response["tasks"][0]["taskArn"]
        job_id = env[Env.JOB_ID]
        with self.lock:
            worker = job_id.rsplit("_", 1)[0]
            self.live.setdefault(worker, set()).add(task_arn)  # holds a slot until released
            self.peak[worker] = max(self.peak[worker], len(self.live[worker]))
            self.by_token[token] = response
            self.started.append(
                Launch(job_id, int(env[Env.JOB_ATTEMPT]), task_arn, job_id.rsplit("_", 1)[0])
            )
        if roll("crash-after-run-task", token) < self.crash_rate:
            with self.lock:
                self.faults["launcher_crash_after_run_task"] += 1
            raise LauncherCrash("launcher died between RunTask and recording the task")
        return response

    def stop_task(self, **kwargs: Any) -> dict[str, Any]:
        with self.lock:
            self.stopped_by_api.append((kwargs["task"], kwargs.get("reason", "")))
        return dict(self.real.stop_task(**kwargs))


class CountingS3:
    """Counts result writes per job (a second success would write a second time) and array
    merges per parent (a second merge would write ``results.jsonl`` a second time)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.result_writes: Counter[str] = Counter()
        self.merge_writes: Counter[str] = Counter()
        self.merged: dict[str, bytes] = {}  # parent id -> its last merged JSON Lines

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def put_object(self, **kwargs: Any) -> Any:
        key = kwargs["Key"]
        if key.startswith("results/") and key.endswith("/result.json"):  # not checkpoints
            self.result_writes[key.split("/")[2]] += 1
        if key.startswith("results/") and key.endswith("/results.jsonl"):  # an array's merge
            self.merge_writes[key.split("/")[2]] += 1
            self.merged[key.split("/")[2]] = kwargs["Body"]
        return self.real.put_object(**kwargs)


# --- the harness ----------------------------------------------------------------------------


@dataclass
class Harness:
    endpoint: str
    ecs: FaultyEcs
    s3: CountingS3
    res: Any
    sqs: Any = None
    ddb: Any = None  # one client shared by the in-process workers (creation is not thread-safe)
    pending_events: list[dict[str, Any]] = field(default_factory=list)
    hung: dict[str, Launch] = field(default_factory=dict)  # task arn -> launch
    fates: Counter[str] = field(default_factory=Counter)
    succeeded_transitions: Counter[str] = field(default_factory=Counter)
    parked_seen: int = 0  # jobs that parked (waited for a slot): the caps bound
    launcher_invocations: int = 0
    launched_seen: int = 0
    forced: dict[str, str] = field(default_factory=dict)  # job id -> the fate of every launch
    lock: threading.Lock = field(default_factory=threading.Lock)
    returning: list[tuple[str, str]] = field(default_factory=list)  # (queue url, receipt)
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=8))

    def count(self, what: str) -> None:
        with self.lock:
            self.fates[what] += 1

    # -- API ---------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        event = {
            "resource": path, "path": path, "httpMethod": method,
            "headers": headers or {}, "multiValueHeaders": None,
            "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": None, "body": None if body is None else json.dumps(body),
            "isBase64Encoded": False, "requestContext": {"requestId": "faults", "stage": "v1"},
        }
        out = api.handler(event, None)
        return int(out["statusCode"]), json.loads(out["body"])

    # -- SQS event source --------------------------------------------------------------
    def launcher_round(self) -> int:
        """Poll every queue until it is empty, like the Lambda poller: several concurrent
        invocations per queue, batches of up to 10."""
        with self.lock:
            due, self.returning = self.returning, []
        for queue_url, receipt in due:  # their visibility timeout has elapsed since last round
            with _quiet(ClientError):
                self.sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=0)
        futures = [self.pool.submit(self._poll, worker)
                   for worker in self.res.workers.values() for _ in range(3)]
        return sum(f.result() for f in futures)

    def _poll(self, worker: Any) -> int:
        handled = 0
        while True:
            got = self.sqs.receive_message(
                QueueUrl=worker.queue_url, MaxNumberOfMessages=10,
                AttributeNames=["All"], VisibilityTimeout=30,
            ).get("Messages", [])
            if not got:
                return handled
            handled += len(got)
            records = [{
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"], "attributes": m.get("Attributes", {}),
                "eventSource": "aws:sqs", "eventSourceARN": worker.queue_arn,
            } for m in got]
            with self.lock:
                self.launcher_invocations += 1
            try:
                failed = {f["itemIdentifier"] for f in
                          launcher.handler({"Records": records})["batchItemFailures"]}
            except LauncherCrash:
                failed = {r["messageId"] for r in records}  # the invocation failed
            for m in got:
                receives = m.get("Attributes", {}).get("ApproximateReceiveCount")
                if m["MessageId"] in failed:
                    # Comes back after its visibility timeout (next round).
                    with self.lock:
                        self.returning.append((worker.queue_url, m["ReceiptHandle"]))
                elif roll("redeliver", m["Body"], receives) < DUPLICATE_DELIVERY:
                    # At-least-once: a processed message is delivered again (next round).
                    self.count("duplicate_sqs_delivery")
                    with self.lock:
                        self.returning.append((worker.queue_url, m["ReceiptHandle"]))
                else:
                    # An invocation slower than the visibility timeout (a loaded runner): the
                    # message was received again and this handle is stale (SQS: delete takes
                    # the latest receipt handle); it comes back, as on AWS.
                    with _quiet(ClientError):
                        self.sqs.delete_message(
                            QueueUrl=worker.queue_url, ReceiptHandle=m["ReceiptHandle"])

    # -- Fargate -----------------------------------------------------------------------
    def run_new_tasks(self) -> int:
        with self.ecs.lock:
            new = self.ecs.started[self.launched_seen:]
            self.launched_seen = len(self.ecs.started)
        fates = [self._fate(launch) for launch in new]
        results = list(self.pool.map(self._run_task, new, fates))
        for launch, fate, code in zip(new, fates, results, strict=True):
            self.fates[fate] += 1
            if fate == "hung":
                self.hung[launch.task_arn] = launch
                continue
            self._stopped(launch, code, fate)
        return len(new)

    def _fate(self, launch: Launch) -> str:
        if launch.job_id in self.forced:
            return self.forced[launch.job_id]
        chance, acc = roll("fate", launch.job_id, launch.attempt), 0.0
        for fate, share in FATES.items():
            acc += share
            if chance < acc:
                return fate
        return "ok"

    def _run_task(self, launch: Launch, fate: str) -> int | None:
        class Killed(BaseException):
            """The process is gone (SIGKILL): nothing in the runtime runs after this."""

        def handle(ctx: Any) -> dict[str, Any]:
            ctx.progress(0, 2)
            if fate == "crash":
                raise RuntimeError("worker bug")
            if fate in ("killed", "hung"):
                raise Killed()
            if fate == "permanent":
                raise PermanentError("input cannot be processed")
            if fate == "spot":
                ctx.progress(1, 2)
                ctx._stop.set("interrupted")  # what the SIGTERM handler does
                ctx.check_stop(1, 2)
                raise StopRequested("interrupted", 1, 2)
            # One entry per item, in order: an array job's merge maps them to its items.
            return {"items": [{"item": x} for x in ctx.input.get("items", [])],
                    "attempt": ctx.attempt}

        definition = WorkerDefinition(name=launch.worker, handler=handle)
        env = {
            Env.JOBS_TABLE: self.res.table_name, Env.RESULTS_BUCKET: self.res.bucket,
            Env.WORKER_NAME: launch.worker, Env.JOB_ID: launch.job_id,
            Env.JOB_ATTEMPT: str(launch.attempt), Env.TASK_ARN: launch.task_arn,
            Env.HEARTBEAT_INTERVAL_SECONDS: "3600", Env.MODEL_BACKEND: "offline",
            # A task that ended its job frees its slot and asks for a drain itself.
            Env.LAUNCH_QUEUE_URL: self.res.workers[launch.worker].queue_url,
        }
        try:
            with open(os.devnull, "w") as sink:
                return run_worker(definition, env, store=JobStore(self.res.table_name, self.ddb),
                                  s3=self.s3, install_signal_handlers=False, stream=sink)
        except Killed:
            return None

    def _stopped(self, launch: Launch, code: int | None, fate: str) -> None:
        exit_code = {"killed": 137}.get(fate, code)
        detail: dict[str, Any] = {
            "taskArn": launch.task_arn, "clusterArn": self.res.cluster_arn,
            "taskDefinitionArn": self.res.workers[launch.worker].task_definition_arn,
            "startedBy": launch.job_id, "lastStatus": "STOPPED", "desiredStatus": "STOPPED",
            "stopCode": "SpotInterruption" if fate == "spot" else "EssentialContainerExited",
            "stoppedReason": {"spot": "Your Spot Task was interrupted.",
                              "killed": "OutOfMemoryError: Container killed due to memory usage"
                              }.get(fate, "Essential container in task exited"),
            "containers": [{"name": CONTAINER_NAME, "exitCode": exit_code,
                            "reason": "OutOfMemoryError" if fate == "killed" else ""}],
            "overrides": {"containerOverrides": [{"name": CONTAINER_NAME, "environment": [
                {"name": Env.JOB_ID, "value": launch.job_id},
                {"name": Env.JOB_ATTEMPT, "value": str(launch.attempt)}]}]},
            "tags": [{"key": TAG_JOB_ID, "value": launch.job_id}],
        }
        if exit_code is None:
            detail["containers"][0].pop("exitCode")
        with _quiet(ClientError):
            self.ecs.real.stop_task(cluster=self.res.cluster_arn, task=launch.task_arn)
        self.pending_events.append({
            "version": "0", "id": f"evt-{launch.task_arn[-12:]}", "source": "aws.ecs",
            "detail-type": "ECS Task State Change", "detail": detail,
        })

    def deliver_events(self) -> None:
        """EventBridge is at-least-once, concurrent and unordered: some events arrive twice
        at once, some again a round later (after the job moved on)."""
        events, self.pending_events = self.pending_events, []
        late: list[dict[str, Any]] = []

        def deliver(event: dict[str, Any]) -> None:
            detail = event["detail"]
            reconciler.handler(event)
            with self.ecs.lock:  # its slot is given back now
                worker = str(detail["startedBy"]).rsplit("_", 1)[0]
                self.ecs.live.get(worker, set()).discard(detail["taskArn"])
            key = (detail["startedBy"], detail["taskArn"])
            chance = roll("event", *key)
            if chance < DUPLICATE_EVENT:
                self.count("duplicate_event")
                if chance < DUPLICATE_EVENT / 2:
                    reconciler.handler(event)
                else:
                    with self.lock:
                        late.append(event)

        list(self.pool.map(deliver, events))
        self.pending_events.extend(e for e in late if not e.get("redelivered"))
        for e in late:
            e["redelivered"] = True

    def sweep(self, minutes_ahead: float) -> dict[str, Any]:
        """The periodic sweep, its clock set ahead (hung tasks are now past their timeout);
        tasks it stops produce their STOPPED events like any other."""
        before = len(self.ecs.stopped_by_api)
        report = Sweeper(now=datetime.now(UTC) + timedelta(minutes=minutes_ahead)).run()
        for task_arn, reason in self.ecs.stopped_by_api[before:]:
            launch = self.hung.pop(task_arn, None)
            if launch is None:
                continue
            self._stopped(launch, 137, "hung")
            self.pending_events[-1]["detail"]["stoppedReason"] = reason
            self.pending_events[-1]["detail"]["stopCode"] = "UserInitiated"
        return dict(report.as_dict())


class _quiet:
    def __init__(self, *types: type[BaseException]) -> None:
        self.types = types

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: Any, exc: Any, tb: Any) -> bool:
        return typ is not None and issubclass(typ, self.types)


def _all_jobs(ddb: Any, table: str) -> dict[str, dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    de = TypeDeserializer()
    out: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        for raw in page["Items"]:
            item = {k: de.deserialize(v) for k, v in raw.items()}
            if item.get("kind") == "job":
                out[str(item[JobField.JOB_ID])] = item
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _dlq_jobs(bodies: list[str]) -> tuple[set[str], Counter[str]]:
    """The jobs whose launch messages are in a DLQ, and the other requests there by kind.

    A launch queue carries three kinds of message (``handlers.launcher.Launcher.process``):
    a job's launch, a drain request and an array job's fan-out step. The two requests name
    no job: a drain that a crashing launcher kept failing is redundant (the reconciler asks
    again at every task's stop and the sweep while any job waits), and a lost fan-out step is
    sent again by the sweep (``handlers.sweep``, a parent whose children are not all written).
    Anything else in a DLQ is a message the launcher cannot read: a bug."""
    jobs: set[str] = set()
    requests: Counter[str] = Counter()
    for body in bodies:
        if body.strip() == DRAIN_MESSAGE:
            requests["drain"] += 1
        elif fanout_parent(body) is not None:
            requests["fanout"] += 1
        else:
            try:
                jobs.add(launcher.parse_message(body)[0])
            except (ValueError, KeyError, TypeError) as exc:
                raise AssertionError(f"unreadable message in a DLQ: {body!r}") from exc
    return jobs, requests


def _drain(queue_url: str, sqs: Any) -> list[dict[str, Any]]:
    found = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                  VisibilityTimeout=300).get("Messages", [])
        if not got:
            return found
        found += got


# --- the test -------------------------------------------------------------------------------


def test_thousand_jobs_with_faults_nothing_lost_nothing_doubled(
    moto_process: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)  # sampling of cancels and duplicate sends
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_process)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    urllib.request.urlopen(urllib.request.Request(
        f"{moto_process}/moto-api/reset", data=b"", method="POST")).read()
    res = create_pipeline_resources(moto_process, WORKERS, prefix="faults")
    trace = recorder.Trace(tmp_path / "aws-calls.jsonl")
    recorder.install(trace.append)  # every call the handlers and the runtime make
    request.addfinalizer(recorder.uninstall)
    for key, value in res.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BATCH_REDRIVE_SECONDS", "60")
    monkeypatch.setenv(Env.ARRAY_SYNC_CHILDREN, str(ARRAY_SYNC_CHILDREN))

    from handlers import _aws
    from jobcontract import store as store_module

    _aws.reset_clients()
    ecs = FaultyEcs(boto3.client("ecs"))
    _aws.set_client("ecs", ecs)
    s3 = CountingS3(boto3.client("s3"))
    _aws.set_client("s3", s3)  # the handlers' writes too: an array job's merge
    sqs = boto3.client("sqs")
    # Failure notifications land in a queue subscribed to the topic.
    sink_url = topic_tap(res.topic_arn, "faults-notifications")

    h = Harness(moto_process, ecs, s3, res, sqs=sqs, ddb=boto3.client("dynamodb"))
    # Count every successful transition to SUCCEEDED, whoever makes it.
    real_transition = store_module.JobStore.transition

    def counting_transition(self: Any, job_id: str, current: Any, new: Any, **kw: Any) -> Any:
        out = real_transition(self, job_id, current, new, **kw)
        if JobStatus(new) == JobStatus.SUCCEEDED:
            h.succeeded_transitions[job_id] += 1
        return out

    monkeypatch.setattr(store_module.JobStore, "transition", counting_transition)
    # Count the jobs that had to wait for a slot (parked), to show the caps really bound.
    from jobcontract import dispatch as dispatch_module

    real_park = dispatch_module.Dispatch.park

    def counting_park(self: Any, *args: Any, **kw: Any) -> bool:
        parked = real_park(self, *args, **kw)
        h.parked_seen += int(parked)
        return parked

    monkeypatch.setattr(dispatch_module.Dispatch, "park", counting_park)
    # A task that frees its slot at its job's end (before its STOPPED event) holds no slot
    # from then on. The free runs under the lock RunTask's record takes, so no task launched
    # into the freed slot is counted before this one leaves the count: exact, not lenient.
    real_free = dispatch_module.Dispatch.free_slot

    def tracked_free(self: Any, lease: str, job_id: str, attempt: int) -> str | None:
        with ecs.lock:
            freed = real_free(self, lease, job_id, attempt)
            if freed is not None:
                arns = [x.task_arn for x in ecs.started if f"slot#{x.job_id}-{x.attempt}" == lease]
                for arn in arns:
                    ecs.live.get(job_id.rsplit("_", 1)[0], set()).discard(arn)
        if freed is not None:
            h.count("slot_freed_by_task")
        return freed

    monkeypatch.setattr(dispatch_module.Dispatch, "free_slot", tracked_free)

    # 1) submit: 1,000 accepted jobs, some replays with the same Idempotency-Key.
    def submit(i: int) -> tuple[str, str, bool]:
        worker = WORKERS[0].name if i % 3 else WORKERS[1].name
        body = {"worker": worker, "input": {"items": [f"item-{i}"]}}
        key = {"Idempotency-Key": f"faults-{i}"}
        status, out = h.api("POST", "/jobs", body, key)
        assert status == 202, out
        replayed = roll("replay", i) < REPLAY_SHARE
        if replayed:
            again, out2 = h.api("POST", "/jobs", body, key)
            assert again in (200, 202) and out2["job_id"] == out["job_id"], out2
        return out["job_id"], worker, replayed

    submitted = list(h.pool.map(submit, range(JOBS)))
    accepted = {job_id: worker for job_id, worker, _ in submitted}
    replays = sum(replayed for _, _, replayed in submitted)
    assert len(accepted) == JOBS

    # ... and array jobs, replays included.
    def submit_array(a: int) -> tuple[str, str, bool]:
        worker = WORKERS[a % 2].name
        body: dict[str, Any] = {
            "worker": worker, "items": [f"array-{a}-item-{i}" for i in range(ARRAY_ITEMS)],
            "shard_size": ARRAY_SHARD, "max_failed_item_share": 1 if a % 2 == 0 else 0,
        }
        key = {"Idempotency-Key": f"faults-array-{a}"}
        status, out = h.api("POST", "/jobs", body, key)
        assert status == 202 and out["children"] == -(-ARRAY_ITEMS // ARRAY_SHARD), out
        replayed = roll("replay-array", a) < 0.25
        if replayed:
            again, out2 = h.api("POST", "/jobs", body, key)
            assert again in (200, 202) and out2["job_id"] == out["job_id"], out2
        return out["job_id"], worker, replayed

    arrays = list(h.pool.map(submit_array, range(ARRAYS)))
    parents = {parent_id: worker for parent_id, worker, _ in arrays}
    replays += sum(replayed for _, _, replayed in arrays)
    shards = -(-ARRAY_ITEMS // ARRAY_SHARD)
    children = {child_id(p, i): (p, w) for p, w in parents.items() for i in range(shards)}
    array_index = {parent_id: a for a, (parent_id, _, _) in enumerate(arrays)}
    # A child of each of the first two arrays fails for good: array 0 tolerates its failed
    # items (SUCCEEDED), array 1 does not (FAILED).
    h.forced.update({child_id(arrays[a][0], 1): "permanent" for a in (0, 1)})
    cancelled_array = arrays[-1][0]
    status, _ = h.api("POST", f"/jobs/{cancelled_array}/cancel")
    assert status == 202
    # Extra copies of some messages (a producer retry, a redrive): duplicates at the source.
    for job_id, worker in rng.sample(sorted(accepted.items()), 30):
        from jobcontract import queue_message

        msg = queue_message(job_id, 0)
        msg["MessageDeduplicationId"] += "-dup"
        sqs.send_message(QueueUrl=res.workers[worker].queue_url, **msg)
    # Some cancels before anything runs.
    cancelled_by_api = set()
    for job_id in rng.sample(sorted(accepted), int(JOBS * CANCEL_SHARE)):
        status, _ = h.api("POST", f"/jobs/{job_id}/cancel")
        assert status in (200, 202)
        cancelled_by_api.add(job_id)

    # 2) run until the system is quiet.
    rounds = 0
    for rounds in range(1, 200):
        handled = h.launcher_round()
        ran = h.run_new_tasks()
        h.deliver_events()
        report: dict[str, Any] = {}
        idle = handled == 0 and ran == 0 and not h.returning
        if rounds % 3 == 0 or idle:
            report = h.sweep(minutes_ahead=30)
            h.deliver_events()
        if not idle:
            continue  # something moved: poll again before paying for a full table scan
        jobs = _all_jobs(h.ddb, res.table_name)
        active = [j for j in jobs.values() if not JobStatus(j[JobField.STATUS]).terminal]
        if not active and not h.pending_events and not h.hung:
            break
        if not any(report.get(k) for k in ("redriven", "stopped", "settled")) and not (
                h.pending_events):
            # Nothing moves: what is left must be parked in a DLQ (checked below).
            break
    elapsed = time.monotonic() - started

    # 3) the invariants.
    jobs = _all_jobs(boto3.client("dynamodb"), res.table_name)
    dlq_jobs, dlq_requests = _dlq_jobs(
        [m["Body"] for w in res.workers.values() for m in _drain(w.dlq_url, sqs)])
    notified = {json.loads(m["Body"]).get("job_id") for m in _drain(sink_url, sqs)}
    statuses = Counter(str(j[JobField.STATUS]) for j in jobs.values())
    print(f"\n{JOBS} jobs in {elapsed:.1f} s, {rounds} rounds, "
          f"{h.launcher_invocations} launcher invocations, {len(ecs.started)} tasks started")
    print("final statuses:", dict(sorted(statuses.items())))
    print("worker fates:", dict(sorted(h.fates.items())))
    print("ECS faults:", dict(sorted(ecs.faults.items())))
    print(f"replayed submits: {replays}, cancelled via API: {len(cancelled_by_api)}, "
          f"in a DLQ: {len(dlq_jobs)} jobs and {dict(dlq_requests)}, "
          f"failure notifications: {len(notified - {None})}")
    print("array jobs:", dict(Counter(str(jobs[p][JobField.STATUS]) for p in parents)))

    # Every job accepted is there: the singles, the parents, every child of a parent that
    # ran (the cancelled one's unwritten shards were counted CANCELLED without a job).
    written = {c for c, (p, _) in children.items() if p != cancelled_array}
    assert set(jobs) - {c for c, (p, _) in children.items() if p == cancelled_array} == (
        set(accepted) | set(parents) | written), "a job was lost or invented"
    accepted.update(parents)
    accepted.update({c: w for c, (_, w) in children.items()})
    stuck = {jid: j[JobField.STATUS] for jid, j in jobs.items()
             if not JobStatus(j[JobField.STATUS]).terminal and jid not in dlq_jobs}
    assert stuck == {}, f"{len(stuck)} jobs neither terminal nor in a DLQ"
    for job_id, job in jobs.items():
        status = JobStatus(job[JobField.STATUS])
        attempts = int(job.get(JobField.ATTEMPTS, 0))
        assert attempts <= MAX_ATTEMPTS[accepted[job_id]], (job_id, attempts)
        if status == JobStatus.FAILED:
            error = job.get(JobField.ERROR) or {}
            assert error.get("type") and error.get("message"), (job_id, error)
            if job_id in children:  # a child is never reported: its parent is, once
                assert job_id not in notified, f"FAILED child {job_id} was reported"
            else:
                assert job_id in notified, f"FAILED job {job_id} was not reported on the topic"
        if status == JobStatus.SUCCEEDED:
            assert job.get(JobField.RESULT_KEY), job_id
        assert h.succeeded_transitions[job_id] == (1 if status == JobStatus.SUCCEEDED else 0), (
            job_id, status, h.succeeded_transitions[job_id])
        assert s3.result_writes[job_id] <= 1, f"{job_id}: {s3.result_writes[job_id]} result writes"
    for job_id in cancelled_by_api | {cancelled_array}:
        assert jobs[job_id][JobField.STATUS] == JobStatus.CANCELLED.value
    # Array jobs: each ended, merged exactly once, one line per item in item order, every
    # child counted once, and the end follows from the children's items and the tolerance.
    for parent_id in parents:
        parent = jobs[parent_id]
        status = JobStatus(parent[JobField.STATUS])
        assert status.terminal, (parent_id, status)
        assert s3.merge_writes[parent_id] == 1, (parent_id, s3.merge_writes[parent_id])
        lines = [json.loads(x) for x in s3.merged[parent_id].decode().splitlines()]
        assert [x["index"] for x in lines] == list(range(ARRAY_ITEMS)), parent_id
        failed = {x["index"] for x in lines if "error" in x}
        assert parent[JobField.ITEMS] == {"total": ARRAY_ITEMS, "failed": len(failed),
                                          "succeeded": ARRAY_ITEMS - len(failed)}, parent_id
        assert parent[JobField.DONE_SHARDS] == {str(i) for i in range(shards)}, parent_id
        assert sum(parent[JobField.CHILDREN].values()) == shards, parent[JobField.CHILDREN]
        kids = {i: jobs.get(child_id(parent_id, i)) for i in range(shards)}
        for i, kid in kids.items():
            mine = [x for x in lines if x["shard"] == i]
            ok = kid is not None and kid[JobField.STATUS] == JobStatus.SUCCEEDED.value
            assert all(("result" in x) == ok for x in mine), (parent_id, i, kid)
            if ok:
                offset = i * ARRAY_SHARD
                assert [x["result"]["item"] for x in mine] == [
                    f"array-{array_index[parent_id]}-item-{offset + k}"
                    for k in range(len(mine))], (parent_id, i)
        if parent_id == cancelled_array:
            continue
        assert status == (JobStatus.FAILED if failed and parent.get(
            JobField.MAX_FAILED_ITEM_SHARE, 0) < 1 else JobStatus.SUCCEEDED), (parent_id, status)
    first, second = arrays[0][0], arrays[1][0]
    assert jobs[first][JobField.STATUS] == JobStatus.SUCCEEDED.value
    assert jobs[first][JobField.ITEMS]["failed"] >= ARRAY_SHARD  # the forced child's items
    assert jobs[second][JobField.STATUS] == JobStatus.FAILED.value
    assert second in notified and not notified & set(children), "children are never reported"
    # Launches: never two tasks for one attempt; never more runs than max attempts.
    per_attempt = Counter((launch.job_id, launch.attempt) for launch in ecs.started)
    assert max(per_attempt.values()) == 1, per_attempt.most_common(3)
    runs = Counter(launch.job_id for launch in ecs.started)
    assert all(runs[j] <= MAX_ATTEMPTS[w] for j, w in accepted.items())
    # Dispatch: the bursts never took a worker past its cap, and parked jobs were started.
    print("peak tasks holding a slot:", dict(ecs.peak), "caps:", CAPS)
    assert all(ecs.peak[w] <= CAPS[w] for w in CAPS), (dict(ecs.peak), CAPS)
    assert all(ecs.peak[w] == CAPS[w] for w in CAPS), "the bursts did not reach the caps"
    assert h.parked_seen > JOBS // 2, h.parked_seen
    # The faults really happened (the test is not vacuous).
    for fate in ("crash", "killed", "spot", "permanent", "hung", "duplicate_event",
                 "duplicate_sqs_delivery", "slot_freed_by_task"):
        assert h.fates[fate] > 0, fate
    for fault in ("run_task_throttled", "run_task_no_capacity", "launcher_crash_after_run_task"):
        assert ecs.faults[fault] > 0, fault
    assert statuses[JobStatus.SUCCEEDED.value] > JOBS * 0.7
    assert statuses[JobStatus.FAILED.value] > 0
    # Every AWS call made under these faults is authorized by the dev and prod stacks' policies.
    recorder.uninstall()
    calls = trace.calls()
    assert {c.principal.kind for c in calls} >= {"function", "task"}
    assert not [c for c in calls if c.principal.kind == "unattributed"]
    dev = evaluate_stack("dev")
    stacks = {"dev": dev, "prod": evaluate_stack("prod")}
    bound = rebind(calls, fixture_to_stack(res, dev))
    report = problems_in_stacks(bound, dev, stacks, ACCOUNT_ID, REGION)
    assert not report, "\n".join(report[:20])
    # Timing is printed, not asserted: a shared 2-core runner under load would make it flaky.


def test_dlq_bookkeeping_tells_requests_from_jobs() -> None:
    """A drain or fan-out request in a DLQ names no job (the 1,000-job test once died on a
    drain there with KeyError 'job_id'); an unreadable message still fails the test."""
    from jobcontract import queue_message
    from jobcontract.arrays import fanout_message
    from jobcontract.dispatch import drain_message

    job = "content-analyzer_" + "a" * 32
    bodies = [queue_message(job, 1)["MessageBody"], drain_message()["MessageBody"],
              fanout_message(job)["MessageBody"], drain_message()["MessageBody"]]
    assert _dlq_jobs(bodies) == ({job}, Counter({"drain": 2, "fanout": 1}))
    with pytest.raises(AssertionError, match="unreadable message in a DLQ"):
        _dlq_jobs(['{"something": "else"}'])


# --- a sample with real worker processes -----------------------------------------------------

SLOW_WORKER = '''
import time

from workers.runtime import worker


@worker(name="slowpoke")
def handle(ctx):
    """Sleeps on its first attempt when asked (so it can be interrupted), crashes when asked."""
    if ctx.input.get("crash"):
        raise RuntimeError("asked to crash")
    total = 40 if ctx.input.get("slow") and ctx.attempt == 1 else 2
    for done in range(total):
        ctx.check_stop(done, total)
        ctx.progress(done, total)
        time.sleep(0.25)
    return {"done": total, "attempt": ctx.attempt}
'''


def test_real_worker_processes_sigterm_and_crash(
    moto_process: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A sample through real ``python -m workers.runtime.run`` processes: a real SIGTERM
    mid-job (Spot interruption) is retried and then succeeds once; a worker that crashes on
    every attempt ends FAILED after max attempts and is reported; nothing is doubled."""
    import signal

    (tmp_path / "slowpoke").mkdir()
    (tmp_path / "slowpoke" / "main.py").write_text(SLOW_WORKER)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    aws = {"AWS_ENDPOINT_URL": moto_process, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    for key, value in aws.items():
        monkeypatch.setenv(key, value)
    urllib.request.urlopen(urllib.request.Request(
        f"{moto_process}/moto-api/reset", data=b"", method="POST")).read()
    spec = WorkerSpec("slowpoke", max_attempts=3, input_schema={"type": "object"})
    res = create_pipeline_resources(moto_process, [spec], prefix="real")
    for key, value in res.env().items():
        monkeypatch.setenv(key, value)
    from handlers import _aws

    _aws.reset_clients()
    ecs = FaultyEcs(boto3.client("ecs"))
    _aws.set_client("ecs", ecs)
    sqs = boto3.client("sqs")
    sink_url = topic_tap(res.topic_arn, "real-notifications")
    h = Harness(moto_process, ecs, CountingS3(boto3.client("s3")), res, sqs=sqs,
                ddb=boto3.client("dynamodb"))
    inputs = [{"slow": True}, {"slow": True}, {}, {}, {"crash": True}]
    jobs = {}
    for job_input in inputs:
        status, out = h.api("POST", "/jobs", {"worker": "slowpoke", "input": job_input})
        assert status == 202, out
        jobs[out["job_id"]] = job_input
    exit_codes: Counter[int] = Counter()
    states: dict[str, str] = {}
    for _ in range(12):
        h.launcher_round()
        with ecs.lock:
            new = ecs.started[h.launched_seen:]
            h.launched_seen = len(ecs.started)
        procs = []
        for launch in new:
            env = {**os.environ, **aws, **res.env(), Env.WORKER_NAME: "slowpoke",
                   Env.JOB_ID: launch.job_id, Env.JOB_ATTEMPT: str(launch.attempt),
                   Env.TASK_ARN: launch.task_arn, Env.MODEL_BACKEND: "offline",
                   Env.HEARTBEAT_INTERVAL_SECONDS: "1"}
            procs.append((launch, subprocess.Popen(
                [sys.executable, "-m", "workers.runtime.run", "--worker", "slowpoke",
                 "--workers-dir", str(tmp_path)], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        for launch, proc in procs:
            interrupted = jobs[launch.job_id].get("slow") and launch.attempt == 1
            if interrupted:  # wait until it is RUNNING, then the Spot reclaim
                deadline = time.monotonic() + 120  # process start is slow on a loaded runner
                status = ""
                while time.monotonic() < deadline and proc.poll() is None:
                    item = h.ddb.get_item(TableName=res.table_name,
                                          Key={"pk": {"S": f"job#{launch.job_id}"}})["Item"]
                    status = item[JobField.STATUS]["S"]
                    if status == JobStatus.RUNNING.value:
                        break
                    time.sleep(0.1)
                assert status == JobStatus.RUNNING.value, (launch, status, proc.poll())
                time.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
            exit_codes[code] += 1
            h._stopped(launch, code, "spot" if interrupted else "ok")
        h.deliver_events()
        states = {jid: h.ddb.get_item(TableName=res.table_name, Key={"pk": {"S": f"job#{jid}"}}
                                      )["Item"][JobField.STATUS]["S"] for jid in jobs}
        if all(JobStatus(s).terminal for s in states.values()) and not h.pending_events:
            break
    print(f"\nreal worker processes: {len(ecs.started)} runs, exit codes {dict(exit_codes)}, "
          f"final {Counter(states.values())}")
    from jobcontract import WorkerExit

    assert exit_codes[WorkerExit.INTERRUPTED] == 2, exit_codes  # the real SIGTERMs
    assert exit_codes[WorkerExit.CRASH] == 3, exit_codes  # crash x max attempts
    notified = {json.loads(m["Body"]).get("job_id") for m in _drain(sink_url, sqs)}
    runs = Counter(launch.job_id for launch in ecs.started)
    for job_id, job_input in jobs.items():
        if job_input.get("crash"):
            assert states[job_id] == JobStatus.FAILED.value
            assert runs[job_id] == 3 and job_id in notified
        else:
            assert states[job_id] == JobStatus.SUCCEEDED.value
            assert runs[job_id] == (2 if job_input.get("slow") else 1)
    results = boto3.client("s3").list_objects_v2(Bucket=res.bucket, Prefix="results/")
    keys = [o["Key"] for o in results.get("Contents", [])]
    assert sorted(keys) == sorted(f"results/slowpoke/{j}/result.json" for j, i in jobs.items()
                                  if not i.get("crash"))


@pytest.mark.parametrize("reason", [
    "Timeout: job ran longer than its 60 s timeout",
    "Heartbeat: no heartbeat for 400 s (limit 300 s)",
])
def test_sweep_stopped_hung_worker_is_not_reported_as_oom(reason: str) -> None:
    """A hung worker the sweep stops (StopTask 'Timeout: ...' / 'Heartbeat: ...', then SIGKILL
    when stopTimeout runs out -> exit 137) is a timeout, not an out-of-memory kill."""
    from handlers.stopped_task import StoppedTask, classify

    task = StoppedTask.from_detail({
        "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/0", "stopCode": "UserInitiated",
        "stoppedReason": reason, "containers": [{"name": CONTAINER_NAME, "exitCode": 137}],
    })
    assert classify(task)["type"] in ("Timeout", "HeartbeatLost")
