"""moto announces sends and task starts to the local pollers (``local_pipeline.wakeups``):
whoever sends a message or runs a task, the poller waiting for it looks at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from local_pipeline import wakeups


@pytest.fixture
def moto_here() -> Iterator[str]:
    """A moto server in this process (the announcements are made by its backends)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client(service, endpoint_url=endpoint)


def test_a_send_and_a_run_task_wake_their_listeners(moto_here: str) -> None:
    sqs_seen, ecs_seen = threading.Event(), threading.Event()
    wakeups.subscribe(wakeups.SQS, sqs_seen.set)
    wakeups.subscribe(wakeups.ECS, ecs_seen.set)
    try:
        sqs = _client("sqs", moto_here)
        url = sqs.create_queue(QueueName="w")["QueueUrl"]
        assert not sqs_seen.is_set()  # creating a queue is not a send
        sqs.send_message(QueueUrl=url, MessageBody="x")
        assert sqs_seen.is_set()

        # RunTask/StopTask: the backend methods are wrapped (a Fargate RunTask through moto
        # needs the whole network the local pipeline provisions; its e2e tests run them).
        from moto.ecs.models import EC2ContainerServiceBackend

        for name in ("run_task", "stop_task"):
            assert hasattr(getattr(EC2ContainerServiceBackend, name), "__wrapped__"), name
        assert not ecs_seen.is_set()
        wakeups._announcing(lambda: None, wakeups.ECS)()
        assert ecs_seen.is_set()
    finally:
        wakeups.unsubscribe(wakeups.SQS, sqs_seen.set)
        wakeups.unsubscribe(wakeups.ECS, ecs_seen.set)
    sqs_seen.clear()
    sqs.send_message(QueueUrl=url, MessageBody="y")
    assert not sqs_seen.is_set()  # unsubscribed
