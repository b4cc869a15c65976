"""One job's run (step by step in ``workers.runtime.lifecycle``'s docstring): ``JobRun.execute``
claims the job (``claim.py``), starts the heartbeat (and, with a timeout, the watchdog) thread,
runs the handler and records the end: SUCCEEDED with the result, FAILED, or an error on the
RUNNING item for the reconciler. Every job write is conditional on status and attempt."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from jobcontract import (
    DEFAULT_MAX_FAILED_ITEM_SHARE,
    JobField,
    JobStatus,
    access_denied_error,
    items_failed_error,
    result_key,
)
from jobcontract.job import Job
from jobcontract.store import JobStore, TransitionConflict, now_iso
from workers.runtime import exit_codes
from workers.runtime.checkpoint import Checkpoint
from workers.runtime.claim import claim_job
from workers.runtime.context import (
    JobContext,
    PermanentError,
    ProgressTracker,
    StopFlag,
    StopReason,
    StopRequested,
    error_summary,
)
from workers.runtime.definition import WorkerDefinition
from workers.runtime.job_objects import JobObjects
from workers.runtime.logs import JsonLogger
from workers.runtime.model import ModelClient
from workers.runtime.settings import ConfigError, Settings


class JobRun:
    """State of one run; ``execute`` is the whole lifecycle described in the module doc."""

    def __init__(
        self,
        definition: WorkerDefinition,
        settings: Settings,
        env: Mapping[str, str],
        *,
        store: JobStore,
        s3: Any,
        model: ModelClient | None,
        logger: JsonLogger,
        hard_exit: Callable[[int], None],
        stop: StopFlag | None = None,
    ) -> None:
        self.definition = definition
        self.settings = settings
        self.env = env
        self.store = store
        self.objects = JobObjects(s3, settings.bucket, definition, logger)
        self.model = model
        self.logger = logger
        self.hard_exit = hard_exit
        self.stop = stop or StopFlag()
        self.finished = threading.Event()
        self.finishing = threading.Lock()  # held by whoever records the end of the job
        # Set once the end is being recorded: a heartbeat or progress write racing the final
        # transition is then pointless, and its conflict is not a lost job.
        self.ending = threading.Event()
        self.job_id = ""
        self.attempt = 0
        self.timeout: float | None = None
        # Progress is stored at most once per heartbeat interval (the heartbeat carries it
        # too, and the final transition stores the last value): a job shorter than one
        # interval makes no progress write at all.
        self.progress = ProgressTracker(self._write_progress, settings.heartbeat_seconds)
        self.checkpoint = Checkpoint()
        self.context: JobContext | None = None  # set once the handler is about to run
        self.max_failed_item_share: float | int = DEFAULT_MAX_FAILED_ITEM_SHARE
        self.array_child = False  # the claimed job is an array job's child (``parent_id``)
        self.handed_over = False  # a scheduled array run: the reconciler creates its job

    # --- lifecycle ----------------------------------------------------------------------
    def execute(self) -> int:
        started = time.monotonic()
        try:
            job = self._claim()
        except ConfigError as exc:
            self.logger.error("config_error", message=str(exc))
            return exit_codes.CONFIG
        except Exception as exc:
            denied = access_denied_error(exc)
            if denied is None:
                raise
            # The job row itself cannot be written: say why, and let the reconciler fail it.
            self.logger.error("access_denied", **denied)
            return exit_codes.ACCESS_DENIED
        if job is None:
            return exit_codes.OK if self.handed_over else exit_codes.NOT_RUNNABLE
        self.array_child = bool(job.get(JobField.PARENT_ID))
        self.timeout = _effective_timeout(self.settings.timeout_seconds, job)
        threads = [threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)]
        if self.timeout is not None:
            threads.append(threading.Thread(target=self._watchdog, name="watchdog", daemon=True))
        for thread in threads:
            thread.start()
        try:
            code = self._run_handler(job)
        finally:
            self.finished.set()
            for thread in threads:
                thread.join(timeout=5)
        self.logger.info(
            "job_exit", exit_code=code, duration_ms=int((time.monotonic() - started) * 1000)
        )
        return code

    def _claim(self) -> dict[str, Any] | None:
        """Mark the job RUNNING for this attempt (or create a scheduled job); None = not ours
        (``workers.runtime.claim``)."""
        claimed = claim_job(self.settings, self.definition.name, self.env, self.store, self.logger)
        self.job_id, self.attempt, job = claimed.job_id, claimed.attempt, claimed.job
        self.handed_over = claimed.handed_over
        if job is not None:
            self.progress.mark_written(None)  # the RUNNING write starts the progress interval
        return job

    def _run_handler(self, job: Mapping[str, Any]) -> int:
        self.max_failed_item_share = Job.from_item(job).max_failed_item_share
        try:
            job_input = self.objects.load_input(job)
            self.checkpoint = self.objects.load_checkpoint(job)
            ctx = self.context = JobContext(
                job=job,
                worker=self.definition.name,
                attempt=self.attempt,
                input=job_input,
                logger=self.logger,
                stop=self.stop,
                progress=self.progress,
                model=self.model,
                read_object=self.objects.read,
                checkpoint=self.checkpoint,
            )
            output = self.definition.handler(ctx)
            if not isinstance(output, Mapping):
                raise TypeError(f"handler returned {type(output).__name__}, not a mapping")
        except StopRequested as stopped:
            return self._stopped(stopped)
        except PermanentError as exc:
            return self._finish_failed(error_summary(exc), exit_codes.FAILED)
        except Exception as exc:
            denied = access_denied_error(exc)
            if denied is not None:  # IAM said no: a retry would be denied again
                return self._finish_failed(denied, exit_codes.FAILED)
            return self._crashed(exc)
        try:
            return self._succeed(output)
        except Exception as exc:
            return self._crashed(exc)

    # --- outcomes -------------------------------------------------------------------------
    def _succeed(self, output: Mapping[str, Any]) -> int:
        """The handler returned: store its result, then end the job. SUCCEEDED unless more
        of its items failed than it tolerates (``jobcontract.items_failed_error``): then
        FAILED with ``error.type == "ItemsFailed"`` and exit 10, not retried (item failures
        are the job's own outcome, see there), its result kept for the items that did run."""
        with self.finishing:
            self.ending.set()
            key = result_key(self.definition.name, self.job_id)
            document = {
                "job_id": self.job_id,
                "worker": self.definition.name,
                "attempt": self.attempt,
                "completed_at": now_iso(),
                "output": output,
            }
            body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
            items = self.context.item_counts() if self.context is not None else None
            failed = items_failed_error(items, self.max_failed_item_share) if items else None
            progress = self.progress.snapshot()  # the fence's heartbeat carries it
            try:
                self.objects.put_result(
                    key, body, lambda: self.store.heartbeat(self.job_id, self.attempt, progress)
                )
            except TransitionConflict as conflict:
                return self._lost(conflict)
            fields: dict[str, Any] = {JobField.RESULT_KEY: key}
            if failed is None:
                lost = self._record_end(JobStatus.SUCCEEDED, fields, remove=(JobField.ERROR,))
            else:
                fields[JobField.ERROR] = {**failed, "exit_code": exit_codes.FAILED}
                lost = self._record_end(JobStatus.FAILED, fields)
        if lost is not None:
            return lost
        if failed is not None:
            self.logger.error("job_failed", items=items, result_key=key, **failed)
            return exit_codes.FAILED
        counts = {"items": items} if items is not None else {}
        self.logger.info("job_succeeded", result_key=key, result_bytes=len(body), **counts)
        return exit_codes.OK

    def _record_end(
        self,
        status: JobStatus,
        fields: Mapping[str, Any],
        remove: tuple[str, ...] = (),
    ) -> int | None:
        """RUNNING -> ``status`` for this attempt: the one write of a job's end by the
        runtime, with the last progress and the item counts (``JobField.ITEMS``) when the
        handler mapped items. None when written, else the exit code of a lost job; the
        caller holds ``finishing``."""
        self.ending.set()
        values: dict[str, Any] = dict(fields)
        progress = self.progress.snapshot()
        if progress is not None:
            values[JobField.PROGRESS] = progress
        items = self.context.item_counts() if self.context is not None else None
        if items is not None:
            values[JobField.ITEMS] = items
        try:
            self.store.transition(
                self.job_id,
                JobStatus.RUNNING,
                status,
                attempt=self.attempt,
                set_fields=values,
                remove_fields=remove,
            )
        except TransitionConflict as conflict:
            return self._lost(conflict)
        return None

    def _finish_failed(self, error: dict[str, Any], code: int) -> int:
        with self.finishing:
            return self._record_failed(error, code)

    def _record_failed(self, error: dict[str, Any], code: int) -> int:
        """RUNNING -> FAILED for this attempt; the caller holds ``finishing``."""
        lost = self._record_end(JobStatus.FAILED, {JobField.ERROR: {**error, "exit_code": code}})
        if lost is not None:
            return lost
        self.logger.error("job_failed", **error)
        return code

    def _crashed(self, exc: BaseException) -> int:
        summary = error_summary(exc)
        self.logger.error("job_crashed", **summary)
        self._record_on_running({**summary, "exit_code": exit_codes.CRASH})
        return exit_codes.CRASH

    def _stopped(self, stopped: StopRequested) -> int:
        reason: StopReason = stopped.reason
        where = f"{stopped.done}/{stopped.total} items" if stopped.total is not None else "early"
        if reason == "timeout":
            message = f"worker timeout of {self.timeout:g}s reached after {where}"
            return self._finish_failed({"type": "Timeout", "message": message}, exit_codes.TIMEOUT)
        if reason == "interrupted":
            saved = self.objects.save_checkpoint(self.job_id, self.checkpoint)
            self._record_on_running(
                {
                    "type": "Interrupted",
                    "message": f"SIGTERM: stopped after {where}; retry expected",
                    "exit_code": exit_codes.INTERRUPTED,
                },
                {JobField.CHECKPOINT_KEY: saved} if saved else None,
            )
            self.logger.warning("job_interrupted", progress=self.progress.snapshot())
            return exit_codes.INTERRUPTED
        self.logger.warning("job_abandoned", reason=reason)
        return exit_codes.NOT_RUNNABLE

    def _lost(self, conflict: TransitionConflict) -> int:
        current = conflict.current or {}
        self.logger.warning(
            "job_taken_over",
            status=current.get(JobField.STATUS, "absent"),
            attempts=current.get(JobField.ATTEMPTS),
        )
        return exit_codes.NOT_RUNNABLE

    def _record_on_running(
        self, error: dict[str, Any], extra: Mapping[str, Any] | None = None
    ) -> None:
        """Store ``error`` (and progress) on the RUNNING item for the reconciler and people."""
        fields: dict[str, Any] = {JobField.ERROR: error, **(extra or {})}
        progress = self.progress.snapshot()
        if progress is not None:
            fields[JobField.PROGRESS] = progress
        try:
            self.store.update(
                self.job_id, status=JobStatus.RUNNING, attempt=self.attempt, set_fields=fields
            )
            self.progress.mark_written(progress)
        except Exception as exc:  # visibility only: the exit code still tells the reconciler
            self.logger.warning("error_not_recorded", **error_summary(exc))

    # --- writes ------------------------------------------------------------------------

    def _write_progress(self, progress: dict[str, int]) -> None:
        if self.ending.is_set():
            return  # the final transition stores the last progress
        try:
            self.store.heartbeat(self.job_id, self.attempt, progress)
        except TransitionConflict:
            if not self.ending.is_set() and self.stop.set("lost"):
                self.logger.warning("job_lost", reason="progress write rejected")
        except Exception as exc:  # progress is best effort; the heartbeat retries it
            self.logger.warning("progress_not_written", **error_summary(exc))

    # --- background threads ---------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self.finished.wait(self.settings.heartbeat_seconds):
            if self.ending.is_set():
                return
            progress = self.progress.snapshot()
            try:
                item = self.store.heartbeat(self.job_id, self.attempt, progress)
                self.progress.mark_written(progress)
            except TransitionConflict as conflict:
                current = conflict.current or {}
                if self.ending.is_set():
                    return
                if self.stop.set("lost"):
                    self.logger.warning("job_lost", status=current.get(JobField.STATUS, "absent"))
                continue
            except Exception as exc:  # a missed beat is not fatal; the sweep tolerates a few
                self.logger.warning("heartbeat_failed", **error_summary(exc))
                continue
            if item.get(JobField.CANCEL_REQUESTED) and self.stop.set("cancelled"):
                self.logger.warning("cancel_requested")

    def _watchdog(self) -> None:
        assert self.timeout is not None
        if self.finished.wait(self.timeout):
            return
        if self.stop.set("timeout"):
            self.logger.warning("timeout_reached", timeout_seconds=self.timeout)
        grace = min(30.0, max(1.0, self.timeout * 0.1))
        if self.finished.wait(grace) or not self.finishing.acquire(blocking=False):
            return  # done, or the main thread is recording the end right now
        # The handler ignored the stop flag: record the timeout and end the process here,
        # holding ``finishing`` so the main thread cannot record another end meanwhile.
        try:
            self.logger.error("handler_unresponsive", grace_seconds=grace)
            message = f"worker timeout of {self.timeout:g}s reached; handler did not stop"
            code = self._record_failed({"type": "Timeout", "message": message}, exit_codes.TIMEOUT)
            self.hard_exit(code)
        finally:
            self.finishing.release()


def _effective_timeout(configured: float | None, job: Mapping[str, Any]) -> float | None:
    from_job = job.get(JobField.TIMEOUT_SECONDS)
    candidates = [float(v) for v in (configured, from_job) if v]
    return min(candidates) if candidates else None
