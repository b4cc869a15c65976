"""The checks of an array request (``POST /jobs`` with ``items`` or a ``manifest``; a
scheduled run's ``ScheduledArray``) and the parent row they lead to: each check raises
``RequestRejected`` naming the rule it broke, before anything is written. The one home of
these checks for the API (``handlers/array_api.py``, ``handlers/manifest_api.py``), a
scheduled run (``jobcontract.scheduled.plan_array``) and ``ScheduledTask``'s preview.

Standard library only (this module is in every Lambda zip).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from jobcontract import JobField, JobStatus
from jobcontract.arrays import (
    CHILD_STATES,
    MAX_ITEM_BYTES,
    S3_KEY_MAX_BYTES,
    ArrayError,
    RequestRejected,
    item_errors,
    item_field,
    item_validator,
    shard_size,
)
from jobcontract.schema import Validator


def request_item_field(worker: str, schema: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """The worker's item property (``item_field``), which the shared input must not hold."""
    field = item_field(schema)
    if field is None:
        raise RequestRejected(
            400,
            "not_an_array_worker",
            f"{worker} takes no array jobs: its input schema needs exactly one array "
            "property (the items)",
        )
    if field in base:
        raise RequestRejected(
            400, "invalid_request", f"give the items in 'items', not in input.{field}"
        )
    return field


