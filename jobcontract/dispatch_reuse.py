"""Warm reuse in the dispatch state (``jobcontract.dispatch``): a task that finished a job
takes its worker's oldest parked job on its own lease, or waits for one, counted idle."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from jobcontract import JobField
from jobcontract.dispatch_keys import (
    KIND_DISPATCH,
    F,
    worker_key,
)
from jobcontract.dispatch_ops import (
    Claimed,
    DispatchOps,
    TransactionRefused,
    _claimed,
    _none,
)


class Reuse(DispatchOps):
    """``Dispatch``'s warm reuse (a worker task's side)."""

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


Sleep = Callable[[float], None]


def wait_for_next(
    dispatch: Reuse,
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
