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

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws, arrays, manifest_api, notify
from handlers.attempt_ends import AttemptEnds
from handlers.registry import WorkerRegistration, family_of, get_worker, worker_by_family
from handlers.stopped_task import StoppedTask, classify
from jobcontract import (
    JOB_ID_RE,
    TAG_JOB_ID,
    Env,
    JobField,
    JobStatus,
    access_denied_error,
    scheduled_job_id,
    worker_of_job_id,
)
from jobcontract import arrays as arrays_contract
from jobcontract.arrays import RequestRejected
from jobcontract.dispatch import Dispatch, drain_message, slot_key
from jobcontract.dispatch import F as DispatchField
from jobcontract.job import Job
from jobcontract.managed_instances import classify_stop
from jobcontract.scheduled import (
    SOURCE_SCHEDULE,
    RunDefaults,
    ScheduledRequest,
    array_parent,
    plan_array,
    scheduled_job,
)
from jobcontract.store import JobExists, JobStore

ACTIVE = (JobStatus.DISPATCHED, JobStatus.RUNNING)


class Reconciler(AttemptEnds):
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
