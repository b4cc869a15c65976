"""Listing jobs: one page of an index, newest first, filled past array children, and the
signed cursor of the next page (an HMAC over the index and the last key, so a tampered,
truncated or foreign cursor is refused with ``InvalidCursor``). ``JobStore.list_jobs``,
``list_workers`` and ``list_by_status`` are these functions on the store's client."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any, Final

from jobcontract.dynamo import Item, from_item
from jobcontract.expressions import StatusLike, as_status
from jobcontract.names import worker_status
from jobcontract.store_errors import InvalidCursor
from jobcontract.table import JobField, Table

# Optional secret that signs list cursors; without it the key is derived from the table name
# (a cursor then cannot be forged by accident, and tampering is detected either way).
CURSOR_SECRET_ENV = "BATCH_CURSOR_SECRET"

# Queries one GET /jobs page may make to fill itself past filtered-out children (each reads
# at most `limit` items of the index).
LIST_QUERIES_PER_PAGE: Final = 10


def list_page(
    client: Any,
    table_name: str,
    *,
    worker: str | None,
    status: StatusLike | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Item], str | None]:
    """``JobStore.list_jobs`` (its docstring says what a page holds)."""
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be 1..1000")
    index, hash_key, hash_value = list_index(worker, status)
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "IndexName": index,
        "KeyConditionExpression": "#h = :h",
        "FilterExpression": "attribute_not_exists(#parent)",
        "ExpressionAttributeNames": {"#h": hash_key, "#parent": JobField.PARENT_ID},
        "ExpressionAttributeValues": {":h": {"S": hash_value}},
        "ScanIndexForward": False,
    }
    if cursor is not None:
        kwargs["ExclusiveStartKey"] = decode_cursor(table_name, cursor, index, hash_key, hash_value)
    range_key = {name: r for name, _, r in Table.INDEXES}[index]
    key_names = (Table.PK, hash_key, range_key)
    raw_items: list[dict[str, Any]] = []
    last: Mapping[str, Any] | None = None
    for _ in range(LIST_QUERIES_PER_PAGE):
        # Read ahead past children (at least 100 index items a query), keep `limit` jobs.
        resp = client.query(**kwargs, Limit=min(1000, max(limit, 100)))
        found = resp.get("Items", [])
        taken = found[: limit - len(raw_items)]
        raw_items.extend(taken)
        last = resp.get("LastEvaluatedKey")
        if len(raw_items) >= limit:
            if last or len(taken) < len(found):
                # Resume after the last job returned (the rest of this read comes again).
                last = {k: raw_items[-1][k] for k in key_names}
            break
        if not last:
            break
        kwargs["ExclusiveStartKey"] = last
    # A cursor after an exactly-full last page gives an empty page, which a client
    # handles like any end of list.
    items = [from_item(i) for i in raw_items]
    return items, (encode_cursor(table_name, index, last) if last else None)


def list_index(worker: str | None, status: StatusLike | None) -> tuple[str, str, str]:
    """The index, hash key and hash value that list these jobs."""
    if worker and status is not None:
        return Table.BY_WORKER_STATUS, JobField.WORKER_STATUS, worker_status(worker, status)
    if worker:
        return Table.BY_WORKER, JobField.WORKER, worker
    if status is not None:
        return Table.BY_STATUS, JobField.STATUS, as_status(status).value
    return Table.BY_KIND, JobField.KIND, Table.KIND_JOB


def query_all(
    client: Any, table_name: str, index: str, hash_key: str, value: str, forward: bool = False
) -> Iterator[Item]:
    """Every item of ``index`` under ``hash_key = value``, page after page."""
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "IndexName": index,
        "KeyConditionExpression": "#h = :h",
        "ExpressionAttributeNames": {"#h": hash_key},
        "ExpressionAttributeValues": {":h": {"S": value}},
        "ScanIndexForward": forward,
    }
    while True:
        resp = client.query(**kwargs)
        for raw in resp.get("Items", []):
            yield from_item(raw)
        last = resp.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def cursor_key(table_name: str) -> bytes:
    secret = os.environ.get(CURSOR_SECRET_ENV) or f"cursor:{table_name}"
    return hashlib.sha256(secret.encode()).digest()


def encode_cursor(table_name: str, index: str, last_key: Mapping[str, Any]) -> str:
    plain = {k: v["S"] for k, v in last_key.items()}
    payload = json.dumps({"i": index, "k": plain}, sort_keys=True, separators=(",", ":"))
    mac = hmac.new(cursor_key(table_name), payload.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac + payload.encode()).decode().rstrip("=")


def decode_cursor(
    table_name: str, cursor: str, index: str, hash_key: str, hash_value: str
) -> dict[str, Any]:
    if not isinstance(cursor, str) or not 0 < len(cursor) <= 2048:
        raise InvalidCursor("cursor has an invalid length")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor("cursor is not valid base64url") from exc
    mac, payload = raw[:16], raw[16:]
    expected = hmac.new(cursor_key(table_name), payload, hashlib.sha256).digest()[:16]
    if len(mac) != 16 or not hmac.compare_digest(mac, expected):
        raise InvalidCursor("cursor signature does not match")
    try:
        data = json.loads(payload)
    except ValueError as exc:  # pragma: no cover - signed payloads are always JSON
        raise InvalidCursor("cursor payload is not JSON") from exc
    keys = data.get("k") if isinstance(data, dict) else None
    range_key = {name: r for name, _, r in Table.INDEXES}.get(index)
    wanted = {Table.PK, hash_key, range_key}
    if (
        data.get("i") != index
        or not isinstance(keys, dict)
        or set(keys) != wanted
        or not all(isinstance(v, str) for v in keys.values())
        or keys[hash_key] != hash_value
    ):
        raise InvalidCursor("cursor belongs to a different listing")
    return {k: {"S": v} for k, v in keys.items()}
