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

import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws
from handlers.launch_drain import Drainer
from handlers.launch_ecs import LaunchFailed
from handlers.launch_jobs import LaunchOutcome, _dispatched, _is_resume, parse_message
from handlers.registry import get_worker
from jobcontract import Env, JobField, JobStatus, access_denied_error
from jobcontract.arrays import all_created, children_created, fanout_message, fanout_parent
from jobcontract.dispatch import DRAIN_MESSAGE, Claimed, Refusal
from jobcontract.managed_instances import retry_wait


class Launcher(Drainer):
    """One invocation's launcher: a batch's messages (``process``), then its drain."""

    def fan_out(self, parent_id: str) -> LaunchOutcome:
        """An array job's fan-out step (``{"fanout": id}``, sent by the API for a job with
        more children than it writes itself): its children from the manifest, parked, then
        drained after the batch; for a JSON Lines manifest the client uploaded, its
        validation comes first (``handlers.manifests``). A redelivery creates only what is
        missing."""
        from handlers import arrays  # only here: the launcher's cold start stays light

        parent = self.store.get(parent_id)
        if (
            parent is None
            or not parent.get(JobField.ARRAY)
            or not parent.get(JobField.INPUT_S3_KEY)
        ):
            return LaunchOutcome(parent_id, "skipped", detail="not an array job with a manifest")
        if JobStatus(parent[JobField.STATUS]).terminal:  # e.g. its manifest was invalid
            return LaunchOutcome(parent_id, "skipped", detail="array job ended")
        if all_created(parent):
            return LaunchOutcome(parent_id, "skipped", detail="children created already")
        if parent.get(JobField.CANCEL_REQUESTED):  # its unwritten shards count as cancelled
            return LaunchOutcome(parent_id, "skipped", detail="array job cancelled")
        worker = get_worker(self.store, str(parent[JobField.WORKER]))
        if worker is None:
            return LaunchOutcome(parent_id, "skipped", detail="worker is not registered")
        done = arrays.fan_out_from_manifest(self.store, worker, parent)
        made = children_created(done) - children_created(parent)
        self.parked += made
        going_on = done[JobField.STATUS] == JobStatus.RUNNING.value and not done.get(
            JobField.CANCEL_REQUESTED
        )  # a manifest that changed mid-write cancels the array job: no next step
        if going_on and not all_created(done):  # the next step, as its own message
            url = _aws.env(Env.LAUNCH_QUEUE_URL, "") or worker.queue_url
            _aws.client("sqs").send_message(QueueUrl=url, **fanout_message(parent_id))
        return LaunchOutcome(parent_id, "skipped", detail=f"{made} children created")

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
