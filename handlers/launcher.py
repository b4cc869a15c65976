"""Launcher: the stack's launch queue (SQS FIFO) -> one Fargate task per claimed slot.

Per message ``{"job_id", "attempt"}``:

1. Read the job. Skip (delete the message) when it is gone, terminal, cancelled or the message
   is stale (its attempt is not the job's current one): duplicates are harmless.
2. Claim a slot and the job in one transaction (``jobcontract.dispatch``): ``QUEUED ->
   DISPATCHED`` with ``attempts + 1`` and the task's lease, conditional on the worker's cap,
   the stack's vCPU budget (``fargateVcpuLimit``), and on no older job of the worker waiting
   and no reuse task of it idle. Only one invocation can win a claim, so only one can launch
   this attempt.
3. No slot: the job *parks* (``waiting_since``) and its message is deleted: it waits in the
   jobs table, not in SQS (no receive spent, never the DLQ). After the batch the launcher
   drains: free slots go to parked jobs, oldest first per worker, the least-served worker
   first. Drain messages (``{"drain": true}``, sent by the reconciler when a task stopped and
   by the sweep) run the same drain.
4. ``RunTask`` with a ``clientToken`` derived from (job id, attempt): ECS treats a repeated
   call with the same token as the same launch (and replays its answer for 24 h). Spot
   without capacity falls back once to on-demand Fargate when the worker allows it. The job's
   ``launch`` map (``LaunchState``) records the switch before the fallback RunTask, and a
   new try after ECS answered "no task started", so a resumed launch repeats exactly the
   call whose outcome is unknown and a retry after a capacity shortage is not replayed.
   RunTask calls are paced by a token bucket: ECS allows 20 launches/s sustained with a burst
   of 100 per account and Region, shared here by the launcher's concurrent invocations.
5. Record the task ARN (conditional on DISPATCHED + attempt); the lease finds its task
   through the job it runs (``current_job``), so it needs no write of its own.

Throttling, capacity and transient errors leave the claim in place and return the message
as a batch item failure. When it comes back, a job that is DISPATCHED on the next attempt
with no task ARN is *resumed*: RunTask again with the same client token (so a launch whose
response was lost is not duplicated). Permanent launch errors (bad task definition, access
denied) fail the job and free its slot. A message that keeps failing lands in the DLQ, and
the sweep retries or fails a job left DISPATCHED without a task.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws
from handlers.registry import WorkerRegistration, get_worker, list_workers
from jobcontract import (
    JOB_ID_RE,
    TAG_JOB_ID,
    Env,
    JobField,
    JobStatus,
    access_denied_error,
    queue_message,
)
from jobcontract.arrays import (
    all_created,
    children_created,
    fan_out_source,
    fanout_message,
    fanout_parent,
)
from jobcontract.dispatch import (
    DRAIN_MESSAGE,
    Claimed,
    Dispatch,
    Refusal,
    WorkerLoad,
    plan,
    slot_key,
    vcpu_budget_units,
    worker_key,
)
from jobcontract.dispatch import F as DispatchField
from jobcontract.managed_instances import StopKind, is_capacity_failure, next_step, retry_wait
from jobcontract.store import JobStore, TransitionConflict

TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "LimitExceededException",
    }
)
# Words of the RunTask errors and ``failures[].reason`` strings real ECS sends for conditions
# that pass: no Fargate (Spot) capacity ("Capacity is unavailable at this time..."), the
# control plane's rate limit (a ClientException or ThrottlingException "Rate exceeded"),
# the account's concurrent vCPU/task quota ("You've reached the limit on the number of
# vCPUs you can run concurrently": it frees up as other tasks stop), and EC2 placement
# ("RESOURCE:CPU"). Such a launch is retried, never failed.
TRANSIENT_MARKERS = ("capacity", "rate exceeded", "throttl", "reached the limit", "resource:")
# AWS rule: ECS launches tasks from a token bucket of 100 (burst) refilled at 20 per second,
# per account and Region (Fargate "Amazon ECS service quotas": RunTask launch rate). Each
# concurrent launcher invocation takes its share (``BATCH_LAUNCHER_CONCURRENCY``).
RUNTASK_RATE_PER_SECOND = 20.0
RUNTASK_BURST = 100.0
LAUNCHER_CONCURRENCY_ENV = "BATCH_LAUNCHER_CONCURRENCY"
PARALLEL_LAUNCHES = 8  # RunTask calls a drain makes side by side (boto3 clients are thread-safe)


class TokenBucket:
    """Client-side pacing of RunTask: ``take`` waits until a token is there."""

    def __init__(self, rate: float, burst: float, clock: Any = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.at = burst, clock()
        self.lock = threading.Lock()

    def delay(self) -> float:
        """Take one token; the seconds to wait before using it (0 when one was there)."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            self.tokens -= 1.0
            return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def take(self) -> None:
        wait = self.delay()
        if wait > 0:
            time.sleep(wait)


def _runtask_bucket() -> TokenBucket:
    share = max(1, _aws.env_int(LAUNCHER_CONCURRENCY_ENV, 2))
    return TokenBucket(RUNTASK_RATE_PER_SECOND / share, max(1.0, RUNTASK_BURST / share))


_BUCKET: TokenBucket | None = None


