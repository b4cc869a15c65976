"""Array jobs whose items are a JSON Lines manifest in S3 (``POST /jobs`` with ``manifest``):
the launcher's fan-out steps (``handlers.arrays.fan_out_from_manifest`` calls ``step``).

The API cannot read a 1,000,000-item manifest within API Gateway's 29 s, so it only checks
the object (HeadObject: under the worker's ``inputs/``, at most ``MAX_MANIFEST_BYTES``),
records the parent with the object's ETag and the declared item count, and sends a
``{"fanout": id}`` message. Each message is one bounded step (``BATCH_MANIFEST_STEP_SECONDS``,
default 20 s, well inside the launcher's 60 s Lambda timeout), then the next step is asked
for; the parent's ``array`` map is the cursor:

1. **Validate** (``array.manifest.validated`` false): stream from byte ``manifest.offset``
   (a ranged GetObject), check every item (JSON, at most ``MAX_ITEM_BYTES``, the worker's item
   schema), count it, keep the first ``MAX_REPORTED_INVALID_ITEMS`` invalid indexes; save the
   cursor (byte offset, items seen, invalid so far) at the end of the step. At the end of the
   manifest: any invalid item, or another count than declared, ends the parent FAILED
   (``InvalidItems`` / ``InvalidManifest``, reported once) **before any child exists**.
2. **Write** (validated): stream from byte ``array.offset`` (where shard ``array.created``
   starts), group ``shard_size`` items per child and create the children parked
   (``Dispatch.create_parked``: conditional puts), at most ``FANOUT_STEP_CHILDREN`` per step,
   then move ``created`` and ``offset`` together.

Every cursor write is conditional on the ``array`` map the step started from, so a duplicate
delivery cannot count twice; a step that dies (Lambda timeout) leaves the cursor where the
last step put it, and its redelivery redoes only that step (children it wrote already are
skipped by the conditional puts). Every read is ``IfMatch`` the ETag recorded at submit
(S3 GetObject: "return the object only if its entity tag is the same ... otherwise 412"),
so all steps read the same bytes. Memory is one read chunk, one item and one shard (plus a
transaction's children), whatever the manifest's size.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from handlers import _aws
from handlers.registry import WorkerRegistration
from jobcontract import Env, JobField, JobStatus
from jobcontract import arrays as contract
from jobcontract.dispatch import Dispatch
from jobcontract.schema import Validator
from jobcontract.store import Item, JobStore, TransitionConflict

STEP_SECONDS_ENV = "BATCH_MANIFEST_STEP_SECONDS"
DEFAULT_STEP_SECONDS = 20.0
DEADLINE_CHECK_EVERY = 1000  # items between two looks at the clock
MAX_DETAILS = contract.MAX_REPORTED_INVALID_ITEMS  # error strings kept for the report
DETAIL_MAX_CHARS = 300
CANCEL_MIN_SECONDS = 5.0  # a changed manifest's cascade, past the step's 20 s (Lambda: 60 s)


def step_deadline() -> float:
    return time.monotonic() + _aws.env_float(STEP_SECONDS_ENV, DEFAULT_STEP_SECONDS)


def step(store: JobStore, worker: WorkerRegistration, parent: Item, deadline: float) -> Item:
    """One fan-out step of a manifest parent: validate on, or write the next children; the
    parent as written (FAILED when the manifest turned out invalid)."""
    if not parent[JobField.ARRAY]["manifest"].get("validated"):
        parent = _validate(store, worker, parent, deadline)
        if parent[JobField.STATUS] != JobStatus.RUNNING.value:
            return parent
        if not parent[JobField.ARRAY]["manifest"].get("validated"):
            return parent  # the next step goes on
        if time.monotonic() > deadline:
            return parent
    return _write(store, worker, parent, deadline)


# --- reading -------------------------------------------------------------------------------
class ManifestChanged(Exception):
    """The object is not the one the parent was submitted with (S3 answered 412)."""


READ_WINDOW_BYTES = 8 * 1024 * 1024  # one ranged GetObject, read whole, then the next


class _RangedReader:
    """``read(n)`` over the manifest from byte ``start``, one ranged GetObject (IfMatch its
    ETag) of ``READ_WINDOW_BYTES`` at a time: no S3 connection stays open while the step
    writes children. A window is held as the pieces it was read in (``n`` bytes each, the
    size ``iter_lines`` asks for), each dropped once handed out: no copy of the window is
    ever made (neither a join of the body nor a slice of it), so memory is one window at
    most, shrinking as it is read."""

    def __init__(self, manifest: dict[str, Any], start: int) -> None:
        self.manifest, self.at, self.size = manifest, start, int(manifest["bytes"])
        self.pieces: deque[bytes] = deque()

    def read(self, n: int) -> bytes:
        if not self.pieces:
            if self.at >= self.size:
                return b""
            self.pieces = _get_range(self.manifest, self.at, READ_WINDOW_BYTES, n)
            self.at += sum(len(piece) for piece in self.pieces)
            if not self.pieces:
                return b""
        piece = self.pieces.popleft()
        if len(piece) > n:  # a caller asking for less than a piece: hand out its head
            self.pieces.appendleft(piece[n:])
            piece = piece[:n]
        return piece

    def close(self) -> None:
        self.pieces.clear()


def _get_range(manifest: dict[str, Any], start: int, length: int, piece: int) -> deque[bytes]:
    """Bytes ``start..start+length-1`` of the manifest in pieces of ``piece`` bytes, only if
    it is still the object submitted (``IfMatch``; S3 answers 412 otherwise)."""
    try:
        body = _aws.client("s3").get_object(
            Bucket=_aws.env(Env.RESULTS_BUCKET),
            Key=manifest["key"],
            IfMatch=manifest["etag"],
            Range=f"bytes={start}-{start + length - 1}",
        )["Body"]
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 412 or exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
            raise ManifestChanged(str(exc)) from None
        raise
    pieces: deque[bytes] = deque()
    try:
        while data := body.read(piece):
            pieces.append(data)
    finally:
        body.close()
    return pieces


def _open(manifest: dict[str, Any], start: int) -> Any:
    """The manifest's body from byte ``start``: an object with ``read(n)`` and ``close()``."""
    return _RangedReader(manifest, start)


