"""Dispatch state: who may start a task now, and which waiting job goes next.

A job that finds no free slot *parks*: it stays QUEUED with ``waiting_since`` set, its SQS
message is deleted (a wait spends no receive, so the DLQ only holds messages that could not be
processed), and it is started later, oldest first within its worker, by

- a task of its worker that finished a job (warm reuse: ``take_next``, no new task), or
- the launcher's ``drain``, run after it parks a job and whenever a task stopped while a
  job waited (the reconciler, after the release, reads the stack's parked count and sends a
  drain message if it is positive; the sweep re-sends one while jobs are parked): free slots
  go to the waiting worker with the least cpu in use (max-min fairness), while the stack's
  vCPU budget allows; then a fallback worker's free slots go to the jobs handed to it, which
  are parked and counted under their own worker (``parked(..., handed=True)``).

State, in the jobs table (every change is one ``TransactWriteItems``, so the counts are exact
and a slot is never given twice):

- ``dispatch#<worker>``: ``tasks`` and ``cpu`` held by that worker's launched tasks,
  ``waiting`` (parked jobs; it may over-count after a parked job was cancelled, and the drain
  heals it), ``idle`` (reuse tasks waiting for a job), ``yield_share`` (1 while the worker
  holds more than its fair share of a contended budget: its tasks take no next job);
- ``dispatch@stack``: ``cpu`` held by every launched task of the stack, and ``waiting``: the
  parked jobs of every worker (raised with each worker's count, in the same transaction, so
  it never under-counts; a warm task's take leaves it high, and the launcher's drain heals
  it from a consistent snapshot, ``heal_stack_waiting``);
- ``slot#<job id>-<attempt>``: one lease per launched task, named by the job and attempt it
  was started for (the task's ``BATCH_JOB_ID`` / ``BATCH_JOB_ATTEMPT``, so the STOPPED event
  names it): worker, cpu, the task ARN, the job it runs now, ``idle`` while it waits, and
  ``freed`` once the task gave its worker's slot back itself (``free_slot``).

A task that recorded its last job's end gives its worker's slot back before it exits
(``free_slot``) and asks for a drain while a job of its worker is parked, so the next task
is launched while this one is still exiting and ECS has not yet sent its STOPPED event (the
hand-off per freed slot no longer waits for the process exit, the event and the
reconciler). Only the worker's counts move then: the stack's vCPU budget keeps counting the
task until the reconciler (or the sweep) releases the lease at its STOPPED, because the
account's Fargate vCPU quota counts it until then and RunTask beyond the quota fails. So a
worker may briefly have more tasks alive than its ``max_concurrency`` (the extra ones are
exiting, with no job), never more jobs; the stack never exceeds ``fargateVcpuLimit``.

A fresh job may take a slot only if its worker has no parked job and no idle task: nothing
overtakes a job that waits, and an idle task gets the job instead of a new task.

This module imports only the standard library and ``jobcontract``: it runs in the launcher,
the reconciler, the sweep and every worker task.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from jobcontract import JobField, JobStatus, Table, job_pk, worker_status
from jobcontract.store import Item, JobStore, from_item, log_transition, now_iso, to_attr

STACK_PK: Final = "dispatch@stack"
DISPATCH_PREFIX: Final = "dispatch#"
SLOT_PREFIX: Final = "slot#"
KIND_DISPATCH: Final = "dispatch"
KIND_SLOT: Final = "slot"
CPU_UNITS_PER_VCPU: Final = 1024
# The body of a launch-queue message that asks the launcher to hand out free slots.
DRAIN_MESSAGE: Final = '{"drain": true}'
DRAIN_GROUP: Final = "dispatch-drain"


class F:
    """Attribute names of the dispatch items."""

    TASKS: Final = "tasks"
    CPU: Final = "cpu"
    WAITING: Final = "waiting"
    IDLE: Final = "idle"
    YIELD: Final = "yield_share"
    # Not "worker": that attribute (with created_at) would list these items in the jobs'
    # by-worker index.
    WORKER: Final = "for_worker"
    TASK_ARN: Final = "task_arn"
    CURRENT_JOB: Final = "current_job"
    CURRENT_ATTEMPT: Final = "current_attempt"
    RAN: Final = "ran"  # string set: the jobs a reused task finished before its current one
    # Set once the task ran a child of an array job: the reconciler then reads the job at
    # the task's stop even after a clean exit 0, to count the child on its parent.
    ARRAY_CHILD: Final = "array_child"
    # Set by the task itself once its last job's end is recorded and it is about to exit:
    # its worker's slot (``tasks``/``cpu`` of ``dispatch#<worker>``) is given back then, the
    # stack's vCPUs only when it has STOPPED (``Dispatch.free_slot``, ``Dispatch.release``).
    FREED: Final = "freed"


def worker_key(worker: str) -> str:
    return f"{DISPATCH_PREFIX}{worker}"


def slot_key(job_id: str, attempt: int) -> str:
    """The lease of the task launched for ``job_id``'s ``attempt`` (its run number)."""
    return f"{SLOT_PREFIX}{job_id}-{attempt}"


