"""The launcher's claims and their outcomes: one job's claim of a slot, its launch
(``launch_ecs.TaskLauncher``), the task recorded on the job, and the ends a launch can come
to without a task (cancelled before launch, the launch chain exhausted, a permanent launch
error, AWS denying the launch)."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws
from handlers.launch_ecs import (
    ChainExhausted,
    LaunchFailed,
    LaunchRetry,
    TaskLauncher,
    runtask_bucket,
)
from handlers.registry import WorkerRegistration, get_worker
from jobcontract import JOB_ID_RE, Env, JobField, JobStatus, queue_message
from jobcontract.arrays import all_created, children_created, fan_out_source, fanout_message
from jobcontract.dispatch import Claimed, Dispatch, slot_key, vcpu_budget_units
from jobcontract.managed_instances import StopKind
from jobcontract.store import JobStore, TransitionConflict


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


def parse_message(body: str) -> tuple[str, int]:
    data = json.loads(body)
    job_id, attempt = data["job_id"], data["attempt"]
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise ValueError(f"bad job id {job_id!r}")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise ValueError(f"bad attempt {attempt!r}")
    return job_id, attempt


class JobLauncher(TaskLauncher):
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
            return LaunchOutcome(
                parent_id, "skipped", detail="not an array job with a manifest or kept items"
            )
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

    # Shaped like _run_once and the reconciler's _retry (duplicates pairs them): one typed
    # parameter a line; this one maps a job onto Dispatch.claim's keywords.
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
