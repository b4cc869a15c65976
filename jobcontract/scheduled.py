"""Scheduled runs (``ScheduledTask``: EventBridge Scheduler -> RunTask): the one place that
reads a scheduled task's request and makes its job row.

A scheduled task starts without ``BATCH_JOB_ID``. Its container environment carries the
request: ``BATCH_SCHEDULED_INPUT`` (the job input, JSON) and, for an array job,
``BATCH_SCHEDULED_ARRAY`` (JSON, the array fields of ``POST /jobs``: ``items`` or
``manifest`` ``{"s3_key", "items"}``, optional ``shard_size`` / ``parallelism`` /
``max_failed_item_share``). Its job id is ``<worker>_<task id>`` (``scheduled_job_id``).

Two actors record a scheduled run, both through this module, so they write the same row:

- the worker runtime, as the run starts (``status`` RUNNING);
- the reconciler, when the task stopped before the runtime recorded it (DISPATCHED, then
  handled as a failed attempt).

A request that cannot be read (not JSON, not an object) is recorded FAILED with
``error.type == "InvalidScheduledInput"`` by whichever comes first, never retried.

An array run is created by the reconciler only: the parent and its children need the
worker's input schema (the registration, which a task role may not read), and its fan-out
needs the launch queue. Its checks are the API's (``jobcontract.arrays``: same limits, same
error codes and messages); ``ScheduledTask`` runs them at preview too. Its task records
nothing and exits 0 at once; the reconciler makes the parent (``source = "schedule"``) from
the STOPPED event and fans it out like any array job.

Standard library only (this module is in every Lambda zip, the worker image and the Pulumi
program).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from jobcontract import DEFAULT_JOB_TTL_DAYS, Env, JobField, JobStatus, array_requests
from jobcontract import arrays as contract

SOURCE_SCHEDULE: Final = "schedule"
INVALID_SCHEDULED_INPUT: Final = "InvalidScheduledInput"
ARRAY_FIELDS: Final = frozenset(
    {"items", "manifest", "shard_size", "parallelism", JobField.MAX_FAILED_ITEM_SHARE}
)


@dataclass(frozen=True, kw_only=True)
class ScheduledArray:
    """A scheduled run as an array job: the items inline, or a JSON Lines manifest already
    under the worker's ``inputs/`` prefix (``POST /uploads``), exactly one of the two."""

    items: Sequence[Any] | None = None
    """The items, each one item of the worker's array property. Inline items travel in the
    RunTask overrides, so all of the request fits in 8,192 characters (preview checks)."""
    manifest_key: str | None = None
    """S3 key of a JSON Lines manifest under ``inputs/<worker>/``."""
    manifest_items: int | None = None
    """How many items (lines) the manifest holds; required with ``manifest_key``."""
    shard_size: int | None = None
    """Items per child; or give ``parallelism``. Default: the API's default size."""
    parallelism: int | None = None
    """Children to split into (``ceil(items / parallelism)`` per child)."""
    max_failed_item_share: float = 0
    """Share of the items (0..1) that may fail with the parent still SUCCEEDED."""

    def request(self) -> dict[str, Any]:
        """The array fields of the equivalent ``POST /jobs`` (its field names)."""
        out: dict[str, Any] = {}
        if self.items is not None:
            out["items"] = list(self.items)
        if self.manifest_key is not None or self.manifest_items is not None:
            out["manifest"] = {"s3_key": self.manifest_key, "items": self.manifest_items}
        for name, value in (
            ("shard_size", self.shard_size),
            ("parallelism", self.parallelism),
            (JobField.MAX_FAILED_ITEM_SHARE, self.max_failed_item_share or None),
        ):
            if value is not None:
                out[name] = value
        return out


class ScheduledInputError(ValueError):
    """The scheduled task's environment holds no readable request (names the variable)."""


@dataclass(frozen=True)
class ScheduledRequest:
    """What a scheduled task was started with."""

    input: dict[str, Any] = field(default_factory=dict)
    array: dict[str, Any] | None = None  # the array fields of ``POST /jobs``, or None
    problem: str | None = None  # why the environment could not be read

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ScheduledRequest:
        """The request, or one with ``problem`` set (never raises)."""
        try:
            job_input = _json_object(env, Env.SCHEDULED_INPUT)
            array = _json_object(env, Env.SCHEDULED_ARRAY) if env.get(Env.SCHEDULED_ARRAY) else None
        except ScheduledInputError as exc:
            return cls(problem=str(exc))
        if array is not None:
            unknown = sorted(set(array) - ARRAY_FIELDS)
            if unknown:
                return cls(problem=f"{Env.SCHEDULED_ARRAY}: unknown field(s) {', '.join(unknown)}")
        return cls(job_input, array)

    @property
    def is_array(self) -> bool:
        return self.array is not None

    def error(self) -> dict[str, Any] | None:
        if self.problem is None:
            return None
        return {"type": INVALID_SCHEDULED_INPUT, "message": self.problem}


