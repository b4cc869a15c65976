"""The API side of array jobs (``jobcontract.arrays``): submit, list children, cancel.

``POST /jobs`` with ``items`` lands here from ``handlers.api.create_job``. Everything is
checked before anything is written: the body and item sizes, the shard count, the shard size
against the worker's ``minItems``/``maxItems``, the rest of the input, and every item against
the item schema of the worker's array property (all invalid items reported by index in one
400). Then the parent is written (RUNNING, no task), then its children, parked in batched
conditional transactions (``Dispatch.create_parked``), then one drain request wakes the
launcher. A replay with the same Idempotency-Key creates the children a failed first request
did not; one with another body is a 409.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws, arrays, manifest_api
from handlers.api_http import ApiError, Request, Response, _known_worker, _links, _store
from handlers.api_jobs import _stop_task, job_view
from handlers.api_submit import (
    _failed_item_share,
    _idempotency_key,
    _request_hash,
    _resources,
    _submitted,
    keyed_job_id,
)
from handlers.registry import WorkerRegistration
from jobcontract import (
    DEFAULT_JOB_TTL_DAYS,
    JOB_ID_RE,
    Env,
    JobField,
    array_requests,
    new_job_id,
)
from jobcontract import arrays as contract
from jobcontract.dispatch import drain_message
from jobcontract.store import JobExists, JobStore, TransitionConflict, now_iso

ARRAY_REQUEST_FIELDS = frozenset(
    {
        "worker",
        "input",
        "items",
        "manifest",
        "shard_size",
        "parallelism",
        "cpu",
        "memory",
        JobField.MAX_FAILED_ITEM_SHARE,
    }
)


def create_array_job(req: Request, payload: dict[str, Any]) -> Response:
    """``POST /jobs`` with ``items`` or ``manifest``: validate all, then parent, children (or
    the launcher's fan-out), one drain."""
    worker_name, items, manifest, base = _checked_array_fields(payload)
    share = _failed_item_share(payload.get(JobField.MAX_FAILED_ITEM_SHARE))
    key = _idempotency_key(req)
    store = _store()
    worker = _known_worker(store, worker_name)
    field = _item_field(worker, base)
    source: dict[str, Any] | None = None
    if manifest is not None:
        total = manifest_api.declared_items(manifest)
        size = _shard_size(worker, field, total, payload)
        manifest_api.check_shared_input(worker, field, base)
        source = manifest_api.head(worker, manifest)  # last: the only check that calls AWS
    else:
        assert isinstance(items, list)
        total = len(items)
        size = _shard_size(worker, field, total, payload)
        _check_items(worker, field, base, items, size)
    cpu, memory = _resources(worker, payload.get("cpu"), payload.get("memory"))
    hashed: dict[str, Any] = {
        "worker": worker.name,
        "input": base,
        "items": items,
        "shard_size": size,
        "cpu": cpu,
        "memory": memory,
        JobField.MAX_FAILED_ITEM_SHARE: float(share),
    }
    if source is not None:  # the object as it was (its ETag): a re-upload is a new request
        del hashed["items"]
        hashed["manifest"] = {k: source[k] for k in ("key", "etag", "bytes")} | {"items": total}
    parent_id = _parent_id(worker, key)
    parent = _parent_item(parent_id, worker, total, size, field, cpu, memory, share)
    _add_request(parent, _request_hash(hashed), key, source, base)
    created, status = _create_parent(store, parent, base, items or [])
    if not contract.all_created(created):
        created = _fan_out_or_defer(store, worker, created, base, items or [])
    _aws.log("INFO", "array_job_submitted", job_id=parent_id, shards=_shards(created))
    body = {**_submitted(created), "children": _shards(created)}
    return Response(status, body, {"Location": _links(parent_id)["self"]})


def _checked_array_fields(
    payload: dict[str, Any],
) -> tuple[str, list[Any] | None, Any, dict[str, Any]]:
    """The array request's fields are known, with a worker name, ``items`` (a non-empty
    list) or a ``manifest`` but not both, and a shared ``input`` object (default {}): the
    worker name, the items, the manifest and the input."""
    unknown = sorted(set(payload) - ARRAY_REQUEST_FIELDS)
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}")
    worker_name, items = payload.get("worker"), payload.get("items")
    if not isinstance(worker_name, str) or not worker_name:
        raise ApiError(400, "invalid_request", "'worker' is required and must be a string")
    manifest = payload.get("manifest")
    if manifest is not None and items is not None:
        raise ApiError(400, "invalid_request", "give 'items' or 'manifest', not both")
    if manifest is None and (not isinstance(items, list) or not items):
        raise ApiError(400, "invalid_request", "'items' must be a non-empty JSON array")
    base = payload.get("input", {})
    if not isinstance(base, dict):
        raise ApiError(400, "invalid_request", "'input' must be a JSON object")
    return worker_name, items, manifest, base


