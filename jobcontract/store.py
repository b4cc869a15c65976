"""``JobStore``: the only code that reads and writes job items and worker registrations.

Every state change is one conditional ``UpdateItem`` on the current status (and, where the
caller knows it, on the attempt number), so a transition never happens twice and a stale
actor cannot overwrite a newer state. A failed condition returns the current item with the
error (``ReturnValuesOnConditionCheckFailure=ALL_OLD``): callers decide without a second read.
Every creation and transition that succeeds writes one ``job_transition`` log line
(``jobcontract.logs``): the one record of state changes the dashboard counts.

Uses the low-level ``dynamodb`` client with a small built-in (de)serializer instead of the
resource API, which keeps the import cheap on Lambda cold starts. Numbers come back as
``int`` when integral, else ``float`` (no ``Decimal`` leaks to callers).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from jobcontract import (
    JobField,
    JobStatus,
    Table,
    can_transition,
    job_pk,
    logs,
    worker_pk,
    worker_status,
)
from jobcontract.logs import TRANSITION_EVENT, LogField

Item = dict[str, Any]
StatusLike = JobStatus | str

# Optional secret that signs list cursors; without it the key is derived from the table name
# (a cursor then cannot be forged by accident, and tampering is detected either way).
CURSOR_SECRET_ENV = "BATCH_CURSOR_SECRET"


class StoreError(Exception):
    """Base class of the store's own errors."""


class TransitionConflict(StoreError):
    """The conditional write failed: ``current`` is the item as it is now (None if absent)."""

    def __init__(self, job_id: str, current: Item | None, wanted: str) -> None:
        self.job_id, self.current, self.wanted = job_id, current, wanted
        now = current.get(JobField.STATUS) if current else "absent"
        attempts = current.get(JobField.ATTEMPTS) if current else None
        super().__init__(f"{job_id}: cannot {wanted} (status {now}, attempts {attempts})")


class InvalidTransition(StoreError, ValueError):
    """The requested transition is not in ``jobcontract.TRANSITIONS``."""


class JobExists(StoreError):
    """``create`` found an item with that job id already: ``existing`` is that item."""

    def __init__(self, job_id: str, existing: Item | None) -> None:
        self.job_id, self.existing = job_id, existing
        super().__init__(f"job {job_id} already exists")


class InvalidCursor(StoreError, ValueError):
    """A list cursor that this store did not issue (tampered, truncated or for another query)."""


