"""Local stand-ins for the Lambda service's pollers and EventBridge's timers.

- :class:`SqsPoller` does what an SQS event source mapping does: receive a batch, invoke the
  function with an ``aws:sqs`` event, delete what succeeded, leave what failed (reported in
  ``batchItemFailures``, or the whole batch on an exception) to come back after its
  visibility timeout. moto applies the queue's redrive policy on receive, so a message that
  keeps failing moves to the dead-letter queue as in AWS.
- :class:`Ticker` calls a function on a fixed period (the sweep's schedule rule).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("local_pipeline.events")

_RATE_RE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int | None:
    """``rate(10 minutes)`` -> 600; None for cron/at expressions."""
    m = _RATE_RE.match(expression.strip())
    if not m:
        return None
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2).rstrip("s")]


@dataclass(frozen=True)
class PolledQueue:
    queue_url: str
    queue_arn: str
    batch_size: int
    invoke: Callable[[dict[str, Any]], Any]
    max_concurrency: int = 1  # batches of this queue in flight at once


def sqs_event(messages: Sequence[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The Lambda event for a batch of received SQS messages."""
    records = []
    for m in messages:
        attributes = {k: str(v) for k, v in (m.get("Attributes") or {}).items()}
        message_attributes = {
            name: {
                "stringValue": a.get("StringValue"),
                "binaryValue": a.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": a.get("DataType"),
            }
            for name, a in (m.get("MessageAttributes") or {}).items()
        }
        records.append(
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.get("MD5OfBody"),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


class SqsPoller:
    """One thread polling every mapped queue in turn; each queue's batches are invoked on a
    pool, up to its mapping's maximum concurrency, as Lambda's pollers do. FIFO order holds
    as in AWS: SQS returns no message of a group while another of that group is in flight."""

    def __init__(
        self,
        sqs: Any,
        queues: Sequence[PolledQueue],
        *,
        region: str,
        poll_interval: float = 0.2,
        redelivery_seconds: int | None = None,
    ) -> None:
        self.sqs = sqs
        self.queues = list(queues)
        self.region = region
        self.poll_interval = poll_interval
        # None: failed messages return after the queue's own visibility timeout, as in AWS.
        self.redelivery_seconds = redelivery_seconds
        self.invocations = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._in_flight = {q.queue_url: 0 for q in self.queues}
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, sum(max(1, q.max_concurrency) for q in self.queues)),
            thread_name_prefix="local-lambda-sqs",
        )
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="local-sqs-poller", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Poll now rather than after the interval (something was probably sent). AWS's
        pollers long-poll, so a message reaches the function at once there too."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            received = 0
            for queue in self.queues:
                if self._stop.is_set():
                    return
                try:
                    received += self._dispatch(queue)
                except Exception as exc:
                    log.exception("polling %s failed", queue.queue_url)
                    self.errors.append(repr(exc))
            if not received:
                self._wake.wait(self.poll_interval)
                self._wake.clear()

    def _dispatch(self, queue: PolledQueue) -> int:
        """Receive a batch for ``queue`` if it has an invocation to spare, and invoke it on
        the pool. Returns messages received."""
        with self._lock:
            if self._in_flight[queue.queue_url] >= max(1, queue.max_concurrency):
                return 0
            self._in_flight[queue.queue_url] += 1
        try:
            messages = self._receive(queue)
        except BaseException:
            self._done(queue, wake=False)
            raise
        if not messages:
            self._done(queue, wake=False)  # nothing there: wait for a send or the interval
            return 0

        def run() -> None:
            try:
                self._invoke_and_settle(queue, messages)
            except Exception as exc:
                log.exception("settling a batch of %s failed", queue.queue_url)
                self.errors.append(repr(exc))
            finally:
                self._done(queue)

        self._pool.submit(run)
        return len(messages)

    def _done(self, queue: PolledQueue, *, wake: bool = True) -> None:
        with self._lock:
            self._in_flight[queue.queue_url] -= 1
        if wake:
            self._wake.set()  # an invocation is free again: look for more

    def poll_once(self, queue: PolledQueue) -> int:
        """Receive one batch from ``queue``, invoke, settle, on this thread. Returns
        messages received."""
        messages = self._receive(queue)
        if messages:
            self._invoke_and_settle(queue, messages)
        return len(messages)

    def _receive(self, queue: PolledQueue) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.sqs.receive_message(
            QueueUrl=queue.queue_url,
            MaxNumberOfMessages=max(1, min(queue.batch_size, 10)),
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        return found

    def _invoke_and_settle(self, queue: PolledQueue, messages: list[dict[str, Any]]) -> None:
        """Invoke the function with the batch; delete what succeeded, leave what failed (in
        ``batchItemFailures``, or all on an exception) for its visibility timeout."""
        with self._lock:
            self.invocations += 1
        failed: set[str]
        try:
            result = queue.invoke(sqs_event(messages, queue.queue_arn, self.region))
            failed = {
                str(f["itemIdentifier"]) for f in ((result or {}).get("batchItemFailures") or [])
            }
        except Exception as exc:
            log.exception("function for %s raised: the whole batch is retried", queue.queue_url)
            self.errors.append(repr(exc))
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=queue.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
        if failed and self.redelivery_seconds is not None:
            for m in messages:
                if m["MessageId"] in failed:
                    self.sqs.change_message_visibility(
                        QueueUrl=queue.queue_url,
                        ReceiptHandle=m["ReceiptHandle"],
                        VisibilityTimeout=self.redelivery_seconds,
                    )


class Ticker:
    """Calls ``action`` every ``period`` seconds on its own thread until stopped."""

    def __init__(self, name: str, period: float, action: Callable[[], Any]) -> None:
        self.name = name
        self.period = period
        self.action = action
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"local-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.action()
                self.runs += 1
            except Exception:
                log.exception("%s failed", self.name)