def slot_key_prefix(worker: str) -> str:
    """What every lease key of this worker's tasks starts with (IAM LeadingKeys: + '*')."""
    return f"{SLOT_PREFIX}{worker}_"


def drain_message() -> dict[str, str]:
    """SQS FIFO send arguments (without QueueUrl) of one drain request. Each has its own
    deduplication id (two tasks stopping at once must each get a drain) and its own message
    group: FIFO hands out no message of a group while another of it is in flight, so one
    shared group made every drain wait for the one running (measured: seconds per freed
    slot in a burst). Concurrent drains are safe: every claim is a conditional transaction,
    and a drain that loses a job to another takes the next parked one. AWS rule (SQS
    SendMessage): MessageGroupId is 1-128 alphanumeric or punctuation characters; this is
    47."""
    return {
        "MessageBody": DRAIN_MESSAGE,
        "MessageGroupId": f"{DRAIN_GROUP}-{uuid.uuid4().hex}",
        "MessageDeduplicationId": uuid.uuid4().hex,
    }


def vcpu_budget_units(limit_vcpus: float) -> int | None:
    """The stack's budget in cpu units; None when unlimited (0)."""
    return int(limit_vcpus * CPU_UNITS_PER_VCPU) if limit_vcpus > 0 else None


# --- pure planning -------------------------------------------------------------------------
@dataclass
class WorkerLoad:
    """One worker's counts (``dispatch#<worker>``) and the limits the plan needs."""

    name: str
    cap: int
    task_cpu: int
    tasks: int = 0
    cpu: int = 0
    waiting: int = 0
    idle: int = 0
    yielding: bool = False

    @classmethod
    def of(cls, name: str, cap: int, task_cpu: int, item: Mapping[str, Any] | None) -> WorkerLoad:
        item = item or {}
        return cls(
            name,
            cap,
            task_cpu,
            tasks=max(0, int(item.get(F.TASKS, 0) or 0)),
            cpu=max(0, int(item.get(F.CPU, 0) or 0)),
            waiting=max(0, int(item.get(F.WAITING, 0) or 0)),
            idle=max(0, int(item.get(F.IDLE, 0) or 0)),
            yielding=bool(item.get(F.YIELD)),
        )


def fits(used: int, cpu: int, budget: int | None) -> bool:
    """Whether a task of ``cpu`` units may start with ``used`` held. A task bigger than the
    whole budget still runs, alone (else it could never run)."""
    return budget is None or used + cpu <= budget or used == 0


@dataclass
class Plan:
    """Which workers get a slot, in order (one entry per slot), and which should yield."""

    wake: list[str] = field(default_factory=list)
    yielding: set[str] = field(default_factory=set)


def plan(loads: Iterable[WorkerLoad], used: int, budget: int | None) -> Plan:
    """Hand the free slots to waiting workers, least cpu in use first (ties: fewer tasks,
    then name), each within its cap and the stack budget. A worker with an idle task gets
    nothing here: that task takes its jobs. Then mark the workers that hold more than a
    budget-starved worker would after one more task, so their tasks stop taking new jobs
    and the budget flows to the starved one (reuse must not keep a share forever)."""
    table = {w.name: WorkerLoad(**vars(w)) for w in loads}
    result = Plan()
    starved: dict[str, WorkerLoad] = {}
    while True:
        ready = [
            w
            for w in table.values()
            if w.waiting > 0 and w.idle == 0 and w.tasks < w.cap and w.name not in starved
        ]
        if not ready:
            break
        pick = min(ready, key=lambda w: (w.cpu, w.tasks, w.name))
        if not fits(used, pick.task_cpu, budget):
            starved[pick.name] = pick  # its next task does not fit: a smaller one may
            continue
        result.wake.append(pick.name)
        pick.waiting -= 1
        pick.tasks += 1
        pick.cpu += pick.task_cpu
        used += pick.task_cpu
    for hungry in starved.values():
        for w in table.values():
            if w.name != hungry.name and w.cpu > hungry.cpu + hungry.task_cpu:
                result.yielding.add(w.name)
    return result


# --- the store side ------------------------------------------------------------------------
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


@dataclass(frozen=True)
class Claimed:
    """A claimed job with its slot: the job is DISPATCHED on ``attempt`` (its run number)."""

    job_id: str
    attempt: int
    lease: str