def _lines(manifest: dict[str, Any], start: int) -> Iterator[tuple[bytes | None, int]]:
    """``jobcontract.arrays.iter_lines`` from byte ``start``: (line, absolute end offset)."""
    if start >= int(manifest["bytes"]):
        return
    body = _open(manifest, start)
    try:
        for line, consumed in contract.iter_lines(body.read):
            yield line, start + consumed
    finally:
        body.close()


# --- 1. validation -------------------------------------------------------------------------
def _validate(store: JobStore, worker: WorkerRegistration, parent: Item, deadline: float) -> Item:
    array = parent[JobField.ARRAY]
    manifest = dict(array["manifest"])
    validator = contract.item_validator(worker.input_schema, str(array["item_field"]))
    offset, index = int(manifest.get("offset", 0)), int(manifest.get("items", 0))
    invalid: list[int] = list(manifest.get("invalid") or [])
    details: list[str] = list(manifest.get("details") or [])
    invalid_count, oversize = int(manifest.get("invalid_count", 0)), bool(manifest.get("oversize"))
    finished = True
    try:
        for line, end in _lines(manifest, offset):
            errors = _line_errors(index, line, validator)
            if errors:
                invalid_count += 1
                oversize = oversize or line is None
                if len(invalid) < contract.MAX_REPORTED_INVALID_ITEMS:
                    invalid.append(index)
                    details.extend(e[:DETAIL_MAX_CHARS] for e in errors)
                    del details[MAX_DETAILS:]
            index, offset = index + 1, end
            if index % DEADLINE_CHECK_EVERY == 0 and time.monotonic() > deadline:
                finished = False
                break
    except ManifestChanged:
        return _fail(store, parent, _changed_error(manifest))
    manifest.update(
        offset=offset,
        items=index,
        invalid=invalid,
        invalid_count=invalid_count,
        details=details,
        oversize=oversize,
    )
    _aws.log(
        "INFO",
        "manifest_validation_progress",
        job_id=parent[JobField.JOB_ID],
        items=index,
        bytes=offset,
        of_bytes=manifest["bytes"],
        invalid=invalid_count,
        finished=finished,
    )
    if finished:
        error = _verdict(parent, manifest)
        if error is not None:
            return _fail(store, parent, error, {**array, "manifest": manifest})
        manifest["validated"] = True
    return _save(store, parent, {**array, "manifest": manifest})


def _line_errors(index: int, line: bytes | None, validator: Validator) -> list[str]:
    if line is None:
        return [f"items[{index}]: longer than {contract.MAX_ITEM_BYTES} bytes (max_item_bytes)"]
    try:
        item = json.loads(line)
    except ValueError as exc:  # UnicodeDecodeError is one too
        return [f"items[{index}]: not a JSON value ({exc})"]
    return contract.item_errors(index, item, validator)


