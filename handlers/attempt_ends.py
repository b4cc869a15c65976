"""How an attempt ends (the reconciler's, and the launcher's when its launch chain ran out):
a retry while attempts remain (at the next step of a Managed Instances worker's launch
chain, or handed to its fallback worker), else FAILED; a job's end reported once, or, for
an array job's child, counted on its parent (the last one merges and ends the parent)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from handlers import _aws, arrays, notify
from handlers.launch_ecs import LaunchState
from handlers.registry import WorkerRegistration, get_worker
from jobcontract import JobField, JobStatus
from jobcontract.job import Job
from jobcontract.managed_instances import capacity_backoff, next_step
from jobcontract.store import JobStore, TransitionConflict, now_iso

NOTIFIED_AT = "notified_at"
# Outcomes a retry would only repeat: the job fails at once.
NOT_RETRIED = frozenset({"AccessDenied"})


class AttemptEnds:
    """The ends of an attempt and of a job, on ``store`` (``Reconciler``'s base)."""

    store: JobStore

    def _launch_registration(self, job: dict[str, Any]) -> WorkerRegistration | None:
        """The registration whose task ran the attempt: the fallback worker's once the job was
        handed to it (``JobField.FALLBACK``), else the job's own worker's."""
        fallback = (job.get(JobField.FALLBACK) or {}).get("worker")
        return get_worker(self.store, str(fallback or job[JobField.WORKER]))

    # end_attempt, _hand_over, _retry and _finish each take the attempt as (job, status,
    # attempts, expect, error) (duplicates pairs the signatures): every step writes its own
    # conditional transition on those five, and each adds one thing (chain options, fallback
    # worker, extra fields, target status).
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

    # Shaped like the launcher's _run_once and _claim (duplicates pairs them): one typed
    # parameter a line; other steps, no shared logic.
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

    # Shaped like workers/runtime's JobContext constructor (duplicates pairs them): one
    # parameter a line, a different record.
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
        # The entry module's reader: its pool threads' AWS calls run on the reconciler's own
        # frames, so they are attributed to it (tests/authz/recorder.py); imported here, as
        # the reconciler imports this module.
        from handlers.reconciler import read_side_by_side

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