class Dispatch:
    """Dispatch-state operations on the jobs table, through a ``JobStore``'s client."""

    def __init__(self, store: JobStore, budget: int | None = None) -> None:
        self.store = store
        self.table = store.table_name
        self.budget = budget

    @property
    def client(self) -> Any:
        return self.store.client

    # --- claims -------------------------------------------------------------------------
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

    def _stack_waiting_op(self, delta: int) -> dict[str, Any]:
        return {
            "Update": self._counts_op(STACK_PK, {F.WAITING: delta}, None, {}, kind=KIND_DISPATCH)
        }

    # --- does any job wait? (the stack's parked count) -------------------------------------
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

    # --- warm reuse (a worker task) -------------------------------------------------------
    def take_next(
        self,
        worker: str,
        lease: str,
        task_arn: str | None,
        *,
        idle: bool,
        finished: str | None = None,
    ) -> Claimed | None:
        """Claim the oldest parked job of ``worker`` for the task holding ``lease`` (no new
        slot: the task keeps its own), noting ``finished`` (the job it ran before) on the
        lease for the reconciler. None when none is parked, or the worker yields."""
        counts = self.get(worker_key(worker)) or {}
        waiting = int(counts.get(F.WAITING, 0) or 0)
        if counts.get(F.YIELD) or waiting <= 0:
            return None
        candidates = self.parked(worker, 5)
        if not candidates:
            self.heal_waiting(worker, waiting)
        for job in candidates:
            if job.get(JobField.FALLBACK):
                continue  # handed to the fallback worker: its task (and slot) runs the job
            job_id, attempt = str(job[JobField.JOB_ID]), int(job.get(JobField.ATTEMPTS, 0))
            fields: dict[str, Any] = {}
            if task_arn:
                fields[JobField.TASK_ARN] = task_arn
            job_op = self._dispatch_job_op(
                job_id, attempt, job.get(JobField.CANCEL_REQUESTED), parked=True, set_fields=fields
            )
            delta = {F.WAITING: -1, **({F.IDLE: -1} if idle else {})}
            count_op = self._counts_op(
                worker_key(worker),
                delta,
                f"attribute_not_exists(#{F.YIELD}) OR #{F.YIELD} = :no",
                {":no": 0},
                kind=KIND_DISPATCH,
                worker=worker,
            )
            child = {F.ARRAY_CHILD: 1} if job.get(JobField.PARENT_ID) else {}
            lease_op = self._lease_op(
                lease,
                {F.CURRENT_JOB: job_id, F.CURRENT_ATTEMPT: attempt + 1, **child},
                remove_idle=idle,
                add_ran=finished,
            )
            try:
                self._transact([{"Update": job_op}, {"Update": count_op}, {"Update": lease_op}])
            except TransactionRefused as refused:
                if refused.failed(0):
                    continue  # cancelled or taken meanwhile: the next one
                return None
            return _claimed(job_id, worker, attempt + 1, lease)
        return None

    def enter_idle(self, worker: str, lease: str) -> bool:
        """Count this task as idle (fresh jobs of its worker then park for it)."""
        try:
            self._transact(
                [
                    {"Update": self._lease_op(lease, {F.IDLE: 1}, require_busy=True)},
                    {
                        "Update": self._counts_op(
                            worker_key(worker),
                            {F.IDLE: 1},
                            None,
                            {},
                            kind=KIND_DISPATCH,
                            worker=worker,
                        )
                    },
                ]
            )
        except TransactionRefused:
            return False
        return True

    def leave_idle(self, worker: str, lease: str, *, unless_waiting: bool = True) -> bool:
        """Stop counting this task as idle; with ``unless_waiting``, only if no job parked
        for it meanwhile. False: a job is waiting (take it), or the task was not idle. (A job
        parked for a task that then leaves anyway is not lost: the task's STOPPED event
        releases its slot and drains.)"""
        condition = _none(F.WAITING) if unless_waiting else None
        try:
            self._transact(
                [
                    {"Update": self._lease_op(lease, {}, remove_idle=True)},
                    {
                        "Update": self._counts_op(
                            worker_key(worker),
                            {F.IDLE: -1},
                            condition,
                            {},
                            kind=KIND_DISPATCH,
                            worker=worker,
                        )
                    },
                ]
            )
        except TransactionRefused:
            return False
        return True

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


Sleep = Callable[[float], None]


def wait_for_next(
    dispatch: Dispatch,
    worker: str,
    lease: str,
    task_arn: str | None,
    *,
    idle_seconds: float,
    finished: str | None = None,
    poll_seconds: float = 1.0,
    stopped: Callable[[], bool] = lambda: False,
    sleep: Sleep = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Claimed | None:
    """Warm reuse: the next parked job of ``worker`` for this task, waiting up to
    ``idle_seconds`` (counted idle meanwhile, so new jobs park for it instead of starting a
    task). None: nothing came (or the worker yields, or the task is stopping): exit."""
    claimed = dispatch.take_next(worker, lease, task_arn, idle=False, finished=finished)
    if claimed is not None or idle_seconds <= 0:
        return claimed
    if not dispatch.enter_idle(worker, lease):
        return None
    deadline = clock() + idle_seconds
    while not stopped():
        claimed = dispatch.take_next(worker, lease, task_arn, idle=True, finished=finished)
        if claimed is not None:
            return claimed
        if clock() >= deadline:
            if dispatch.leave_idle(worker, lease):
                return None
            # A job parked for this task as its window closed: one more look, then leave.
            claimed = dispatch.take_next(worker, lease, task_arn, idle=True, finished=finished)
            if claimed is not None:
                return claimed
            break
        sleep(poll_seconds)
    dispatch.leave_idle(worker, lease, unless_waiting=False)
    return None
