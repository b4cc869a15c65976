"""The worker registration record (``jobcontract.registration``): the one home of the item's
fields and defaults, written by the components and read by the handlers."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from jobcontract import DEFAULT_MAX_ATTEMPTS, DEFAULT_REUSE_IDLE_SECONDS, Env, WorkerField, store
from jobcontract.managed_instances import COMPUTE_MANAGED_INSTANCES
from jobcontract.registration import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TIMEOUT_SECONDS,
    RegistrationError,
    WorkerRegistration,
)
from tests.fixtures.registrations import MANAGED_INSTANCES_ONLY, assert_fargate_fields

TD = "arn:aws:ecs:us-east-1:123456789012:task-definition/ai-batch-dev-summarize:7"
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/ai-batch-dev-launch.fifo"
SPOT = ({"capacityProvider": "FARGATE_SPOT", "weight": 7, "base": 0},)
REQUIRED = {"name", "task_definition", "queue_url", "cpu", "memory", "max_cpu", "max_memory"}


def fargate(**changes: Any) -> WorkerRegistration:
    record = WorkerRegistration(
        name="summarize",
        description="Summaries",
        task_definition=TD,
        queue_url=QUEUE,
        dlq_url=QUEUE.replace("launch", "launch-dlq"),
        cpu=1024,
        memory=2048,
        max_cpu=4096,
        max_memory=8192,
        max_attempts=5,
        timeout_seconds=900,
        max_concurrency=25,
        capacity_strategy=SPOT,
        spot_fallback=True,
        input_schema={"type": "object", "required": ["text"]},
        architecture="X86_64",
        reuse_idle_seconds=0,
    )
    return dataclasses.replace(record, **changes)


def instance(**changes: Any) -> WorkerRegistration:
    chain = (
        ({"capacityProvider": "p-l4-spot", "weight": 1, "base": 0},),
        ({"capacityProvider": "p-l4-od", "weight": 1, "base": 0},),
    )
    fields: dict[str, Any] = {
        "compute": COMPUTE_MANAGED_INSTANCES,
        "launch_chain": chain,
        "capacity_strategy": chain[0],
        "spot_fallback": False,
        "startup_timeout_seconds": 600,
        "gpu_count": 1,
        "gpu_names": ("l4", "t4"),
        "network_mode": "host",
        "fallback_worker": "content-analyzer",
    }
    return fargate(**{**fields, **changes})


@pytest.mark.parametrize("make", [fargate, instance], ids=["fargate", "managed-instances"])
def test_round_trip_through_plain_and_wire_items(make: Any) -> None:
    record = make()
    assert WorkerRegistration.from_item(record.to_item()) == record
    wire = json.loads(json.dumps(record.to_dynamodb()))  # what the TableItem holds
    assert WorkerRegistration.from_item(store.from_item(wire)) == record
    assert record.validator.is_valid({"text": "x"}) and not record.validator.is_valid({})


def test_a_fargate_item_holds_no_managed_instances_field() -> None:
    assert_fargate_fields(fargate().to_item())
    assert set(instance().to_item()) >= MANAGED_INSTANCES_ONLY
    # A Fargate worker's chain is its one strategy (what the launcher walks first).
    assert fargate().launch_chain == (SPOT,)


def test_a_default_written_and_a_default_read_agree() -> None:
    """A record made with only the required fields, written, then read back from an item
    lacking every optional field (a registration older than those fields): the same record."""
    written = WorkerRegistration(
        name="w", task_definition=TD, queue_url=QUEUE, cpu=256, memory=512,
        max_cpu=256, max_memory=512,
    )  # fmt: skip
    item = written.to_item()
    minimal = {k: v for k, v in item.items() if k in REQUIRED - {"max_cpu", "max_memory"}}
    read = WorkerRegistration.from_item(minimal)
    assert read == written == WorkerRegistration.from_item(item)
    assert (read.max_attempts, read.timeout_seconds, read.max_concurrency) == (
        DEFAULT_MAX_ATTEMPTS,
        DEFAULT_TIMEOUT_SECONDS,
        DEFAULT_MAX_CONCURRENCY,
    )
    assert read.architecture == DEFAULT_ARCHITECTURE
    assert read.reuse_idle_seconds == DEFAULT_REUSE_IDLE_SECONDS
    assert (read.max_cpu, read.max_memory) == (256, 512)  # absent: the defaults' sizes
    assert read.launch_steps() == [[]]  # no strategy: the plain FARGATE launch type


def test_item_key_order_is_stable() -> None:
    """The deployed item is JSON text: a reordered key would show as a diff on every stack."""
    keys = list(instance().to_item())
    assert keys[:4] == ["pk", "kind", "created_at", WorkerField.NAME]
    assert keys.index(WorkerField.REUSE_IDLE_SECONDS) < keys.index(WorkerField.COMPUTE)
    assert keys[-1] == WorkerField.FALLBACK_WORKER


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"pk": "worker#w", WorkerField.NAME: "w"}, "worker#w: .cpu"),
        ({**fargate().to_item(), WorkerField.CPU: "lots"}, "lots"),
        ({**fargate().to_item(), WorkerField.COMPUTE: "lambda"}, "unknown compute"),
        ({**fargate().to_item(), WorkerField.INPUT_SCHEMA: '{"type": 3}'}, "worker#summarize"),
    ],
)
def test_a_malformed_item_names_the_registration(item: dict[str, Any], problem: str) -> None:
    with pytest.raises(RegistrationError, match=problem):
        WorkerRegistration.from_item(item)


def test_managed_instances_without_a_startup_timeout_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="start-up timeout"):
        instance(startup_timeout_seconds=None).to_item()


def test_the_runtime_defaults_attempts_as_a_registration_does() -> None:
    """A scheduled run records its own job from the environment (its task role cannot read
    the registration): without BATCH_WORKER_MAX_ATTEMPTS it allows what a registration
    without ``max_attempts`` allows."""
    from workers.runtime.settings import Settings

    settings = Settings.from_env({Env.JOBS_TABLE: "t", Env.RESULTS_BUCKET: "b"}, "w")
    minimal = {k: v for k, v in fargate().to_item().items() if k in REQUIRED}
    assert settings.max_attempts == WorkerRegistration.from_item(minimal).max_attempts
