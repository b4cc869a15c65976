"""Array jobs: one submitted list of items run as many ordinary child jobs (shards).

The rules every actor shares, standard library only (this module is in every Lambda zip):

- **Which input field holds the items**: the worker's input schema must have exactly one
  property of type ``array`` (``documents``, ``images``, ``pages`` for the seed workers). A
  shard's input is the worker's normal input: the request's ``input`` (the other fields) plus
  that property set to the shard's items, so the worker's handler does not change.
- **Children** are ordinary jobs (same dispatch, claims, retries, timeouts, cancel) with
  ``parent_id`` and ``shard`` {index, offset, count}; their ids derive from the parent's id and
  the shard index (``child_id``), so a replayed request finds them and a parent's children can
  be listed without an index. A child tolerates every failed item (share 1): the parent
  decides, from the item counts of all its children, with its own ``max_failed_item_share``.
- **Fan-in**: each child's end is counted on the parent once (``done_shards`` marker, one
  conditional update per child); the actor whose count completes the set, or the sweep, then
  claims the merge (``merge``), writes ``results.jsonl`` (one line per item, in item order) and
  ``summary.json``, and ends the parent.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from jobcontract import (
    JobField,
    JobStatus,
    new_job_id,
    results_prefix,
    tolerated_failed_items,
    worker_of_job_id,
)
from jobcontract.schema import Validator

MAX_SHARDS: Final = 10_000  # children per array job
MAX_ITEM_BYTES: Final = 256 * 1024  # one item, as compact JSON
MAX_ARRAY_REQUEST_BYTES: Final = 10 * 1024 * 1024  # API Gateway's payload limit (10 MB)
DEFAULT_SHARD_SIZE: Final = 100  # items per child when the request names neither size
CHILD_FAILED_ITEM_SHARE: Final = 1  # a child never fails for its items: its parent decides
CHILD_STATES: Final = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
SOURCE_ARRAY: Final = "array"
# Children the API writes within the request; a bigger array job is fanned out by the
# launcher from a manifest (measured: bench/array_fanout.py, README "Array jobs").
DEFAULT_SYNC_CHILDREN: Final = 100
FANOUT_KEY: Final = "fanout"  # launch-queue message body {"fanout": <parent id>}
FANOUT_STEP_CHILDREN: Final = 1000  # children per fan-out step (one launcher message)
# ``array.kept_items``: inline items kept with the parent until every child is written (a
# scheduled run's, at most 8 KB of task overrides; bounded well below DynamoDB's 400 KB item).
KEPT_ITEMS: Final = "kept_items"
MAX_KEPT_ITEMS_BYTES: Final = 64 * 1024


class ArrayError(ValueError):
    """The request cannot be an array job; ``limit`` names the rule it broke."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class RequestRejected(ValueError):
    """An array job request breaks a rule, checked before anything is written: the API
    answers it as its 4xx (``status``, ``code``, ``message``, ``details``, ``extra`` with the
    ``limit`` it names), a scheduled run records it as its job's ``error`` (``as_error``),
    and ``ScheduledTask`` reports it at preview. The one home of these checks for all three."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details
        self.extra = extra or {}

    def as_error(self) -> dict[str, Any]:
        """The job ``error`` of a scheduled run rejected for this reason."""
        error: dict[str, Any] = {"type": self.code, "message": self.message}
        if self.extra.get("limit"):
            error["limit"] = self.extra["limit"]
        if self.details:
            error["details"] = self.details[:MAX_REPORTED_INVALID_ITEMS]
        return error


def item_field(schema: Mapping[str, Any]) -> str | None:
    """The input property that holds a worker's items: its schema's one ``array`` property
    (None when it has none or several: such a worker takes no array jobs)."""
    properties = schema.get("properties") or {}
    arrays = [
        name
        for name, sub in properties.items()
        if isinstance(sub, Mapping) and sub.get("type") == "array"
    ]
    return arrays[0] if len(arrays) == 1 else None


def item_validator(input_schema: Mapping[str, Any], field: str) -> Validator:
    """The item schema of a worker's array property ``field`` (each item is checked with it)."""
    prop = (input_schema.get("properties") or {}).get(field) or {}
    return Validator(prop.get("items", {}))


