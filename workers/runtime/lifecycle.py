"""Running one job: claim it, heartbeat, call the handler, store the result, record the end.

Lifecycle (every job write is conditional on status and on ``attempts == BATCH_JOB_ATTEMPT``,
so a stale task can neither start nor finish a newer attempt):

1. ``DISPATCHED -> RUNNING`` for this attempt, with the task ARN (ECS metadata endpoint) and a
   first heartbeat; the ALL_NEW item is the job (no second read). A scheduled task (started
   without ``BATCH_JOB_ID``) instead creates its own job ``<worker>_<task id>`` in RUNNING.
2. A heartbeat thread writes ``heartbeat_at`` (and progress) every
   ``BATCH_HEARTBEAT_INTERVAL_SECONDS`` (30); a cancel request or a lost fence stops the job.
   Progress is written at most once per interval, so a short job makes no write between
   RUNNING and its end (3 requests: RUNNING, result put, SUCCEEDED).
3. The handler runs. Outcomes (exit codes: ``workers.runtime.exit_codes``):
   - returns a dict -> ``result.json`` at ``jobcontract.result_key`` (a retry overwrites the
     same key), then ``RUNNING -> SUCCEEDED`` with ``result_key``; exit 0. The end carries
     the item counts of the handler's ``ctx.map`` calls (``items``: total, succeeded,
     failed); more failed items than the job's ``max_failed_item_share`` tolerates (default:
     none) end it ``FAILED`` instead, ``error.type == "ItemsFailed"``, exit 10, result kept,
     not retried (``jobcontract.items_failed_error`` says why);
   - raises ``PermanentError`` (bad input) -> ``FAILED`` with the error; exit 10 (exit 0
     means exactly "SUCCEEDED recorded": the reconciler trusts it without a read);
   - raises anything else -> a crash: the error is recorded on the still-RUNNING item and
     the process exits 1, so the reconciler retries (or fails it after max attempts);
   - SIGTERM (Spot interruption, StopTask) -> no new items, running items finish, progress
     is saved, exit 143: the reconciler retries;
   - the worker timeout (``BATCH_WORKER_TIMEOUT_SECONDS``, or the job's ``timeout_seconds``
     if smaller) -> no new items, ``FAILED`` with ``error.type == "Timeout"``, exit 124. A
     handler that ignores the stop flag is ended after a short grace period the same way:
     the timeout is decided here, not left to the sweep, because a retry of a job that ran
     out of time would most likely run out of time again.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any, TextIO

from jobcontract import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_FAILED_ITEM_SHARE,
    JOB_ID_RE,
    Env,
    JobField,
    JobStatus,
    access_denied_error,
    checkpoint_key,
    inputs_prefix,
    items_failed_error,
    new_job_id,
    result_key,
    results_prefix,
    scheduled_job_id,
    worker_of_job_id,
)
from jobcontract.dispatch import Claimed, Dispatch, slot_key, wait_for_next
from jobcontract.job import Job
from jobcontract.scheduled import (
    RunDefaults,
    ScheduledRequest,
    scheduled_job,
    task_definition_arn,
)
from jobcontract.store import JobExists, JobStore, TransitionConflict, now_iso
from workers.runtime import exit_codes
from workers.runtime.checkpoint import Checkpoint
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
from workers.runtime.ecs_metadata import task_metadata
from workers.runtime.logs import JsonLogger
from workers.runtime.model import ModelClient, ModelConfigError, model_client_from_env

DEFAULT_HEARTBEAT_SECONDS = 30.0
# S3 answers a conditional put on an existing key with 412 PreconditionFailed, or 409
# ConditionalRequestConflict while another conditional write of that key is in flight.
EXISTING_OBJECT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})


class ConfigError(ValueError):
    """The container environment cannot run a job (names the variable)."""


@dataclass(frozen=True)
class Settings:
    """The runtime's view of the container environment (``jobcontract.Env``)."""

    table: str
    bucket: str
    worker: str
    job_id: str | None
    attempt: int | None
    timeout_seconds: float | None
    heartbeat_seconds: float
    task_arn: str | None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    job_ttl_days: int | None = None
    reuse_idle_seconds: float = 0.0  # warm reuse window (0: one job per task)

    @classmethod
    def from_env(cls, env: Mapping[str, str], worker: str) -> Settings:
        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"{name} is not set")
            return value

        def positive(name: str, default: float | None) -> float | None:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r} is not a number") from exc
            if value <= 0:
                raise ConfigError(f"{name}={raw!r} must be positive")
            return value

        configured = env.get(Env.WORKER_NAME, "").strip()
        if configured and configured != worker:
            source = env.get(Env.WORKER_SOURCE, "").strip()
            raise ConfigError(
                f"{Env.WORKER_NAME}={configured!r} but this image runs {worker!r}"
                + (f" ({Env.WORKER_SOURCE}={source!r})" if source else "")
            )
        job_id = env.get(Env.JOB_ID, "").strip() or None
        attempt: int | None = None
        if job_id is not None:
            # A fallback worker's task may run a job handed over to it (the launcher names
            # the job's own worker); the claim then checks the job's ``fallback`` record.
            handed_from = env.get(Env.HANDED_FROM, "").strip()
            owners = {worker, handed_from} - {""}
            if not JOB_ID_RE.match(job_id) or worker_of_job_id(job_id) not in owners:
                raise ConfigError(f"{Env.JOB_ID}={job_id!r} is not a job of {worker!r}")
            raw_attempt = required(Env.JOB_ATTEMPT)
            if not raw_attempt.isdigit() or int(raw_attempt) < 1:
                raise ConfigError(f"{Env.JOB_ATTEMPT}={raw_attempt!r} must be an integer >= 1")
            attempt = int(raw_attempt)
        heartbeat = positive(Env.HEARTBEAT_INTERVAL_SECONDS, DEFAULT_HEARTBEAT_SECONDS)
        max_attempts = positive(Env.WORKER_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS)
        ttl_days = positive(Env.JOB_TTL_DAYS, None)
        raw_reuse = env.get(Env.REUSE_IDLE_SECONDS, "").strip() or "0"
        try:
            reuse = float(raw_reuse)
        except ValueError as exc:
            raise ConfigError(f"{Env.REUSE_IDLE_SECONDS}={raw_reuse!r} is not a number") from exc
        if reuse < 0:
            raise ConfigError(f"{Env.REUSE_IDLE_SECONDS}={raw_reuse!r} must be 0 or more")
        return cls(
            table=required(Env.JOBS_TABLE),
            bucket=required(Env.RESULTS_BUCKET),
            worker=worker,
            job_id=job_id,
            attempt=attempt,
            timeout_seconds=positive(Env.WORKER_TIMEOUT_SECONDS, None),
            heartbeat_seconds=heartbeat or DEFAULT_HEARTBEAT_SECONDS,
            task_arn=env.get(Env.TASK_ARN, "").strip() or None,
            max_attempts=int(max_attempts or DEFAULT_MAX_ATTEMPTS),
            job_ttl_days=int(ttl_days) if ttl_days else None,
            reuse_idle_seconds=reuse,
        )


