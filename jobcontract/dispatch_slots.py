"""Slots given back (``jobcontract.dispatch``): a stopped task's release, a task's own
release of its worker's slot at its last job's end, and the stack's parked count that
decides whether a freed slot needs a drain."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from jobcontract import Table
from jobcontract.dispatch_keys import (
    KIND_DISPATCH,
    STACK_PK,
    F,
    worker_key,
)
from jobcontract.dispatch_ops import (
    TRANSACTION_ITEMS,
    DispatchOps,
    TransactionRefused,
    _attrs,
    _prune,
)
from jobcontract.store import Item, from_item


class Slots(DispatchOps):
    """``Dispatch``'s releases and parked counts."""

    def anyone_waiting(self) -> bool:
        """Whether any job of the stack is parked, from ``dispatch@stack``'s ``waiting``
        (a strongly consistent read). It never under-counts: every park adds to it in the
        transaction that adds to its worker's count, and only a launcher's woken claim (same
        transaction) or ``heal_stack_waiting`` lowers it; a warm task's ``take_next`` leaves
        it high (a task role may not write the stack row), which costs a needless drain
        until the launcher heals it. So a slot released after this answers False needs no
        drain: a job parked later is drained by the launcher that parked it."""
        item = self.get(STACK_PK) or {}
        return int(item.get(F.WAITING, 0) or 0) > 0

    def heal_stack_waiting(self, workers: Iterable[str]) -> bool:
        """Lower the stack's parked count to the sum of the workers' counts, read in one
        ``TransactGetItems`` (a consistent snapshot of all of them), written only if the
        stack's count is still what the snapshot saw (a park since changes it). True when it
        changed. AWS rule: TransactGetItems reads at most 100 items; with more workers the
        count is left as it is (too high costs only drains)."""
        names = sorted(set(workers))
        if len(names) + 1 > TRANSACTION_ITEMS:
            return False
        keys = [STACK_PK, *(worker_key(n) for n in names)]
        resp = self.client.transact_get_items(
            TransactItems=[
                {"Get": {"TableName": self.table, "Key": {Table.PK: {"S": k}}}} for k in keys
            ]
        )
        found = [from_item(r["Item"]) if r.get("Item") else {} for r in resp.get("Responses", [])]
        if len(found) != len(keys):
            return False
        seen = int(found[0].get(F.WAITING, 0) or 0)
        total = sum(max(0, int(i.get(F.WAITING, 0) or 0)) for i in found[1:])
        if total >= seen:
            return False
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.table,
                Key={Table.PK: {"S": STACK_PK}},
                UpdateExpression="SET #w = :total",
                ConditionExpression="#w = :seen",
                ExpressionAttributeNames={"#w": F.WAITING},
                ExpressionAttributeValues={
                    ":total": {"N": str(total)},
                    ":seen": {"N": str(seen)},
                },
            )
            return True
        return False

    def release(
        self,
        lease: str,
        *,
        lease_item: Item | None = None,
        task_cpu: int | None = None,
        retry: bool = True,
    ) -> bool:
        """Give back the slot of a stopped task: delete its lease and its counts (only the
        stack's vCPUs when the task freed its worker's slot itself, ``free_slot``).
        Idempotent (a repeated STOPPED event finds no lease). True when this call released
        it."""
        item = lease_item if lease_item is not None else self.get(lease)
        if item is None:
            return False
        worker = str(item.get(F.WORKER, ""))
        cpu = int(item.get(F.CPU) or task_cpu or 0)
        idle, freed = bool(item.get(F.IDLE)), bool(item.get(F.FREED))
        delta: dict[str, int] = {F.TASKS: -1, F.CPU: -cpu}
        if idle:
            delta[F.IDLE] = -1
        # The flags read decide which counts move: the delete holds only if they are the same.
        state = (
            "#freed = :one"
            if freed
            else "attribute_not_exists(#freed) AND "
            + ("#idle = :one" if idle else "attribute_not_exists(#idle)")
        )
        names = {"#pk": Table.PK, "#idle": F.IDLE, "#freed": F.FREED}
        delete = {
            "TableName": self.table,
            "Key": {Table.PK: {"S": lease}},
            "ConditionExpression": f"attribute_exists(#pk) AND {state}",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
        ops: list[dict[str, Any]] = [{"Delete": _prune(delete)}]
        if not freed:
            counts = self._counts_op(
                worker_key(worker), delta, None, {}, kind=KIND_DISPATCH, worker=worker
            )
            ops.append({"Update": counts})
        ops.append(self._budget_op(-cpu, conditional=False))
        try:
            self._transact(ops)
        except TransactionRefused:
            # Gone (released by someone else) or its idle flag changed: read and try again.
            if retry and self.get(lease) is not None:
                return self.release(lease, task_cpu=task_cpu, retry=False)
            return False
        return True

    # --- a task gives its worker's slot back (its last job ended) --------------------------
    def free_slot(self, lease: str, job_id: str, attempt: int) -> str | None:
        """The task holding ``lease`` recorded the end of its last job (``job_id`` on
        ``attempt``) and is about to exit: give its worker's slot back now (task and cpu
        counts of ``dispatch#<worker>``), not at its STOPPED event. The stack's vCPUs stay
        held until then (``release``). Conditional on the lease running that job, busy and
        not freed yet, so the counts move once whoever else releases it. Returns the worker
        whose slot was freed, None when nothing changed."""
        item = self.get(lease)
        if (
            item is None
            or item.get(F.FREED)
            or item.get(F.IDLE)
            or str(item.get(F.CURRENT_JOB, "")) != job_id
            or int(item.get(F.CURRENT_ATTEMPT, -1)) != attempt
        ):
            return None
        worker, cpu = str(item.get(F.WORKER, "")), int(item.get(F.CPU) or 0)
        lease_op = {
            "TableName": self.table,
            "Key": {Table.PK: {"S": lease}},
            "UpdateExpression": "SET #freed = :one",
            "ConditionExpression": (
                "attribute_exists(#pk) AND attribute_not_exists(#freed) AND "
                "attribute_not_exists(#idle) AND #job = :job AND #attempt = :attempt "
                "AND #cpu = :cpu"
            ),
            "ExpressionAttributeNames": {
                "#pk": Table.PK,
                "#freed": F.FREED,
                "#idle": F.IDLE,
                "#job": F.CURRENT_JOB,
                "#attempt": F.CURRENT_ATTEMPT,
                "#cpu": F.CPU,
            },
            "ExpressionAttributeValues": _attrs(
                {":one": 1, ":job": job_id, ":attempt": attempt, ":cpu": cpu}
            ),
        }
        counts = self._counts_op(
            worker_key(worker),
            {F.TASKS: -1, F.CPU: -cpu},
            None,
            {},
            kind=KIND_DISPATCH,
            worker=worker,
        )
        try:
            self._transact([{"Update": lease_op}, {"Update": counts}])
        except TransactionRefused:
            return None
        return worker

    def waiting(self, worker: str) -> int:
        """The worker's parked count (strongly consistent; it may over-count, never under)."""
        return max(0, int((self.get(worker_key(worker)) or {}).get(F.WAITING, 0) or 0))