def _json_object(env: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = env.get(name) or ""
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise ScheduledInputError(f"{name} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ScheduledInputError(f"{name} must be a JSON object")
    return value


@dataclass(frozen=True, kw_only=True)
class RunDefaults:
    """What a scheduled job takes from its worker (the registration, or the task's
    environment and metadata for the runtime, whose role may not read the registration)."""

    max_attempts: int
    timeout_seconds: int | None = None
    task_definition: str | None = None
    cpu: int | None = None
    memory: int | None = None
    ttl_days: int | None = None


def task_definition_arn(task_arn: str | None, family: str, revision: str) -> str:
    """The task definition ARN of a task, from its ARN and its metadata's ``Family`` and
    ``Revision`` (same partition, Region and account), as ECS events name it; just
    ``family:revision`` when the task ARN is not an ECS task ARN."""
    head, sep, _ = (task_arn or "").partition(":task/")
    return f"{head}:task-definition/{family}:{revision}" if sep else f"{family}:{revision}"


def expires_at(ttl_days: int, now: datetime | None = None) -> int:
    return int(((now or datetime.now(UTC)) + timedelta(days=ttl_days)).timestamp())


def scheduled_job(
    job_id: str,
    worker: str,
    request: ScheduledRequest,
    defaults: RunDefaults,
    *,
    status: JobStatus,
    task_arn: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The job row of a plain scheduled run (both writers: see the module doc). A request
    that could not be read makes the row FAILED with its ``InvalidScheduledInput`` error."""
    error = request.error()
    job: dict[str, Any] = {
        JobField.JOB_ID: job_id,
        JobField.WORKER: worker,
        JobField.STATUS: JobStatus.FAILED.value if error else status.value,
        JobField.SOURCE: SOURCE_SCHEDULE,
        JobField.INPUT: dict(request.input),
        JobField.ATTEMPTS: 1,
        JobField.MAX_ATTEMPTS: defaults.max_attempts,
    }
    optional = {
        JobField.TIMEOUT_SECONDS: defaults.timeout_seconds,
        JobField.TASK_DEFINITION: defaults.task_definition,
        JobField.TASK_ARN: task_arn,
        JobField.CPU: defaults.cpu,
        JobField.MEMORY: defaults.memory,
        JobField.ERROR: error,
    }
    job.update({k: v for k, v in optional.items() if v})
    if defaults.ttl_days:  # DynamoDB TTL: scheduled rows expire like submitted ones
        job[JobField.EXPIRES_AT] = expires_at(defaults.ttl_days, now)
    return job


@dataclass(frozen=True)
class ArrayPlan:
    """A checked array request: where its items are and how they split."""

    field: str
    total: int
    shard_size: int
    share: float | int
    items: list[Any] | None  # inline items, or None with a manifest
    manifest: dict[str, Any] | None  # ``{"s3_key", "items"}``


def plan_array(
    worker: str, schema: Mapping[str, Any], base: Mapping[str, Any], array: Mapping[str, Any]
) -> ArrayPlan:
    """The API's checks of an array request (``jobcontract.arrays``), in its order, without
    the one that calls S3 (a manifest's HeadObject: the caller's). ``RequestRejected``."""
    items, manifest = array.get("items"), array.get("manifest")
    if manifest is not None and items is not None:
        raise contract.RequestRejected(
            400, "invalid_request", "give 'items' or 'manifest', not both"
        )
    if manifest is None and (not isinstance(items, list) or not items):
        raise contract.RequestRejected(
            400, "invalid_request", "'items' must be a non-empty JSON array"
        )
    share = contract.request_failed_item_share(array.get(JobField.MAX_FAILED_ITEM_SHARE))
    field_name = array_requests.request_item_field(worker, schema, base)
    if manifest is not None:
        total = array_requests.declared_items(manifest)
        size = array_requests.request_shard_size(schema, field_name, total, array)
        array_requests.check_shared_input(worker, schema, field_name, base)
        array_requests.check_manifest_key(worker, str(manifest["s3_key"]))
        return ArrayPlan(field_name, total, size, share, None, dict(manifest))
    assert isinstance(items, list)
    size = array_requests.request_shard_size(schema, field_name, len(items), array)
    array_requests.check_items(worker, schema, field_name, base, items, size)
    return ArrayPlan(field_name, len(items), size, share, items, None)


def array_parent(
    job_id: str, worker: str, plan: ArrayPlan, defaults: RunDefaults, now: datetime | None = None
) -> dict[str, Any]:
    """The parent row of a scheduled array run (``jobcontract.array_requests.parent_item``, as the
    API's but ``source = "schedule"``); inline items are kept with it (``keep_items``): the
    stopped task's environment is not read again once its event is gone."""
    from jobcontract.store import now_iso

    moment = now or datetime.now(UTC)
    parent = array_requests.parent_item(
        job_id,
        worker,
        total=plan.total,
        size=plan.shard_size,
        field=plan.field,
        cpu=int(defaults.cpu or 0),
        memory=int(defaults.memory or 0),
        share=plan.share,
        max_attempts=defaults.max_attempts,
        source=SOURCE_SCHEDULE,
        expires_at=expires_at(defaults.ttl_days or DEFAULT_JOB_TTL_DAYS, moment),
        now=now_iso(moment),
    )
    if plan.items is not None:  # kept with the parent: any actor can resume its fan-out
        contract.keep_items(parent, plan.items)
    return parent