def _add_request(
    parent: dict[str, Any],
    request_hash: str,
    key: str | None,
    source: dict[str, Any] | None,
    base: dict[str, Any],
) -> None:
    """What the parent item keeps of its request: its hash (a replay must match it), the
    Idempotency-Key, and an uploaded manifest with the shared input."""
    parent[JobField.REQUEST_HASH] = request_hash
    if key is not None:
        parent[JobField.IDEMPOTENCY_KEY] = key
    if source is not None:
        parent[JobField.ARRAY]["manifest"] = source
        parent[JobField.INPUT_S3_KEY] = source["key"]
        parent[JobField.INPUT] = base


def _create_parent(
    store: JobStore, parent: dict[str, Any], base: dict[str, Any], items: list[Any]
) -> tuple[dict[str, Any], int]:
    """The parent as written (202), or the one a replay finds (200). A parent with more
    children than the request writes carries its manifest, written first."""
    parent_id, request_hash = str(parent[JobField.JOB_ID]), str(parent[JobField.REQUEST_HASH])
    if parent.get(JobField.IDEMPOTENCY_KEY) is not None:
        existing = store.get(parent_id)
        if existing is not None:
            return _replayed(existing, request_hash), 200
    if parent.get(JobField.INPUT_S3_KEY):
        pass  # items in an uploaded manifest: the launcher's fan-out reads them
    elif _shards(parent) > _aws.env_int(Env.ARRAY_SYNC_CHILDREN, contract.DEFAULT_SYNC_CHILDREN):
        key = contract.manifest_key(str(parent[JobField.WORKER]), parent_id, request_hash)
        parent[JobField.INPUT_S3_KEY] = arrays.write_manifest(key, base, items)
    try:
        return store.create(parent), 202
    except JobExists as exc:  # a concurrent request with the same key
        return _replayed(exc.existing, request_hash), 200


def _fan_out_or_defer(
    store: JobStore,
    worker: WorkerRegistration,
    parent: dict[str, Any],
    base: dict[str, Any],
    items: list[Any],
) -> dict[str, Any]:
    """Write the children now, or (a parent with a manifest) ask the launcher to; either way
    the launcher then drains the parked children."""
    if parent.get(JobField.INPUT_S3_KEY):
        _send(worker, contract.fanout_message(str(parent[JobField.JOB_ID])))
        return parent
    created = arrays.fan_out(store, worker, parent, base, items)
    _send(worker, drain_message())
    return created


def _parent_id(worker: WorkerRegistration, key: str | None) -> str:
    return new_job_id(worker.name) if key is None else keyed_job_id(worker.name, key)


def _replayed(existing: dict[str, Any] | None, request_hash: str) -> dict[str, Any]:
    if existing is None:
        raise ApiError(409, "conflict", "the job is being created; try again")
    if existing.get(JobField.REQUEST_HASH) != request_hash:
        raise ApiError(
            409,
            "idempotency_conflict",
            "this Idempotency-Key was already used with a different request",
        )
    return existing


def _shards(item: dict[str, Any]) -> int:
    return int((item.get(JobField.ARRAY) or {}).get("shards", 0))


def _item_field(worker: WorkerRegistration, base: dict[str, Any]) -> str:
    return array_requests.request_item_field(worker.name, worker.input_schema, base)


