"""Workers on ECS Managed Instances at run time, against the real moto server: the launcher
walks the launch chain, one RunTask token per step, so a replayed message repeats the step
whose outcome is unknown and never launches twice.

moto's ECS places any provider but FARGATE/FARGATE_SPOT on container instances it does not
have, so ``InstanceEcs`` starts the task on FARGATE in moto and answers with the provider
asked for; capacity failures are scripted as in ``test_launcher`` (``FaultyEcs``)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from handlers import _aws, launcher
from jobcontract import JobField
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec
from tests.runtime.helpers import call, job_messages, sqs_event
from tests.runtime.test_launcher import (
    CAPACITY,
    CRASH_AFTER_LAUNCH,
    FaultyEcs,
    LauncherCrashed,
)


def _step(tier: str) -> tuple[dict[str, Any], ...]:
    return (
        {"capacityProvider": f"t-gpu-{tier}-spot", "weight": 1, "base": 0},
        {"capacityProvider": f"t-gpu-{tier}-od", "weight": 1, "base": 0},
    )


CHAIN = (_step("l4"), _step("a10g"), ({"capacityProvider": "t-gpu-l4-od", "weight": 1, "base": 0},))
GPU_ERROR = ("ClientException", "RESOURCE:GPU")  # no instance with a free GPU


class InstanceEcs:
    """The moto ECS client, where a Managed Instances provider's task starts on FARGATE and
    the answer names the provider the strategy asked for first."""

    def __init__(self) -> None:
        self.real = boto3.client("ecs")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def run_task(self, **kwargs: Any) -> Any:
        strategy = kwargs.get("capacityProviderStrategy") or []
        asked = strategy[0]["capacityProvider"] if strategy else None
        if asked and not asked.startswith("FARGATE"):
            kwargs = {**kwargs, "capacityProviderStrategy": [{"capacityProvider": "FARGATE"}]}
        resp = self.real.run_task(**kwargs)
        for task in resp.get("tasks", []):
            task["capacityProviderName"] = asked or task.get("capacityProviderName")
        return resp


def ecs_with(faults: list[Any]) -> FaultyEcs:
    fake = FaultyEcs(faults)
    fake.real = InstanceEcs()
    _aws.set_client("ecs", fake)
    return fake


@pytest.fixture
def res(pipeline_resources):
    return pipeline_resources(
        [
            WorkerSpec("gpu", launch_chain=CHAIN, fallback_worker="cpu", max_attempts=2),
            WorkerSpec("lone", launch_chain=CHAIN[:2], max_attempts=2, startup_timeout_seconds=300),
            WorkerSpec("host", launch_chain=CHAIN[:1], network_mode="host"),
            WorkerSpec("cpu", cpu=1024, memory=2048, timeout_seconds=1200),
        ]
    )


def submit(worker: str) -> str:
    status, body, _ = call("POST", "/jobs", {"worker": worker, "input": {"items": ["a"]}})
    assert status == 202, body
    return str(body["job_id"])


def deliver(res) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    messages = job_messages(res.workers["gpu"].queue_url)  # one launch queue for all
    return launcher.handler(sqs_event(res.workers["gpu"].queue_arn, messages), None), messages


def providers(fake: FaultyEcs) -> list[str]:
    return [c["capacityProviderStrategy"][0]["capacityProvider"] for c in fake.run_calls]


def test_a_capacity_failure_moves_to_the_next_step_under_a_new_token(res) -> None:
    fake = ecs_with([CAPACITY, GPU_ERROR])
    job_id = submit("gpu")
    out, _ = deliver(res)
    assert out == {"batchItemFailures": []}
    assert providers(fake) == ["t-gpu-l4-spot", "t-gpu-a10g-spot", "t-gpu-l4-od"]
    assert [c["capacityProviderStrategy"] for c in fake.run_calls] == [list(s) for s in CHAIN]
    assert len({c["clientToken"] for c in fake.run_calls}) == 3
    job = JobStore(res.table_name).get(job_id)
    assert job[JobField.STATUS] == "DISPATCHED" and job[JobField.TASK_ARN]
    assert job[JobField.LAUNCH] == {"attempt": 1, "tries": 0, "step": 2, "first": 0}
    assert job["capacity_provider"] == "t-gpu-l4-od"


def test_a_replayed_message_after_a_capacity_failure_runs_the_task_once(res) -> None:
    """Step 0 has no capacity, step 1 starts a task and the launcher dies before recording
    it. The redelivered message resumes step 1 under its token (ECS replays the task) and
    never goes back to step 0: one RunTask per step, one task."""
    fake = ecs_with([CAPACITY, CRASH_AFTER_LAUNCH])
    job_id = submit("gpu")
    messages = job_messages(res.workers["gpu"].queue_url)
    event = sqs_event(res.workers["gpu"].queue_arn, messages)
    with pytest.raises(LauncherCrashed):
        launcher.handler(event, None)
    assert launcher.handler(event, None) == {"batchItemFailures": []}
    tokens = [c["clientToken"] for c in fake.run_calls]
    assert len(tokens) == 3 and tokens[2] == tokens[1] != tokens[0], tokens
    assert providers(fake) == ["t-gpu-l4-spot", "t-gpu-a10g-spot", "t-gpu-a10g-spot"]
    tasks = boto3.client("ecs").list_tasks(cluster=res.cluster_arn, startedBy=job_id)["taskArns"]
    job = JobStore(res.table_name).get(job_id)
    assert tasks == [job[JobField.TASK_ARN]] and job[JobField.ATTEMPTS] == 1


def test_a_host_network_worker_gets_no_awsvpc_configuration(res) -> None:
    fake = ecs_with([])
    submit("host")
    assert deliver(res)[0] == {"batchItemFailures": []}
    assert "networkConfiguration" not in fake.run_calls[0]
