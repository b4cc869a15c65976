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

from jobcontract.dispatch_claims import Claims
from jobcontract.dispatch_keys import (
    CPU_UNITS_PER_VCPU,
    DISPATCH_PREFIX,
    DRAIN_GROUP,
    DRAIN_MESSAGE,
    KIND_DISPATCH,
    KIND_SLOT,
    SLOT_PREFIX,
    STACK_PK,
    F,
    drain_message,
    slot_key,
    slot_key_prefix,
    vcpu_budget_units,
    worker_key,
)
from jobcontract.dispatch_ops import (
    TRANSACTION_BYTES,
    TRANSACTION_ITEMS,
    Claimed,
    Refusal,
    TransactionRefused,
)
from jobcontract.dispatch_plan import Plan, WorkerLoad, fits, plan
from jobcontract.dispatch_reuse import Reuse, Sleep, wait_for_next
from jobcontract.dispatch_slots import Slots

__all__ = [
    "CPU_UNITS_PER_VCPU",
    "DISPATCH_PREFIX",
    "DRAIN_GROUP",
    "DRAIN_MESSAGE",
    "KIND_DISPATCH",
    "KIND_SLOT",
    "SLOT_PREFIX",
    "STACK_PK",
    "TRANSACTION_BYTES",
    "TRANSACTION_ITEMS",
    "Claimed",
    "Dispatch",
    "F",
    "Plan",
    "Refusal",
    "Sleep",
    "TransactionRefused",
    "WorkerLoad",
    "drain_message",
    "fits",
    "plan",
    "slot_key",
    "slot_key_prefix",
    "vcpu_budget_units",
    "wait_for_next",
    "worker_key",
]


class Dispatch(Claims, Slots, Reuse):
    """Dispatch-state operations on the jobs table, through a ``JobStore``'s client: claims
    (``dispatch_claims``), releases (``dispatch_slots``), warm reuse (``dispatch_reuse``),
    on the shared reads and operation builders (``dispatch_ops``)."""
