"""Fan-out and cancel of array jobs (``jobcontract.arrays``), for the API, the launcher,
the reconciler and the sweep; fan-in (``record_end``, ``finalize``, ``recount``,
``children``) is ``handlers.array_merge``, re-exported here for the callers.

- ``fan_out``: the children, parked, in batched conditional transactions; by the API within
  the request for up to ``ARRAY_SYNC_CHILDREN`` children, else by the launcher's fan-out
  step from a manifest in S3 (``write_manifest``, a ``fanout`` message on the launch queue).
- ``cancel_children``: the cancel cascade, as far as a deadline allows; the sweep finishes
  it for a parent whose cancel was asked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers import _aws

# Fan-in, re-exported: the reconciler, the sweep and the API call it as ``arrays.<name>``.
from handlers.array_merge import MERGE_STALE_SECONDS as MERGE_STALE_SECONDS
from handlers.array_merge import READ_THREADS as READ_THREADS
from handlers.array_merge import ReadMany as ReadMany
from handlers.array_merge import _unwritten
from handlers.array_merge import children as children
from handlers.array_merge import finalize as finalize
from handlers.array_merge import record_end as record_end
from handlers.array_merge import recount as recount
from handlers.registry import WorkerRegistration
from jobcontract import MAX_INLINE_INPUT_BYTES, Env, JobField, JobStatus, input_key
from jobcontract import arrays as contract
from jobcontract.dispatch import Dispatch
from jobcontract.store import (
    Item,
    JobStore,
    TransitionConflict,
    now_iso,
    storable,
)


# --- fan-out -------------------------------------------------------------------------------
def fan_out(
    store: JobStore,
    worker: WorkerRegistration,
    parent: Item,
    base: Item,
    items: list[Any],
    stop: int | None = None,
) -> Item:
    """Write children from the parent's cursor (``array.created``) up to shard ``stop``
    (default all), parked (``Dispatch.create_parked``), then move the cursor; the parent as
    written. Safe to repeat: a replay or a redelivered step creates only what is missing."""
    array = parent[JobField.ARRAY]
    start, shards = contract.children_created(parent), int(array["shards"])
    stop = shards if stop is None else min(stop, shards)
    size = int(array["shard_size"])
    slices = ((i, items[i * size : (i + 1) * size]) for i in range(start, stop))
    made = Dispatch(store).create_parked(children_of(worker, parent, base, slices), worker.name)
    _aws.log("INFO", "array_children_created", job_id=parent[JobField.JOB_ID], created=made)
    moved = {**array, "created": stop}
    if stop >= shards:  # every child is written: kept items are no longer needed
        moved.pop(contract.KEPT_ITEMS, None)
    return store.update(
        str(parent[JobField.JOB_ID]),
        status=parent[JobField.STATUS],
        set_fields={JobField.ARRAY: moved},
    )


def write_manifest(key: str, base: Item, items: list[Any]) -> str:
    """The items of an array job too big to fan out within the request, for the launcher's
    fan-out step (``fan_out_from_manifest``), at ``key`` (``jobcontract.arrays.manifest_key``)."""
    body = json.dumps({"input": base, "items": items}, ensure_ascii=False, separators=(",", ":"))
    _aws.client("s3").put_object(
        Bucket=_aws.env(Env.RESULTS_BUCKET),
        Key=key,
        Body=body.encode(),
        ContentType="application/json",
    )
    return key


def fan_out_from_manifest(store: JobStore, worker: WorkerRegistration, parent: Item) -> Item:
    """One fan-out step of the launcher (a ``fanout`` message): the next
    ``FANOUT_STEP_CHILDREN`` children from the manifest, or from the items kept with the
    parent (a scheduled run's whose fan-out died; the sweep asks), the caller asking for the
    next step. A manifest the client uploaded (JSON Lines, ``array.manifest``) is validated
    first and read in bounded, resumable steps (``handlers.manifests``)."""
    if parent[JobField.ARRAY].get("manifest"):
        from handlers import manifests

        return manifests.step(store, worker, parent, manifests.step_deadline())
    stop = contract.children_created(parent) + contract.FANOUT_STEP_CHILDREN
    kept = contract.kept_items(parent)
    if kept is not None:
        return fan_out(store, worker, parent, dict(parent.get(JobField.INPUT) or {}), kept, stop)
    key = str(parent[JobField.INPUT_S3_KEY])
    body = _aws.client("s3").get_object(Bucket=_aws.env(Env.RESULTS_BUCKET), Key=key)["Body"]
    manifest = json.loads(body.read())
    return fan_out(store, worker, parent, dict(manifest["input"]), list(manifest["items"]), stop)


def children_of(
    worker: WorkerRegistration,
    parent: Item,
    base: Item,
    shards: Iterable[tuple[int, list[Any]]],
) -> Iterator[Item]:
    """Child jobs of ``(shard index, its items)`` in shard order; ``created_at`` one
    microsecond apart, so the drain (oldest first) starts them in that order. A large
    shard's input goes to S3, as a large job's. Lazy: one shard at a time."""
    parent_id = str(parent[JobField.JOB_ID])
    array = parent[JobField.ARRAY]
    size, field = int(array["shard_size"]), str(array["item_field"])
    now = datetime.now(UTC)
    for index, shard_items in shards:
        offset = index * size
        child_id = contract.child_id(parent_id, index)
        child: Item = {
            JobField.JOB_ID: child_id,
            JobField.WORKER: worker.name,
            JobField.STATUS: JobStatus.QUEUED.value,
            JobField.CREATED_AT: now_iso(now + timedelta(microseconds=index)),
            JobField.TASK_DEFINITION: worker.task_definition,
            JobField.CPU: parent[JobField.CPU],
            JobField.MEMORY: parent[JobField.MEMORY],
            JobField.ATTEMPTS: 0,
            JobField.MAX_ATTEMPTS: worker.max_attempts,
            JobField.TIMEOUT_SECONDS: worker.timeout_seconds,
            JobField.SOURCE: contract.SOURCE_ARRAY,
            JobField.EXPIRES_AT: parent[JobField.EXPIRES_AT],  # children expire with it
            JobField.MAX_FAILED_ITEM_SHARE: contract.CHILD_FAILED_ITEM_SHARE,
            JobField.PARENT_ID: parent_id,
            JobField.SHARD: {"index": index, "offset": offset, "count": len(shard_items)},
        }
        child_input = {**base, field: shard_items}
        encoded = json.dumps(child_input, ensure_ascii=False, separators=(",", ":")).encode()
        if len(encoded) > MAX_INLINE_INPUT_BYTES or not storable(child_input):
            child[JobField.INPUT_S3_KEY] = _put_input(worker.name, child_id, encoded)
        else:
            child[JobField.INPUT] = child_input
        yield child


def _put_input(worker: str, job_id: str, body: bytes) -> str:
    key = input_key(worker, job_id)
    _aws.client("s3").put_object(
        Bucket=_aws.env(Env.RESULTS_BUCKET), Key=key, Body=body, ContentType="application/json"
    )
    return key


# --- cancel ------------------------------------------------------------------------------
def cancel_children(
    store: JobStore,
    parent: Item,
    stop_task: Callable[[Item], None],
    deadline_seconds: float = 20.0,
) -> dict[str, int]:
    """The cancel cascade: a QUEUED child is CANCELLED (and counted on the parent), an active
    one flagged and its task stopped (the reconciler then ends and counts it). Stops at the
    deadline; the sweep goes on for a parent whose cancel was asked."""
    started = time.monotonic()
    done = {"cancelled": 0, "stopping": 0}
    shards = int((parent.get(JobField.ARRAY) or {}).get("shards", 0))
    for start in range(0, shards, 100):
        if time.monotonic() - started > deadline_seconds:
            return done
        for child in children(store, parent, start, 100):
            outcome = _cancel_child(store, child, stop_task)
            if outcome:
                done[outcome] += 1
    done["cancelled"] += _cancel_unwritten(store, parent)
    return done


def _cancel_unwritten(store: JobStore, parent: Item) -> int:
    """Shards the fan-out has not written yet (it stops once the parent is flagged): counted
    CANCELLED on the parent as they are, so the parent can end. A child a fan-out step was
    writing meanwhile is cancelled by the next cascade (the sweep's) and is not counted."""
    shards = int((parent.get(JobField.ARRAY) or {}).get("shards", 0))
    counted = 0
    for index in range(contract.children_created(parent), shards):
        counted += record_end(store, _unwritten(parent, index)) is not None
    return counted


# api_jobs.cancel_job's rule for one child (duplicates pairs the QUEUED branch): QUEUED
# ends at once, a launched one is flagged and stopped; but a child is counted on its
# parent, skipped once flagged, and a conflict is left to the sweep, not retried or 409.
def _cancel_child(store: JobStore, child: Item, stop_task: Callable[[Item], None]) -> str | None:
    status = JobStatus(child[JobField.STATUS])
    child_id = str(child[JobField.JOB_ID])
    try:
        if status == JobStatus.QUEUED:
            ended = store.transition(
                child_id,
                JobStatus.QUEUED,
                JobStatus.CANCELLED,
                attempt=int(child.get(JobField.ATTEMPTS, 0)),
            )
            record_end(store, ended)
            return "cancelled"
        if status in (JobStatus.DISPATCHED, JobStatus.RUNNING) and not child.get(
            JobField.CANCEL_REQUESTED
        ):
            stop_task(store.request_cancel(child_id))
            return "stopping"
    except TransitionConflict:
        pass  # it moved meanwhile: the sweep's cascade looks again
    return None
