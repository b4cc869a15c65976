"""Fan-in of array jobs (``jobcontract.arrays``): each child's end counted once on its
parent, then one merge, for the API, the reconciler and the sweep (``handlers.arrays``
re-exports these names).

- ``record_end``: one conditional UpdateItem on the parent per ended child. It adds the
  child's shard index to ``done_shards`` and its counts, under the condition that the index
  is not in the set yet: a repeated event, or the sweep's recount, never counts a child twice,
  and two children ending at once are two separate writes, so neither is lost.
- ``finalize``: once every shard is counted, one actor claims the merge (``merge`` written
  conditionally; a claim older than ``MERGE_STALE_SECONDS`` may be taken over), writes
  ``results.jsonl`` and ``summary.json`` and ends the parent with a conditional transition,
  so exactly one end is recorded and reported. Needs S3 read and write under ``results/``:
  the reconciler and the sweep have it; the API records ends (cancelled queued children)
  and leaves the merge to them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from handlers import _aws
from jobcontract import Env, JobField, JobStatus, job_pk
from jobcontract import arrays as contract
from jobcontract.store import Item, JobStore, TransitionConflict, from_item, now_iso, parse_iso

MERGE_STALE_SECONDS = 900  # a merge claimed this long ago is presumed dead: take it over
READ_THREADS = 16  # child results read side by side during a merge (the callers' pools)


# --- fan-in --------------------------------------------------------------------------------
def record_end(store: JobStore, child: Item) -> Item | None:
    """Count an ended child on its parent, once. The parent as written (ALL_NEW), or None
    when this child was counted already or the parent is no longer RUNNING."""
    parent_id, shard = child.get(JobField.PARENT_ID), child.get(JobField.SHARD) or {}
    if not parent_id or not JobStatus(child[JobField.STATUS]).terminal:
        return None
    succeeded, failed = contract.child_counts(child)
    index = str(int(shard["index"]))
    try:
        resp = store.client.update_item(
            TableName=store.table_name,
            Key={"pk": {"S": job_pk(str(parent_id))}},
            UpdateExpression=(
                "SET #ch.#st = #ch.#st + :one, #it.#ok = #it.#ok + :ok, #it.#bad = #it.#bad + :bad,"
                " #pr.#done = #pr.#done + :n, #up = :now ADD #shards :idx"
            ),
            ConditionExpression=(
                "attribute_exists(#pk) AND #status = :running AND "
                "(attribute_not_exists(#shards) OR NOT contains(#shards, :i))"
            ),
            ExpressionAttributeNames={
                "#pk": "pk",
                "#status": JobField.STATUS,
                "#ch": JobField.CHILDREN,
                "#st": str(child[JobField.STATUS]),
                "#it": JobField.ITEMS,
                "#ok": "succeeded",
                "#bad": "failed",
                "#pr": JobField.PROGRESS,
                "#done": "done",
                "#up": JobField.UPDATED_AT,
                "#shards": JobField.DONE_SHARDS,
            },
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":ok": {"N": str(succeeded)},
                ":bad": {"N": str(failed)},
                ":n": {"N": str(succeeded + failed)},
                ":now": {"S": now_iso()},
                ":running": {"S": JobStatus.RUNNING.value},
                ":idx": {"SS": [index]},
                ":i": {"S": index},
            },
            ReturnValues="ALL_NEW",
        )
    except store.client.exceptions.ConditionalCheckFailedException:
        return None
    _aws.log("INFO", "array_child_counted", job_id=parent_id, child=child[JobField.JOB_ID])
    return from_item(resp["Attributes"])


def children(store: JobStore, parent: Item, start: int = 0, count: int | None = None) -> list[Item]:
    """The parent's children ``start..start+count`` that exist, in shard order (their ids
    derive from the parent's, so no index is needed: BatchGetItem, 100 per request)."""
    shards = int((parent.get(JobField.ARRAY) or {}).get("shards", 0))
    stop = shards if count is None else min(shards, start + count)
    parent_id = str(parent[JobField.JOB_ID])
    found = store.get_many([contract.child_id(parent_id, i) for i in range(start, stop)])
    return sorted(found, key=lambda c: int((c.get(JobField.SHARD) or {}).get("index", 0)))


def recount(store: JobStore, parent: Item) -> Item:
    """Backstop of lost ends (the sweep): count every ended child the parent has not; the
    parent as it is afterwards."""
    done = parent.get(JobField.DONE_SHARDS) or set()
    latest = parent
    for child in children(store, parent):
        index = str((child.get(JobField.SHARD) or {}).get("index"))
        if index not in done and JobStatus(child[JobField.STATUS]).terminal:
            latest = record_end(store, child) or latest
    return latest


ReadMany = Callable[[Callable[[Item], Any], list[Item]], list[Any]]