def item_errors(index: int, item: Any, validator: Validator) -> list[str]:
    """Why item ``index`` is invalid, as ``items[i]...`` (its first three errors; empty when
    it is valid)."""
    return [f"items[{index}]{e[1:]}" for e in validator.errors(item)[:3]]


def shard_size(
    total: int,
    *,
    size: int | None,
    parallelism: int | None,
    min_items: int = 1,
    max_items: int | None = None,
) -> int:
    """Items per child: ``size`` as asked, or ``ceil(total / parallelism)``, or the default
    (capped by the schema's ``maxItems``). ``ArrayError`` when the shards would break the
    worker's ``minItems``/``maxItems`` or exceed ``MAX_SHARDS``."""
    if size is None and parallelism is not None:
        size = math.ceil(total / parallelism)
    if size is None:
        size = min(DEFAULT_SHARD_SIZE, max_items or DEFAULT_SHARD_SIZE)
    if max_items is not None and size > max_items:
        raise ArrayError(
            "shard_size",
            f"shard_size {size} exceeds the worker's maxItems {max_items}; "
            f"ask for shard_size <= {max_items} (or more parallelism)",
        )
    shards = math.ceil(total / size)
    if shards > MAX_SHARDS:
        raise ArrayError(
            "max_shards",
            f"{total} items in shards of {size} make {shards} children; at most {MAX_SHARDS} "
            f"(max_shards; use shard_size >= {math.ceil(total / MAX_SHARDS)})",
        )
    last = total - (shards - 1) * size
    if last < min_items:
        raise ArrayError(
            "shard_size",
            f"the last shard would have {last} item(s), under the worker's minItems {min_items} "
            "(shard_size)",
        )
    return size


def child_id(parent_id: str, index: int) -> str:
    """Child ``index`` of ``parent_id``: same worker prefix (the task role's LeadingKeys),
    32 hex derived from the parent and the index (the same on every replay)."""
    worker = worker_of_job_id(parent_id)
    if worker is None:
        raise ValueError(f"not a job id: {parent_id!r}")
    digest = hashlib.sha256(f"{parent_id}#shard#{index}".encode()).hexdigest()[:32]
    return new_job_id(worker, digest)


def merged_key(worker: str, parent_id: str) -> str:
    """The merged JSON Lines of an array job (next to where a job's result goes)."""
    return f"{results_prefix(worker)}{parent_id}/results.jsonl"


def summary_key(worker: str, parent_id: str) -> str:
    return f"{results_prefix(worker)}{parent_id}/summary.json"


def child_counts(child: Mapping[str, Any]) -> tuple[int, int]:
    """(succeeded, failed) items of an ended child: its recorded item counts when it
    SUCCEEDED, else every item of its shard failed (it never produced a result)."""
    count = int((child.get(JobField.SHARD) or {}).get("count", 0))
    items = child.get(JobField.ITEMS) or {}
    if child.get(JobField.STATUS) == JobStatus.SUCCEEDED.value:
        if items:
            failed = int(items.get("failed", 0))
            return count - failed, failed
        return count, 0
    return 0, count


def children_created(parent: Mapping[str, Any]) -> int:
    """How many of the parent's children (shards ``0..n-1``) are written: the fan-out's
    cursor (``array.created``)."""
    return int((parent.get(JobField.ARRAY) or {}).get("created", 0))


def all_created(parent: Mapping[str, Any]) -> bool:
    array = parent.get(JobField.ARRAY) or {}
    return children_created(parent) >= int(array.get("shards", 0))


def keep_items(parent: dict[str, Any], items: list[Any]) -> None:
    """Keep inline items with the parent (``array.kept_items``, compact JSON, so any item
    DynamoDB could not hold as a map is kept as given): the fan-out can then be resumed from
    the cursor by any actor, from the row alone. A scheduled run's items otherwise live only
    in its stopped task's environment. ``ValueError`` above ``MAX_KEPT_ITEMS_BYTES``."""
    import json

    kept = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
    if len(kept.encode()) > MAX_KEPT_ITEMS_BYTES:
        raise ValueError(f"items to keep with the parent exceed {MAX_KEPT_ITEMS_BYTES} bytes")
    parent[JobField.ARRAY][KEPT_ITEMS] = kept


