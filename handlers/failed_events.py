"""The sweep's redrive of the reconciler's failed events (``Env.FAILED_EVENTS_URL``).

An ECS event the reconciler failed on every asynchronous attempt is not lost: Lambda puts
its invocation record on the reconciler's on-failure destination (a standard SQS queue,
``components.failed_events``), the original event as ``requestPayload``. Most such events
the sweep would fix anyway from the job row, but a scheduled array run has no row until the
reconciler makes its parent from the STOPPED event, so here every sweep takes a bounded
batch of records (``RECEIVES`` x 10, within ``BUDGET_SECONDS``), hands each event to
``Reconciler.handle_event`` (the reconciler Lambda's own path; a repeated event creates
only what is missing) and deletes the record only once it was handled. A record whose
handling fails again stays, hidden for the queue's visibility timeout, for a later sweep;
one that holds no ECS task event is logged and deleted, so it never blocks the queue.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws
from jobcontract import ECS_EVENT_SOURCE, ECS_TASK_STATE_CHANGE, Env

if TYPE_CHECKING:
    from handlers.reconciler import Reconciler

RECEIVES = 3  # receives per sweep, of at most 10 records each
BUDGET_SECONDS = 30.0  # no receive starts after this (the sweep has other work)
NOT_AN_ECS_EVENT = "dropped: not an ECS task event"


def redrive(reconciler: Reconciler) -> dict[str, str]:
    """Handle the queue's records now; ``{message id: outcome}`` of the records taken (an
    outcome starting with ``kept:`` stays on the queue). No queue configured: nothing."""
    url = _aws.env(Env.FAILED_EVENTS_URL, "")
    if not url:
        return {}
    sqs = _aws.client("sqs")
    outcomes: dict[str, str] = {}
    started = time.monotonic()
    for _ in range(RECEIVES):
        if time.monotonic() - started > BUDGET_SECONDS:
            break
        try:
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
        except (ClientError, BotoCoreError) as exc:  # the rest of the sweep still runs
            _aws.log("WARNING", "failed_events_unread", error=str(exc))
            break
        if not messages:
            break
        for message in messages:
            outcome = handle_record(reconciler, str(message.get("Body") or ""))
            outcomes[str(message.get("MessageId"))] = outcome
            if not outcome.startswith("kept:"):
                _delete(sqs, url, message)
    return outcomes


def handle_record(reconciler: Reconciler, body: str) -> str:
    """One invocation record: its event handed to the reconciler, or why not."""
    event = ecs_event_of(body)
    if event is None:
        _aws.log("WARNING", "failed_event_dropped", body=body[:500])
        return NOT_AN_ECS_EVENT
    task_arn = (event.get("detail") or {}).get("taskArn")
    try:
        outcome = reconciler.handle_event(event)
    except Exception as exc:  # any failure: the record stays for a later sweep
        _aws.log("WARNING", "failed_event_kept", task_arn=task_arn, error=str(exc))
        return f"kept: {type(exc).__name__}"
    _aws.log("INFO", "failed_event_redriven", task_arn=task_arn, outcome=outcome)
    return outcome


def ecs_event_of(body: str) -> dict[str, Any] | None:
    """The ECS task event a Lambda invocation record carries as ``requestPayload``."""
    try:
        record = json.loads(body)
    except ValueError:
        return None
    payload = record.get("requestPayload") if isinstance(record, dict) else None
    if not isinstance(payload, dict) or not isinstance(payload.get("detail"), dict):
        return None
    kind = (payload.get("source"), payload.get("detail-type"))
    if kind != (ECS_EVENT_SOURCE, ECS_TASK_STATE_CHANGE):
        return None
    return payload


def _delete(sqs: Any, url: str, message: dict[str, Any]) -> None:
    """Delete a handled record; if that fails it comes back and is handled again (harmless:
    the reconciler's writes are conditional)."""
    try:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    except (ClientError, BotoCoreError) as exc:
        _aws.log("WARNING", "failed_event_undeleted", error=str(exc))