def _sequential(fn: Callable[[Item], Any], items: list[Item]) -> list[Any]:
    return [fn(item) for item in items]


def finalize(
    store: JobStore,
    parent: Item,
    now: datetime | None = None,
    read_many: ReadMany = _sequential,
) -> Item | None:
    """Merge and end a parent whose every child is counted: the ended parent, or None when
    it is not complete, or another actor holds (or finished) the merge. ``read_many`` maps
    the read of the children's results (the caller's thread pool: reads side by side)."""
    if not contract.is_complete(parent) or parent.get(JobField.STATUS) != "RUNNING":
        return None
    claim = _claim_merge(store, parent, now or datetime.now(UTC))
    if claim is None:
        return None
    parent_id, worker = str(parent[JobField.JOB_ID]), str(parent[JobField.WORKER])
    lines = _merged_lines(store, parent, read_many)
    failed = sum(1 for line in lines if "error" in line)
    succeeded = len(lines) - failed
    summary = contract.summary(parent, succeeded, failed)
    merged, summary_key = (
        contract.merged_key(worker, parent_id),
        contract.summary_key(worker, parent_id),
    )
    body = "".join(
        json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines
    )
    _put(merged, body.encode(), "application/x-ndjson")
    _put(summary_key, json.dumps(summary, separators=(",", ":")).encode(), "application/json")
    status, error = contract.outcome(parent, succeeded, failed)
    fields: dict[str, Any] = {
        JobField.RESULT_KEY: merged,
        JobField.SUMMARY_KEY: summary_key,
        JobField.ITEMS: summary["items"],
        JobField.PROGRESS: {"done": len(lines), "total": len(lines)},
    }
    if error is not None:
        fields[JobField.ERROR] = error
    try:
        done = store.transition(
            parent_id, JobStatus.RUNNING, status, set_fields=fields, expect={JobField.MERGE: claim}
        )
    except TransitionConflict:
        return None  # taken over (we were presumed dead) or ended meanwhile
    _aws.log(
        "INFO", "array_job_finished", job_id=parent_id, status=status.value, **summary["items"]
    )
    return done


def _claim_merge(store: JobStore, parent: Item, now: datetime) -> dict[str, str] | None:
    prior = parent.get(JobField.MERGE)
    if prior and (now - parse_iso(str(prior.get("at")))).total_seconds() < MERGE_STALE_SECONDS:
        return None
    claim = {"owner": uuid.uuid4().hex, "at": now_iso(now)}
    try:
        store.update(
            str(parent[JobField.JOB_ID]),
            status=JobStatus.RUNNING,
            set_fields={JobField.MERGE: claim},
            expect={JobField.MERGE: prior},
        )
    except TransitionConflict:
        return None
    return claim


def _merged_lines(store: JobStore, parent: Item, read_many: ReadMany) -> list[dict[str, Any]]:
    """Every item's line, in item order, from the children's results."""
    field = str(parent[JobField.ARRAY]["item_field"])
    found = {int(c[JobField.SHARD]["index"]): c for c in children(store, parent)}
    shards = int(parent[JobField.ARRAY]["shards"])
    kids = [found.get(i) or _unwritten(parent, i) for i in range(shards)]
    outputs = read_many(_output, kids)
    lines: list[dict[str, Any]] = []
    for child, output in zip(kids, outputs, strict=True):
        lines.extend(contract.item_lines(child, field, output))
    return lines


def _output(child: Item) -> dict[str, Any] | None:
    """A SUCCEEDED child's output (its ``result.json``), else None."""
    key = child.get(JobField.RESULT_KEY)
    if child.get(JobField.STATUS) != JobStatus.SUCCEEDED.value or not key:
        return None
    body = _aws.client("s3").get_object(Bucket=_aws.env(Env.RESULTS_BUCKET), Key=key)["Body"]
    document = json.loads(body.read())
    output = document.get("output") if isinstance(document, dict) else None
    return output if isinstance(output, dict) else None


def _put(key: str, body: bytes, content_type: str) -> None:
    _aws.client("s3").put_object(
        Bucket=_aws.env(Env.RESULTS_BUCKET), Key=key, Body=body, ContentType=content_type
    )


def _unwritten(parent: Item, index: int) -> Item:
    """A shard never written (its parent was cancelled first), as a CANCELLED child."""
    parent_id = str(parent[JobField.JOB_ID])
    array = parent.get(JobField.ARRAY) or {}
    size, total = int(array.get("shard_size", 1)), int(array.get("total_items", 0))
    return {
        JobField.JOB_ID: contract.child_id(parent_id, index),
        JobField.PARENT_ID: parent_id,
        JobField.STATUS: JobStatus.CANCELLED.value,
        JobField.SHARD: {
            "index": index,
            "offset": index * size,
            "count": min(size, total - index * size),
        },
    }