def kept_items(parent: Mapping[str, Any]) -> list[Any] | None:
    """The items kept with the parent (``keep_items``), or None (a manifest job, an API
    job, or a fan-out that is complete: the last step drops them)."""
    import json

    kept = (parent.get(JobField.ARRAY) or {}).get(KEPT_ITEMS)
    return None if kept is None else list(json.loads(str(kept)))


def fan_out_source(parent: Mapping[str, Any]) -> bool:
    """Whether the launcher's fan-out step can write the parent's missing children: from
    its manifest in S3 (``input_s3_key``) or from the items kept with it."""
    return bool(parent.get(JobField.INPUT_S3_KEY)) or (
        KEPT_ITEMS in (parent.get(JobField.ARRAY) or {})
    )


def is_complete(parent: Mapping[str, Any]) -> bool:
    shards = int((parent.get(JobField.ARRAY) or {}).get("shards", 0))
    return shards > 0 and len(parent.get(JobField.DONE_SHARDS) or ()) >= shards


def outcome(
    parent: Mapping[str, Any], succeeded: int, failed: int
) -> tuple[JobStatus, dict[str, str] | None]:
    """How the parent ends: CANCELLED when a cancel was asked, else SUCCEEDED when the failed
    items are within its ``max_failed_item_share``, else FAILED (``ItemsFailed``)."""
    from jobcontract import items_failed_error

    if parent.get(JobField.CANCEL_REQUESTED):
        return JobStatus.CANCELLED, None
    total = succeeded + failed
    share = parent.get(JobField.MAX_FAILED_ITEM_SHARE) or 0
    error = items_failed_error({"total": total, "failed": failed}, share)
    return (JobStatus.FAILED, error) if error else (JobStatus.SUCCEEDED, None)


def summary(parent: Mapping[str, Any], succeeded: int, failed: int) -> dict[str, Any]:
    """``summary.json`` of an ended array job."""
    status, error = outcome(parent, succeeded, failed)
    array = parent.get(JobField.ARRAY) or {}
    share = parent.get(JobField.MAX_FAILED_ITEM_SHARE) or 0
    return {
        "job_id": parent.get(JobField.JOB_ID),
        "status": status.value,
        "items": {"total": succeeded + failed, "succeeded": succeeded, "failed": failed},
        "tolerated_failed_items": tolerated_failed_items(succeeded + failed, share),
        "children": dict(parent.get(JobField.CHILDREN) or {}),
        "shards": array.get("shards"),
        "shard_size": array.get("shard_size"),
        "error": error,
    }