def _shard_size(worker: WorkerRegistration, field: str, total: int, payload: dict[str, Any]) -> int:
    return array_requests.request_shard_size(worker.input_schema, field, total, payload)


def _check_items(
    worker: WorkerRegistration, field: str, base: dict[str, Any], items: list[Any], size: int
) -> None:
    array_requests.check_items(worker.name, worker.input_schema, field, base, items, size)


def _expires(now: datetime) -> int:
    ttl_days = _aws.env_int(Env.JOB_TTL_DAYS, DEFAULT_JOB_TTL_DAYS)
    return int((now + timedelta(days=ttl_days)).timestamp())


def _parent_item(
    parent_id: str,
    worker: WorkerRegistration,
    total: int,
    size: int,
    field: str,
    cpu: int,
    memory: int,
    share: int | float,
) -> dict[str, Any]:
    """The parent (``jobcontract.array_requests.parent_item``), submitted through the API."""
    now = datetime.now(UTC)
    # parent_item's own parameters and keywords (duplicates pairs them with it and with other
    # keyword calls): this wrapper adds the API's source, TTL, clock and max_attempts.
    return array_requests.parent_item(
        parent_id,
        worker.name,
        total=total,
        size=size,
        field=field,
        cpu=cpu,
        memory=memory,
        share=share,
        max_attempts=worker.max_attempts,
        source="api",
        expires_at=_expires(now),
        now=now_iso(now),
    )


def _send(worker: WorkerRegistration, message: dict[str, str]) -> None:
    """A drain or fan-out request on the launch queue (best effort: the sweep drains while
    jobs wait, and a replay of the request re-sends a fan-out)."""
    url = _aws.env(Env.LAUNCH_QUEUE_URL, "") or worker.queue_url
    try:
        _aws.client("sqs").send_message(QueueUrl=url, **message)
    except (ClientError, BotoCoreError) as exc:
        _aws.log("ERROR", "launch_queue_send_failed", worker=worker.name, error=str(exc))


def list_children(store: JobStore, params: dict[str, str], limit: int) -> Response:
    """``GET /jobs?parent=ID``: the children in shard order; the cursor is the next shard.
    ``worker`` and ``status`` (checked by the caller) filter the page's children, so a page
    may hold fewer than ``limit``."""
    parent_id, cursor = params["parent"], params.get("cursor", "0")
    if not JOB_ID_RE.match(parent_id):
        raise ApiError(400, "invalid_query", "'parent' is not a job id")
    if not cursor.isdigit() or len(cursor) > 6:
        raise ApiError(400, "invalid_cursor", "'cursor' is not valid: a shard index")
    parent = store.get(parent_id)
    if parent is None or not parent.get(JobField.ARRAY):
        raise ApiError(404, "not_found", f"no array job {parent_id!r}")
    start = int(cursor)
    kids = [
        c
        for c in arrays.children(store, parent, start, limit)
        if params.get("status", c[JobField.STATUS]) == c[JobField.STATUS]
        and params.get("worker", c[JobField.WORKER]) == c[JobField.WORKER]
    ]
    more = start + limit < _shards(parent)
    return Response(
        200,
        {
            "jobs": [job_view(c, result_url=False) for c in kids],
            "next_cursor": str(start + limit) if more else None,
        },
    )


def cancel_array(store: JobStore, parent: dict[str, Any]) -> Response:
    """Cancel an array job: flag the parent, then cancel every child (a queued one at once,
    a running one by stopping its task). The parent ends CANCELLED when its last child has
    ended, with the merged results of the shards that ran; the sweep finishes a cascade
    this request had no time for."""
    parent_id = str(parent[JobField.JOB_ID])
    try:
        flagged = store.request_cancel(parent_id)
    except TransitionConflict as exc:
        status = (exc.current or {}).get(JobField.STATUS, "gone")
        raise ApiError(409, "job_terminal", f"job {parent_id} is already {status}") from exc
    done = arrays.cancel_children(store, flagged, _stop_task)
    _aws.log("INFO", "array_job_cancel_requested", job_id=parent_id, **done)
    return Response(202, {**job_view(store.get(parent_id) or flagged), "cancel": done})