def runtask_bucket() -> TokenBucket:
    """One bucket per execution environment (it outlives one invocation, as ECS's does)."""
    global _BUCKET
    if _BUCKET is None:
        _BUCKET = _runtask_bucket()
    return _BUCKET


class LaunchRetry(Exception):
    """Transient: give the message back to SQS, keep the claim."""


class NoTaskStarted(LaunchRetry):
    """ECS answered, and started no task (e.g. no capacity): the next try needs a new token,
    since ECS would replay this answer to the same one."""


class LaunchFailed(Exception):
    """Permanent: the job cannot be launched as configured."""


class ChainExhausted(Exception):
    """A Managed Instances worker found no capacity at any step of its launch chain: the
    attempt ends (``CapacityUnavailable``), handed to the fallback worker or retried."""


@dataclass
class LaunchOutcome:
    job_id: str
    # launched | skipped | waiting | drained | retry | failed | invalid | requeued (the
    # attempt ended without a task and the job is queued again: retry or fallback worker) |
    # delayed (the job backs off after no capacity: its message comes back in ``delay`` s)
    action: str
    task_arn: str | None = None
    detail: str = ""
    delay: int = 0


def _store() -> JobStore:
    return JobStore(_aws.env(Env.JOBS_TABLE), client=_aws.client("dynamodb"))


def client_token(job_id: str, attempt: int, tries: int = 0, *, step: int = 0) -> str:
    """RunTask idempotency token (64 hex characters), one per launch decision: the job's
    attempt, the try within it and the step of the launch chain. ECS answers a repeated token
    with the first call's result for 24 hours, failures included, so a token is reused only
    while the outcome is unknown, and a try after "no task started" gets a new one. Step 1
    keeps the suffix of the on-demand fallback it generalises (a launch resumed across the
    deploy repeats its token)."""
    key = f"{job_id}#{attempt}" + (f"#try{tries}" if tries else "")
    suffix = "" if step == 0 else "#on-demand" if step == 1 else f"#step{step}"
    return hashlib.sha256((key + suffix).encode()).hexdigest()


@dataclass(frozen=True)
class LaunchState:
    """Where the launch of one attempt stands (the job's ``launch`` map): which try, and which
    step of the worker's launch chain (``WorkerRegistration.launch_steps``; for a Fargate
    worker on Spot, step 1 is the on-demand fallback). It names the RunTask token to use or
    to resume. ``first`` is the step the attempt started at: the reconciler starts the retry
    of a capacity stop at the next step."""

    attempt: int
    tries: int = 0
    step: int = 0
    first: int = 0

    @classmethod
    def of(cls, job: dict[str, Any], attempt: int) -> LaunchState:
        saved = job.get(JobField.LAUNCH) or {}
        if int(saved.get("attempt", -1)) != attempt:
            return cls(attempt)
        # Records written before the chain: {"on_demand": true} was the fallback step.
        step = int(saved.get("step", 1 if saved.get("on_demand") else 0))
        return cls(attempt, int(saved.get("tries", 0)), step, int(saved.get("first", 0)))

    def at_step(self, step: int) -> LaunchState:
        return replace(self, step=step)

    def next_try(self) -> LaunchState:
        """After ECS answered that no task started: the attempt's first step again (Spot
        first), under a new token."""
        return LaunchState(self.attempt, self.tries + 1, self.first, self.first)

    def as_item(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "tries": self.tries,
            "step": self.step,
            "first": self.first,
        }


def is_transient_reason(text: str) -> bool:
    """Whether an ECS error message or failure reason names a condition that passes."""
    lowered = text.lower()
    return any(marker in lowered for marker in TRANSIENT_MARKERS)


def parse_message(body: str) -> tuple[str, int]:
    data = json.loads(body)
    job_id, attempt = data["job_id"], data["attempt"]
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise ValueError(f"bad job id {job_id!r}")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise ValueError(f"bad attempt {attempt!r}")
    return job_id, attempt