def request_shard_size(
    schema: Mapping[str, Any], field: str, total: int, request: Mapping[str, Any]
) -> int:
    """Items per child, from ``shard_size`` or ``parallelism`` (one of them at most)."""
    size, parallelism = request.get("shard_size"), request.get("parallelism")
    if size is not None and parallelism is not None:
        raise RequestRejected(
            400, "invalid_request", "give 'shard_size' or 'parallelism', not both"
        )
    for name, value in (("shard_size", size), ("parallelism", parallelism)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise RequestRejected(400, "invalid_request", f"'{name}' must be a positive integer")
    prop = (schema.get("properties") or {}).get(field, {})
    try:
        return shard_size(
            total,
            size=size,
            parallelism=parallelism,
            min_items=int(prop.get("minItems", 1)),
            max_items=prop.get("maxItems"),
        )
    except ArrayError as exc:
        raise RequestRejected(400, "array_limit", str(exc), extra={"limit": exc.limit}) from exc


def _encode(value: Any) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def check_items(
    worker: str,
    schema: Mapping[str, Any],
    field: str,
    base: Mapping[str, Any],
    items: list[Any],
    size: int,
) -> None:
    """Item sizes and the item schema, every item; then the rest of the input once."""
    too_big = [i for i, item in enumerate(items) if len(_encode(item)) > MAX_ITEM_BYTES]
    if too_big:
        raise RequestRejected(
            413,
            "item_too_large",
            f"{len(too_big)} item(s) exceed {MAX_ITEM_BYTES} bytes (max_item_bytes)",
            [f"items[{i}]" for i in too_big],
            extra={"limit": "max_item_bytes", "invalid_items": too_big},
        )
    validator = item_validator(schema, field)
    details: list[str] = []
    invalid: list[int] = []
    for i, item in enumerate(items):
        errors = item_errors(i, item, validator)
        if errors:
            invalid.append(i)
            details.extend(errors)
    if invalid:
        raise RequestRejected(
            400,
            "invalid_items",
            f"{len(invalid)} of {len(items)} items do not match the {worker} item schema "
            f"(input.{field}[]); first: items[{invalid[0]}]",
            details,
            extra={"invalid_items": invalid},
        )
    errors = [
        e
        for e in Validator(schema).errors({**base, field: items[:size]})
        if not e.startswith(f"$.{field}[")
    ]
    if errors:
        raise RequestRejected(
            400, "invalid_input", f"input does not match the {worker} input schema", errors
        )


MANIFEST_FIELDS: Final = frozenset({"s3_key", "items"})


def declared_items(manifest: Any) -> int:
    """The item count a manifest request declares (``manifest.items``), after the shape check."""
    if not isinstance(manifest, Mapping):
        raise RequestRejected(
            400, "invalid_manifest", '\'manifest\' must be an object: {"s3_key", "items"}'
        )
    unknown = sorted(set(manifest) - MANIFEST_FIELDS)
    if unknown:
        raise RequestRejected(
            400, "invalid_manifest", f"manifest: unknown field(s): {', '.join(unknown)}"
        )
    items = manifest.get("items")
    if isinstance(items, bool) or not isinstance(items, int) or items < 1:
        raise RequestRejected(
            400,
            "invalid_manifest",
            "manifest.items is required: the number of items (lines) in the manifest, at least 1",
        )
    if not isinstance(manifest.get("s3_key"), str):
        raise RequestRejected(
            400, "invalid_manifest", "manifest.s3_key is required: the key POST /uploads gave"
        )
    return items


def check_manifest_key(worker: str, key: str) -> None:
    """A manifest key: under the worker's ``inputs/`` prefix, S3's key limit, a plain key."""
    from jobcontract import inputs_prefix

    prefix = inputs_prefix(worker)
    rest = key[len(prefix) :] if key.startswith(prefix) else None
    if rest is None or not rest:
        raise RequestRejected(
            400,
            "invalid_manifest",
            f"manifest.s3_key must be under {prefix} (upload the file with POST /uploads)",
        )
    if len(key.encode()) > S3_KEY_MAX_BYTES:
        raise RequestRejected(
            400,
            "invalid_manifest",
            f"manifest.s3_key is longer than {S3_KEY_MAX_BYTES} bytes (S3's key limit)",
        )
    if not key.isprintable() or any(seg in ("", ".", "..") for seg in rest.split("/")):
        raise RequestRejected(
            400,
            "invalid_manifest",
            "manifest.s3_key must be a plain key: no empty, '.' or '..' segment, "
            "no control characters",
        )


def check_shared_input(
    worker: str, schema: Mapping[str, Any], field: str, base: Mapping[str, Any]
) -> None:
    """The fields every shard of a manifest job shares: stored on the parent, checked against
    the worker's schema without the item property (its items are checked at fan-out)."""
    from jobcontract import MAX_INLINE_INPUT_BYTES
    from jobcontract.store import storable

    if len(_encode(base)) > MAX_INLINE_INPUT_BYTES or not storable(dict(base)):
        raise RequestRejected(
            413,
            "shared_input_too_large",
            f"'input' exceeds {MAX_INLINE_INPUT_BYTES} bytes (max_shared_input_bytes); with a "
            "manifest, put per-item data in the items",
            extra={"limit": "max_shared_input_bytes"},
        )
    errors = [
        e
        for e in Validator(schema).errors({**base, field: []})
        if not (e.startswith(f"$.{field}:") or e.startswith(f"$.{field}["))
    ]
    if errors:
        raise RequestRejected(
            400, "invalid_input", f"input does not match the {worker} input schema", errors
        )


def parent_item(
    parent_id: str,
    worker: str,
    *,
    total: int,
    size: int,
    field: str,
    cpu: int,
    memory: int,
    share: int | float,
    max_attempts: int,
    source: str,
    expires_at: int,
    now: str,
) -> dict[str, Any]:
    """An array job's parent row: RUNNING from the start (it never has a task), its counters
    at zero. The API's and a scheduled run's parents differ only in ``source`` and id."""
    shards = -(-total // size)
    item: dict[str, Any] = {
        JobField.JOB_ID: parent_id,
        JobField.WORKER: worker,
        JobField.STATUS: JobStatus.RUNNING.value,
        JobField.CREATED_AT: now,
        JobField.CPU: cpu,
        JobField.MEMORY: memory,
        JobField.ATTEMPTS: 0,
        JobField.MAX_ATTEMPTS: max_attempts,
        JobField.SOURCE: source,
        JobField.EXPIRES_AT: expires_at,
        JobField.ARRAY: {
            "item_field": field,
            "total_items": total,
            "shards": shards,
            "shard_size": size,
            "created": 0,
        },
        JobField.CHILDREN: {s.value: 0 for s in CHILD_STATES},
        JobField.ITEMS: {"total": total, "succeeded": 0, "failed": 0},
        JobField.PROGRESS: {"done": 0, "total": total},
    }
    if share:
        item[JobField.MAX_FAILED_ITEM_SHARE] = share
    return item
