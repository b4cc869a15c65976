"""Step 1 of a job's lifecycle (``workers.runtime.lifecycle``): mark the job this task was
started for RUNNING for its attempt (``DISPATCHED -> RUNNING``, with the task ARN and a first
heartbeat), or, for a scheduled task started without ``BATCH_JOB_ID``, create its own job
``<worker>_<task id>`` in RUNNING."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jobcontract import Env, JobField, JobStatus, new_job_id, scheduled_job_id, worker_of_job_id
from jobcontract.store import JobExists, JobStore, TransitionConflict, now_iso, scheduled_job
from workers.runtime.ecs_metadata import task_metadata
from workers.runtime.logs import JsonLogger
from workers.runtime.settings import ConfigError, Settings

# (job id, attempt, the RUNNING job item or None when the job is not this task's to run)
ClaimResult = tuple[str, int, dict[str, Any] | None]


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
        return _create_scheduled_job(settings, worker, store, logger, task_arn, meta, fields)
    assert settings.attempt is not None
    job_id, attempt = settings.job_id, settings.attempt
    logger.bind(job_id=job_id, attempt=attempt)
    if worker_of_job_id(job_id) != worker:  # a handed-over job
        handed = (store.get(job_id) or {}).get(JobField.FALLBACK) or {}
        if handed.get("worker") != worker:
            logger.warning("job_not_runnable", reason="not handed to this worker")
            return job_id, attempt, None
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
        return job_id, attempt, None
    logger.info("job_running", task_arn=task_arn)
    return job_id, attempt, job


def _create_scheduled_job(
    settings: Settings,
    worker: str,
    store: JobStore,
    logger: JsonLogger,
    task_arn: str | None,
    meta: Mapping[str, Any] | None,
    fields: dict[str, Any],
) -> ClaimResult:
    scheduled_input = _scheduled_input(settings.scheduled_input)
    # The reconciler derives the same id from the STOPPED task (jobcontract.scheduled_job_id);
    # without a task ARN (a bare local run) the id is random.
    derived = scheduled_job_id(worker, task_arn) if task_arn else None
    job_id, attempt = derived or new_job_id(worker), 1
    logger.bind(job_id=job_id, attempt=attempt)
    # Everything comes from the task's environment and metadata: the task role may touch
    # only this worker's job rows (dynamodb:LeadingKeys), not its registration item.
    definition = (
        f"{meta['Family']}:{meta['Revision']}"
        if meta and meta.get("Family") and meta.get("Revision")
        else None
    )
    timeout = settings.timeout_seconds
    job = scheduled_job(
        job_id,
        worker,
        scheduled_input,
        status=JobStatus.RUNNING,
        max_attempts=settings.max_attempts,
        timeout_seconds=int(timeout) if timeout else None,
        task_definition=definition,
        task_arn=None,
        ttl_days=settings.job_ttl_days,
    )
    job.update(fields)
    try:
        created = store.create(job)
    except JobExists:
        logger.warning("scheduled_job_exists")
        return job_id, attempt, None
    logger.info("job_running", task_arn=task_arn, source="schedule")
    return job_id, attempt, created


def _scheduled_input(raw: str | None) -> dict[str, Any]:
    """``BATCH_SCHEDULED_INPUT``: a JSON object, or {} when unset or blank."""
    try:
        scheduled_input = json.loads(raw) if raw and raw.strip() else {}
    except ValueError as exc:
        raise ConfigError(f"{Env.SCHEDULED_INPUT} is not JSON: {exc}") from exc
    if not isinstance(scheduled_input, dict):
        raise ConfigError(f"{Env.SCHEDULED_INPUT} must be a JSON object")
    return scheduled_input
