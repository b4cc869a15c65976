"""``JobStore``: the only code that reads and writes job items and worker registrations.

Every state change is one conditional ``UpdateItem`` on the current status (and, where the
caller knows it, on the attempt number), so a transition never happens twice and a stale
actor cannot overwrite a newer state. A failed condition returns the current item with the
error (``ReturnValuesOnConditionCheckFailure=ALL_OLD``): callers decide without a second read.
Every creation and transition that succeeds writes one ``job_transition`` log line
(``jobcontract.logs``): the one record of state changes the dashboard counts.

The parts live beside it, and this module re-exports them, so callers import from here:
``jobcontract.dynamo`` (the wire format: ``to_attr``, ``from_item``, ``storable``),
``jobcontract.store_errors``, ``jobcontract.store_listing`` (pages and signed cursors) and
``jobcontract.expressions`` (the terms of a conditional write).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from jobcontract import JobField, JobStatus, Table, job_pk, logs, worker_pk, worker_status
from jobcontract.dynamo import Item, from_attr, from_item, old_item, storable, to_attr, to_item
from jobcontract.expressions import (
    StatusLike,
    add_attempt_terms,
    add_expect,
    add_sets,
    add_worker_status,
    allowed_move,
    as_status,
    as_statuses,
    status_condition,
    update_expression,
)
from jobcontract.logs import TRANSITION_EVENT, LogField
from jobcontract.store_errors import (
    InvalidCursor,
    InvalidTransition,
    JobExists,
    StoreError,
    TransitionConflict,
)
from jobcontract.store_listing import (
    CURSOR_SECRET_ENV,
    LIST_QUERIES_PER_PAGE,
    list_page,
    query_all,
)

__all__ = [
    "CURSOR_SECRET_ENV",
    "LIST_QUERIES_PER_PAGE",
    "InvalidCursor",
    "InvalidTransition",
    "Item",
    "JobExists",
    "JobStore",
    "StatusLike",
    "StoreError",
    "TransitionConflict",
    "from_attr",
    "from_item",
    "log_transition",
    "now_iso",
    "parse_iso",
    "storable",
    "to_attr",
    "to_item",
]


def now_iso(at: datetime | None = None) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``: sorts correctly as text."""
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


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
        items = query_all(self.client, self.table_name, Table.BY_KIND, "kind", Table.KIND_WORKER)
        return sorted(items, key=lambda i: str(i.get("name", "")))

    def list_by_status(self, status: StatusLike) -> list[Item]:
        """Every job in ``status``, oldest first (the sweep's scan of DISPATCHED/RUNNING)."""
        value = as_status(status).value
        return list(
            query_all(self.client, self.table_name, Table.BY_STATUS, JobField.STATUS, value, True)
        )

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
        return list_page(
            self.client, self.table_name, worker=worker, status=status, limit=limit, cursor=cursor
        )

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
            raise JobExists(job_id, old_item(exc)) from exc
        log_transition(item, None)
        return item

    @staticmethod
    def prepare(job: Mapping[str, Any]) -> Item:
        """A new job item as ``create`` writes it (also used by batched creations)."""
        item: Item = dict(job)
        status = as_status(item.get(JobField.STATUS, JobStatus.QUEUED))
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

    # transition_op takes transition's parameters one for one (duplicates lists the two
    # signatures): they are the same write, once alone and once inside a transaction, and
    # each keyword is spelled out so that mypy checks every caller.
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
            f"-> {as_status(to_status).value}",
            prefixed=True,
        )
        log_transition(done, as_statuses(from_status))
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
        sources, target = allowed_move(from_status, to_status)
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
        conditions = ["attribute_exists(#pk)", status_condition(sources, values)]
        sets = ["#status = :to", "#updated = :now", "#ts.#to = :now"]
        add_attempt_terms(attempt, increment_attempts, names, values, conditions, sets)
        add_expect(expect, names, values, conditions)
        add_sets(set_fields, names, values, sets)
        add_worker_status(job_id, target, values, conditions, sets)
        update = update_expression(sets, remove_fields, names)
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
        conditions = [status_condition(as_statuses(status), values)]
        sets = ["#updated = :now"]
        add_attempt_terms(attempt, False, names, values, conditions, sets)
        add_expect(expect, names, values, conditions)
        add_sets(set_fields, names, values, sets)
        update = update_expression(sets, remove_fields, names)
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
            raise TransitionConflict(job_id, old_item(exc), wanted) from exc
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
