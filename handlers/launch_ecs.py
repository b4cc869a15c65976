"""RunTask for one claimed attempt (the launcher's ECS side): pacing by a token bucket at
ECS's launch rate, the idempotency token of each launch decision, where the launch of an
attempt stands along the worker's launch chain (``LaunchState``), the request, and which
errors pass (retried) and which do not (the job fails)."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws
from handlers.registry import WorkerRegistration, get_worker
from jobcontract import TAG_JOB_ID, Env, JobField, JobStatus
from jobcontract.managed_instances import is_capacity_failure, next_step
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

    # The record's four fields spelled out, read back by ``of`` (duplicates pairs the dict
    # literal's shape with the cost estimate's and the registration's: no shared rule).
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


def _fallback_worker(job: dict[str, Any]) -> str | None:
    """The worker a job was handed to when its launch chain ran out (``JobField.FALLBACK``)."""
    record = job.get(JobField.FALLBACK) or {}
    return str(record.get("worker") or "") or None


class TaskLauncher:
    """RunTask along a worker's launch chain for a claimed attempt (``Launcher``'s base)."""

    store: JobStore
    ecs: Any
    cluster: str
    bucket: TokenBucket

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

    # _run_task_request's parameters, passed on unchanged (duplicates pairs the signatures):
    # the request is built apart from the call and its answers, to keep each under 60 lines.
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
