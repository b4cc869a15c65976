"""The local SQS event source: what it deletes, what it leaves for redelivery, and the DLQ."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from local_pipeline.event_sources import PolledQueue, SqsPoller, rate_seconds, sqs_event


def _sqs(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client("sqs", endpoint_url=endpoint)


@pytest.fixture
def queues(moto_reset: str) -> tuple[Any, str, str, str]:
    sqs = _sqs(moto_reset)
    dlq = sqs.create_queue(QueueName="p-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName="p.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": "300",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for n in range(3):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"n": n}),
            MessageGroupId=f"g{n}",
            MessageDeduplicationId=f"d{n}",
        )
    return sqs, url, arn, dlq


def _count(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def test_reported_failures_stay_and_the_rest_is_deleted(
    queues: tuple[Any, str, str, str],
) -> None:
    sqs, url, arn, _ = queues
    seen: list[dict[str, Any]] = []

    def launcher(event: dict[str, Any]) -> dict[str, Any]:
        seen.extend(event["Records"])
        failed = [r["messageId"] for r in event["Records"] if json.loads(r["body"])["n"] == 1]
        return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}

    poller = SqsPoller(
        sqs, [PolledQueue(url, arn, 10, launcher)], region="us-east-1", redelivery_seconds=0
    )
    assert poller.poll_once(poller.queues[0]) == 3
    record = seen[0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn
    assert record["attributes"]["MessageGroupId"].startswith("g")
    assert _count(sqs, url) == 1  # only the reported failure is left
    seen.clear()
    poller.poll_once(poller.queues[0])  # visible again at once (redelivery_seconds=0)
    assert [json.loads(r["body"])["n"] for r in seen] == [1]
    assert seen[0]["attributes"]["ApproximateReceiveCount"] == "2"


def test_a_raising_function_leaves_the_batch_and_moto_redrives_it(
    queues: tuple[Any, str, str, str],
) -> None:
    sqs, url, arn, dlq = queues

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("launcher crashed")

    poller = SqsPoller(
        sqs, [PolledQueue(url, arn, 10, broken)], region="us-east-1", redelivery_seconds=0
    )
    for _ in range(3):
        poller.poll_once(poller.queues[0])
        time.sleep(0.05)
    assert len(poller.errors) == 2 and _count(sqs, url) == 0  # the third receive redrove
    assert _count(sqs, dlq) == 3


def test_sqs_event_and_rates() -> None:
    event = sqs_event(
        [{"MessageId": "m", "ReceiptHandle": "r", "Body": "{}", "Attributes": {"A": 1}}],
        "arn:q",
        "us-east-1",
    )
    assert event["Records"][0]["attributes"] == {"A": "1"}
    assert rate_seconds("rate(10 minutes)") == 600 and rate_seconds("rate(1 hour)") == 3600
    assert rate_seconds("cron(0 3 * * ? *)") is None


@pytest.mark.parametrize("concurrency", [1, 2])
def test_batches_run_side_by_side_up_to_the_mappings_maximum_concurrency(
    queues: tuple[Any, str, str, str], concurrency: int
) -> None:
    """Lambda runs up to the mapping's maximum concurrency batches at once (one message group
    each here): a slow batch does not hold up the others, and the cap holds."""
    import threading

    sqs, url, arn, _ = queues
    lock = threading.Lock()
    active, peak, seen = [0], [0], []

    def slow(event: dict[str, Any]) -> dict[str, Any]:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.5)
        with lock:
            active[0] -= 1
            seen.extend(json.loads(r["body"])["n"] for r in event["Records"])
        return {"batchItemFailures": []}

    poller = SqsPoller(
        sqs,
        [PolledQueue(url, arn, 1, slow, max_concurrency=concurrency)],
        region="us-east-1",
        poll_interval=0.05,
    )
    poller.start()
    try:
        deadline = time.monotonic() + 10
        while len(seen) < 3:
            assert time.monotonic() < deadline, f"only {seen} processed"
            time.sleep(0.05)
    finally:
        poller.stop()
    assert sorted(seen) == [0, 1, 2]
    assert peak[0] == concurrency
    assert _count(sqs, url) == 0


def test_a_fifo_group_is_never_in_two_batches_at_once(moto_reset: str) -> None:
    """Concurrency never breaks FIFO order: while a group's message is in flight, SQS returns
    no later message of that group, so one group's messages are processed in order."""
    import threading

    sqs = _sqs(moto_reset)
    url = sqs.create_queue(QueueName="order.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for n in range(6):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"n": n}),
            MessageGroupId="one-group",
            MessageDeduplicationId=f"o{n}",
        )
    lock = threading.Lock()
    order: list[int] = []
    active, peak = [0], [0]

    def record(event: dict[str, Any]) -> dict[str, Any]:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
            order.extend(json.loads(r["body"])["n"] for r in event["Records"])
        return {"batchItemFailures": []}

    poller = SqsPoller(
        sqs, [PolledQueue(url, arn, 2, record, max_concurrency=4)], region="us-east-1"
    )
    poller.poll_interval = 0.02
    poller.start()
    try:
        deadline = time.monotonic() + 10
        while len(order) < 6:
            assert time.monotonic() < deadline, f"only {order} processed"
            time.sleep(0.05)
    finally:
        poller.stop()
    assert order == list(range(6)) and peak[0] == 1


def test_an_empty_queue_is_polled_once_per_interval_not_in_a_loop(moto_reset: str) -> None:
    """Idle, the poller waits its interval between empty receives (it used to spin: each
    empty receive woke it again), so the emulation leaves the CPU to what it runs."""
    sqs = _sqs(moto_reset)
    url = sqs.create_queue(QueueName="idle.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    receives = [0]

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(sqs, name)

        def receive_message(self, **kwargs: Any) -> Any:
            receives[0] += 1
            return sqs.receive_message(**kwargs)

    poller = SqsPoller(
        Counting(),
        [PolledQueue(url, "arn:aws:sqs:us-east-1:123456789012:idle.fifo", 10, lambda e: None)],
        region="us-east-1",
        poll_interval=0.2,
    )
    poller.start()
    time.sleep(1.0)
    poller.stop()
    assert 2 <= receives[0] <= 8, receives[0]
