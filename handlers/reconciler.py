"""Reconciler: EventBridge "ECS Task State Change" (lastStatus STOPPED) -> job state.

The job item is the truth; a stopped task only tells us that an attempt ended. For a job that
is still DISPATCHED/RUNNING on *this* task (task ARN or attempt fence):

- cancel requested -> CANCELLED;
- otherwise the attempt failed (Spot interruption, out of memory, crash, a timeout stop by
  the sweep, a task that never started, or exit 0 without the worker recording success):
  back to QUEUED (``attempts`` kept; the launcher increments it) and a new SQS message, until
  ``max_attempts`` runs were started; then FAILED with ``{type, message, exit_code,
  stop_reason}``.
- a task of a worker on ECS Managed Instances: its own stop reasons first
  (``jobcontract.managed_instances.classify_stop``: no capacity, start-up timeout, instance
  reclaimed or terminated), each an attempt retried like a Spot interruption; after a
  capacity stop the retry starts at the next step of the launch chain, and past its last
  step the registration's fallback worker takes the job (``end_attempt``, which the
  launcher also calls when RunTask found no capacity anywhere in the chain).

Terminal jobs are sent to the notification sinks once (``notified_at`` is set with a
conditional write), when a configured sink takes that outcome (``notify.wanted``). A STOPPED
event whose worker exited 0 normally is skipped without a read: exit 0 means the worker
recorded SUCCEEDED (unless Notion is configured, which reports successes). Every write is
conditional on status, attempt and task ARN, so an event delivered twice (EventBridge is
at-least-once) does nothing the second time.

Scheduled runs (EventBridge Scheduler -> RunTask) carry no ``BATCH_JOB_ID``: their job id is
``<worker>_<task id>``, the worker found by task definition family. If the worker runtime never
created that job (the task died first), it is created here and handled as a failed attempt
(``jobcontract.scheduled``, the runtime's creator too). A scheduled array run
(``BATCH_SCHEDULED_ARRAY``) is always created here: its parent, checked as the API checks,
then its children, fanned out as the API does.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws, arrays, manifest_api, notify
from handlers.launcher import LaunchState
from handlers.registry import WorkerRegistration, family_of, get_worker, worker_by_family
from jobcontract import (
    CONTAINER_NAME,
    JOB_ID_RE,
    TAG_JOB_ID,
    Env,
    JobField,
    JobStatus,
    WorkerExit,
    access_denied_error,
    scheduled_job_id,
    worker_of_job_id,
)
from jobcontract import arrays as arrays_contract
from jobcontract.arrays import RequestRejected
from jobcontract.dispatch import Dispatch, drain_message, slot_key
from jobcontract.dispatch import F as DispatchField
from jobcontract.job import Job
from jobcontract.managed_instances import capacity_backoff, classify_stop, next_step
from jobcontract.scheduled import (
    SOURCE_SCHEDULE,
    RunDefaults,
    ScheduledRequest,
    array_parent,
    plan_array,
    scheduled_job,
)
from jobcontract.store import JobExists, JobStore, TransitionConflict, now_iso

ACTIVE = (JobStatus.DISPATCHED, JobStatus.RUNNING)
NOTIFIED_AT = "notified_at"
OOM_EXIT_CODE = 137  # SIGKILL: what the OOM killer sends


@dataclass(frozen=True)
class StoppedTask:
    """What the reconciler needs from an ECS task state change event."""

    task_arn: str
    cluster_arn: str
    task_definition_arn: str
    started_by: str | None
    stop_code: str
    stopped_reason: str
    exit_code: int | None
    container_reason: str
    env: dict[str, str]
    tags: dict[str, str]
    # The exit code is the worker container's (found by name, or the task's only container).
    exit_code_is_worker: bool = False
    started: bool = False  # the task reached RUNNING (``startedAt`` is set)

    @property
    def clean_success(self) -> bool:
        """The worker exited 0 and nothing else stopped the task. Exit 0 means exactly "this
        attempt recorded SUCCEEDED" (``jobcontract.WorkerExit.OK``), so there is nothing to
        reconcile; a job that is somehow still active is caught by the sweep (heartbeat /
        dispatch staleness), which settles it through ``apply``."""
        return (
            self.exit_code_is_worker
            and self.exit_code == WorkerExit.OK
            and self.stop_code == "EssentialContainerExited"
        )

    def running(self, lease: dict[str, Any]) -> StoppedTask:
        """This event as seen by the job the task ran last (its lease's current job): a
        reused task was started for its first job, and its later jobs are its own attempts."""
        current, attempt = (
            lease.get(DispatchField.CURRENT_JOB),
            lease.get(DispatchField.CURRENT_ATTEMPT),
        )
        if not current or attempt is None:
            return self
        env = {**self.env, Env.JOB_ID: str(current), Env.JOB_ATTEMPT: str(attempt)}
        return dataclasses.replace(self, env=env)

    @classmethod
    def lost(cls, task_arn: str, cluster_arn: str, reason: str) -> StoppedTask:
        """A task ECS no longer knows (its STOPPED event never reached us)."""
        return cls(task_arn, cluster_arn, "", None, "TaskLost", reason, None, "", {}, {})

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> StoppedTask:
        """From an event's ``detail`` or a ``DescribeTasks`` task (same field names)."""
        containers = detail.get("containers") or []
        named = [c for c in containers if c.get("name") == CONTAINER_NAME]
        worker_container = (named or containers or [{}])[0]
        env: dict[str, str] = {}
        for override in (detail.get("overrides") or {}).get("containerOverrides") or []:
            if override.get("name") in (CONTAINER_NAME, None):
                for pair in override.get("environment") or []:
                    env[str(pair.get("name"))] = str(pair.get("value"))
        tags = {str(t.get("key")): str(t.get("value")) for t in detail.get("tags") or []}
        exit_code = worker_container.get("exitCode")
        return cls(
            task_arn=str(detail.get("taskArn", "")),
            cluster_arn=str(detail.get("clusterArn", "")),
            task_definition_arn=str(detail.get("taskDefinitionArn", "")),
            started_by=detail.get("startedBy"),
            stop_code=str(detail.get("stopCode", "")),
            stopped_reason=str(detail.get("stoppedReason", "")),
            exit_code=int(exit_code) if exit_code is not None else None,
            container_reason=str(worker_container.get("reason", "")),
            env=env,
            tags=tags,
            exit_code_is_worker=len(named) == 1 or len(containers) == 1,
            started=bool(detail.get("startedAt")),
        )


# Outcomes a retry would only repeat: the job fails at once.
NOT_RETRIED = frozenset({"AccessDenied"})


def classify(task: StoppedTask) -> dict[str, Any]:
    """Why an attempt ended, as the job's ``error`` (type, message, exit code, stop reason)."""
    reason = task.stopped_reason
    if task.stop_code in ("SpotInterruption", "TerminationNotice"):
        kind, message = "SpotInterruption", "Fargate Spot capacity was reclaimed"
    elif "outofmemory" in task.container_reason.replace(" ", "").lower():
        kind, message = "OutOfMemory", "the container ran out of memory"
    # The sweep's own stop reasons come before exit 137: a hung worker it stops is SIGKILLed
    # when stopTimeout runs out, which looks like an OOM kill by exit code alone.
    elif reason.startswith("Timeout"):
        kind, message = "Timeout", reason
    elif reason.startswith("Heartbeat"):
        kind, message = "HeartbeatLost", reason
    elif reason.startswith("TaskLost"):
        kind, message = "TaskLost", reason
    elif task.exit_code == OOM_EXIT_CODE and task.stop_code != "UserInitiated":
        # SIGKILL nobody asked for (after a StopTask it is just the grace period ending).
        kind, message = "OutOfMemory", "the container was killed (exit 137, likely out of memory)"
    elif task.stop_code == "TaskFailedToStart" or task.exit_code is None:
        kind, message = "TaskFailedToStart", task.container_reason or reason or "task never ran"
    elif task.exit_code == WorkerExit.INTERRUPTED:
        kind, message = "Interrupted", "the worker was stopped (SIGTERM) and saved its progress"
    elif task.exit_code == WorkerExit.ACCESS_DENIED:
        kind, message = "AccessDenied", "AWS denied a call the worker needs (its log names it)"
    elif task.exit_code == 0:
        kind, message = "WorkerExitedEarly", "the worker exited 0 without recording a result"
    else:
        kind, message = "WorkerError", f"the worker exited with code {task.exit_code}"
    return {
        "type": kind,
        "message": message[:1000],
        "exit_code": task.exit_code,
        "stop_reason": (reason or task.stop_code or None),
    }


class Reconciler:
    def __init__(self, store: JobStore | None = None) -> None:
        self.store = store or JobStore(_aws.env(Env.JOBS_TABLE), client=_aws.client("dynamodb"))
        self.dispatch = Dispatch(self.store)

    def handle_event(self, event: dict[str, Any]) -> str:
        """Apply one event; returns what was done (for logs and tests)."""
        detail = event.get("detail") or {}
        if detail.get("lastStatus") != "STOPPED":
            return "ignored: not STOPPED"
        task = StoppedTask.from_detail(detail)
        cluster = _aws.env(Env.CLUSTER_ARN, "")
        if cluster and task.cluster_arn and not _same_cluster(cluster, task.cluster_arn):
            return "ignored: other cluster"
        lease_key = _lease_key(task)
        lease = self.dispatch.get(lease_key) if lease_key else None
        if lease is None:
            return self._settle(task)
        # The task's slot: settle the job it ran last (warm reuse runs several), report the
        # ones before it, then give the slot back and let the launcher hand it on. Released
        # last, so a retried event still finds which job the task ran.
        outcome = self._settle(
            task.running(lease), child=bool(lease.get(DispatchField.ARRAY_CHILD))
        )
        self._report_earlier(lease, task)
        if self.dispatch.release(str(lease_key), lease_item=lease) and self._anyone_waiting():
            _send_drain(str(lease.get(DispatchField.WORKER, "")), self.store)
        return outcome

    def _anyone_waiting(self) -> bool:
        """Whether the freed slot needs a drain: a job of the stack is parked (read after the
        release, so a job parked later is drained by its own launcher). When the read fails,
        drain anyway: this event is not retried once its slot is released."""
        try:
            return self.dispatch.anyone_waiting()
        except (ClientError, BotoCoreError) as exc:
            _aws.log("WARNING", "waiting_count_unread", error=str(exc))
            return True

    def _report_earlier(self, lease: dict[str, Any], task: StoppedTask) -> None:
        """Jobs a reused task finished before its last: notify their outcome once (the
        runtime records them on the lease; one BatchGetItem reads them all)."""
        earlier = sorted(str(j) for j in lease.get(DispatchField.RAN) or ())
        for job in self.store.get_many(earlier):
            status = JobStatus(job[JobField.STATUS])
            if status.terminal and job.get(JobField.TASK_ARN) in (None, task.task_arn):
                self._ended(job)

    def _settle(self, task: StoppedTask, *, child: bool = False) -> str:
        # A scheduled array run's task exits 0 having recorded nothing: its job is made here.
        scheduled_array = bool(task.env.get(Env.SCHEDULED_ARRAY)) and not task.env.get(Env.JOB_ID)
        if (
            task.clean_success
            and not child
            and not scheduled_array
            and not notify.wanted(JobStatus.SUCCEEDED.value)
        ):
            # The worker recorded SUCCEEDED and no sink reports successes: no read, no write
            # (an array job's child is read: its end is counted on its parent).
            return "skipped: exit 0, SUCCEEDED recorded by the worker"
        job_id = self._job_id(task)
        if job_id is None:
            return "ignored: not a job task"
        job = self.store.get(job_id)
        if job is None:
            if task.env.get(Env.JOB_ID):
                return "ignored: unknown job"
            job = self._create_scheduled(job_id, task)
            if job is None:
                return "ignored: unknown worker"
        if job.get(JobField.ARRAY) and job.get(JobField.SOURCE) == SOURCE_SCHEDULE:
            return self._fan_out_scheduled(job, task)  # a parent has no attempt to settle
        return self.apply(job, task)

    def _job_id(self, task: StoppedTask) -> str | None:
        for candidate in (task.env.get(Env.JOB_ID), task.started_by, task.tags.get(TAG_JOB_ID)):
            if candidate and JOB_ID_RE.match(candidate):
                return candidate
        worker = worker_by_family(self.store, family_of(task.task_definition_arn))
        if worker is None:
            return None
        return scheduled_job_id(worker.name, task.task_arn)

    def _create_scheduled(self, job_id: str, task: StoppedTask) -> dict[str, Any] | None:
        """Record a scheduled run the worker runtime did not (``jobcontract.scheduled``, the
        runtime's creator too): a plain run as a DISPATCHED attempt of this task, an array run
        as its parent (checked as the API checks; a rejection is recorded FAILED)."""
        worker_name = worker_of_job_id(job_id)
        worker = get_worker(self.store, worker_name) if worker_name else None
        if worker is None:
            return None
        request = ScheduledRequest.from_env(task.env)
        defaults = RunDefaults(
            max_attempts=worker.max_attempts,
            timeout_seconds=worker.timeout_seconds,
            task_definition=task.task_definition_arn or worker.task_definition,
            cpu=worker.cpu,
            memory=worker.memory,
            ttl_days=_aws.env_int(Env.JOB_TTL_DAYS, 0) or None,
        )
        if request.is_array and request.problem is None:
            job = self._scheduled_array(job_id, worker, request, defaults)
        else:
            job = scheduled_job(
                job_id,
                worker.name,
                request,
                defaults,
                status=JobStatus.DISPATCHED,
                task_arn=task.task_arn,
            )
        try:
            created = self.store.create(job)
        except JobExists as exc:  # the worker runtime created it after all
            return exc.existing
        _aws.log("INFO", "scheduled_job_recorded", job_id=job_id, task_arn=task.task_arn)
        return created

    def _scheduled_array(
        self,
        job_id: str,
        worker: WorkerRegistration,
        request: ScheduledRequest,
        defaults: RunDefaults,
    ) -> dict[str, Any]:
        """The parent of a scheduled array run, or (rejected by the API's checks) its row
        FAILED with the API's error code, message and limit."""
        assert request.array is not None
        try:
            plan = plan_array(worker.name, worker.input_schema, request.input, request.array)
            source = manifest_api.head(worker, plan.manifest) if plan.manifest else None
        except RequestRejected as rejected:
            failed = scheduled_job(
                job_id, worker.name, request, defaults, status=JobStatus.FAILED, task_arn=None
            )
            failed[JobField.ERROR] = rejected.as_error()
            _aws.log("WARNING", "scheduled_array_rejected", job_id=job_id, code=rejected.code)
            return failed
        parent = array_parent(job_id, worker.name, plan, defaults)
        parent[JobField.INPUT] = request.input
        if source is not None:
            parent[JobField.ARRAY]["manifest"] = source
            parent[JobField.INPUT_S3_KEY] = source["key"]
        return parent

    def _fan_out_scheduled(self, parent: dict[str, Any], task: StoppedTask) -> str:
        """The children of a scheduled array run, as the API makes them: a manifest's by the
        launcher's fan-out steps (one message), inline items here (they fit in the task's
        8 KB of overrides), parked, then one drain. Repeated events create only what is
        missing (``arrays.fan_out`` starts at the parent's cursor). The items are read from
        the parent (``array.kept_items``), so a fan-out that died with no event left is
        finished by the sweep through the launcher's fan-out step."""
        shards = int(parent[JobField.ARRAY]["shards"])
        if JobStatus(parent[JobField.STATUS]).terminal or arrays_contract.all_created(parent):
            return f"ignored: scheduled array job {parent[JobField.STATUS]}, children created"
        worker = get_worker(self.store, str(parent[JobField.WORKER]))
        if worker is None:
            return "ignored: unknown worker"
        url = _aws.env(Env.LAUNCH_QUEUE_URL, "") or worker.queue_url
        if parent.get(JobField.INPUT_S3_KEY):
            message = arrays_contract.fanout_message(str(parent[JobField.JOB_ID]))
        else:
            items = arrays_contract.kept_items(parent)
            if items is None:  # a parent recorded before items were kept with it
                items = list((ScheduledRequest.from_env(task.env).array or {}).get("items") or [])
            base = dict(parent.get(JobField.INPUT) or {})
            arrays.fan_out(self.store, worker, parent, base, items)
            message = drain_message()
        _aws.client("sqs").send_message(QueueUrl=url, **message)
        return f"scheduled array job: {shards} shards"

    def apply(self, job: dict[str, Any], task: StoppedTask) -> str:
        status = JobStatus(job[JobField.STATUS])
        recorded_task = job.get(JobField.TASK_ARN)
        if status.terminal:
            if recorded_task in (None, task.task_arn):
                self._ended(job)
                return f"terminal: {status.value}"
            return "ignored: terminal, other task"
        if status not in ACTIVE:
            return f"ignored: job is {status.value}"
        attempts = Job.from_item(job).attempts
        if recorded_task is not None and recorded_task != task.task_arn:
            return "ignored: event for an older task"
        if recorded_task is None and task.env.get(Env.JOB_ATTEMPT) not in (None, str(attempts)):
            return "ignored: event for an older attempt"
        expect = {JobField.TASK_ARN: recorded_task}
        if job.get(JobField.CANCEL_REQUESTED):
            return self._finish(job, status, attempts, expect, JobStatus.CANCELLED, None)
        error, advance = self._classify(job, task, status)
        return self.end_attempt(job, status, attempts, expect, error, advance=advance)

    def _classify(
        self, job: dict[str, Any], task: StoppedTask, status: JobStatus
    ) -> tuple[dict[str, Any], bool]:
        """The attempt's ``error``, and whether its retry moves along the launch chain. For a
        task of a Managed Instances worker its own stop reasons come first (all retried, as a
        Spot interruption is: they count as attempts like any other); the rest as Fargate."""
        launched_by = self._launch_registration(job)
        if launched_by is not None and launched_by.managed_instances:
            started = task.started or status == JobStatus.RUNNING
            stop = classify_stop(
                task.stop_code, task.stopped_reason, started=started, exit_code=task.exit_code
            )
            if stop is not None:
                error = {
                    "type": stop.kind,
                    "message": stop.message,
                    "exit_code": task.exit_code,
                    "stop_reason": task.stopped_reason or task.stop_code or None,
                }
                return error, stop.advance_chain
        return classify(task), False

    def _launch_registration(self, job: dict[str, Any]) -> WorkerRegistration | None:
        """The registration whose task ran the attempt: the fallback worker's once the job was
        handed to it (``JobField.FALLBACK``), else the job's own worker's."""
        fallback = (job.get(JobField.FALLBACK) or {}).get("worker")
        return get_worker(self.store, str(fallback or job[JobField.WORKER]))

    def end_attempt(
        self,
        job: dict[str, Any],
        status: JobStatus,
        attempts: int,
        expect: dict[str, Any],
        error: dict[str, Any],
        *,
        advance: bool = False,
        exhausted: bool = False,
    ) -> str:
        """An attempt failed: retry it while attempts remain, else FAILED. ``advance``: a
        capacity stop of a Managed Instances worker, whose retry starts at the next step of
        the launch chain. ``exhausted`` (or advancing past the last step): no capacity in the
        whole chain, so the registration's fallback worker takes the job, if it names one;
        without one the retry starts at the top of the chain again, after a back-off
        (``JobField.RETRY_NOT_BEFORE``, ``managed_instances.capacity_backoff``) that the
        launcher waits out."""
        extra: dict[str, Any] = {}
        launched_by = self._launch_registration(job)
        if (advance or exhausted) and launched_by is not None and launched_by.managed_instances:
            step = LaunchState.of(job, attempts).step
            nxt = None if exhausted else next_step(launched_by.launch_steps(), step)
            if nxt is not None:
                extra[JobField.LAUNCH] = LaunchState(attempts + 1, 0, nxt, nxt).as_item()
            elif launched_by.fallback_worker:
                handed = self._hand_over(job, status, attempts, expect, error, launched_by)
                if handed is not None:
                    return handed
            if nxt is None:  # from the top of the chain again: not at once (no spin)
                extra[JobField.RETRY_NOT_BEFORE] = int(time.time()) + capacity_backoff(attempts)
        # The row's own limit, at the one default of every reader (``jobcontract.job``).
        if attempts < Job.from_item(job).max_attempts and error["type"] not in NOT_RETRIED:
            return self._retry(job, status, attempts, expect, error, extra)
        return self._finish(job, status, attempts, expect, JobStatus.FAILED, error)

    def _hand_over(
        self,
        job: dict[str, Any],
        status: JobStatus,
        attempts: int,
        expect: dict[str, Any],
        error: dict[str, Any],
        worker: WorkerRegistration,
    ) -> str | None:
        """Queue the job again for the fallback worker's task (its task definition, size and
        timeout, and its own ``max_attempts`` from here). None: that worker is not there."""
        fallback = get_worker(self.store, str(worker.fallback_worker))
        if fallback is None:
            _aws.log("ERROR", "fallback_worker_missing", worker=worker.fallback_worker)
            return None
        record = {
            "worker": fallback.name,
            "from": worker.name,
            "attempt": attempts,
            "at": now_iso(),
        }
        fields = {
            JobField.FALLBACK: record,
            JobField.TASK_DEFINITION: fallback.task_definition,
            JobField.CPU: fallback.cpu,
            JobField.MEMORY: fallback.memory,
            JobField.TIMEOUT_SECONDS: fallback.timeout_seconds,
            JobField.MAX_ATTEMPTS: attempts + fallback.max_attempts,
        }
        done = self._retry(job, status, attempts, expect, error, fields)
        if done.startswith("retry"):
            _aws.log("WARNING", "job_fallback", job_id=job[JobField.JOB_ID], **record)
            return f"fallback: {fallback.name}"
        return done

    def _retry(
        self,
        job: dict[str, Any],
        status: JobStatus,
        attempts: int,
        expect: dict[str, Any],
        error: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> str:
        job_id = str(job[JobField.JOB_ID])
        try:
            self.store.transition(
                job_id,
                status,
                JobStatus.QUEUED,
                attempt=attempts,
                expect=expect,
                set_fields={JobField.ERROR: {**error, "attempt": attempts}, **(extra or {})},
                remove_fields=[JobField.TASK_ARN, JobField.HEARTBEAT_AT],
            )
        except TransitionConflict:
            return "ignored: job moved on"
        worker = get_worker(self.store, str(job[JobField.WORKER]))
        sent = worker is not None and _aws.enqueue_job(worker.queue_url, job_id, attempts)
        _aws.log(
            "WARNING",
            "job_retry",
            job_id=job_id,
            attempt=attempts,
            error_type=error["type"],
            enqueued=sent,
        )
        return f"retry: {error['type']}"

    def _finish(
        self,
        job: dict[str, Any],
        status: JobStatus,
        attempts: int,
        expect: dict[str, Any],
        target: JobStatus,
        error: dict[str, Any] | None,
    ) -> str:
        job_id = str(job[JobField.JOB_ID])
        fields: dict[str, Any] = {}
        if error is not None:
            fields[JobField.ERROR] = {**error, "attempt": attempts}
        try:
            done = self.store.transition(
                job_id,
                status,
                target,
                attempt=attempts,
                expect=expect,
                set_fields=fields or None,
            )
        except TransitionConflict:
            return "ignored: job moved on"
        _aws.log(
            "ERROR" if target == JobStatus.FAILED else "INFO",
            f"job_{target.value.lower()}",
            job_id=job_id,
            attempts=attempts,
            error=error,
        )
        self._ended(done)
        return f"final: {target.value}"

    def _ended(self, job: dict[str, Any]) -> None:
        """A job ended: report it, or, for an array job's child, count it on its parent
        (``handlers.arrays``) and, when it was the last, merge and report the parent once."""
        if not job.get(JobField.PARENT_ID):
            self._notify_once(job)
            return
        parent = arrays.record_end(self.store, job)
        if parent is not None:
            self.finish_parent(parent)

    def finish_parent(
        self,
        parent: dict[str, Any],
        now: datetime | None = None,
        read_many: arrays.ReadMany | None = None,
    ) -> dict[str, Any] | None:
        """Merge and end a parent whose children are all counted, then report it once."""
        done = arrays.finalize(self.store, parent, now, read_many or read_side_by_side)
        if done is not None:
            self._notify_once(done)
        return done

    def _notify_once(self, job: dict[str, Any]) -> None:
        if not notify.wanted(str(job[JobField.STATUS])):
            return  # no sink takes this outcome: nothing to send, nothing to mark
        try:
            claimed = self.store.update(
                str(job[JobField.JOB_ID]),
                status=job[JobField.STATUS],
                set_fields={NOTIFIED_AT: now_iso()},
                expect={NOTIFIED_AT: None},
            )
        except TransitionConflict:
            return  # already notified (duplicate event) or the job changed
        notify.job_finished(claimed)


def read_side_by_side(fn: Any, items: list[Any]) -> list[Any]:
    """The merge's reads of children's results, ``arrays.READ_THREADS`` at once."""
    with ThreadPoolExecutor(arrays.READ_THREADS) as pool:
        return list(pool.map(lambda item: fn(item), items))


def _same_cluster(configured: str, actual: str) -> bool:
    return configured == actual or configured.rsplit("/", 1)[-1] == actual.rsplit("/", 1)[-1]


def _lease_key(task: StoppedTask) -> str | None:
    """The lease of a task the launcher started: named by its job id and attempt."""
    job_id, attempt = task.env.get(Env.JOB_ID), task.env.get(Env.JOB_ATTEMPT, "")
    if not job_id or not JOB_ID_RE.match(job_id) or not attempt.isdigit():
        return None
    return slot_key(job_id, int(attempt))


def _send_drain(worker: str, store: JobStore) -> None:
    """Ask the launcher to hand the freed slot on (best effort: the sweep drains too)."""
    url = _aws.env(Env.LAUNCH_QUEUE_URL, "")
    if not url:
        registration = get_worker(store, worker) if worker else None
        url = registration.queue_url if registration else ""
    if not url:
        return
    try:
        _aws.client("sqs").send_message(QueueUrl=url, **drain_message())
    except (ClientError, BotoCoreError) as exc:
        _aws.log("WARNING", "drain_request_failed", error=str(exc))


def handler(event: dict[str, Any], context: Any = None) -> dict[str, str]:
    """Lambda entry point (EventBridge rule on ECS Task State Change, lastStatus STOPPED).

    AWS errors propagate so that EventBridge / Lambda retry the event asynchronously, except
    an AccessDenied: IAM answers every retry the same, so it is logged (naming the call) and the
    event ends here; the sweep settles the job from its stale heartbeat."""
    detail = event.get("detail") or {}
    try:
        outcome = Reconciler().handle_event(event)
    except ClientError as exc:
        denied = access_denied_error(exc)
        if denied is None:
            raise
        _aws.log("ERROR", "access_denied", task_arn=detail.get("taskArn"), error=denied["message"])
        return {"outcome": "denied"}
    _aws.log("INFO", "task_stopped", task_arn=detail.get("taskArn"), outcome=outcome)
    return {"outcome": outcome}
