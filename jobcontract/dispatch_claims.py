"""Claims of the dispatch state (``jobcontract.dispatch``): a job's claim of a slot (job,
worker's counts, stack budget and the new task's lease in one transaction), a job parked,
array children created parked."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from jobcontract import JobField, JobStatus, Table, job_pk
from jobcontract.dispatch_keys import (
    KIND_DISPATCH,
    KIND_SLOT,
    F,
    slot_key,
    worker_key,
)
from jobcontract.dispatch_ops import (
    TRANSACTION_BYTES,
    TRANSACTION_ITEMS,
    Claimed,
    DispatchOps,
    Refusal,
    TransactionRefused,
    _attrs,
    _claimed,
    _none,
)
from jobcontract.store import Item, JobStore, log_transition, now_iso, to_attr


class Claims(DispatchOps):
    """``Dispatch``'s claims (the launcher's side)."""

    def claim(
        self,
        job_id: str,
        attempt: int,
        worker: str,
        *,
        cap: int,
        cpu: int,
        cancel_flag: Any = None,
        woken: bool = False,
        array_child: bool = False,
        runs_on: str | None = None,
    ) -> Claimed | str:
        """``QUEUED -> DISPATCHED`` (attempt + 1) together with a slot: the worker's task
        count, the stack budget and the new task's lease, in one transaction. A fresh job
        (``woken`` False) also needs its worker to have no parked job and no idle task; a
        woken one must be parked. Returns the claim, or the ``Refusal`` that stopped it.

        ``runs_on``: the worker whose task runs the job when it is not the job's own (a job
        handed to its fallback worker, ``JobField.FALLBACK``). The slot is that worker's:
        ``cap`` and ``cpu`` are its, its ``tasks``/``cpu`` counts and the lease's worker are
        it (so the stop releases it there). The job stays parked and counted under its own
        worker (the by-worker index finds it there), so a woken claim lowers that count."""
        run = attempt + 1
        slot_worker = runs_on or worker
        handed = slot_worker != worker
        lease = slot_key(job_id, run)
        ops = [
            {"Update": self._dispatch_job_op(job_id, attempt, cancel_flag, parked=woken)},
            {"Update": self._slot_op(slot_worker, cap, cpu, woken=woken, handed=handed)},
            self._budget_op(cpu, waiting=-1 if woken else 0),
            self._new_lease_op(lease, slot_worker, cpu, job_id, run, array_child=array_child),
        ]
        if woken and handed:  # parked under its own worker: that count goes down
            ops.append(
                {
                    "Update": self._counts_op(
                        worker_key(worker), {F.WAITING: -1}, None, {}, kind=KIND_DISPATCH,
                        worker=worker,
                    )
                }
            )  # fmt: skip
        try:
            self._transact(ops)
        except TransactionRefused as refused:
            return _claim_refusal(refused)
        return _claimed(job_id, worker, run, lease)

    def _slot_op(
        self, slot_worker: str, cap: int, cpu: int, *, woken: bool, handed: bool
    ) -> dict[str, Any]:
        """A task slot of ``slot_worker``: below its cap and no idle task (and, for a fresh
        job, no parked job); its task and cpu counts go up (a woken own job leaves the
        parked count)."""
        slot_conditions = ["(attribute_not_exists(#tasks) OR #tasks < :cap)", _none(F.IDLE)]
        if not woken:
            slot_conditions.append(_none(F.WAITING))
        return self._counts_op(
            worker_key(slot_worker),
            {F.TASKS: 1, F.CPU: cpu, **({F.WAITING: -1} if woken and not handed else {})},
            " AND ".join(slot_conditions),
            {":cap": cap},
            kind=KIND_DISPATCH,
            worker=slot_worker,
        )

    def _new_lease_op(
        self, lease: str, slot_worker: str, cpu: int, job_id: str, run: int, *, array_child: bool
    ) -> dict[str, Any]:
        """The new task's lease (``slot#<job>#<run>``), once: a second claim of this launch
        finds it and is refused (``Refusal.TAKEN``)."""
        return {
            "Put": {
                "TableName": self.table,
                "Item": _attrs(
                    {
                        Table.PK: lease,
                        JobField.KIND: KIND_SLOT,
                        JobField.CREATED_AT: now_iso(),
                        F.WORKER: slot_worker,
                        F.CPU: cpu,
                        F.CURRENT_JOB: job_id,
                        F.CURRENT_ATTEMPT: run,
                        **({F.ARRAY_CHILD: 1} if array_child else {}),
                    }
                ),
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": Table.PK},
            }
        }

    def park(self, job_id: str, attempt: int, worker: str, cancel_flag: Any = None) -> bool:
        """Mark a QUEUED job (this attempt) as waiting for a slot and count it. False when the
        job is not QUEUED on this attempt (or parked already): nothing changed."""
        names = {
            "#pk": Table.PK,
            "#status": JobField.STATUS,
            "#attempts": JobField.ATTEMPTS,
            "#wait": JobField.WAITING_SINCE,
            "#cancel": JobField.CANCEL_REQUESTED,
        }
        values: dict[str, Any] = {
            ":queued": {"S": JobStatus.QUEUED.value},
            ":attempt": {"N": str(attempt)},
            ":now": {"S": now_iso()},
        }
        cancel = "attribute_not_exists(#cancel)"
        if cancel_flag is not None:
            values[":cancel"] = to_attr(cancel_flag)
            cancel = "#cancel = :cancel"
        job_op = {
            "TableName": self.table,
            "Key": {Table.PK: {"S": job_pk(job_id)}},
            "UpdateExpression": "SET #wait = :now",
            "ConditionExpression": (
                "attribute_exists(#pk) AND #status = :queued AND #attempts = :attempt "
                f"AND attribute_not_exists(#wait) AND {cancel}"
            ),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        count_op = self._counts_op(
            worker_key(worker), {F.WAITING: 1}, None, {}, kind=KIND_DISPATCH, worker=worker
        )
        try:
            self._transact([{"Update": job_op}, {"Update": count_op}, self._stack_waiting_op(1)])
        except TransactionRefused:
            return False
        return True

    def create_parked(self, jobs: Iterable[Mapping[str, Any]], worker: str) -> int:
        """Create QUEUED jobs already parked (``waiting_since``): an array job's children,
        which the drain and warm tasks start as slots free, with no SQS message each.
        Written in transactions of up to 100 conditional puts (``attribute_not_exists``), so a
        replayed request never overwrites a child that has moved on; a chunk refused because
        some exist is written one by one, skipping those. The worker's ``waiting`` count is
        raised before each chunk (an over-count is healed by the drain, an under-count would
        strand a parked job) and lowered by the jobs that existed. A refused chunk costs one
        BatchGetItem, so a replay or resumed fan-out mostly reads. Returns how many this call
        created."""
        created = 0
        for chunk in _chunks(jobs):
            self._add_waiting(worker, len(chunk))
            made = self._put_new(chunk)
            if made is None:  # some exist (a replay, a resumed fan-out): write the others
                there = {str(j[JobField.JOB_ID]) for j in self.store.get_many(_ids(chunk))}
                missing = [item for item in chunk if str(item[JobField.JOB_ID]) not in there]
                made = self._put_new(missing) if missing else 0
                if made is None:
                    made = sum(self._put_new([item]) or 0 for item in missing)
            if made < len(chunk):
                self._add_waiting(worker, made - len(chunk))
            created += made
        return created

    def _put_new(self, chunk: list[Item]) -> int | None:
        """Put every item of ``chunk`` in one transaction if none exists: its size, or None
        when one existed (0 for a chunk of one). Transaction conflicts are retried."""
        ops = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _attrs(item),
                    "ConditionExpression": "attribute_not_exists(#pk)",
                    "ExpressionAttributeNames": {"#pk": Table.PK},
                }
            }
            for item in chunk
        ]
        for attempt in range(5):
            try:
                self._transact(ops)
            except TransactionRefused as refused:
                if "ConditionalCheckFailed" in refused.reasons:
                    return 0 if len(chunk) == 1 else None
                if attempt == 4:
                    raise
                time.sleep(0.05 * 2**attempt)
                continue
            for item in chunk:
                log_transition(item, None)
            return len(chunk)
        return None  # pragma: no cover - the loop returns or raises

    def _add_waiting(self, worker: str, delta: int) -> None:
        op = self._counts_op(
            worker_key(worker), {F.WAITING: delta}, None, {}, kind=KIND_DISPATCH, worker=worker
        )
        self._transact([{"Update": op}, self._stack_waiting_op(delta)])


def _ids(items: list[Item]) -> list[str]:
    return [str(item[JobField.JOB_ID]) for item in items]


def _chunks(jobs: Iterable[Mapping[str, Any]]) -> Iterable[list[Item]]:
    """Jobs (``JobStore.prepare``d, parked) in transaction-sized groups."""
    chunk: list[Item] = []
    size = 0
    for job in jobs:
        item = JobStore.prepare(job)
        item.setdefault(JobField.WAITING_SINCE, item[JobField.CREATED_AT])
        weight = len(json.dumps(item, default=str))
        if chunk and size + weight > TRANSACTION_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += weight
        if len(chunk) >= TRANSACTION_ITEMS:  # written at once, before the next is built
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _claim_refusal(refused: TransactionRefused) -> str:
    """Which of a claim's operations (job, slot, budget, lease) refused it."""
    if refused.failed(0):
        return Refusal.JOB
    if refused.failed(3):
        return Refusal.TAKEN
    if "ConditionalCheckFailed" not in refused.reasons:
        return Refusal.CONFLICT  # no condition failed: nothing says a slot is taken
    if refused.failed(2):
        return Refusal.BUDGET
    return Refusal.WORKER
