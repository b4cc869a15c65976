"""The launcher's drain: hand the free slots to parked jobs (``jobcontract.dispatch.plan``),
oldest first per worker, the least-served worker first, then a fallback worker's free slots
to the jobs handed to it; claimed jobs are launched side by side."""

from __future__ import annotations

import contextlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws
from handlers.launch_ecs import LaunchFailed
from handlers.launch_jobs import JobLauncher, LaunchOutcome, _dispatched, send_resume
from handlers.registry import WorkerRegistration, list_workers
from jobcontract import JobField, JobStatus
from jobcontract.dispatch import Claimed, Refusal, WorkerLoad, plan, worker_key
from jobcontract.dispatch import F as DispatchField

PARALLEL_LAUNCHES = 8  # RunTask calls a drain makes side by side (boto3 clients are thread-safe)


class Drainer(JobLauncher):
    """The drain of ``Launcher`` (a drain request, or the end of a batch that parked jobs)."""

    def drain(self) -> list[LaunchOutcome]:
        """Hand the free slots to parked jobs (``jobcontract.dispatch.plan``): per worker its
        oldest first, the worker with the least cpu in use first; mark the workers whose
        reuse should yield a contended budget."""
        counts, used = self.dispatch.counts()
        workers = {w.name: w for w in list_workers(self.store)}
        loads = [
            WorkerLoad.of(name, w.max_concurrency, w.cpu, counts.get(name))
            for name, w in workers.items()
        ]
        if not any(load.waiting for load in loads):
            # Nothing parked, yet a drain was asked: the stack's parked count may be high (a
            # warm task took a job, a parked job was cancelled); heal it, or every freed slot
            # keeps asking for drains.
            with contextlib.suppress(ClientError, BotoCoreError):  # the next drain heals it
                self.dispatch.heal_stack_waiting(workers)
        decided = plan(loads, used, self.dispatch.budget)
        for name in workers:
            if bool((counts.get(name) or {}).get(DispatchField.YIELD)) != (
                name in decided.yielding
            ):
                self.dispatch.set_yield(name, name in decided.yielding)
        outcomes: list[LaunchOutcome] = []
        for name, slots in Counter(decided.wake).items():
            outcomes.extend(self._wake(workers[name], slots, counts.get(name) or {}))
        outcomes.extend(self._wake_handed(workers, counts))
        return outcomes

    def _wake_handed(
        self, workers: dict[str, WorkerRegistration], counts: dict[str, Any]
    ) -> list[LaunchOutcome]:
        """Jobs handed to a fallback worker wait parked under their own worker but take the
        fallback's slots, which the plan (own slots only) does not see: its own worker may
        be at its cap while the fallback has room. For each worker with parked jobs and a
        registered fallback, hand the fallback's free slots (read now, after the plan's
        claims) to its handed jobs, oldest first. Each claim is the same conditional
        transaction (the fallback's cap and idle count, the stack budget, the job still
        parked), so a slot is never given twice and a refusal leaves the job parked."""
        outcomes: list[LaunchOutcome] = []
        for name, worker in workers.items():
            fallback = workers.get(worker.fallback_worker or "")
            waiting = int((counts.get(name) or {}).get(DispatchField.WAITING, 0) or 0)
            if fallback is None or fallback.name == name or waiting <= 0:
                continue
            now = WorkerLoad.of(
                fallback.name,
                fallback.max_concurrency,
                fallback.cpu,
                self.dispatch.get(worker_key(fallback.name)),
            )
            if now.tasks < now.cap and now.idle == 0:
                outcomes.extend(self._wake(worker, now.cap - now.tasks, {}, handed=True))
        return outcomes

    def _wake(
        self,
        worker: WorkerRegistration,
        slots: int,
        counts: dict[str, Any],
        *,
        handed: bool = False,
    ) -> list[LaunchOutcome]:
        """Claim up to ``slots`` of the worker's parked jobs, oldest first, then launch them
        side by side (a handover waits for one RunTask, not for several in a row).
        ``handed``: only the jobs handed to its fallback worker, on that worker's slots."""
        parked = self.dispatch.parked(worker.name, slots + 2, handed=handed)
        if not parked:
            if not handed:  # none parked at all (a filtered answer says nothing of that)
                waiting = int(counts.get(DispatchField.WAITING, 0) or 0)
                self.dispatch.heal_waiting(worker.name, waiting)
            return []
        claimed_jobs: list[dict[str, Any]] = []
        for job in parked:
            if len(claimed_jobs) >= slots:
                break
            job_id, attempt = str(job[JobField.JOB_ID]), int(job.get(JobField.ATTEMPTS, 0))
            if job.get(JobField.CANCEL_REQUESTED):
                self._cancel_unlaunched(job_id, JobStatus.QUEUED, attempt)
                continue
            try:
                runs = self._launch_registration(job, worker)
            except LaunchFailed as exc:
                self._fail(job, JobStatus.QUEUED, attempt, "LaunchFailed", str(exc))
                continue
            claimed = self._claim(job, attempt, worker, runs, woken=True)
            if claimed == Refusal.JOB:
                continue  # cancelled or taken by a reuse task meanwhile: the next one
            if not isinstance(claimed, Claimed):
                if runs is not worker and not handed:
                    continue  # the fallback worker's slots are full: this worker's may not be
                break  # the slot (or the budget) went elsewhere meanwhile
            claimed_jobs.append(_dispatched(job, claimed))
        if len(claimed_jobs) <= 1:
            outcomes = [self._launch(job, worker) for job in claimed_jobs]
        else:
            with ThreadPoolExecutor(max_workers=min(PARALLEL_LAUNCHES, len(claimed_jobs))) as pool:
                outcomes = list(pool.map(lambda job: self._launch(job, worker), claimed_jobs))
        for outcome, job in zip(outcomes, claimed_jobs, strict=True):
            _aws.log("INFO", "job_woken", job_id=outcome.job_id, outcome=outcome.action)
            if outcome.action == "retry":
                # No message carries a woken job: give it one, so the launch is resumed (same
                # token) through the message path and its backoff, like any retried launch.
                send_resume(job, worker.queue_url)
        return outcomes