# Exits after which a task may take its worker's next job (warm reuse): the job ended and was
# recorded. After a crash, an interruption or a timeout the task exits, and the reconciler
# settles the job from the exit code.
REUSABLE_EXITS = frozenset({exit_codes.OK, exit_codes.FAILED, exit_codes.NOT_RUNNABLE})
# A reused task runs at most this many jobs: it bounds the lease's record of finished jobs
# (read in one BatchGetItem when the task stops) and how long one task lives.
MAX_JOBS_PER_TASK = 100


class TaskSignals:
    """SIGTERM for the whole task, and the stop flag of the job running now: each reused job
    gets a fresh flag (a cancel stops that job only), a SIGTERM stops every job."""

    def __init__(self) -> None:
        self.terminating = threading.Event()
        self.current = StopFlag()

    def interrupt(self) -> bool:
        self.terminating.set()
        return self.current.set("interrupted")

    def next_job(self) -> StopFlag:
        self.current = StopFlag()
        if self.terminating.is_set():
            self.current.set("interrupted")
        return self.current


def run_worker(
    definition: WorkerDefinition,
    env: Mapping[str, str] | None = None,
    *,
    store: JobStore | None = None,
    s3: Any = None,
    model: ModelClient | None = None,
    stream: TextIO | None = None,
    install_signal_handlers: bool = True,
    hard_exit: Callable[[int], None] = os._exit,
) -> int:
    """Run the job this process was started for, then (warm reuse) the next parked jobs of
    its worker; returns the process exit code (the last job's)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    definition = deployed_as(definition, environ)
    logger = JsonLogger(stream, worker=definition.name)
    signals = TaskSignals()  # the model client's retry waits end on SIGTERM / cancel

    def model_for(stop: StopFlag) -> ModelClient | None:
        return model if model is not None else model_client_from_env(environ, stop)

    try:
        settings = Settings.from_env(environ, definition.name)
        chosen_model = model_for(signals.current)
    except (ConfigError, ModelConfigError) as exc:
        logger.error("config_error", message=str(exc))
        return exit_codes.CONFIG
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    job_store = store or JobStore(settings.table)

    array_children: list[bool] = []  # per job run: was it an array job's child?

    def run(job_settings: Settings, stop: StopFlag, job_model: ModelClient | None) -> int:
        job_run = _JobRun(
            definition,
            job_settings,
            environ,
            store=job_store,
            s3=s3,
            model=job_model,
            logger=JsonLogger(stream, worker=definition.name),
            hard_exit=hard_exit,
            stop=stop,
        )
        code = job_run.execute()
        array_children.append(job_run.array_child)
        return code

    restore = _install_signal_handlers(signals, logger) if install_signal_handlers else None
    try:
        codes = [run(settings, signals.current, chosen_model)]
        reused = _reused_jobs(
            settings, job_store, environ, logger, signals, codes, lambda: array_children[-1]
        )
        for claimed in reused:
            stop = signals.next_job()
            job_settings = replace(settings, job_id=claimed.job_id, attempt=claimed.attempt)
            codes.append(run(job_settings, stop, model_for(stop)))
        return codes[-1]
    finally:
        if restore is not None:
            restore()


def deployed_as(definition: WorkerDefinition, env: Mapping[str, str]) -> WorkerDefinition:
    """The worker as deployed: a worker built from another worker's folder (``source_dir``,
    ``BATCH_WORKER_SOURCE`` names that folder's worker) runs its code under its own name, so
    its job rows, S3 prefixes and task role are its own. Any other mismatch between the image
    and ``BATCH_WORKER_NAME`` stays a config error (``Settings.from_env``)."""
    configured = env.get(Env.WORKER_NAME, "").strip()
    source = env.get(Env.WORKER_SOURCE, "").strip()
    if configured and configured != definition.name and source == definition.name:
        return replace(definition, name=configured)
    return definition


def _reused_jobs(
    settings: Settings,
    store: JobStore,
    env: Mapping[str, str],
    logger: JsonLogger,
    signals: TaskSignals,
    codes: list[int],
    ended_array_child: Callable[[], bool] = lambda: False,
) -> Iterator[Claimed]:
    """The next jobs this task takes (``jobcontract.dispatch.wait_for_next``), while the last
    one ended cleanly, reuse is on and no SIGTERM came. Any AWS trouble ends the reuse: the
    task exits and its STOPPED event releases its slot.

    After an array job's child the task exits too: the reconciler counts a child on its
    parent when the child's task stops (``handlers.arrays.record_end``), so a task kept warm
    would hold the parent's end back by its idle window, or by every job it took next."""
    if settings.reuse_idle_seconds <= 0 or settings.job_id is None or settings.attempt is None:
        return
    lease = slot_key(settings.job_id, settings.attempt)
    meta = task_metadata(env)
    task_arn = settings.task_arn or (str(meta["TaskARN"]) if meta else None)
    dispatch = Dispatch(store)
    finished = settings.job_id
    for _ in range(MAX_JOBS_PER_TASK - 1):
        if codes[-1] not in REUSABLE_EXITS or signals.terminating.is_set():
            return
        if ended_array_child():
            logger.info("reuse_ends_after_array_child", job_id=finished)
            return
        try:
            claimed = wait_for_next(
                dispatch,
                settings.worker,
                lease,
                task_arn,
                idle_seconds=settings.reuse_idle_seconds,
                finished=finished,
                stopped=signals.terminating.is_set,
            )
        except Exception as exc:  # AWS trouble: end the task, nothing is lost
            logger.warning("reuse_ended", error=str(exc)[:500])
            return
        if claimed is None:
            logger.info("reuse_idle_exit", idle_seconds=settings.reuse_idle_seconds)
            return
        # No job id here: `batchctl logs JOB` shows exactly that job's lines (its own run
        # logs name this task: job_running carries the task ARN).
        logger.info("reuse_next_job", jobs_run=len(codes))
        yield claimed
        finished = claimed.job_id


