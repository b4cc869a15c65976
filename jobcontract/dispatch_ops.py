"""The dispatch state's store operations (``jobcontract.dispatch``): the transaction shapes
(counts, budget, lease, a job's claim), their refusals, and the reads every part uses."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from jobcontract import JobField, JobStatus, Table, worker_status
from jobcontract.dispatch_keys import (
    KIND_DISPATCH,
    KIND_SLOT,
    STACK_PK,
    F,
    worker_key,
)
from jobcontract.store import Item, JobStore, from_item, log_transition, now_iso, to_attr


class TransactionRefused(Exception):
    """A ``TransactWriteItems`` condition failed: ``reasons[i]`` is the code for operation
    ``i`` (``"ConditionalCheckFailed"``, ``"None"``...), ``items[i]`` the item it found."""

    def __init__(self, reasons: list[str], items: list[Item | None]) -> None:
        self.reasons, self.items = reasons, items
        super().__init__(f"transaction refused: {reasons}")

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] not in ("None", "", None)


class Refusal:
    """Why a claim got no slot (or no job)."""

    JOB: Final = "job"  # the job is not in the state the claim expected
    WORKER: Final = "worker"  # its worker is at its cap, has parked jobs or an idle task
    BUDGET: Final = "budget"  # the stack's vCPU budget is full
    TAKEN: Final = "taken"  # the lease exists: this launch was claimed already
    # Another transaction was writing the same counts (DynamoDB's TransactionConflict): says
    # nothing about free slots, so the launcher does not treat the worker as full.
    CONFLICT: Final = "conflict"


# What a claim hands back: a plain frozen record (duplicates pairs its shape with a test
# fixture's dataclass).
@dataclass(frozen=True)
class Claimed:
    """A claimed job with its slot: the job is DISPATCHED on ``attempt`` (its run number)."""

    job_id: str
    attempt: int
    lease: str


class DispatchOps:
    """Dispatch-state operations on the jobs table, through a ``JobStore``'s client: the
    reads and the operation builders ``Dispatch``'s parts share."""

    def __init__(self, store: JobStore, budget: int | None = None) -> None:
        self.store = store
        self.table = store.table_name
        self.budget = budget

    @property
    def client(self) -> Any:
        return self.store.client

    def _dispatch_job_op(
        self,
        job_id: str,
        attempt: int,
        cancel_flag: Any,
        *,
        parked: bool,
        set_fields: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The job's ``QUEUED -> DISPATCHED`` (attempt + 1) in a claim: unchanged cancel flag;
        a fresh job must not be parked, a parked one (``parked``) must be, and is unparked."""
        expect: dict[str, Any] = {JobField.CANCEL_REQUESTED: cancel_flag}
        if not parked:
            expect[JobField.WAITING_SINCE] = None
        job_op = self.store.transition_op(
            job_id,
            JobStatus.QUEUED,
            JobStatus.DISPATCHED,
            attempt=attempt,
            increment_attempts=True,
            expect=expect,
            set_fields=set_fields,
            remove_fields=[JobField.WAITING_SINCE] if parked else (),
        )
        if parked:
            job_op["ConditionExpression"] += " AND attribute_exists(#wait)"
            job_op["ExpressionAttributeNames"]["#wait"] = JobField.WAITING_SINCE
        return job_op

    def _stack_waiting_op(self, delta: int) -> dict[str, Any]:
        return {
            "Update": self._counts_op(STACK_PK, {F.WAITING: delta}, None, {}, kind=KIND_DISPATCH)
        }

    # --- reads ----------------------------------------------------------------------------
    def get(self, key: str) -> Item | None:
        resp = self.client.get_item(
            TableName=self.table, Key={Table.PK: {"S": key}}, ConsistentRead=True
        )
        raw = resp.get("Item")
        return from_item(raw) if raw else None

    def parked(self, worker: str, limit: int, *, handed: bool = False) -> list[Item]:
        """Up to ``limit`` parked jobs of ``worker``, oldest first (by-worker-status index).
        ``handed``: only those handed to a fallback worker (``JobField.FALLBACK``), which
        take that worker's slots."""
        found: list[Item] = []
        names = {"#h": JobField.WORKER_STATUS, "#w": JobField.WAITING_SINCE}
        condition = "attribute_exists(#w)"
        if handed:
            names["#fb"] = JobField.FALLBACK
            condition += " AND attribute_exists(#fb)"
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": Table.BY_WORKER_STATUS,
            "KeyConditionExpression": "#h = :h",
            "FilterExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":h": {"S": worker_status(worker, JobStatus.QUEUED)}},
            "ScanIndexForward": True,
            "Limit": max(limit, 25),
        }
        while len(found) < limit:
            resp = self.client.query(**kwargs)
            found.extend(from_item(raw) for raw in resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if not last:
                break
            kwargs["ExclusiveStartKey"] = last
        return found[:limit]

    def counts(self) -> tuple[dict[str, Item], int]:
        """Every worker's counts and the stack's cpu held (one query of the by-kind index)."""
        items = self._kind(KIND_DISPATCH)
        workers = {str(i.get(F.WORKER)): i for i in items if i.get(Table.PK) != STACK_PK}
        stack = next((i for i in items if i.get(Table.PK) == STACK_PK), {})
        return workers, max(0, int(stack.get(F.CPU, 0) or 0))

    def leases(self) -> list[Item]:
        return self._kind(KIND_SLOT)

    def heal_waiting(self, worker: str, seen: int) -> None:
        """Set a worker's parked count to 0 when the index shows none parked (a parked job
        was cancelled). Conditional on the count read, so a job parked since is kept."""
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.table,
                Key={Table.PK: {"S": worker_key(worker)}},
                UpdateExpression="SET #w = :zero",
                ConditionExpression="#w = :seen",
                ExpressionAttributeNames={"#w": F.WAITING},
                ExpressionAttributeValues={":zero": {"N": "0"}, ":seen": {"N": str(seen)}},
            )

    def set_yield(self, worker: str, on: bool) -> None:
        self.client.update_item(
            TableName=self.table,
            Key={Table.PK: {"S": worker_key(worker)}},
            UpdateExpression="SET #y = :y",
            ExpressionAttributeNames={"#y": F.YIELD},
            ExpressionAttributeValues={":y": {"N": "1" if on else "0"}},
        )

    # --- helpers --------------------------------------------------------------------------
    def _kind(self, kind: str) -> list[Item]:
        found: list[Item] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": Table.BY_KIND,
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": JobField.KIND},
            "ExpressionAttributeValues": {":k": {"S": kind}},
        }
        while True:
            resp = self.client.query(**kwargs)
            found.extend(from_item(raw) for raw in resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if not last:
                return found
            kwargs["ExclusiveStartKey"] = last

    def _counts_op(
        self,
        key: str,
        delta: Mapping[str, int],
        condition: str | None,
        values: Mapping[str, Any],
        *,
        kind: str,
        worker: str | None = None,
    ) -> dict[str, Any]:
        """``ADD`` deltas to a counts item (created on first use with kind/created_at so the
        by-kind index lists it), under ``condition`` (names ``#<field>``, values ``:<x>``)."""
        names = {f"#{name}": name for name in (F.TASKS, F.CPU, F.WAITING, F.IDLE, F.YIELD)}
        names.update({"#kind": JobField.KIND, "#created": JobField.CREATED_AT})
        attr_values: dict[str, Any] = {":kind": {"S": kind}, ":now": {"S": now_iso()}}
        attr_values.update({k: to_attr(v) for k, v in values.items()})
        sets = ["#kind = :kind", "#created = if_not_exists(#created, :now)"]
        if worker is not None:
            names["#worker"] = F.WORKER
            attr_values[":worker"] = {"S": worker}
            sets.append("#worker = :worker")
        adds = []
        for i, (name, amount) in enumerate(delta.items()):
            attr_values[f":d{i}"] = {"N": str(amount)}
            adds.append(f"#{name} :d{i}")
        op: dict[str, Any] = {
            "TableName": self.table,
            "Key": {Table.PK: {"S": key}},
            "UpdateExpression": "SET "
            + ", ".join(sets)
            + (" ADD " + ", ".join(adds) if adds else ""),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": attr_values,
        }
        if condition:
            op["ConditionExpression"] = condition
        return _prune(op)

    def _budget_op(self, cpu: int, *, conditional: bool = True, waiting: int = 0) -> dict[str, Any]:
        condition = None
        values: dict[str, Any] = {}
        if conditional and self.budget is not None and cpu > 0:
            if cpu > self.budget:
                condition, values = "attribute_not_exists(#cpu) OR #cpu <= :zero", {":zero": 0}
            else:
                condition, values = (
                    "attribute_not_exists(#cpu) OR #cpu <= :room",
                    {":room": self.budget - cpu},
                )
        return {
            "Update": self._counts_op(
                STACK_PK,
                {F.CPU: cpu, **({F.WAITING: waiting} if waiting else {})},
                condition,
                values,
                kind=KIND_DISPATCH,
            )
        }

    def _lease_op(
        self,
        lease: str,
        sets: Mapping[str, Any],
        *,
        remove_idle: bool = False,
        require_busy: bool = False,
        add_ran: str | None = None,
    ) -> dict[str, Any]:
        names = {"#pk": Table.PK, "#idle": F.IDLE, "#ran": F.RAN}
        values: dict[str, Any] = {}
        parts = []
        for i, (name, value) in enumerate(sets.items()):
            names[f"#s{i}"] = name
            values[f":s{i}"] = to_attr(value)
            parts.append(f"#s{i} = :s{i}")
        expression = ("SET " + ", ".join(parts)) if parts else ""
        names["#freed"] = F.FREED
        condition = "attribute_exists(#pk) AND attribute_not_exists(#freed)"  # it holds a slot
        if remove_idle:
            expression += " REMOVE #idle"
            values[":one"] = {"N": "1"}
            condition += " AND #idle = :one"
        if require_busy:
            condition += " AND attribute_not_exists(#idle)"
        if add_ran:
            expression += " ADD #ran :ran"
            values[":ran"] = {"SS": [add_ran]}
        op: dict[str, Any] = {
            "TableName": self.table,
            "Key": {Table.PK: {"S": lease}},
            "UpdateExpression": expression.strip(),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
        }
        if values:
            op["ExpressionAttributeValues"] = values
        return _prune(op)

    def _transact(self, ops: list[dict[str, Any]]) -> None:
        try:
            self.client.transact_write_items(TransactItems=ops)
        except self.client.exceptions.TransactionCanceledException as exc:
            raise _refused(exc, len(ops)) from exc


# AWS rules: TransactWriteItems takes at most 100 actions and 4 MB in all.
TRANSACTION_ITEMS: Final = 100
TRANSACTION_BYTES: Final = 3_500_000  # below 4 MB, leaving room for attribute overhead


def _claimed(job_id: str, worker: str, attempt: int, lease: str) -> Claimed:
    """A claim that committed: its transition line, as every state change writes one."""
    log_transition(
        {
            JobField.JOB_ID: job_id,
            JobField.WORKER: worker,
            JobField.ATTEMPTS: attempt,
            JobField.STATUS: JobStatus.DISPATCHED.value,
        },
        [JobStatus.QUEUED],
    )
    return Claimed(job_id, attempt, lease)


def _none(name: str) -> str:
    """Condition: a counter is absent or not positive."""
    return f"(attribute_not_exists(#{name}) OR #{name} <= :zero)"


def _attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_attr(v) for k, v in values.items()}


