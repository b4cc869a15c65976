"""Sweep (scheduled every few minutes): what no event will ever fix.

Fargate has no task timeout, and events can be lost, so periodically:

- RUNNING past ``timeout_seconds`` (+ a grace period for the worker's own timeout handling)
  from when it started -> ``ecs.StopTask`` with reason ``"Timeout: ..."``; the reconciler
  finishes the job when the STOPPED event arrives (retry or FAILED).
- RUNNING without a heartbeat for ``BATCH_HEARTBEAT_STALE_SECONDS`` (default 300) ->
  ``StopTask`` with reason ``"Heartbeat: ..."``.
- DISPATCHED for longer than ``BATCH_DISPATCH_STALE_SECONDS`` (default 900; the task never
  started) -> ``StopTask`` with reason ``"Timeout: task did not start ..."``.
- A task of a Managed Instances worker still waiting for an instance (job DISPATCHED, task
  not RUNNING) past the worker's ``startup_timeout_seconds`` -> ``StopTask`` with reason
  ``"StartupTimeout: ..."`` (``jobcontract.managed_instances``); the reconciler retries it
  at the next step of the launch chain. That wait replaces the dispatch limit above for such
  a task, and none of it counts against the job's run timeout, which starts at RUNNING.
- For those, when the task is already STOPPED or unknown to ECS (its event was lost), or the
  launch never recorded a task, the job is settled here directly with the reconciler's
  conditional transitions (so the sweep and a late event cannot both act).
- QUEUED for longer than ``BATCH_REDRIVE_SECONDS`` (default 900): the SQS message is re-sent
  (an SQS send that failed after the job was written, a message dropped to the DLQ). The
  launcher's claim is conditional, so a duplicate is harmless. A parked job (waiting for a
  slot, ``waiting_since``) has no message and is not redriven.
- Dispatch backstops (``jobcontract.dispatch``): a task's lease whose task ECS reports
  STOPPED (or no longer knows) is settled and released as its lost STOPPED event would have
  done; and while any job is parked, a drain request goes to the launcher, in case the
  reconciler's was lost.
- The reconciler's failed events (its on-failure destination, ``handlers/failed_events.py``):
  each handed to the reconciler again, so a scheduled array run whose every reconciler
  attempt failed before its parent row existed is still created and fanned out.
- An array job's parent: the cancel cascade, a lost fan-out message re-sent (a manifest's,
  or the items kept with a scheduled run's parent whose reconciler died mid-fan-out: the
  launcher's fan-out step writes what is missing), a recount of lost ends, a lost merge.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws, arrays, failed_events
from handlers.launch_jobs import send_resume
from handlers.reconciler import Reconciler
from handlers.registry import get_worker
from handlers.stopped_task import StoppedTask
from jobcontract import Env, JobField, JobStatus
from jobcontract.arrays import all_created, fan_out_source, fanout_message, is_complete
from jobcontract.dispatch import Dispatch, drain_message
from jobcontract.dispatch import F as DispatchField
from jobcontract.job import Job
from jobcontract.managed_instances import STARTUP_TIMEOUT_PREFIX, startup_timeout_reason
from jobcontract.store import JobStore, parse_iso

DEFAULT_HEARTBEAT_STALE = 300
DISPATCH_STALE_ENV = "BATCH_DISPATCH_STALE_SECONDS"
DEFAULT_DISPATCH_STALE = 900
REDRIVE_ENV = "BATCH_REDRIVE_SECONDS"
DEFAULT_REDRIVE = 900
STALLED_LAUNCH_SECONDS = 60  # a claimed launch with no task recorded after this is resumed
TIMEOUT_GRACE_SECONDS = 120  # the worker's own timeout exits first (Fargate stopTimeout max)


@dataclass
class SweepReport:
    stopped: list[str] = field(default_factory=list)  # job ids whose task was stopped
    settled: dict[str, str] = field(default_factory=dict)  # job id -> reconciler outcome
    redriven: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)  # leases of tasks gone without an event
    resumed: list[str] = field(default_factory=list)  # claimed launches that never answered
    drain_requested: bool = False
    # The reconciler's failed events handled again: message id -> outcome ("kept: ..." stays).
    failed_events: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _age(now: datetime, stamp: Any) -> float | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    return (now - parse_iso(stamp)).total_seconds()


class Sweeper:
    def __init__(self, store: JobStore | None = None, now: datetime | None = None) -> None:
        self.store = store or JobStore(_aws.env(Env.JOBS_TABLE), client=_aws.client("dynamodb"))
        self.now = now or datetime.now(UTC)
        self.cluster = _aws.env(Env.CLUSTER_ARN)
        self.ecs = _aws.client("ecs")
        self.reconciler = Reconciler(self.store)
        self.dispatch = Dispatch(self.store)
        self.heartbeat_stale = _aws.env_int(Env.HEARTBEAT_STALE_SECONDS, DEFAULT_HEARTBEAT_STALE)
        self.dispatch_stale = _aws.env_int(DISPATCH_STALE_ENV, DEFAULT_DISPATCH_STALE)
        self.redrive_after = _aws.env_int(REDRIVE_ENV, DEFAULT_REDRIVE)
        self.report = SweepReport()

    def run(self) -> SweepReport:
        # First: an event the reconciler failed on may create a row the rest looks at.
        self.report.failed_events = failed_events.redrive(self.reconciler)
        due: list[tuple[dict[str, Any], str]] = []
        parents: list[dict[str, Any]] = []
        for job in self.store.list_by_status(JobStatus.RUNNING):
            if job.get(JobField.ARRAY):  # an array job's parent: no task, no heartbeat
                parents.append(job)
                continue
            reason = self._running_problem(job)
            if reason:
                due.append((job, reason))
        for job in self.store.list_by_status(JobStatus.DISPATCHED):
            reason = self._dispatched_problem(job)
            if reason:
                due.append((job, reason))
        self._act(due)
        for parent in parents:
            self._settle_parent(parent)
        for job in self.store.list_by_status(JobStatus.QUEUED):
            if not job.get(JobField.WAITING_SINCE):  # a parked job has no message to redo
                self._maybe_redrive(job)
        self._release_lost_slots()
        self._resume_stalled_launches()
        self._drain_if_waiting()
        return self.report

    def _resume_stalled_launches(self) -> None:
        """A launch the drain claimed but whose RunTask never answered (the launcher died in
        between) has no message to resume it: send one, after ``STALLED_LAUNCH_SECONDS``."""
        for lease in self.dispatch.leases():
            age = _age(self.now, lease.get(JobField.CREATED_AT)) or 0
            if lease.get(DispatchField.TASK_ARN) or age <= STALLED_LAUNCH_SECONDS:
                continue
            job = self.store.get(str(lease.get(DispatchField.CURRENT_JOB, "")))
            if job is None or job.get(JobField.TASK_ARN):
                continue
            run = Job.from_item(job).attempts
            if job.get(JobField.STATUS) != JobStatus.DISPATCHED.value or run != int(
                lease.get(DispatchField.CURRENT_ATTEMPT, -1)
            ):
                continue
            worker = get_worker(self.store, str(job[JobField.WORKER]))
            if worker is not None and send_resume(job, worker.queue_url):
                self.report.resumed.append(str(job[JobField.JOB_ID]))

    # --- array jobs ---------------------------------------------------------------------
    def _settle_parent(self, parent: dict[str, Any]) -> None:
        """Backstops of an array job's parent: go on with a cancel cascade; once it has been
        quiet for ``BATCH_REDRIVE_SECONDS``, re-send a lost fan-out message (or ask for one:
        a scheduled run's reconciler that died mid-fan-out, its items kept with the parent)
        or count the children whose end was not counted (their event was lost); merge when every
        child is counted but nobody merged (the API counted the last, or a merge died)."""
        cancelled = bool(parent.get(JobField.CANCEL_REQUESTED))
        if cancelled:
            arrays.cancel_children(self.store, parent, self._stop_cancelled)
            parent = self.store.get(str(parent[JobField.JOB_ID])) or parent
        quiet = _age(self.now, parent.get(JobField.UPDATED_AT)) or 0
        if quiet > self.redrive_after and not all_created(parent) and not cancelled:
            self._resend_fanout(parent)  # its fan-out message was lost
        elif not is_complete(parent) and quiet > self.redrive_after:
            parent = arrays.recount(self.store, parent)
        if is_complete(parent):
            done = self.reconciler.finish_parent(parent, self.now, _read_side_by_side)
            if done is not None:
                self.report.settled[str(parent[JobField.JOB_ID])] = f"final: {done['status']}"

    def _resend_fanout(self, parent: dict[str, Any]) -> None:
        worker = get_worker(self.store, str(parent[JobField.WORKER]))
        if not fan_out_source(parent) or worker is None:
            return  # no manifest, no kept items: only a replay of the request can create them
        url = _aws.env(Env.LAUNCH_QUEUE_URL, "") or worker.queue_url
        try:
            _aws.client("sqs").send_message(
                QueueUrl=url, **fanout_message(str(parent[JobField.JOB_ID]))
            )
        except (ClientError, BotoCoreError) as exc:
            _aws.log("ERROR", "sweep_fanout_failed", job_id=parent[JobField.JOB_ID], error=str(exc))
            return
        self.report.redriven.append(str(parent[JobField.JOB_ID]))

    def _stop_cancelled(self, child: dict[str, Any]) -> None:
        task_arn = child.get(JobField.TASK_ARN)
        if task_arn:
            self._stop(str(child[JobField.JOB_ID]), str(task_arn), "Cancelled with its array job")

    # --- dispatch backstops -------------------------------------------------------------
    def _release_lost_slots(self) -> None:
        """Leases of tasks ECS no longer runs (their STOPPED event was lost), and leases whose
        launch never recorded a task long after the job sweep settled it: give them back."""
        old = [
            lease
            for lease in self.dispatch.leases()
            if (_age(self.now, lease.get("created_at")) or 0) > self.dispatch_stale
        ]
        for lease in old:
            if not lease.get(
                DispatchField.TASK_ARN
            ):  # its task ARN was not recorded: its job's, if any
                job = self.store.get(str(lease.get(DispatchField.CURRENT_JOB, "")))
                if job and JobStatus(job[JobField.STATUS]) in (
                    JobStatus.DISPATCHED,
                    JobStatus.RUNNING,
                ):
                    lease[DispatchField.TASK_ARN] = job.get(JobField.TASK_ARN)
        arns = [
            str(lease[DispatchField.TASK_ARN]) for lease in old if lease.get(DispatchField.TASK_ARN)
        ]
        known = self._describe(arns)
        for lease in old:
            arn = lease.get(DispatchField.TASK_ARN)
            task = known.get(str(arn)) if arn else None
            if task is not None and task.get("lastStatus") != "STOPPED":
                continue  # still running: its own event will release it
            if arn and task is not None:
                # Stopped, and the event never came: settle its job as the reconciler would.
                self.reconciler.handle_event({"detail": {**task, "lastStatus": "STOPPED"}})
                continue
            if self.dispatch.release(str(lease["pk"]), lease_item=lease):
                self.report.released.append(str(lease["pk"]))

    def _drain_if_waiting(self) -> None:
        """Backstop of the reconciler's drain request: jobs park while slots are free only
        if a request was lost, so ask again when any job waits."""
        counts, _ = self.dispatch.counts()
        if not any(int(c.get(DispatchField.WAITING, 0) or 0) > 0 for c in counts.values()):
            return
        url = _aws.env(Env.LAUNCH_QUEUE_URL, "")
        if not url:
            worker = get_worker(self.store, next(iter(counts)))
            url = worker.queue_url if worker else ""
        try:
            _aws.client("sqs").send_message(QueueUrl=url, **drain_message())
        except (ClientError, BotoCoreError, ValueError) as exc:
            _aws.log("ERROR", "sweep_drain_failed", error=str(exc))
            return
        self.report.drain_requested = True

    # --- what is wrong ----------------------------------------------------------------
    def _running_problem(self, job: dict[str, Any]) -> str | None:
        stamps = job.get(JobField.TIMESTAMPS) or {}
        started = _age(self.now, stamps.get(JobStatus.RUNNING.value))
        timeout = int(job.get(JobField.TIMEOUT_SECONDS) or 0)
        if started is not None and timeout and started > timeout + TIMEOUT_GRACE_SECONDS:
            return f"Timeout: job ran longer than its {timeout} s timeout"
        beat = _age(self.now, job.get(JobField.HEARTBEAT_AT) or stamps.get("RUNNING"))
        if beat is not None and beat > self.heartbeat_stale:
            return f"Heartbeat: no heartbeat for {int(beat)} s (limit {self.heartbeat_stale} s)"
        return None

    def _dispatched_problem(self, job: dict[str, Any]) -> str | None:
        stamps = job.get(JobField.TIMESTAMPS) or {}
        waited = _age(self.now, stamps.get(JobStatus.DISPATCHED.value))
        limit = self._startup_timeout(job)
        if limit is not None:  # a launched task may wait for its instance this long
            if waited is not None and waited > limit:
                return startup_timeout_reason(waited, limit)
            return None
        if waited is not None and waited > self.dispatch_stale:
            return f"Timeout: task did not start within {self.dispatch_stale} s"
        return None

    def _startup_timeout(self, job: dict[str, Any]) -> int | None:
        """The start-up timeout of a job's launched task on Managed Instances; None for a
        Fargate task (or a fallback worker's) and for a launch that recorded no task yet."""
        if not job.get(JobField.TASK_ARN) or (job.get(JobField.FALLBACK) or {}).get("worker"):
            return None
        worker = get_worker(self.store, str(job[JobField.WORKER]))
        if worker is None or not worker.managed_instances:
            return None
        return worker.startup_timeout_seconds

    def _started_but_unclaimed(self, task: dict[str, Any]) -> str | None:
        """A task past its start-up timeout that ECS reports RUNNING got its instance: only
        the generic dispatch limit applies, counted from when it started."""
        started = task.get("startedAt")  # boto3 parses it to a datetime
        if isinstance(started, datetime) and (
            (self.now - started).total_seconds() > self.dispatch_stale
        ):
            return f"Timeout: task did not start within {self.dispatch_stale} s"
        return None

    # --- acting -----------------------------------------------------------------------
    def _act(self, due: list[tuple[dict[str, Any], str]]) -> None:
        arns = [str(j[JobField.TASK_ARN]) for j, _ in due if j.get(JobField.TASK_ARN)]
        known = self._describe(arns)
        for job, reason in due:
            job_id = str(job[JobField.JOB_ID])
            task_arn = job.get(JobField.TASK_ARN)
            if not task_arn:
                lost = StoppedTask.lost("", self.cluster, f"TaskLost: never launched ({reason})")
                self.report.settled[job_id] = self.reconciler.apply(job, lost)
                continue
            task = known.get(str(task_arn))
            if task is None:
                lost = StoppedTask.lost(str(task_arn), self.cluster, f"TaskLost: {reason}")
                self.report.settled[job_id] = self.reconciler.apply(job, lost)
            elif task.get("lastStatus") == "STOPPED":
                stopped = StoppedTask.from_detail(task)
                self.report.settled[job_id] = self.reconciler.apply(job, stopped)
            elif reason.startswith(STARTUP_TIMEOUT_PREFIX) and task.get("lastStatus") == "RUNNING":
                late = self._started_but_unclaimed(task)
                if late:
                    self._stop(job_id, str(task_arn), late)
            else:
                self._stop(job_id, str(task_arn), reason)

    def _describe(self, arns: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(arns), 100):
            resp = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[start : start + 100])
            for task in resp.get("tasks", []):
                found[str(task["taskArn"])] = task
        return found

    def _stop(self, job_id: str, task_arn: str, reason: str) -> None:
        try:
            self.ecs.stop_task(cluster=self.cluster, task=task_arn, reason=reason[:255])
        except (ClientError, BotoCoreError) as exc:
            _aws.log("WARNING", "sweep_stop_failed", job_id=job_id, error=str(exc))
            return
        _aws.log("WARNING", "sweep_stopped_task", job_id=job_id, task_arn=task_arn, reason=reason)
        self.report.stopped.append(job_id)

    def _maybe_redrive(self, job: dict[str, Any]) -> None:
        stamps = job.get(JobField.TIMESTAMPS) or {}
        waited = _age(self.now, job.get(JobField.UPDATED_AT) or stamps.get("QUEUED"))
        if waited is None or waited <= self.redrive_after:
            return
        job_id = str(job[JobField.JOB_ID])
        if job_id in self.report.settled:
            return  # re-queued by this very sweep: its message was just sent
        worker = get_worker(self.store, str(job[JobField.WORKER]))
        if worker is None:
            return
        attempt = Job.from_item(job).attempts
        # A deliberate re-send: SQS FIFO silently drops a message whose deduplication id it
        # accepted in the last 5 minutes (even if that message is gone), so the redrive gets
        # its own id. A duplicate is harmless: the launcher's claim is conditional.
        dedup_id = redrive_dedup_id(job_id, attempt, self.now)
        if not _aws.enqueue_job(
            worker.queue_url,
            job_id,
            attempt,
            dedup_id=dedup_id,
            failed_event="sweep_redrive_failed",
        ):
            return
        # Touch updated_at so the next sweep waits again before re-sending.
        try:
            self.store.update(
                job_id, status=JobStatus.QUEUED, attempt=attempt, set_fields={"redriven": True}
            )
        except Exception as exc:  # the job moved on (e.g. launched): nothing to do
            _aws.log("INFO", "sweep_redrive_raced", job_id=job_id, error=str(exc))
        self.report.redriven.append(job_id)


def _read_side_by_side(fn: Any, items: list[Any]) -> list[Any]:
    """The merge's reads of children's results, side by side (here, so the sweep's pool
    threads run the sweep's code)."""
    with ThreadPoolExecutor(arrays.READ_THREADS) as pool:
        return list(pool.map(lambda item: fn(item), items))


def redrive_dedup_id(job_id: str, attempt: int, now: datetime) -> str:
    """FIFO deduplication id of one sweep redrive (at most 128 characters)."""
    return f"{job_id}-{attempt}-redrive-{int(now.timestamp())}"[-128:]


def handler(event: dict[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
    """Lambda entry point (EventBridge Scheduler, e.g. rate(5 minutes))."""
    report = Sweeper().run().as_dict()
    _aws.log(
        "INFO",
        "sweep_done",
        stopped=len(report["stopped"]),
        settled=len(report["settled"]),
        redriven=len(report["redriven"]),
        released=len(report["released"]),
        failed_events=len(report["failed_events"]),
    )
    return report
