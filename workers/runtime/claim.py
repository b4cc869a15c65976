"""Step 1 of a job's lifecycle (``workers.runtime.lifecycle``): mark the job this task was
started for RUNNING for its attempt (``DISPATCHED -> RUNNING``, with the task ARN and a first
heartbeat), or, for a scheduled task started without ``BATCH_JOB_ID``, create its own job
``<worker>_<task id>`` in RUNNING (``jobcontract.scheduled``; a scheduled array run is left to
the reconciler)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from jobcontract import JobField, JobStatus, new_job_id, scheduled_job_id, worker_of_job_id
from jobcontract.scheduled import (
    RunDefaults,
    ScheduledRequest,
    scheduled_job,
    task_definition_arn,
)
from jobcontract.store import JobExists, JobStore, TransitionConflict, now_iso
from workers.runtime.ecs_metadata import task_metadata
from workers.runtime.logs import JsonLogger
from workers.runtime.settings import ConfigError, Settings


class ClaimResult(NamedTuple):
    job_id: str
    attempt: int
    job: dict[str, Any] | None  # the RUNNING job item; None when not this task's to run
    handed_over: bool = False  # a scheduled array run: the reconciler creates its job


def claim_job(
    settings: Settings, worker: str, env: Mapping[str, str], store: JobStore, logger: JsonLogger
) -> ClaimResult:
    """Mark the job RUNNING for this attempt (or create a scheduled job); binds the job id
    and attempt to ``logger``."""
    meta = task_metadata(env)
    task_arn = settings.task_arn or (str(meta["TaskARN"]) if meta else None)
    fields: dict[str, Any] = {JobField.HEARTBEAT_AT: now_iso()}
    if task_arn:
        fields[JobField.TASK_ARN] = task_arn
    if settings.job_id is None:
        return _create_scheduled_job(settings, worker, env, store, logger, task_arn, meta, fields)
    assert settings.attempt is not None
    job_id, attempt = settings.job_id, settings.attempt
    logger.bind(job_id=job_id, attempt=attempt)
    if worker_of_job_id(job_id) != worker:  # a handed-over job
        handed = (store.get(job_id) or {}).get(JobField.FALLBACK) or {}
        if handed.get("worker") != worker:
            logger.warning("job_not_runnable", reason="not handed to this worker")
            return ClaimResult(job_id, attempt, None)
    try:
        job = store.transition(
            job_id, JobStatus.DISPATCHED, JobStatus.RUNNING, attempt=attempt, set_fields=fields
        )
    except TransitionConflict as conflict:
        current = conflict.current or {}
        logger.warning(
            "job_not_runnable",
            status=current.get(JobField.STATUS, "absent"),
            attempts=current.get(JobField.ATTEMPTS),
        )
        return ClaimResult(job_id, attempt, None)
    logger.info("job_running", task_arn=task_arn)
    return ClaimResult(job_id, attempt, job)


def _create_scheduled_job(
    settings: Settings,
    worker: str,
    env: Mapping[str, str],
    store: JobStore,
    logger: JsonLogger,
    task_arn: str | None,
    meta: Mapping[str, Any] | None,
    fields: dict[str, Any],
) -> ClaimResult:
    """Record this scheduled run as its job (``jobcontract.scheduled``, the reconciler's
    creator too) and run it. An array run is the reconciler's to create (it needs the
    registration's schema and the launch queue): record nothing, exit 0."""
    request = ScheduledRequest.from_env(env)
    if request.is_array and request.problem is None:
        logger.info("scheduled_array_job", task_arn=task_arn, created_by="reconciler")
        return ClaimResult("", 0, None, handed_over=True)
    # The reconciler derives the same id from the STOPPED task (jobcontract.scheduled_job_id);
    # without a task ARN (a bare local run) the id is random.
    derived = scheduled_job_id(worker, task_arn) if task_arn else None
    job_id, attempt = derived or new_job_id(worker), 1
    logger.bind(job_id=job_id, attempt=attempt)
    job = scheduled_job(
        job_id,
        worker,
        request,
        _run_defaults(settings, meta),
        status=JobStatus.RUNNING,
        task_arn=task_arn,
    )
    job.update(fields)
    try:
        created = store.create(job)
    except JobExists:
        logger.warning("scheduled_job_exists")
        return ClaimResult(job_id, attempt, None)
    if request.problem is not None:  # recorded FAILED (not retried); exit as a config error
        raise ConfigError(request.problem)
    logger.info("job_running", task_arn=task_arn, source="schedule")
    return ClaimResult(job_id, attempt, created)


def _run_defaults(settings: Settings, meta: Mapping[str, Any] | None) -> RunDefaults:
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
    timeout = settings.timeout_seconds
    return RunDefaults(
        max_attempts=settings.max_attempts,
        timeout_seconds=int(timeout) if timeout else None,
        task_definition=definition,
        cpu=cpu,
        memory=memory,
        ttl_days=settings.job_ttl_days,
    )