def _prune(op: dict[str, Any]) -> dict[str, Any]:
    """Drop attribute names and values the expressions do not use (DynamoDB rejects unused
    ones), and add ``:zero`` where ``_none`` conditions need it."""
    text = " ".join(str(op.get(k, "")) for k in ("UpdateExpression", "ConditionExpression"))
    names = op.get("ExpressionAttributeNames") or {}
    op["ExpressionAttributeNames"] = {k: v for k, v in names.items() if k in _tokens(text, "#")}
    values = dict(op.get("ExpressionAttributeValues") or {})
    if ":zero" in _tokens(text, ":"):
        values.setdefault(":zero", {"N": "0"})
    kept = {k: v for k, v in values.items() if k in _tokens(text, ":")}
    if kept:
        op["ExpressionAttributeValues"] = kept
    else:
        op.pop("ExpressionAttributeValues", None)
    if not op["ExpressionAttributeNames"]:
        op.pop("ExpressionAttributeNames")
    return op


def _tokens(text: str, sigil: str) -> set[str]:
    import re

    return set(re.findall(re.escape(sigil) + r"[A-Za-z0-9_]+", text))


def _refused(exc: Exception, count: int) -> TransactionRefused:
    """The per-operation codes of a cancelled transaction (``CancellationReasons``; moto and
    older SDKs may only give them in the message, as ``[None, ConditionalCheckFailed]``)."""
    response = getattr(exc, "response", {}) or {}
    raw = response.get("CancellationReasons")
    if raw:
        reasons = [str(r.get("Code", "None")) for r in raw]
        items = [from_item(r["Item"]) if r.get("Item") else None for r in raw]
        return TransactionRefused(reasons, items)
    message = str((response.get("Error") or {}).get("Message", "")) or str(exc)
    inside = message[message.find("[") + 1 : message.rfind("]")] if "[" in message else ""
    reasons = [part.strip() for part in inside.split(",")] if inside else []
    reasons += ["None"] * (count - len(reasons))
    return TransactionRefused(reasons[:count], [None] * count)
