"""The speed-ups in ``local_pipeline.moto_fidelity`` give moto's own answers (they exist only
because the fault test's single moto process was its bottleneck)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from moto.core.utils import unix_time
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs.models import SQSBackend

from local_pipeline import moto_fidelity


class _Message:
    def __init__(self, sent_seconds_ago: float) -> None:
        self.sent_timestamp = int((unix_time() - sent_seconds_ago) * 1000)


@pytest.fixture
def sqs_backend() -> Any:
    backend = SQSBackend("us-east-1", "123456789012")
    backend.create_queue("retention-test", MessageRetentionPeriod="60")
    return backend


def test_retention_check_answers_like_moto(sqs_backend: Any) -> None:
    moto_fidelity.apply_fixes()
    patched = SQSBackend.is_message_valid_based_on_retention_period
    original = moto_fidelity.original_of(patched)
    for age in (0, 30, 59, 61, 3600):
        message = _Message(age)
        assert patched(sqs_backend, "retention-test", message) == original(
            sqs_backend, "retention-test", message
        ) == (age < 60), age


def test_retention_check_does_not_scan_the_queue(sqs_backend: Any) -> None:
    """The reason for the fix: moto's check costs O(messages) per message received."""
    moto_fidelity.apply_fixes()
    patched = SQSBackend.is_message_valid_based_on_retention_period
    original = moto_fidelity.original_of(patched)
    for i in range(300):
        sqs_backend.send_message("retention-test", f"m{i}")
    message = _Message(1)

    def seconds(check: Any) -> float:
        started = time.perf_counter()
        for _ in range(20):
            check(sqs_backend, "retention-test", message)
        return time.perf_counter() - started

    assert seconds(patched) * 20 < seconds(original)


def test_backend_lookup_is_remembered_with_moto_answers() -> None:
    moto_fidelity.apply_fixes()
    app = DomainDispatcherApplication(create_app=lambda backend: backend)
    patched = DomainDispatcherApplication.get_backend_for_host
    original = moto_fidelity.original_of(patched)
    hosts = [None, "moto_api", "sqs.us-east-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com",
             "s3.amazonaws.com", "ecs.eu-west-1.amazonaws.com"]
    for host in hosts * 2:
        assert patched(app, host) == original(app, host), host
