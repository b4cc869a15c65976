"""AWS request rules moto does not enforce (it accepts over-long ids, any characters and
unknown enum values), checked on the requests the handlers really build, with the longest
names the contract allows: ECS RunTask/StopTask and every SQS FIFO send."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest

from cli.commands import redrive
from handlers import _aws, launcher
from handlers.sweep import redrive_dedup_id
from jobcontract import WORKER_NAME_MAX, new_job_id, queue_message
from tests.fixtures.moto_server import WorkerSpec
from tests.runtime.helpers import receive_all, sqs_event
from tests.runtime.test_launcher import FaultyEcs, submit

# The longest worker name the contract allows (32 characters).
LONG_WORKER = ("w" + "-abcdefgh" * 4)[:WORKER_NAME_MAX]

# SQS: MessageGroupId / MessageDeduplicationId, 1..128 of alphanumerics and punctuation.
SQS_FIFO_ID = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")
# ECS RunTask startedBy: up to 128 letters, numbers, hyphens, forward slashes, underscores.
ECS_STARTED_BY = re.compile(r"^[A-Za-z0-9_/-]{1,128}$")
# ECS tag key/value character class (the model's pattern, ASCII part).
ECS_TAG = re.compile(r"^[A-Za-z0-9 _.:/=+\-@]*$")


def _ecs_shapes() -> Any:
    return botocore.session.get_session().get_service_model("ecs")


@pytest.fixture
def res(pipeline_resources):
    return pipeline_resources(
        [
            WorkerSpec(
                LONG_WORKER,
                capacity_strategy=({"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0},),
            )
        ]
    )


def test_long_worker_name_is_the_contract_maximum() -> None:
    assert len(LONG_WORKER) == WORKER_NAME_MAX


def test_run_task_requests_meet_ecs_rules(res) -> None:
    capacity = {"tasks": [], "failures": [{"reason": "Capacity is unavailable at this time."}]}
    fake = FaultyEcs([capacity])  # Spot first, then the on-demand fallback: both requests
    _aws.set_client("ecs", fake)
    submit(LONG_WORKER)
    messages = receive_all(res.workers[LONG_WORKER].queue_url)
    launcher.handler(sqs_event(res.workers[LONG_WORKER].queue_arn, messages), None)
    assert len(fake.run_calls) == 2
    model = _ecs_shapes()
    propagate = model.shape_for("PropagateTags").enum
    tokens = []
    for call in fake.run_calls:
        token = call["clientToken"]
        tokens.append(token)
        assert 1 <= len(token) <= 64 and all(33 <= ord(c) <= 126 for c in token)
        assert ECS_STARTED_BY.match(call["startedBy"])
        assert call["propagateTags"] in propagate and call["propagateTags"] != "SERVICE"
        assert len(call["tags"]) <= 50
        for tag in call["tags"]:
            assert 1 <= len(tag["key"]) <= 128 and len(tag["value"]) <= 256
            assert ECS_TAG.match(tag["key"]) and ECS_TAG.match(tag["value"])
            assert not tag["key"].lower().startswith("aws:")
        overrides = call["overrides"]
        assert isinstance(overrides["cpu"], str) and isinstance(overrides["memory"], str)
        # Fargate takes a capacity provider strategy or a launch type, never both.
        assert ("capacityProviderStrategy" in call) != ("launchType" in call)
        vpc = call["networkConfiguration"]["awsvpcConfiguration"]
        assert vpc["assignPublicIp"] in model.shape_for("AssignPublicIp").enum
    assert tokens[0] != tokens[1]  # the fallback is its own launch decision


def test_fifo_ids_of_every_send_path_meet_sqs_rules() -> None:
    job_id = new_job_id(LONG_WORKER)
    big_attempt = 10**6
    message = queue_message(job_id, big_attempt)
    ids = [
        message["MessageGroupId"],
        message["MessageDeduplicationId"],
        redrive_dedup_id(job_id, big_attempt, datetime(2099, 12, 31, tzinfo=UTC)),
    ]
    for value in ids:
        assert SQS_FIFO_ID.match(value), value


class _RecordingSqs:
    """Just enough SQS for ``batchctl retry``: one DLQ message, sends recorded."""

    def __init__(self, dedup: str) -> None:
        self.dedup = dedup
        self.sent: list[dict[str, Any]] = []
        self.pending = [
            {
                "MessageId": "m-1",
                "ReceiptHandle": "r-1",
                "Body": "{}",
                "Attributes": {"MessageGroupId": "g", "MessageDeduplicationId": dedup},
            }
        ]

    def receive_message(self, **_: Any) -> dict[str, Any]:
        got, self.pending = self.pending, []
        return {"Messages": got}

    def send_message(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)

    def delete_message(self, **_: Any) -> None:
        pass


def test_dlq_retry_sends_a_fresh_valid_deduplication_id() -> None:
    """The original id may be inside FIFO's 5-minute window: the re-send needs its own, and a
    maximal (128-character) original must still give a valid one."""
    original = "x" * 128
    sqs = _RecordingSqs(original)
    assert redrive(sqs, "dlq", "queue") == 1
    sent = sqs.sent[0]["MessageDeduplicationId"]
    assert sent != original and SQS_FIFO_ID.match(sent)


def test_stop_task_reasons_fit_255_characters(res) -> None:
    stops: list[dict[str, Any]] = []

    class StopRecorder:
        def stop_task(self, **kwargs: Any) -> None:
            stops.append(kwargs)

    lau = launcher.Launcher()
    lau.ecs = StopRecorder()
    job_id = new_job_id(LONG_WORKER)
    lau._stop("arn:aws:ecs:r:1:task/c/t", job_id, "x" * 400)
    assert len(stops[0]["reason"]) <= 255