def item_lines(
    child: Mapping[str, Any], field: str, output: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """One merged line per item of ``child``'s shard, in order: ``{"index", "shard",
    "result"}`` or ``{"index", "shard", "error"}``. The worker's output must carry ``field``
    as a list with one entry per item, in order, as the seed workers do (an entry with a
    non-null ``error``, e.g. ``{"id": ..., "error": {...}}``, is that item's error);
    a child without such an output gives each item the child's error."""
    shard = child.get(JobField.SHARD) or {}
    offset, count, index = int(shard["offset"]), int(shard["count"]), int(shard["index"])
    entries = output.get(field) if output is not None else None
    if not isinstance(entries, list) or len(entries) != count:
        if output is None:
            status = str(child.get(JobField.STATUS))
            error = child.get(JobField.ERROR) or {
                "type": status.title(),
                "message": f"the shard's job ended {status} without a result",
            }
        else:
            error = {
                "type": "UnmappedResult",
                "message": f"the shard's output has no '{field}' list of {count} entries",
            }
        return [{"index": offset + i, "shard": index, "error": error} for i in range(count)]
    lines = []
    for i, entry in enumerate(entries):
        line: dict[str, Any] = {"index": offset + i, "shard": index}
        if isinstance(entry, Mapping) and entry.get("error") is not None:
            line["error"] = entry["error"]
        else:
            line["result"] = entry
        lines.append(line)
    return lines


def fanout_message(parent_id: str) -> dict[str, str]:
    """SQS FIFO send arguments (without QueueUrl) asking the launcher to create a parent's
    children from its manifest; each its own deduplication id (a re-send must not be
    dropped), the parent's id as group (one fan-out of a parent at a time)."""
    import json
    import uuid

    return {
        "MessageBody": json.dumps({FANOUT_KEY: parent_id}),
        "MessageGroupId": parent_id,
        "MessageDeduplicationId": f"{parent_id}-fanout-{uuid.uuid4().hex}"[-128:],
    }


def fanout_parent(body: str) -> str | None:
    """The parent id of a fan-out message body, else None."""
    import json

    if FANOUT_KEY not in body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get(FANOUT_KEY) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def manifest_key(worker: str, parent_id: str, request_hash: str) -> str:
    """Where an array job's items wait for the launcher's fan-out step: under the worker's
    inputs prefix, named by the request too (a conflicting replay never overwrites it)."""
    from jobcontract import inputs_prefix

    return f"{inputs_prefix(worker)}{parent_id}.{request_hash[:16]}.json"


# --- manifests: an array job's items as JSON Lines in S3 (``POST /jobs`` with ``manifest``) ---
# Our limit, well inside S3's: a single POST (the presigned forms of POST /uploads) stores at
# most 5 GB (S3 User Guide, "Uploading objects": one PUT/POST operation up to 5 GB). 1 GiB
# holds 1,000,000 items of about 1 KiB; the launcher streams it in resumable steps.
MAX_MANIFEST_BYTES: Final = 1024 * 1024 * 1024
MANIFEST_CONTENT_TYPE: Final = "application/x-ndjson"  # what POST /uploads lets be that large
MANIFEST_SUFFIXES: Final = (".jsonl", ".ndjson")  # batchctl --items FILE: always a manifest
MAX_REPORTED_INVALID_ITEMS: Final = 100  # invalid items listed by index (all are counted)
S3_KEY_MAX_BYTES: Final = 1024  # AWS rule: an object key is at most 1,024 bytes of UTF-8
MANIFEST_READ_CHUNK: Final = 1024 * 1024


def iter_lines(
    read: Callable[[int], bytes], limit: int = MAX_ITEM_BYTES, chunk: int | None = None
) -> Iterator[tuple[bytes | None, int]]:
    """The lines of a JSON Lines stream, each as ``(line, bytes consumed so far)``: ``line``
    without its newline (``\\r\\n`` too), or None when it is longer than ``limit`` bytes
    (never buffered: memory stays about ``chunk + limit``). Every ``\\n`` ends an item, so a
    blank line is an item (an invalid one); a last line without ``\\n`` is one too. The
    consumed count is where the next line starts: a resumed read starts there."""
    chunk = chunk or MANIFEST_READ_CHUNK
    rest = b""
    consumed = 0
    oversize = False

    def item(part: bytes) -> bytes | None:
        line = part.removesuffix(b"\r")
        return None if len(line) > limit else line

    while True:
        data = read(chunk)
        if not data:
            break
        parts = (rest + data).split(b"\n")
        rest = parts.pop()
        for part in parts:
            consumed += len(part) + 1
            yield (None if oversize else item(part)), consumed
            oversize = False
        if len(rest) > limit + 1:  # an oversize line: count its bytes, keep none of them
            consumed += len(rest)
            rest, oversize = b"", True
    if rest or oversize:
        consumed += len(rest)
        yield (None if oversize else item(rest)), consumed


def count_lines(read: Callable[[int], bytes]) -> int:
    """How many items a JSON Lines stream holds, counted as ``iter_lines`` counts them."""
    return sum(1 for _ in iter_lines(read, limit=0))


def request_failed_item_share(value: Any) -> int | float:
    """A request's tolerated share of failed items (``jobcontract.items_failed_error``): a
    number from 0 to 1, default 0 (any failed item fails the job)."""
    import json

    from jobcontract import DEFAULT_MAX_FAILED_ITEM_SHARE, max_failed_item_share

    if value is None:
        return DEFAULT_MAX_FAILED_ITEM_SHARE
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise RequestRejected(
            400,
            "invalid_request",
            f"'{JobField.MAX_FAILED_ITEM_SHARE}' must be a number from 0 to 1, the share of "
            "the job's items that may fail with the job still SUCCEEDED (default 0: any "
            f"failed item fails the job); got {json.dumps(value)[:40]}",
        )
    return max_failed_item_share(value)  # a share too small to store is 0 for every job