class Launcher:
    """One invocation's launcher: the dispatch state, ECS and the RunTask pacing."""

    def __init__(self, store: JobStore | None = None) -> None:
        self.store = store or _store()
        self.ecs = _aws.client("ecs")
        self.cluster = _aws.env(Env.CLUSTER_ARN)
        budget = vcpu_budget_units(_aws.env_float(Env.FARGATE_VCPU_LIMIT, 0.0))
        self.dispatch = Dispatch(self.store, budget)
        self.bucket = runtask_bucket()
        self.parked = 0  # jobs parked in this batch: drain after it
        # Workers a fresh claim found full in this invocation: their next fresh jobs park
        # without trying (the claim would be refused: a parked job now waits ahead of them),
        # one transaction fewer per job in a burst; the drain after the batch starts any job
        # whose slot freed meanwhile.
        self.full: set[str] = set()

    def fan_out(self, parent_id: str) -> LaunchOutcome:
        """An array job's fan-out step (``{"fanout": id}``, sent by the API for a job with
        more children than it writes itself): its children from the manifest, parked, then
        drained after the batch; for a JSON Lines manifest the client uploaded, its
        validation comes first (``handlers.manifests``). A redelivery creates only what is
        missing."""
        from handlers import arrays  # only here: the launcher's cold start stays light

        parent = self.store.get(parent_id)
        if parent is None or not parent.get(JobField.ARRAY) or not fan_out_source(parent):
            return LaunchOutcome(parent_id, "skipped", detail="not an array job with a manifest")
        if JobStatus(parent[JobField.STATUS]).terminal:  # e.g. its manifest was invalid
            return LaunchOutcome(parent_id, "skipped", detail="array job ended")
        if all_created(parent):
            return LaunchOutcome(parent_id, "skipped", detail="children created already")
        if parent.get(JobField.CANCEL_REQUESTED):  # its unwritten shards count as cancelled
            return LaunchOutcome(parent_id, "skipped", detail="array job cancelled")
        worker = get_worker(self.store, str(parent[JobField.WORKER]))
        if worker is None:
            return LaunchOutcome(parent_id, "skipped", detail="worker is not registered")
        done = arrays.fan_out_from_manifest(self.store, worker, parent)
        made = children_created(done) - children_created(parent)
        self.parked += made
        going_on = done[JobField.STATUS] == JobStatus.RUNNING.value and not done.get(
            JobField.CANCEL_REQUESTED
        )  # a manifest that changed mid-write cancels the array job: no next step
        if going_on and not all_created(done):  # the next step, as its own message
            url = _aws.env(Env.LAUNCH_QUEUE_URL, "") or worker.queue_url
            _aws.client("sqs").send_message(QueueUrl=url, **fanout_message(parent_id))
        return LaunchOutcome(parent_id, "skipped", detail=f"{made} children created")

    # --- one message ------------------------------------------------------------------
    def process(self, body: str) -> LaunchOutcome:
        """One message: a drain request, or a job to claim and launch (see the module doc).
        The job is read once; the claim transaction decides races (its refusal says why)."""
        if _is_drain(body):
            launched = self.drain()
            return LaunchOutcome("", "drained", detail=f"{len(launched)} launched")
        parent_id = fanout_parent(body)
        if parent_id is not None:
            return self.fan_out(parent_id)
        try:
            job_id, attempt = parse_message(body)
        except (ValueError, KeyError, TypeError) as exc:
            return LaunchOutcome("", "invalid", detail=str(exc))
        for _ in range(3):  # the job may move while we decide: decide again on what it is
            outcome = self._claim_and_launch(job_id, attempt)
            if outcome is not None:
                return outcome
        return LaunchOutcome(job_id, "retry", detail="claim kept conflicting")

    def _claim_and_launch(self, job_id: str, attempt: int) -> LaunchOutcome | None:
        """Decide this message from the job as it is; None: it changed meanwhile, again."""
        job = self.store.get(job_id)
        if job is None:
            return LaunchOutcome(job_id, "skipped", detail="no such job")
        settled = self._settled(job_id, job, attempt)
        if settled is not None:
            return settled
        worker = get_worker(self.store, str(job[JobField.WORKER]))
        if worker is None:
            status, attempts = JobStatus(job[JobField.STATUS]), int(job.get(JobField.ATTEMPTS, 0))
            return self._fail(job, status, attempts, "LaunchFailed", "worker is not registered")
        if _is_resume(job, attempt):
            return self._launch(job, worker)
        wait = retry_wait(job.get(JobField.RETRY_NOT_BEFORE), now_epoch())
        if wait > 0:  # its chain found no capacity: hold the message back, claim nothing
            return LaunchOutcome(
                job_id, "delayed", detail=f"no capacity: back off {wait} s", delay=wait
            )
        if job.get(JobField.WAITING_SINCE):
            return LaunchOutcome(job_id, "skipped", detail="job waits for a slot (parked)")
        try:
            runs = self._launch_registration(job, worker)
        except LaunchFailed as exc:
            return self._fail(job, JobStatus.QUEUED, attempt, "LaunchFailed", str(exc))
        # ``full``: the workers (by whose slots the job takes) a claim of this batch found at
        # their cap; their later jobs park without a claim bound to be refused.
        claimed: Claimed | str = Refusal.WORKER
        if runs.name not in self.full:
            claimed = self._claim(job, attempt, worker, runs, woken=False)
        if isinstance(claimed, Claimed):
            return self._launch(_dispatched(job, claimed), worker)
        if claimed in (Refusal.JOB, Refusal.TAKEN):
            return None
        if claimed in (Refusal.WORKER, Refusal.BUDGET):
            self.full.add(runs.name)
        if not self.dispatch.park(job_id, attempt, worker.name, job.get(JobField.CANCEL_REQUESTED)):
            return None
        self.parked += 1
        _aws.log("INFO", "job_waiting", job_id=job_id, attempt=attempt, reason=claimed)
        return LaunchOutcome(job_id, "waiting", detail=f"no slot ({claimed})")

    # --- drain ------------------------------------------------------------------------
    def drain(self) -> list[LaunchOutcome]:
        """Hand the free slots to parked jobs (``jobcontract.dispatch.plan``): per worker its
        oldest first, the worker with the least cpu in use first; mark the workers whose
        reuse should yield a contended budget."""
        counts, used = self.dispatch.counts()
        workers = {w.name: w for w in list_workers(self.store)}
        loads = [
            WorkerLoad.of(name, w.max_concurrency, w.cpu, counts.get(name))
            for name, w in workers.items()
        ]
        if not any(load.waiting for load in loads):
            # Nothing parked, yet a drain was asked: the stack's parked count may be high (a
            # warm task took a job, a parked job was cancelled); heal it, or every freed slot
            # keeps asking for drains.
            with contextlib.suppress(ClientError, BotoCoreError):  # the next drain heals it
                self.dispatch.heal_stack_waiting(workers)
        decided = plan(loads, used, self.dispatch.budget)
        for name in workers:
            if bool((counts.get(name) or {}).get(DispatchField.YIELD)) != (
                name in decided.yielding
            ):
                self.dispatch.set_yield(name, name in decided.yielding)
        outcomes: list[LaunchOutcome] = []
        for name, slots in Counter(decided.wake).items():
            outcomes.extend(self._wake(workers[name], slots, counts.get(name) or {}))
        outcomes.extend(self._wake_handed(workers, counts))
        return outcomes

    def _wake_handed(
        self, workers: dict[str, WorkerRegistration], counts: dict[str, Any]
    ) -> list[LaunchOutcome]:
        """Jobs handed to a fallback worker wait parked under their own worker but take the
        fallback's slots, which the plan (own slots only) does not see: its own worker may
        be at its cap while the fallback has room. For each worker with parked jobs and a
        registered fallback, hand the fallback's free slots (read now, after the plan's
        claims) to its handed jobs, oldest first. Each claim is the same conditional
        transaction (the fallback's cap and idle count, the stack budget, the job still
        parked), so a slot is never given twice and a refusal leaves the job parked."""
        outcomes: list[LaunchOutcome] = []
        for name, worker in workers.items():
            fallback = workers.get(worker.fallback_worker or "")
            waiting = int((counts.get(name) or {}).get(DispatchField.WAITING, 0) or 0)
            if fallback is None or fallback.name == name or waiting <= 0:
                continue
            now = WorkerLoad.of(
                fallback.name,
                fallback.max_concurrency,
                fallback.cpu,
                self.dispatch.get(worker_key(fallback.name)),
            )
            if now.tasks < now.cap and now.idle == 0:
                outcomes.extend(self._wake(worker, now.cap - now.tasks, {}, handed=True))
        return outcomes

    def _wake(
        self,
        worker: WorkerRegistration,
        slots: int,
        counts: dict[str, Any],
        *,
        handed: bool = False,
    ) -> list[LaunchOutcome]:
        """Claim up to ``slots`` of the worker's parked jobs, oldest first, then launch them
        side by side (a handover waits for one RunTask, not for several in a row).
        ``handed``: only the jobs handed to its fallback worker, on that worker's slots."""
        parked = self.dispatch.parked(worker.name, slots + 2, handed=handed)
        if not parked:
            if not handed:  # none parked at all (a filtered answer says nothing of that)
                waiting = int(counts.get(DispatchField.WAITING, 0) or 0)
                self.dispatch.heal_waiting(worker.name, waiting)
            return []
        claimed_jobs: list[dict[str, Any]] = []
        for job in parked:
            if len(claimed_jobs) >= slots:
                break
            job_id, attempt = str(job[JobField.JOB_ID]), int(job.get(JobField.ATTEMPTS, 0))
            if job.get(JobField.CANCEL_REQUESTED):
                self._cancel_unlaunched(job_id, JobStatus.QUEUED, attempt)
                continue
            try:
                runs = self._launch_registration(job, worker)
            except LaunchFailed as exc:
                self._fail(job, JobStatus.QUEUED, attempt, "LaunchFailed", str(exc))
                continue
            claimed = self._claim(job, attempt, worker, runs, woken=True)
            if claimed == Refusal.JOB:
                continue  # cancelled or taken by a reuse task meanwhile: the next one
            if not isinstance(claimed, Claimed):
                if runs is not worker and not handed:
                    continue  # the fallback worker's slots are full: this worker's may not be
                break  # the slot (or the budget) went elsewhere meanwhile
            claimed_jobs.append(_dispatched(job, claimed))
        if len(claimed_jobs) <= 1:
            outcomes = [self._launch(job, worker) for job in claimed_jobs]
        else:
            with ThreadPoolExecutor(max_workers=min(PARALLEL_LAUNCHES, len(claimed_jobs))) as pool:
                outcomes = list(pool.map(lambda job: self._launch(job, worker), claimed_jobs))
        for outcome, job in zip(outcomes, claimed_jobs, strict=True):
            _aws.log("INFO", "job_woken", job_id=outcome.job_id, outcome=outcome.action)
            if outcome.action == "retry":
                # No message carries a woken job: give it one, so the launch is resumed (same
                # token) through the message path and its backoff, like any retried launch.
                send_resume(job, worker.queue_url)
        return outcomes

    def _settled(self, job_id: str, job: dict[str, Any], attempt: int) -> LaunchOutcome | None:
        """What this message comes to without a launch, decided from the job as it is: stale
        or a duplicate (skipped), or a cancel asked before launch. None: claim or resume."""
        status = JobStatus(job[JobField.STATUS])
        attempts = int(job.get(JobField.ATTEMPTS, 0))
        if not _is_resume(job, attempt) and (status != JobStatus.QUEUED or attempts != attempt):
            return LaunchOutcome(
                job_id, "skipped", detail=f"job is {status.value} at attempt {attempts}"
            )
        if job.get(JobField.CANCEL_REQUESTED):
            return self._cancel_unlaunched(job_id, status, attempts)
        return None

    def _claim(
        self,
        job: dict[str, Any],
        attempt: int,
        worker: WorkerRegistration,
        runs: WorkerRegistration,
        *,
        woken: bool,
    ) -> Claimed | str:
        """Claim ``job`` with a slot of ``runs`` (its own worker, or the fallback it was
        handed to): that worker's cap and task cpu (``Dispatch.claim``)."""
        return self.dispatch.claim(
            str(job[JobField.JOB_ID]),
            attempt,
            worker.name,
            cap=runs.max_concurrency,
            cpu=_task_cpu(job, runs),
            cancel_flag=job.get(JobField.CANCEL_REQUESTED),
            woken=woken,
            array_child=bool(job.get(JobField.PARENT_ID)),
            runs_on=runs.name,
        )

    def _launch(self, job: dict[str, Any], worker: WorkerRegistration) -> LaunchOutcome:
        """RunTask for the claimed attempt (``job`` is DISPATCHED), then record the task."""
        job_id = str(job[JobField.JOB_ID])
        run_attempt = int(job[JobField.ATTEMPTS])
        try:
            worker = self._launch_registration(job, worker)
            task_arn, provider = self._run_task(job, worker, run_attempt)
        except LaunchRetry as exc:
            return LaunchOutcome(job_id, "retry", detail=str(exc))
        except ChainExhausted as exc:
            return self._exhausted(job, run_attempt, str(exc))
        except LaunchFailed as exc:
            outcome = self._fail(job, JobStatus.DISPATCHED, run_attempt, "LaunchFailed", str(exc))
            self.dispatch.release(slot_key(job_id, run_attempt))
            return outcome
        return self._record(job_id, run_attempt, task_arn, provider)

    def _launch_registration(
        self, job: dict[str, Any], worker: WorkerRegistration
    ) -> WorkerRegistration:
        """The registration whose task runs the job: its own worker's, or, once the job was
        handed to a fallback worker (``JobField.FALLBACK``), that worker's."""
        name = _fallback_worker(job)
        if not name or name == worker.name:
            return worker
        fallback = get_worker(self.store, name)
        if fallback is None:
            raise LaunchFailed(f"fallback worker {name} is not registered")
        return fallback

    def _run_task(
        self, job: dict[str, Any], worker: WorkerRegistration, attempt: int
    ) -> tuple[str, str]:
        """RunTask along the worker's launch chain (``launch_steps``: a Managed Instances
        worker's registered strategies; a Fargate worker's Spot strategy, then on-demand when
        it may fall back), from the step the job's ``LaunchState`` records, under that
        state's token. A capacity failure moves to the next step under a new token, recorded
        *before* its RunTask: a crash after it resumes that step (its token), never an
        earlier one, which would start a second task. Otherwise the state is written only
        after ECS answered that no task started."""
        job_id = str(job[JobField.JOB_ID])
        steps = worker.launch_steps()
        state = LaunchState.of(job, attempt)
        while True:
            strategy = steps[min(state.step, len(steps) - 1)]
            try:
                return self._run_once(job, worker, attempt, strategy, state)
            except LaunchRetry as exc:
                nxt = next_step(steps, state.step) if is_capacity_failure(str(exc)) else None
                if nxt is None:
                    self._end_of_chain(job_id, worker, state, exc)
                _aws.log("WARNING", "launch_next_step", job_id=job_id, step=nxt, reason=str(exc))
                state = state.at_step(nxt)
                self._save_state(job_id, state)

    def _end_of_chain(
        self, job_id: str, worker: WorkerRegistration, state: LaunchState, exc: LaunchRetry
    ) -> NoReturn:
        """No further step for this failure. A Managed Instances worker out of capacity
        everywhere ends the attempt; otherwise the message comes back (a new try, from the
        attempt's first step, after ECS answered that no task started)."""
        if worker.managed_instances and is_capacity_failure(str(exc)):
            raise ChainExhausted(str(exc)) from exc
        if isinstance(exc, NoTaskStarted):
            self._save_state(job_id, state.next_try())
        raise exc

    def _save_state(self, job_id: str, state: LaunchState) -> None:
        try:
            self.store.update(
                job_id,
                status=JobStatus.DISPATCHED,
                attempt=state.attempt,
                set_fields={JobField.LAUNCH: state.as_item()},
            )
        except TransitionConflict as exc:
            raise LaunchRetry("the job moved on during its launch") from exc

    def _run_task_request(
        self,
        job: dict[str, Any],
        worker: WorkerRegistration,
        attempt: int,
        strategy: list[dict[str, Any]],
        state: LaunchState,
    ) -> dict[str, Any]:
        """The RunTask arguments of one launch decision (``state``: its token)."""
        job_id = str(job[JobField.JOB_ID])
        environment = [
            {"name": Env.JOB_ID, "value": job_id},
            {"name": Env.JOB_ATTEMPT, "value": str(attempt)},
        ]
        if _fallback_worker(job):
            # The task's lease is named by the job (``slot#<its own worker>_...``, outside
            # this worker's dispatch grants), though it counts on this worker's slots: one
            # job per fallback task, no warm reuse. The runtime runs a job of another worker
            # only when told whose it is.
            environment.append({"name": Env.REUSE_IDLE_SECONDS, "value": "0"})
            environment.append({"name": Env.HANDED_FROM, "value": str(job[JobField.WORKER])})
        container: dict[str, Any] = {"name": worker.container_name, "environment": environment}
        overrides: dict[str, Any] = {"containerOverrides": [container]}
        cpu, memory = job.get(JobField.CPU), job.get(JobField.MEMORY)
        if cpu is not None and memory is not None:
            overrides["cpu"], overrides["memory"] = str(cpu), str(memory)
            container["memory"] = int(memory)  # the container may carry a hard limit
        kwargs: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": str(job.get(JobField.TASK_DEFINITION) or worker.task_definition),
            "count": 1,
            "startedBy": job_id,
            "tags": [{"key": TAG_JOB_ID, "value": job_id}],
            "enableECSManagedTags": True,
            "propagateTags": "TASK_DEFINITION",
            "overrides": overrides,
            "clientToken": client_token(job_id, attempt, state.tries, step=state.step),
        }
        if worker.network_mode == "awsvpc":
            # AWS rule: networkConfiguration is for awsvpc tasks only (a host-mode task
            # definition of a Managed Instances worker rejects it).
            kwargs["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": _aws.env_list(Env.SUBNETS),
                    "securityGroups": _aws.env_list(Env.SECURITY_GROUPS),
                    "assignPublicIp": _aws.env(Env.ASSIGN_PUBLIC_IP, "DISABLED"),
                }
            }
        if strategy:
            kwargs["capacityProviderStrategy"] = strategy
        else:
            kwargs["launchType"] = "FARGATE"
        return kwargs

    def _run_once(
        self,
        job: dict[str, Any],
        worker: WorkerRegistration,
        attempt: int,
        strategy: list[dict[str, Any]],
        state: LaunchState,
    ) -> tuple[str, str]:
        kwargs = self._run_task_request(job, worker, attempt, strategy, state)
        default = str(strategy[0].get("capacityProvider", "FARGATE")) if strategy else "FARGATE"
        self.bucket.take()
        try:
            resp = self.ecs.run_task(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            existing = exc.response.get("resourceIds") or []
            if code == "ConflictException" and existing:
                # ECS: this client token already launched a task (its response was lost, and
                # a parameter changed since, e.g. a redeploy): that task IS this attempt's.
                return str(existing[0]), default
            if code in TRANSIENT_CODES or is_transient_reason(message):
                raise LaunchRetry(f"{code}: {message}") from exc
            if is_capacity_failure(message):  # e.g. "no container instances" (EC2 providers)
                raise LaunchRetry(f"{code}: {message}") from exc
            raise LaunchFailed(f"{code}: {message}") from exc
        except BotoCoreError as exc:  # connection problems: try again later
            raise LaunchRetry(str(exc)) from exc
        tasks = resp.get("tasks", [])
        if tasks:
            provider = str(tasks[0].get("capacityProviderName") or default)
            return str(tasks[0]["taskArn"]), provider
        reasons = "; ".join(
            f"{f.get('reason', '')} {f.get('detail', '')}".strip() for f in resp.get("failures", [])
        )
        if not reasons or is_transient_reason(reasons) or is_capacity_failure(reasons):
            raise NoTaskStarted(reasons or "RunTask started no task")
        raise LaunchFailed(reasons)

    # --- outcomes ---------------------------------------------------------------------
    def _record(self, job_id: str, attempt: int, task_arn: str, provider: str) -> LaunchOutcome:
        try:
            job = self.store.update(
                job_id,
                status=JobStatus.DISPATCHED,
                attempt=attempt,
                set_fields={JobField.TASK_ARN: task_arn, "capacity_provider": provider},
            )
        except TransitionConflict as exc:
            # The job moved on while we launched (e.g. the sweep gave up on it): this task
            # belongs to no attempt any more, so it must not run.
            current = exc.current or {}
            if current.get(JobField.TASK_ARN) != task_arn:
                self._stop(task_arn, job_id, "Orphaned launch: job moved on")
                return LaunchOutcome(job_id, "skipped", task_arn, "job moved on during launch")
            job = current
        if job.get(JobField.CANCEL_REQUESTED):
            self._stop(task_arn, job_id, f"Cancelled by API request for job {job_id}")
        _aws.log("INFO", "job_launched", job_id=job_id, attempt=attempt, task_arn=task_arn)
        return LaunchOutcome(job_id, "launched", task_arn)

    def _stop(self, task_arn: str, job_id: str, reason: str) -> None:
        try:
            self.ecs.stop_task(cluster=self.cluster, task=task_arn, reason=reason[:255])
        except (ClientError, BotoCoreError) as exc:
            _aws.log("WARNING", "stop_task_failed", job_id=job_id, error=str(exc))

    def _cancel_unlaunched(self, job_id: str, status: JobStatus, attempts: int) -> LaunchOutcome:
        with contextlib.suppress(TransitionConflict):
            self.store.transition(job_id, status, JobStatus.CANCELLED, attempt=attempts)
        return LaunchOutcome(job_id, "skipped", detail="cancel requested before launch")

    def _exhausted(self, job: dict[str, Any], attempt: int, reason: str) -> LaunchOutcome:
        """The attempt ends without a task (``CapacityUnavailable``): its slot is given back,
        then the reconciler's retry path hands the job to the fallback worker, retries it
        from the top of the chain while attempts remain, or fails it."""
        from handlers.reconciler import Reconciler  # rare path: off the launcher's cold start

        job_id = str(job[JobField.JOB_ID])
        self.dispatch.release(slot_key(job_id, attempt))
        error = {
            "type": StopKind.CAPACITY_UNAVAILABLE,
            "message": f"no instance capacity at any step of the launch chain: {reason}"[:1000],
            "exit_code": None,
            "stop_reason": None,
        }
        done = Reconciler(self.store).end_attempt(
            job, JobStatus.DISPATCHED, attempt, {JobField.TASK_ARN: None}, error, exhausted=True
        )
        _aws.log("WARNING", "launch_chain_exhausted", job_id=job_id, outcome=done)
        action = "failed" if done.startswith("final") else "requeued"
        return LaunchOutcome(job_id, action, detail=f"chain exhausted: {done}")

    def _fail(
        self, job: dict[str, Any], status: JobStatus, attempt: int, kind: str, message: str
    ) -> LaunchOutcome:
        job_id = str(job[JobField.JOB_ID])
        error = {"type": kind, "message": message[:1000], "exit_code": None, "stop_reason": None}
        try:
            failed = self.store.transition(
                job_id, status, JobStatus.FAILED, attempt=attempt, set_fields={"error": error}
            )
        except TransitionConflict:
            return LaunchOutcome(job_id, "skipped", detail="job moved on")
        _aws.log("ERROR", "launch_failed", job_id=job_id, error=message)
        from handlers import notify

        notify.job_finished(failed)
        return LaunchOutcome(job_id, "failed", detail=message)

    def fail_denied(self, body: str, error: dict[str, str]) -> bool:
        """Record FAILED (and report it) for a job whose launch AWS denied: IAM answers the
        same on every redelivery. False when the job cannot be named or written either."""
        from handlers import notify

        try:
            job_id, _ = parse_message(body)
            failed = self.store.transition(
                job_id,
                (JobStatus.QUEUED, JobStatus.DISPATCHED),
                JobStatus.FAILED,
                set_fields={JobField.ERROR: {**error, "exit_code": None, "stop_reason": None}},
            )
        except Exception as exc:  # the denial stays the story: log both
            _aws.log("ERROR", "access_denied_unrecorded", denied=error["message"], error=str(exc))
            return False
        _aws.log("ERROR", "launch_denied", job_id=job_id, error=error["message"])
        notify.job_finished(failed)
        return True


def send_resume(job: dict[str, Any], queue_url: str) -> bool:
    """Enqueue the message that resumes a claimed launch (``_is_resume``): its attempt is the
    one before the claim, its deduplication id is new (FIFO would drop a reused one)."""
    job_id, run = str(job[JobField.JOB_ID]), int(job[JobField.ATTEMPTS])
    message = queue_message(job_id, run - 1)
    message["MessageDeduplicationId"] = f"{job_id}-{run - 1}-resume-{time.time_ns()}"[-128:]
    url = _aws.env(Env.LAUNCH_QUEUE_URL, "") or queue_url
    try:
        _aws.client("sqs").send_message(QueueUrl=url, **message)
    except (ClientError, BotoCoreError) as exc:  # the sweep resumes stalled launches too
        _aws.log("WARNING", "resume_send_failed", job_id=job_id, error=str(exc))
        return False
    return True


def _fallback_worker(job: dict[str, Any]) -> str | None:
    """The worker a job was handed to when its launch chain ran out (``JobField.FALLBACK``)."""
    record = job.get(JobField.FALLBACK) or {}
    return str(record.get("worker") or "") or None


def _is_drain(body: str) -> bool:
    return body.strip() == DRAIN_MESSAGE


def _task_cpu(job: dict[str, Any], worker: WorkerRegistration) -> int:
    """The cpu units the job's task holds: its override, else the worker's default."""
    return int(job.get(JobField.CPU) or worker.cpu)


def _dispatched(job: dict[str, Any], claimed: Claimed) -> dict[str, Any]:
    """The job as the claim left it (the transaction returns no item; nothing else changed)."""
    done = dict(job)
    done[JobField.STATUS] = JobStatus.DISPATCHED.value
    done[JobField.ATTEMPTS] = claimed.attempt
    done.pop(JobField.WAITING_SINCE, None)
    done.pop(JobField.TASK_ARN, None)
    return done


def _is_resume(job: dict[str, Any], attempt: int) -> bool:
    """The claim of this message's attempt was made but no task was recorded: a launch whose
    outcome is unknown (throttled, or its response lost). RunTask again with the same token."""
    return (
        job.get(JobField.STATUS) == JobStatus.DISPATCHED.value
        and int(job.get(JobField.ATTEMPTS, 0)) == attempt + 1
        and not job.get(JobField.TASK_ARN)
    )


def process_records(records: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """The SQS partial-batch response: failed message ids are redelivered by SQS."""
    launcher = Launcher()
    failures: list[dict[str, str]] = []
    failed_groups: set[str] = set()
    drains: list[str] = []  # drain requests: one drain after the batch answers them all
    for record in records:
        message_id = str(record.get("messageId", ""))
        group = str((record.get("attributes") or {}).get("MessageGroupId", ""))
        if _is_drain(str(record.get("body", ""))):
            drains.append(message_id)
            continue
        if group and group in failed_groups:
            # FIFO order within a message group: nothing after a failed message of the same
            # group may be processed before it (each job is its own group).
            failures.append({"itemIdentifier": message_id})
            continue
        try:
            outcome = launcher.process(str(record.get("body", "")))
        except (ClientError, BotoCoreError) as exc:  # DynamoDB/ECS trouble: try again later
            denied = access_denied_error(exc)
            if denied is not None and launcher.fail_denied(str(record.get("body", "")), denied):
                continue  # FAILED and reported: a redelivery would be denied again
            _aws.log("ERROR", "launcher_aws_error", message_id=message_id, error=str(exc))
            failures.append({"itemIdentifier": message_id})
            failed_groups.add(group)
            if denied is not None:
                _back_off(record)  # not even the failure could be recorded: no tight loop
            continue
        _aws.log(
            "INFO"
            if outcome.action in ("launched", "skipped", "waiting", "drained", "delayed")
            else "WARNING",
            f"launch_{outcome.action}",
            job_id=outcome.job_id or None,
            message_id=message_id,
            detail=outcome.detail,
        )
        if outcome.action == "delayed":  # back again when the job's back-off has passed
            failures.append({"itemIdentifier": message_id})
            failed_groups.add(group)
            _back_off(record, outcome.delay)
            continue
        if outcome.action in ("retry", "invalid"):
            # An invalid body is returned too: after maxReceiveCount it lands in the DLQ,
            # where it can be inspected, instead of vanishing.
            failures.append({"itemIdentifier": message_id})
            failed_groups.add(group)
            if outcome.action != "invalid":
                _back_off(record)
    if drains or launcher.parked:
        # Drain requests, and jobs parked in this batch (a slot may have freed between a
        # refused claim and its park, before the release's drain could see that job): one
        # drain after the batch hands out every free slot, however many asked.
        try:
            launched = launcher.drain()
        except (ClientError, BotoCoreError) as exc:  # redelivered; the sweep's is the backstop
            _aws.log("WARNING", "drain_failed", error=str(exc))
            failures.extend({"itemIdentifier": m} for m in drains)
        else:
            _aws.log("INFO", "launch_drained", requests=len(drains), launched=len(launched))
    return {"batchItemFailures": failures}


BACKOFF_FIRST_SECONDS = 30
BACKOFF_MAX_SECONDS = 900


def retry_visibility(receive_count: int) -> int:
    """Visibility timeout for a message handed back for a retry (throttling, capacity): 30 s,
    doubling per receive, capped at 15 min. A job waiting for a slot does not come here (it
    parks). With the queue's maxReceiveCount of 20 a launch can be retried for about
    four hours before its message reaches the DLQ (where the DLQ alarm fires, and
    ``batchctl retry`` re-drives it)."""
    exponent = max(0, min(receive_count - 1, 10))
    return int(min(BACKOFF_FIRST_SECONDS * 2**exponent, BACKOFF_MAX_SECONDS))


def _queue_url(queue_arn: str, endpoint_url: str | None = None, client_region: str = "") -> str:
    """arn:<partition>:sqs:<region>:<account>:<name> -> its queue URL.

    The host is the SQS client's own endpoint when the client is in the queue's region: that
    is right in every partition (``.amazonaws.com.cn``, the ISO partitions' own DNS suffixes,
    a local endpoint) without a table of domains here. Otherwise the public pattern."""
    _, partition, _, region, account, name = queue_arn.split(":", 5)
    if endpoint_url and client_region == region:
        return f"{endpoint_url.rstrip('/')}/{account}/{name}"
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


def now_epoch() -> float:
    """The clock the back-off is read against (tests move it)."""
    return time.time()


def _back_off(record: dict[str, Any], seconds: int | None = None) -> None:
    """Best effort: without it the message simply returns after the queue's own timeout.
    ``seconds``: this visibility (a job's back-off), else the receive-count schedule."""
    try:
        receive_count = int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1))
        sqs = _aws.client("sqs")
        meta = getattr(sqs, "meta", None)  # absent on test doubles
        sqs.change_message_visibility(
            QueueUrl=_queue_url(
                str(record["eventSourceARN"]),
                getattr(meta, "endpoint_url", None),
                str(getattr(meta, "region_name", "")),
            ),
            ReceiptHandle=str(record["receiptHandle"]),
            VisibilityTimeout=seconds if seconds is not None else retry_visibility(receive_count),
        )
    except (KeyError, ValueError, ClientError, BotoCoreError) as exc:
        _aws.log("WARNING", "visibility_backoff_failed", error=str(exc))


def handler(event: dict[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    """Lambda entry point (SQS event source with ReportBatchItemFailures)."""
    return process_records(list(event.get("Records", [])))
