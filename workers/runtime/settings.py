"""The runtime's settings: what the container environment (``jobcontract.Env``) says about the
job to run, checked once at start (a ``ConfigError`` names the variable)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jobcontract import DEFAULT_MAX_ATTEMPTS, JOB_ID_RE, Env, worker_of_job_id

DEFAULT_HEARTBEAT_SECONDS = 30.0


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
        _check_worker_name(env, worker)
        job_id, attempt = _job_and_attempt(env, worker)
        heartbeat = _positive(env, Env.HEARTBEAT_INTERVAL_SECONDS, DEFAULT_HEARTBEAT_SECONDS)
        max_attempts = _positive(env, Env.WORKER_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS)
        ttl_days = _positive(env, Env.JOB_TTL_DAYS, None)
        reuse = _reuse_idle_seconds(env)
        return cls(
            table=_required(env, Env.JOBS_TABLE),
            bucket=_required(env, Env.RESULTS_BUCKET),
            worker=worker,
            job_id=job_id,
            attempt=attempt,
            timeout_seconds=_positive(env, Env.WORKER_TIMEOUT_SECONDS, None),
            heartbeat_seconds=heartbeat or DEFAULT_HEARTBEAT_SECONDS,
            task_arn=env.get(Env.TASK_ARN, "").strip() or None,
            max_attempts=int(max_attempts or DEFAULT_MAX_ATTEMPTS),
            job_ttl_days=int(ttl_days) if ttl_days else None,
            reuse_idle_seconds=reuse,
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def _positive(env: Mapping[str, str], name: str, default: float | None) -> float | None:
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


def _check_worker_name(env: Mapping[str, str], worker: str) -> None:
    """``BATCH_WORKER_NAME``, when set, names the worker this image runs (``deployed_as``
    has already renamed a worker built from another's folder)."""
    configured = env.get(Env.WORKER_NAME, "").strip()
    if configured and configured != worker:
        source = env.get(Env.WORKER_SOURCE, "").strip()
        raise ConfigError(
            f"{Env.WORKER_NAME}={configured!r} but this image runs {worker!r}"
            + (f" ({Env.WORKER_SOURCE}={source!r})" if source else "")
        )


def _job_and_attempt(env: Mapping[str, str], worker: str) -> tuple[str | None, int | None]:
    """The job (a job of this worker) and attempt the task was started for; (None, None) for
    a scheduled task, which creates its own job."""
    job_id = env.get(Env.JOB_ID, "").strip() or None
    if job_id is None:
        return None, None
    # A fallback worker's task may run a job handed over to it (the launcher names
    # the job's own worker); the claim then checks the job's ``fallback`` record.
    handed_from = env.get(Env.HANDED_FROM, "").strip()
    owners = {worker, handed_from} - {""}
    if not JOB_ID_RE.match(job_id) or worker_of_job_id(job_id) not in owners:
        raise ConfigError(f"{Env.JOB_ID}={job_id!r} is not a job of {worker!r}")
    raw_attempt = _required(env, Env.JOB_ATTEMPT)
    if not raw_attempt.isdigit() or int(raw_attempt) < 1:
        raise ConfigError(f"{Env.JOB_ATTEMPT}={raw_attempt!r} must be an integer >= 1")
    return job_id, int(raw_attempt)


def _reuse_idle_seconds(env: Mapping[str, str]) -> float:
    raw_reuse = env.get(Env.REUSE_IDLE_SECONDS, "").strip() or "0"
    try:
        reuse = float(raw_reuse)
    except ValueError as exc:
        raise ConfigError(f"{Env.REUSE_IDLE_SECONDS}={raw_reuse!r} is not a number") from exc
    if reuse < 0:
        raise ConfigError(f"{Env.REUSE_IDLE_SECONDS}={raw_reuse!r} must be 0 or more")
    return reuse