def _verdict(parent: Item, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The parent's error when the whole manifest is read: invalid items, or a count other
    than the request declared; None when every item is valid."""
    array = parent[JobField.ARRAY]
    declared, seen = int(array["total_items"]), int(manifest["items"])
    worker, field = parent[JobField.WORKER], array["item_field"]
    count = int(manifest["invalid_count"])
    if count:
        first = manifest["invalid"][0]
        error: dict[str, Any] = {
            "type": "InvalidItems",
            "message": f"{count} of {seen} manifest items do not match the {worker} item "
            f"schema (input.{field}[]); first: items[{first}]; nothing was enqueued",
            "invalid_items": list(manifest["invalid"]),
            "invalid_count": count,
            "details": list(manifest["details"]),
        }
        if manifest.get("oversize"):
            error["limit"] = "max_item_bytes"
        return error
    if seen != declared:
        return {
            "type": "InvalidManifest",
            "message": f"the manifest holds {seen} items, the request declared {declared} "
            "(manifest.items); nothing was enqueued",
        }
    return None


def _changed_error(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "InvalidManifest",
        "message": f"s3://.../{manifest['key']} changed after the job was submitted (ETag "
        f"{manifest['etag']} no longer matches); nothing was enqueued",
    }


def _fail(
    store: JobStore, parent: Item, error: dict[str, Any], array: dict[str, Any] | None = None
) -> Item:
    """End the parent FAILED (no child exists yet) and report it once: only the step whose
    conditional transition wins reports."""
    parent_id = str(parent[JobField.JOB_ID])
    fields: dict[str, Any] = {JobField.ERROR: {**error, "exit_code": None, "stop_reason": None}}
    if array is not None:
        fields[JobField.ARRAY] = array
    try:
        failed = store.transition(
            parent_id,
            JobStatus.RUNNING,
            JobStatus.FAILED,
            set_fields=fields,
            expect={JobField.ARRAY: parent[JobField.ARRAY]},
        )
    except TransitionConflict as exc:
        return exc.current or parent
    _aws.log("ERROR", "manifest_invalid", job_id=parent_id, error=error["message"])
    from handlers import notify

    notify.job_finished(failed)
    return failed


def _save(store: JobStore, parent: Item, array: dict[str, Any]) -> Item:
    """Move the cursor, only from where this step started (a duplicate step loses)."""
    try:
        return store.update(
            str(parent[JobField.JOB_ID]),
            status=JobStatus.RUNNING,
            set_fields={JobField.ARRAY: array},
            expect={JobField.ARRAY: parent[JobField.ARRAY]},
        )
    except TransitionConflict as exc:
        return exc.current or parent


# --- 2. children ---------------------------------------------------------------------------
def _write(store: JobStore, worker: WorkerRegistration, parent: Item, deadline: float) -> Item:
    from handlers import arrays

    array = parent[JobField.ARRAY]
    manifest = array["manifest"]
    first, size = contract.children_created(parent), int(array["shard_size"])
    stop = min(int(array["shards"]), first + contract.FANOUT_STEP_CHILDREN)
    cursor = {"created": first, "offset": int(array.get("offset", 0))}
    base = dict(parent.get(JobField.INPUT) or {})

    def shards() -> Iterator[tuple[int, list[Any]]]:
        index, batch = first, list[Any]()
        for line, end in _lines(manifest, cursor["offset"]):
            if line is None:  # validated: cannot happen unless the object changed
                raise ManifestChanged(f"item {index * size + len(batch)} is oversize")
            batch.append(json.loads(line))
            if len(batch) == size:
                yield index, batch
                index, batch = index + 1, []
                cursor.update(created=index, offset=end)
                if index >= stop or time.monotonic() > deadline:
                    return
        if batch:  # the last, shorter shard
            yield index, batch
            cursor.update(created=index + 1, offset=int(manifest["bytes"]))

    try:
        made = Dispatch(store).create_parked(
            arrays.children_of(worker, parent, base, shards()), worker.name
        )
    except ManifestChanged as exc:
        return _abandon(store, parent, str(exc), deadline)
    _aws.log(
        "INFO",
        "array_children_created",
        job_id=parent[JobField.JOB_ID],
        created=made,
        children=cursor["created"],
        of=array["shards"],
    )
    return _save(store, parent, {**array, **cursor})


def _abandon(store: JobStore, parent: Item, why: str, deadline: float) -> Item:
    """The manifest changed after its validation, with children written: every child written
    so far came from the submitted bytes (each read was ``IfMatch`` its ETag), none is written
    from the new ones. The parent is flagged cancelled with the error saying so, and the
    cancel cascade runs at once (``arrays.cancel_children``): a queued child is CANCELLED and
    counted before the drain can start it, a running one flagged (its runtime stops at its
    next heartbeat, workers/runtime/lifecycle.py), unwritten shards counted CANCELLED, each
    shard once; the sweep finishes a cascade this step had no time for. The parent ends
    CANCELLED, with the results of the shards that had run, and this error."""
    from handlers import arrays

    parent_id = str(parent[JobField.JOB_ID])
    _aws.log("ERROR", "manifest_changed", job_id=parent_id, error=why)
    manifest = parent[JobField.ARRAY]["manifest"]
    error = {
        **_changed_error(manifest),
        "message": f"s3://.../{manifest['key']} changed while its children were written "
        f"(ETag {manifest['etag']} no longer matches: S3 answered 412 PreconditionFailed); "
        "no child was written from the new object; the children written before are "
        "cancelled with the array job",
        "exit_code": None,
        "stop_reason": None,
    }
    try:
        flagged = store.update(
            parent_id,
            status=JobStatus.RUNNING,
            set_fields={JobField.CANCEL_REQUESTED: True, JobField.ERROR: error},
        )
    except TransitionConflict as exc:
        return exc.current or parent
    left = max(CANCEL_MIN_SECONDS, deadline - time.monotonic())
    done = arrays.cancel_children(store, flagged, lambda child: None, deadline_seconds=left)
    _aws.log("INFO", "array_job_cancel_requested", job_id=parent_id, **done)
    return store.get(parent_id) or flagged