def now_iso(at: datetime | None = None) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``: sorts correctly as text."""
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- DynamoDB wire format ---------------------------------------------------------------
def to_attr(value: Any) -> dict[str, Any]:
    """One Python value -> DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        if isinstance(value, float) and (value != value or value in (float("inf"), -float("inf"))):
            raise ValueError("NaN and infinity cannot be stored")
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attr(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attr(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__}")


def from_attr(attr: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value -> Python value."""
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        text = str(value)
        if any(c in text for c in ".eE"):
            number = float(text)
            return int(number) if number.is_integer() and "e" not in text.lower() else number
        return int(text)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [from_attr(v) for v in value]
    if kind == "B":
        return bytes(value)
    if kind == "SS":
        return set(value)
    if kind == "NS":
        return {from_attr({"N": v}) for v in value}
    raise TypeError(f"unknown attribute type {kind}")


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_attr(v) for k, v in values.items()}


def from_item(item: Mapping[str, Any]) -> Item:
    return {k: from_attr(v) for k, v in item.items()}


def storable(value: Any, depth: int = 0) -> bool:
    """Whether DynamoDB can hold ``value`` as is (number range, nesting depth); otherwise
    the input goes to S3 like a large one."""
    if depth > 30:
        return False
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return abs(value) < 10**38
    if isinstance(value, float):
        return value == 0 or 1e-128 < abs(value) < 1e125
    if isinstance(value, dict):
        return all(k and storable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(storable(v, depth + 1) for v in value)
    return False


def _status(value: StatusLike) -> JobStatus:
    return value if isinstance(value, JobStatus) else JobStatus(value)


# Queries one GET /jobs page may make to fill itself past filtered-out children (each reads
# at most `limit` items of the index).
LIST_QUERIES_PER_PAGE: Final = 10


class JobStore:
    """Job items and worker registrations in the jobs table (see DESIGN.md, "The job table")."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("dynamodb")
        return self._client

    # --- reads ------------------------------------------------------------------------
    def get(self, job_id: str, *, consistent: bool = True) -> Item | None:
        resp = self.client.get_item(
            TableName=self.table_name,
            Key={Table.PK: {"S": job_pk(job_id)}},
            ConsistentRead=consistent,
        )
        item = resp.get("Item")
        return from_item(item) if item else None

    def get_many(self, job_ids: Collection[str]) -> list[Item]:
        """The jobs that exist among ``job_ids`` (BatchGetItem, 100 keys per request, order
        not kept); unprocessed keys are asked for again."""
        found: list[Item] = []
        ids = list(dict.fromkeys(job_ids))
        for start in range(0, len(ids), 100):
            keys = [{Table.PK: {"S": job_pk(j)}} for j in ids[start : start + 100]]
            request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
            for _ in range(5):
                resp = self.client.batch_get_item(RequestItems=request)
                found.extend(
                    from_item(i) for i in resp.get("Responses", {}).get(self.table_name, [])
                )
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

    def get_worker(self, name: str) -> Item | None:
        resp = self.client.get_item(
            TableName=self.table_name, Key={Table.PK: {"S": worker_pk(name)}}, ConsistentRead=True
        )
        item = resp.get("Item")
        return from_item(item) if item else None

    def list_workers(self) -> list[Item]:
        """Every worker registration (by-kind index; registrations carry ``created_at``)."""
        items = self._query_all(Table.BY_KIND, "kind", Table.KIND_WORKER)
        return sorted(items, key=lambda i: str(i.get("name", "")))

    def list_by_status(self, status: StatusLike) -> list[Item]:
        """Every job in ``status``, oldest first (the sweep's scan of DISPATCHED/RUNNING)."""
        return list(self._query_all(Table.BY_STATUS, JobField.STATUS, _status(status).value, True))

    def list_jobs(
        self,
        *,
        worker: str | None = None,
        status: StatusLike | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[Item], str | None]:
        """One page of jobs, newest first, and the cursor of the next page (None at the end).

        Array jobs' children are left out (a parent stands for them; they are listed by
        their parent, ``handlers.array_api.list_children``). DynamoDB applies a filter after
        ``Limit`` ("A filter expression is applied after a Query finishes, but before the
        results are returned", DynamoDB developer guide, Query filter expressions), so the
        page is filled by further queries, at most ``LIST_QUERIES_PER_PAGE``: a page behind
        many children may hold fewer than ``limit`` jobs and still have a next cursor.

        Raises ``InvalidCursor`` for a cursor this store did not issue for the same query.
        """
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be 1..1000")
        index, hash_key, hash_value = self._list_index(worker, status)
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "KeyConditionExpression": "#h = :h",
            "FilterExpression": "attribute_not_exists(#parent)",
            "ExpressionAttributeNames": {"#h": hash_key, "#parent": JobField.PARENT_ID},
            "ExpressionAttributeValues": {":h": {"S": hash_value}},
            "ScanIndexForward": False,
        }
        if cursor is not None:
            kwargs["ExclusiveStartKey"] = self._decode_cursor(cursor, index, hash_key, hash_value)
        range_key = {name: r for name, _, r in Table.INDEXES}[index]
        key_names = (Table.PK, hash_key, range_key)
        raw_items: list[dict[str, Any]] = []
        last: Mapping[str, Any] | None = None
        for _ in range(LIST_QUERIES_PER_PAGE):
            # Read ahead past children (at least 100 index items a query), keep `limit` jobs.
            resp = self.client.query(**kwargs, Limit=min(1000, max(limit, 100)))
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
        return items, (self._encode_cursor(index, last) if last else None)

    @staticmethod
    def _list_index(worker: str | None, status: StatusLike | None) -> tuple[str, str, str]:
        if worker and status is not None:
            return Table.BY_WORKER_STATUS, JobField.WORKER_STATUS, worker_status(worker, status)
        if worker:
            return Table.BY_WORKER, JobField.WORKER, worker
        if status is not None:
            return Table.BY_STATUS, JobField.STATUS, _status(status).value
        return Table.BY_KIND, JobField.KIND, Table.KIND_JOB

    def _query_all(
        self, index: str, hash_key: str, value: str, forward: bool = False
    ) -> Iterator[Item]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "KeyConditionExpression": "#h = :h",
            "ExpressionAttributeNames": {"#h": hash_key},
            "ExpressionAttributeValues": {":h": {"S": value}},
            "ScanIndexForward": forward,
        }
        while True:
            resp = self.client.query(**kwargs)
            for raw in resp.get("Items", []):
                yield from_item(raw)
            last = resp.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    # --- cursors ----------------------------------------------------------------------
    def _cursor_key(self) -> bytes:
        secret = os.environ.get(CURSOR_SECRET_ENV) or f"cursor:{self.table_name}"
        return hashlib.sha256(secret.encode()).digest()

    def _encode_cursor(self, index: str, last_key: Mapping[str, Any]) -> str:
        plain = {k: v["S"] for k, v in last_key.items()}
        payload = json.dumps({"i": index, "k": plain}, sort_keys=True, separators=(",", ":"))
        mac = hmac.new(self._cursor_key(), payload.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + payload.encode()).decode().rstrip("=")

    def _decode_cursor(
        self, cursor: str, index: str, hash_key: str, hash_value: str
    ) -> dict[str, Any]:
        if not isinstance(cursor, str) or not 0 < len(cursor) <= 2048:
            raise InvalidCursor("cursor has an invalid length")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidCursor("cursor is not valid base64url") from exc
        mac, payload = raw[:16], raw[16:]
        expected = hmac.new(self._cursor_key(), payload, hashlib.sha256).digest()[:16]
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

    # --- writes -----------------------------------------------------------------------
    def create(self, job: Mapping[str, Any]) -> Item:
        """Put a new job item (status QUEUED unless given); ``JobExists`` if the id is taken.

        Fills ``pk``, ``kind``, ``worker_status``, ``created_at``/``updated_at``,
        ``timestamps`` and ``attempts`` (0) when the caller has not.
        """
        item = self.prepare(job)
        job_id = str(item[JobField.JOB_ID])
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(item),
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": Table.PK},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            raise JobExists(job_id, _old_item(exc)) from exc
        log_transition(item, None)
        return item

    @staticmethod
    def prepare(job: Mapping[str, Any]) -> Item:
        """A new job item as ``create`` writes it (also used by batched creations)."""
        item: Item = dict(job)
        status = _status(item.get(JobField.STATUS, JobStatus.QUEUED))
        at = str(item.get(JobField.CREATED_AT) or now_iso())
        item.update(
            {
                Table.PK: job_pk(str(item[JobField.JOB_ID])),
                JobField.KIND: Table.KIND_JOB,
                JobField.STATUS: status.value,
                JobField.WORKER_STATUS: worker_status(str(item[JobField.WORKER]), status),
                JobField.CREATED_AT: at,
            }
        )
        item.setdefault(JobField.UPDATED_AT, at)
        item.setdefault(JobField.TIMESTAMPS, {status.value: at})
        item.setdefault(JobField.ATTEMPTS, 0)
        return item

    def transition(
        self,
        job_id: str,
        from_status: StatusLike | Collection[StatusLike],
        to_status: StatusLike,
        *,
        attempt: int | None = None,
        set_fields: Mapping[str, Any] | None = None,
        remove_fields: Collection[str] = (),
        increment_attempts: bool = False,
        expect: Mapping[str, Any] | None = None,
    ) -> Item:
        """Move ``job_id`` from ``from_status`` (one or several) to ``to_status``.

        Conditional on the current status (and on ``attempts == attempt`` when given, and on
        each ``expect`` field equal to its value, ``None`` meaning absent). Sets status,
        worker_status, updated_at and timestamps.<TO>; ``increment_attempts`` adds one to
        ``attempts``. Returns the new item; raises ``TransitionConflict`` with the current
        item when the condition fails, ``InvalidTransition`` for a move the contract forbids.
        """
        op = self.transition_op(
            job_id,
            from_status,
            to_status,
            attempt=attempt,
            set_fields=set_fields,
            remove_fields=remove_fields,
            increment_attempts=increment_attempts,
            expect=expect,
        )
        done = self._update(
            job_id,
            op["UpdateExpression"],
            op["ConditionExpression"],
            op["ExpressionAttributeNames"],
            op["ExpressionAttributeValues"],
            f"-> {_status(to_status).value}",
            prefixed=True,
        )
        log_transition(done, _sources(from_status))
        return done

    def transition_op(
        self,
        job_id: str,
        from_status: StatusLike | Collection[StatusLike],
        to_status: StatusLike,
        *,
        attempt: int | None = None,
        set_fields: Mapping[str, Any] | None = None,
        remove_fields: Collection[str] = (),
        increment_attempts: bool = False,
        expect: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``transition`` as one ``Update`` of a ``TransactWriteItems`` (the dispatch claims a
        job and a slot in one transaction): same conditions, same fields."""
        sources, target = _allowed_move(from_status, to_status)
        at = now_iso()
        names: dict[str, str] = {
            "#pk": Table.PK,
            "#status": JobField.STATUS,
            "#ws": JobField.WORKER_STATUS,
            "#worker": JobField.WORKER,
            "#updated": JobField.UPDATED_AT,
            "#ts": JobField.TIMESTAMPS,
            "#to": target.value,
        }
        values: dict[str, Any] = {":to": {"S": target.value}, ":now": {"S": at}}
        conditions = ["attribute_exists(#pk)", self._status_condition(sources, values)]
        sets = ["#status = :to", "#updated = :now", "#ts.#to = :now"]
        removes: list[str] = []
        _add_attempt_terms(attempt, increment_attempts, names, values, conditions, sets)
        self._add_expect(expect, names, values, conditions)
        self._add_sets(set_fields, names, values, sets)
        for i, field_name in enumerate(remove_fields):
            names[f"#r{i}"] = field_name
            removes.append(f"#r{i}")
        _add_worker_status(job_id, target, values, conditions, sets)
        update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        return {
            "TableName": self.table_name,
            "Key": {Table.PK: {"S": job_pk(job_id)}},
            "UpdateExpression": update,
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def update(
        self,
        job_id: str,
        *,
        status: StatusLike | Collection[StatusLike],
        attempt: int | None = None,
        set_fields: Mapping[str, Any] | None = None,
        remove_fields: Collection[str] = (),
        expect: Mapping[str, Any] | None = None,
    ) -> Item:
        """Set fields without a state change, conditional on status (and attempt/expect)."""
        if not set_fields and not remove_fields:
            raise ValueError("nothing to update")
        names: dict[str, str] = {"#status": JobField.STATUS, "#updated": JobField.UPDATED_AT}
        values: dict[str, Any] = {":now": {"S": now_iso()}}
        conditions = [self._status_condition(_sources(status), values)]
        sets = ["#updated = :now"]
        if attempt is not None:
            names["#attempts"] = JobField.ATTEMPTS
            values[":attempt"] = {"N": str(attempt)}
            conditions.append("#attempts = :attempt")
        self._add_expect(expect, names, values, conditions)
        self._add_sets(set_fields, names, values, sets)
        removes = []
        for i, field_name in enumerate(remove_fields):
            names[f"#r{i}"] = field_name
            removes.append(f"#r{i}")
        update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        return self._update(job_id, update, " AND ".join(conditions), names, values, "update")

    def heartbeat(
        self, job_id: str, attempt: int, progress: Mapping[str, int] | None = None
    ) -> Item:
        """Record liveness (and progress) of a RUNNING attempt; returns the item, whose
        ``cancel_requested`` tells the worker to stop. ``TransitionConflict`` when the job is
        no longer RUNNING on this attempt (the task should stop)."""
        fields: dict[str, Any] = {JobField.HEARTBEAT_AT: now_iso()}
        if progress is not None:
            fields[JobField.PROGRESS] = dict(progress)
        return self.update(job_id, status=JobStatus.RUNNING, attempt=attempt, set_fields=fields)

    def request_cancel(self, job_id: str) -> Item:
        """Flag a DISPATCHED/RUNNING job for cancellation (the reconciler finishes it)."""
        return self.update(
            job_id,
            status=(JobStatus.DISPATCHED, JobStatus.RUNNING),
            set_fields={JobField.CANCEL_REQUESTED: True},
        )

    # --- helpers ----------------------------------------------------------------------
    @staticmethod
    def _status_condition(sources: list[JobStatus], values: dict[str, Any]) -> str:
        if len(sources) == 1:
            values[":from0"] = {"S": sources[0].value}
            return "#status = :from0"
        for i, source in enumerate(sources):
            values[f":from{i}"] = {"S": source.value}
        return "#status IN (" + ", ".join(f":from{i}" for i in range(len(sources))) + ")"

    @staticmethod
    def _add_expect(
        expect: Mapping[str, Any] | None,
        names: dict[str, str],
        values: dict[str, Any],
        conditions: list[str],
    ) -> None:
        for i, (field_name, value) in enumerate((expect or {}).items()):
            names[f"#e{i}"] = field_name
            if value is None:
                conditions.append(f"attribute_not_exists(#e{i})")
            else:
                values[f":e{i}"] = to_attr(value)
                conditions.append(f"#e{i} = :e{i}")

    @staticmethod
    def _add_sets(
        set_fields: Mapping[str, Any] | None,
        names: dict[str, str],
        values: dict[str, Any],
        sets: list[str],
    ) -> None:
        reserved = {JobField.STATUS, JobField.WORKER_STATUS, Table.PK, JobField.JOB_ID}
        for i, (field_name, value) in enumerate((set_fields or {}).items()):
            if field_name in reserved:
                raise ValueError(f"{field_name} is managed by the store")
            names[f"#s{i}"] = field_name
            values[f":s{i}"] = to_attr(value)
            sets.append(f"#s{i} = :s{i}")

    def _update(
        self,
        job_id: str,
        update: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
        wanted: str,
        *,
        prefixed: bool = False,
    ) -> Item:
        try:
            resp = self.client.update_item(
                TableName=self.table_name,
                Key={Table.PK: {"S": job_pk(job_id)}},
                UpdateExpression=update,
                ConditionExpression=(
                    condition if prefixed else f"attribute_exists(#pk) AND {condition}"
                ),
                ExpressionAttributeNames={**names, "#pk": Table.PK},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            raise TransitionConflict(job_id, _old_item(exc), wanted) from exc
        return from_item(resp["Attributes"])


def log_transition(item: Mapping[str, Any], sources: list[JobStatus] | None) -> None:
    """One line per state change, written here because every change passes here: the
    dashboard counts these lines by status, and no caller can forget to write one."""
    fields = {
        LogField.JOB_ID: item.get(JobField.JOB_ID),
        LogField.WORKER: item.get(JobField.WORKER),
        LogField.ATTEMPT: item.get(JobField.ATTEMPTS),
        LogField.STATUS: item.get(JobField.STATUS),
    }
    if sources is not None:
        fields[LogField.FROM_STATUS] = ",".join(s.value for s in sources)
    logs.DEFAULT.info(TRANSITION_EVENT, **fields)


def worker_of(job_id: str) -> str:
    from jobcontract import worker_of_job_id

    worker = worker_of_job_id(job_id)
    if worker is None:
        raise ValueError(f"not a job id: {job_id!r}")
    return worker


def _allowed_move(
    from_status: StatusLike | Collection[StatusLike], to_status: StatusLike
) -> tuple[list[JobStatus], JobStatus]:
    """The move's sources and target; ``InvalidTransition`` for a move the contract forbids."""
    sources = _sources(from_status)
    target = _status(to_status)
    for source in sources:
        if not can_transition(source, target):
            raise InvalidTransition(f"{source.value} -> {target.value} is not allowed")
    return sources, target


def _add_attempt_terms(
    attempt: int | None,
    increment_attempts: bool,
    names: dict[str, str],
    values: dict[str, Any],
    conditions: list[str],
    sets: list[str],
) -> None:
    """``attempts == attempt`` (when given) and ``attempts + 1`` (when asked)."""
    if attempt is not None:
        names["#attempts"] = JobField.ATTEMPTS
        values[":attempt"] = {"N": str(attempt)}
        conditions.append("#attempts = :attempt")
    if increment_attempts:
        names["#attempts"] = JobField.ATTEMPTS
        values[":one"] = {"N": "1"}
        sets.append("#attempts = #attempts + :one")


def _add_worker_status(
    job_id: str, target: JobStatus, values: dict[str, Any], conditions: list[str], sets: list[str]
) -> None:
    # worker_status is "<worker>#<STATUS>"; DynamoDB cannot concatenate, so the worker
    # comes from the job id (and the condition proves it matches the stored one).
    worker = worker_of(job_id)
    values[":ws"] = {"S": worker_status(worker, target)}
    sets.append("#ws = :ws")
    conditions.append("#worker = :worker")
    values[":worker"] = {"S": worker}


def _sources(value: StatusLike | Collection[StatusLike]) -> list[JobStatus]:
    if isinstance(value, JobStatus | str):
        return [_status(value)]
    sources = [_status(v) for v in value]
    if not sources:
        raise ValueError("from_status is empty")
    return sources


def _old_item(exc: Exception) -> Item | None:
    raw = getattr(exc, "response", {}).get("Item")
    return from_item(raw) if raw else None