def _install_signal_handlers(signals: TaskSignals, logger: JsonLogger) -> Callable[[], None] | None:
    """SIGTERM/SIGINT set the stop flag instead of killing the process (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signals.interrupt():
            logger.warning("signal_received", signal=signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


class _JobRun:
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
        self.s3 = s3
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
        """Mark the job RUNNING for this attempt (or create a scheduled job); None = not ours."""
        meta = task_metadata(self.env)
        task_arn = self.settings.task_arn or (str(meta["TaskARN"]) if meta else None)
        fields: dict[str, Any] = {JobField.HEARTBEAT_AT: now_iso()}
        if task_arn:
            fields[JobField.TASK_ARN] = task_arn
        if self.settings.job_id is None:
            return self._create_scheduled_job(task_arn, meta, fields)
        assert self.settings.attempt is not None
        self.job_id, self.attempt = self.settings.job_id, self.settings.attempt
        self.logger.bind(job_id=self.job_id, attempt=self.attempt)
        if worker_of_job_id(self.job_id) != self.definition.name:  # a handed-over job
            handed = (self.store.get(self.job_id) or {}).get(JobField.FALLBACK) or {}
            if handed.get("worker") != self.definition.name:
                self.logger.warning("job_not_runnable", reason="not handed to this worker")
                return None
        try:
            job = self.store.transition(
                self.job_id,
                JobStatus.DISPATCHED,
                JobStatus.RUNNING,
                attempt=self.attempt,
                set_fields=fields,
            )
        except TransitionConflict as conflict:
            current = conflict.current or {}
            self.logger.warning(
                "job_not_runnable",
                status=current.get(JobField.STATUS, "absent"),
                attempts=current.get(JobField.ATTEMPTS),
            )
            return None
        self.progress.mark_written(None)  # the RUNNING write starts the progress interval
        self.logger.info("job_running", task_arn=task_arn)
        return job

    def _create_scheduled_job(
        self, task_arn: str | None, meta: Mapping[str, Any] | None, fields: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Record this scheduled run as its job (``jobcontract.scheduled``, the reconciler's
        creator too) and run it. An array run is the reconciler's to create (it needs the
        registration's schema and the launch queue): record nothing, exit 0."""
        worker = self.definition.name
        request = ScheduledRequest.from_env(self.env)
        if request.is_array and request.problem is None:
            self.logger.info("scheduled_array_job", task_arn=task_arn, created_by="reconciler")
            self.handed_over = True
            return None
        # The reconciler derives the same id from the STOPPED task (jobcontract.scheduled_job_id);
        # without a task ARN (a bare local run) the id is random.
        derived = scheduled_job_id(worker, task_arn) if task_arn else None
        self.job_id, self.attempt = derived or new_job_id(worker), 1
        self.logger.bind(job_id=self.job_id, attempt=self.attempt)
        job = scheduled_job(
            self.job_id,
            worker,
            request,
            self._run_defaults(meta),
            status=JobStatus.RUNNING,
            task_arn=task_arn,
        )
        job.update(fields)
        try:
            created = self.store.create(job)
        except JobExists:
            self.logger.warning("scheduled_job_exists")
            return None
        if request.problem is not None:  # recorded FAILED (not retried); exit as a config error
            raise ConfigError(request.problem)
        self.progress.mark_written(None)
        self.logger.info("job_running", task_arn=task_arn, source="schedule")
        return created

    def _run_defaults(self, meta: Mapping[str, Any] | None) -> RunDefaults:
        """Everything from the task's environment and metadata: the task role may touch only
        this worker's job rows (dynamodb:LeadingKeys), not its registration item."""
        definition = (
            task_definition_arn(str(meta.get("TaskARN") or ""), meta["Family"], meta["Revision"])
            if meta and meta.get("Family") and meta.get("Revision")
            else None
        )
        limits = (meta or {}).get("Limits") or {}
        # Task metadata v4 ``Limits``: CPU in vCPUs (0.25), Memory in MiB.
        cpu = round(float(limits["CPU"]) * 1024) if limits.get("CPU") else None
        memory = int(limits["Memory"]) if limits.get("Memory") else None
        timeout = self.settings.timeout_seconds
        return RunDefaults(
            max_attempts=self.settings.max_attempts,
            timeout_seconds=int(timeout) if timeout else None,
            task_definition=definition,
            cpu=cpu,
            memory=memory,
            ttl_days=self.settings.job_ttl_days,
        )

    def _run_handler(self, job: Mapping[str, Any]) -> int:
        self.max_failed_item_share = Job.from_item(job).max_failed_item_share
        try:
            job_input = self._load_input(job)
            self.checkpoint = self._load_checkpoint(job)
            ctx = self.context = JobContext(
                job=job,
                worker=self.definition.name,
                attempt=self.attempt,
                input=job_input,
                logger=self.logger,
                stop=self.stop,
                progress=self.progress,
                model=self.model,
                read_object=self._read_object,
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
            try:
                self._put_result(key, body, self.progress.snapshot())
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

    def _put_result(self, key: str, body: bytes, progress: dict[str, int] | None) -> None:
        """Store the result without overwriting a newer attempt's, in one request when no
        object is there yet (the usual case): a conditional put (``If-None-Match: *``). If
        one is there (an earlier attempt's, or a newer one's), fence first: the heartbeat
        fails with ``TransitionConflict`` unless this attempt is still the job's RUNNING one,
        and only then is the object overwritten."""
        from botocore.exceptions import ClientError

        args: dict[str, Any] = {
            "Bucket": self.settings.bucket,
            "Key": key,
            "Body": body,
            "ContentType": "application/json",
        }
        try:
            self.s3.put_object(**args, IfNoneMatch="*")
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in EXISTING_OBJECT_CODES:
                raise
        self.store.heartbeat(self.job_id, self.attempt, progress)
        self.s3.put_object(**args)

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
            saved = self._save_checkpoint()
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

    # --- I/O helpers ----------------------------------------------------------------------
    def _load_input(self, job: Mapping[str, Any]) -> Mapping[str, Any]:
        pointer = job.get(JobField.INPUT_S3_KEY)
        if pointer:
            try:
                data = json.loads(self._read_object(str(pointer)))
            except ValueError as exc:
                raise PermanentError(f"input object {pointer} is not JSON: {exc}") from exc
        else:
            data = job.get(JobField.INPUT, {})
        if not isinstance(data, Mapping):
            raise PermanentError("job input is not a JSON object")
        return data

    def _load_checkpoint(self, job: Mapping[str, Any]) -> Checkpoint:
        """What an interrupted earlier attempt finished (one read, only when there is one)."""
        key = job.get(JobField.CHECKPOINT_KEY)
        if not key:
            return Checkpoint()
        try:
            response = self.s3.get_object(Bucket=self.settings.bucket, Key=str(key))
            checkpoint = Checkpoint.from_bytes(bytes(response["Body"].read()))
        except Exception as exc:  # best effort: without it the job starts over, as before
            self.logger.warning("checkpoint_not_read", key=key, **error_summary(exc))
            return Checkpoint()
        self.logger.info("checkpoint_read", key=key, items=checkpoint.item_count)
        return checkpoint

    def _save_checkpoint(self) -> str | None:
        """Store the finished items of this interrupted attempt; the key, or None."""
        body = self.checkpoint.to_bytes()
        if body is None:
            return None
        key = checkpoint_key(self.definition.name, self.job_id)
        try:
            self.s3.put_object(
                Bucket=self.settings.bucket, Key=key, Body=body, ContentType="application/json"
            )
        except Exception as exc:  # best effort: the retry then starts over
            self.logger.warning("checkpoint_not_saved", key=key, **error_summary(exc))
            return None
        self.logger.info("checkpoint_saved", key=key, items=self.checkpoint.item_count)
        return key

    def _read_object(self, key: str) -> bytes:
        """An object of the results bucket. Missing (404, or 403 where the role may not list
        the prefix: S3 hides existence then) and denied keys are the job's input problem,
        not a crash to retry."""
        from botocore.exceptions import ClientError

        where = f"s3://{self.settings.bucket}/{key}"
        try:
            response = self.s3.get_object(Bucket=self.settings.bucket, Key=key)
        except self.s3.exceptions.NoSuchKey as exc:
            raise PermanentError(f"s3 object {where} does not exist") from exc
        except ClientError as exc:
            if access_denied_error(exc) is None:
                raise
            raise PermanentError(
                f"s3:GetObject denied on {where}: the object is missing or outside this "
                f"worker's prefixes ({inputs_prefix(self.definition.name)}, "
                f"{results_prefix(self.definition.name)})"
            ) from exc
        return bytes(response["Body"].read())

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
