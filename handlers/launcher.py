"""Launcher: the stack's launch queue (SQS FIFO) -> one Fargate task per claimed slot.

Per message ``{"job_id", "attempt"}``:

1. Read the job. Skip (delete the message) when it is gone, terminal, cancelled or the message
   is stale (its attempt is not the job's current one): duplicates are harmless.
2. Claim a slot and the job in one transaction (``jobcontract.dispatch``): ``QUEUED ->
   DISPATCHED`` with ``attempts + 1`` and the task's lease, conditional on the worker's cap,
   the stack's vCPU budget (``fargateVcpuLimit``), and on no older job of the worker waiting
   and no reuse task of it idle. Only one invocation can win a claim, so only one can launch
   this attempt.
3. No slot: the job *parks* (``waiting_since``) and its message is deleted: it waits in the
   jobs table, not in SQS (no receive spent, never the DLQ). After the batch the launcher
   drains: free slots go to parked jobs, oldest first per worker, the least-served worker
   first. Drain messages (``{"drain": true}``, sent by the reconciler when a task stopped and
   by the sweep) run the same drain.
4. ``RunTask`` with a ``clientToken`` derived from (job id, attempt): ECS treats a repeated
   call with the same token as the same launch (and replays its answer for 24 h). Spot
   without capacity falls back once to on-demand Fargate when the worker allows it. The job's
   ``launch`` map (``LaunchState``) records the switch before the fallback RunTask, and a
   new try after ECS answered "no task started", so a resumed launch repeats exactly the
   call whose outcome is unknown and a retry after a capacity shortage is not replayed.
   RunTask calls are paced by a token bucket: ECS allows 20 launches/s sustained with a burst
   of 100 per account and Region, shared here by the launcher's concurrent invocations.
5. Record the task ARN (conditional on DISPATCHED + attempt); the lease finds its task
   through the job it runs (``current_job``), so it needs no write of its own.

Throttling, capacity and transient errors leave the claim in place and return the message
as a batch item failure. When it comes back, a job that is DISPATCHED on the next attempt
with no task ARN is *resumed*: RunTask again with the same client token (so a launch whose
response was lost is not duplicated). Permanent launch errors (bad task definition, access
denied) fail the job and free its slot. A message that keeps failing lands in the DLQ, and
the sweep retries or fails a job left DISPATCHED without a task.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws
from handlers.launch_ecs import LaunchFailed
from handlers.launch_jobs import (
    JobLauncher,
    LaunchOutcome,
    _dispatched,
    _is_resume,
    parse_message,
    send_resume,
)
from handlers.registry import WorkerRegistration, get_worker, list_workers
from jobcontract import JobField, JobStatus, access_denied_error
from jobcontract.arrays import fanout_parent
from jobcontract.dispatch import DRAIN_MESSAGE, Claimed, Refusal, WorkerLoad, plan, worker_key
from jobcontract.dispatch import F as DispatchField
from jobcontract.managed_instances import retry_wait

PARALLEL_LAUNCHES = 8  # RunTask calls a drain makes side by side (boto3 clients are thread-safe)


class Launcher(JobLauncher):
    """One invocation's launcher: a batch's messages (``process``), then its drain. The drain
    launches side by side from this module's frames, so a pool thread's AWS calls are still
    made by the launcher as its stack shows (``tests/authz/recorder.py``)."""

    # --- one message ------------------------------------------------------------------
    def process(self, body: str) -> LaunchOutcome:
        """One message: a drain request, or a job to claim and launch (see the module doc).
        The job is read once; the claim transaction decides races (its refusal says why)."""
        if _is_drain(body):
            launched = self.drain()
            return LaunchOutcome("", "drained", detail=f"{len(launched)} launched")
        parent_id = fanout_parent(body)
        if parent_id is not None:
            return self.fan_out(parent_id)
        try:
            job_id, attempt = parse_message(body)
        except (ValueError, KeyError, TypeError) as exc:
            return LaunchOutcome("", "invalid", detail=str(exc))
        for _ in range(3):  # the job may move while we decide: decide again on what it is
            outcome = self._claim_and_launch(job_id, attempt)
            if outcome is not None:
                return outcome
        return LaunchOutcome(job_id, "retry", detail="claim kept conflicting")

    def _claim_and_launch(self, job_id: str, attempt: int) -> LaunchOutcome | None:
        """Decide this message from the job as it is; None: it changed meanwhile, again."""
        job = self.store.get(job_id)
        if job is None:
            return LaunchOutcome(job_id, "skipped", detail="no such job")
        settled = self._settled(job_id, job, attempt)
        if settled is not None:
            return settled
        worker = get_worker(self.store, str(job[JobField.WORKER]))
        if worker is None:
            status, attempts = JobStatus(job[JobField.STATUS]), int(job.get(JobField.ATTEMPTS, 0))
            return self._fail(job, status, attempts, "LaunchFailed", "worker is not registered")
        if _is_resume(job, attempt):
            return self._launch(job, worker)
        wait = retry_wait(job.get(JobField.RETRY_NOT_BEFORE), now_epoch())
        if wait > 0:  # its chain found no capacity: hold the message back, claim nothing
            return LaunchOutcome(
                job_id, "delayed", detail=f"no capacity: back off {wait} s", delay=wait
            )
        if job.get(JobField.WAITING_SINCE):
            return LaunchOutcome(job_id, "skipped", detail="job waits for a slot (parked)")
        try:
            runs = self._launch_registration(job, worker)
        except LaunchFailed as exc:
            return self._fail(job, JobStatus.QUEUED, attempt, "LaunchFailed", str(exc))
        # ``full``: the workers (by whose slots the job takes) a claim of this batch found at
        # their cap; their later jobs park without a claim bound to be refused.
        claimed: Claimed | str = Refusal.WORKER
        if runs.name not in self.full:
            claimed = self._claim(job, attempt, worker, runs, woken=False)
        if isinstance(claimed, Claimed):
            return self._launch(_dispatched(job, claimed), worker)
        if claimed in (Refusal.JOB, Refusal.TAKEN):
            return None
        if claimed in (Refusal.WORKER, Refusal.BUDGET):
            self.full.add(runs.name)
        if not self.dispatch.park(job_id, attempt, worker.name, job.get(JobField.CANCEL_REQUESTED)):
            return None
        self.parked += 1
        _aws.log("INFO", "job_waiting", job_id=job_id, attempt=attempt, reason=claimed)
        return LaunchOutcome(job_id, "waiting", detail=f"no slot ({claimed})")

    # --- drain ------------------------------------------------------------------------
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


def _is_drain(body: str) -> bool:
    return body.strip() == DRAIN_MESSAGE


def process_records(records: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """The SQS partial-batch response: failed message ids are redelivered by SQS."""
    launcher = Launcher()
    failures: list[dict[str, str]] = []
    failed_groups: set[str] = set()
    drains: list[str] = []  # drain requests: one drain after the batch answers them all
    for record in records:
        message_id = str(record.get("messageId", ""))
        group = str((record.get("attributes") or {}).get("MessageGroupId", ""))
        if _is_drain(str(record.get("body", ""))):
            drains.append(message_id)
            continue
        if group and group in failed_groups:
            # FIFO order within a message group: nothing after a failed message of the same
            # group may be processed before it (each job is its own group).
            failures.append({"itemIdentifier": message_id})
            continue
        if not _process_record(launcher, record, message_id):
            failures.append({"itemIdentifier": message_id})
            failed_groups.add(group)
    if drains or launcher.parked:
        failures.extend(_drain_after_batch(launcher, drains))
    return {"batchItemFailures": failures}


def _process_record(launcher: Launcher, record: dict[str, Any], message_id: str) -> bool:
    """One job's (or fan-out's) message; False: hand it back to SQS (a batch item failure,
    with its visibility backoff where one applies)."""
    try:
        outcome = launcher.process(str(record.get("body", "")))
    except (ClientError, BotoCoreError) as exc:  # DynamoDB/ECS trouble: try again later
        denied = access_denied_error(exc)
        if denied is not None and launcher.fail_denied(str(record.get("body", "")), denied):
            return True  # FAILED and reported: a redelivery would be denied again
        _aws.log("ERROR", "launcher_aws_error", message_id=message_id, error=str(exc))
        if denied is not None:
            _back_off(record)  # not even the failure could be recorded: no tight loop
        return False
    _aws.log(
        "INFO"
        if outcome.action in ("launched", "skipped", "waiting", "drained", "delayed")
        else "WARNING",
        f"launch_{outcome.action}",
        job_id=outcome.job_id or None,
        message_id=message_id,
        detail=outcome.detail,
    )
    if outcome.action == "delayed":  # back again when the job's back-off has passed
        _back_off(record, outcome.delay)
        return False
    if outcome.action in ("retry", "invalid"):
        # An invalid body is returned too: after maxReceiveCount it lands in the DLQ,
        # where it can be inspected, instead of vanishing.
        if outcome.action != "invalid":
            _back_off(record)
        return False
    return True


def _drain_after_batch(launcher: Launcher, drains: list[str]) -> list[dict[str, str]]:
    """Drain requests, and jobs parked in this batch (a slot may have freed between a refused
    claim and its park, before the release's drain could see that job): one drain after the
    batch hands out every free slot, however many asked. Returns the drain requests to hand
    back when it failed."""
    try:
        launched = launcher.drain()
    except (ClientError, BotoCoreError) as exc:  # redelivered; the sweep's is the backstop
        _aws.log("WARNING", "drain_failed", error=str(exc))
        return [{"itemIdentifier": m} for m in drains]
    _aws.log("INFO", "launch_drained", requests=len(drains), launched=len(launched))
    return []


BACKOFF_FIRST_SECONDS = 30
BACKOFF_MAX_SECONDS = 900


def retry_visibility(receive_count: int) -> int:
    """Visibility timeout for a message handed back for a retry (throttling, capacity): 30 s,
    doubling per receive, capped at 15 min. A job waiting for a slot does not come here (it
    parks). With the queue's maxReceiveCount of 20 a launch can be retried for about
    four hours before its message reaches the DLQ (where the DLQ alarm fires, and
    ``batchctl retry`` re-drives it)."""
    exponent = max(0, min(receive_count - 1, 10))
    return int(min(BACKOFF_FIRST_SECONDS * 2**exponent, BACKOFF_MAX_SECONDS))


def _queue_url(queue_arn: str, endpoint_url: str | None = None, client_region: str = "") -> str:
    """arn:<partition>:sqs:<region>:<account>:<name> -> its queue URL.

    The host is the SQS client's own endpoint when the client is in the queue's region: that
    is right in every partition (``.amazonaws.com.cn``, the ISO partitions' own DNS suffixes,
    a local endpoint) without a table of domains here. Otherwise the public pattern."""
    _, partition, _, region, account, name = queue_arn.split(":", 5)
    if endpoint_url and client_region == region:
        return f"{endpoint_url.rstrip('/')}/{account}/{name}"
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


def now_epoch() -> float:
    """The clock the back-off is read against (tests move it)."""
    return time.time()


def _back_off(record: dict[str, Any], seconds: int | None = None) -> None:
    """Best effort: without it the message simply returns after the queue's own timeout.
    ``seconds``: this visibility (a job's back-off), else the receive-count schedule."""
    try:
        receive_count = int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1))
        sqs = _aws.client("sqs")
        meta = getattr(sqs, "meta", None)  # absent on test doubles
        sqs.change_message_visibility(
            QueueUrl=_queue_url(
                str(record["eventSourceARN"]),
                getattr(meta, "endpoint_url", None),
                str(getattr(meta, "region_name", "")),
            ),
            ReceiptHandle=str(record["receiptHandle"]),
            VisibilityTimeout=seconds if seconds is not None else retry_visibility(receive_count),
        )
    except (KeyError, ValueError, ClientError, BotoCoreError) as exc:
        _aws.log("WARNING", "visibility_backoff_failed", error=str(exc))


def handler(event: dict[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    """Lambda entry point (SQS event source with ReportBatchItemFailures)."""
    return process_records(list(event.get("Records", [])))
