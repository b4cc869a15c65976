"""Running one job: claim it, heartbeat, call the handler, store the result, record the end.

Where each stage lives: ``run_worker`` (here) runs the task's jobs, the first and (warm reuse,
``reuse.py``) the next; ``settings.py`` reads the environment; ``job_run.py`` is one job's
run (``JobRun.execute``), whose steps are the claim (``claim.py``), the handler with its
heartbeat and watchdog threads, and the end; ``job_objects.py`` reads and writes the job's
S3 objects (input, checkpoint, result).

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

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from jobcontract import Env
from jobcontract.store import JobStore
from workers.runtime import exit_codes
from workers.runtime.context import StopFlag
from workers.runtime.definition import WorkerDefinition
from workers.runtime.job_run import JobRun
from workers.runtime.logs import JsonLogger
from workers.runtime.model import ModelClient, ModelConfigError, model_client_from_env
from workers.runtime.reuse import ReuseEnd, TaskSignals, free_slot_at_exit, reused_jobs
from workers.runtime.reuse import install_signal_handlers as _install_signal_handlers
from workers.runtime.settings import ConfigError, Settings

__all__ = ["ConfigError", "Settings", "deployed_as", "run_worker"]


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
    try:
        settings = Settings.from_env(environ, definition.name)
        first_model = (
            model if model is not None else model_client_from_env(environ, signals.current)
        )
    except (ConfigError, ModelConfigError) as exc:
        logger.error("config_error", message=str(exc))
        return exit_codes.CONFIG
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    task = _TaskJobs(
        definition, environ, store or JobStore(settings.table), s3, model, stream, hard_exit
    )
    restore = _install_signal_handlers(signals, logger) if install_signal_handlers else None
    try:
        return task.run_all(settings, signals, first_model, logger)
    finally:
        if restore is not None:
            restore()


@dataclass
class _TaskJobs:
    """The jobs one task runs: the one it was started for, then (warm reuse) the next."""

    definition: WorkerDefinition
    env: Mapping[str, str]
    store: JobStore
    s3: Any
    model: ModelClient | None  # the caller's (tests); None: one per job from the environment
    stream: TextIO | None
    hard_exit: Callable[[int], None]
    array_children: list[bool] = field(default_factory=list)  # per job run: a child?

    def run_all(
        self,
        settings: Settings,
        signals: TaskSignals,
        first_model: ModelClient | None,
        logger: JsonLogger,
    ) -> int:
        codes = [self.run(settings, signals.current, first_model)]
        end = ReuseEnd()
        reused = reused_jobs(
            settings,
            self.store,
            self.env,
            logger,
            signals,
            codes,
            lambda: self.array_children[-1],
            end,
        )
        last = (settings.job_id, settings.attempt)
        for claimed in reused:
            stop = signals.next_job()
            job_settings = replace(settings, job_id=claimed.job_id, attempt=claimed.attempt)
            codes.append(self.run(job_settings, stop, self._model_for(stop)))
            last = (claimed.job_id, claimed.attempt)
        if not end.idle and last[0] is not None and last[1] is not None:
            free_slot_at_exit(settings, self.store, self.env, logger, (last[0], last[1]), codes[-1])
        return codes[-1]

    def run(self, settings: Settings, stop: StopFlag, model: ModelClient | None) -> int:
        job_run = JobRun(
            self.definition,
            settings,
            self.env,
            store=self.store,
            s3=self.s3,
            model=model,
            logger=JsonLogger(self.stream, worker=self.definition.name),
            hard_exit=self.hard_exit,
            stop=stop,
        )
        code = job_run.execute()
        self.array_children.append(job_run.array_child)
        return code

    def _model_for(self, stop: StopFlag) -> ModelClient | None:
        return self.model if self.model is not None else model_client_from_env(self.env, stop)


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
