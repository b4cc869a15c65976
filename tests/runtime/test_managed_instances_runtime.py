"""Workers on ECS Managed Instances at run time, against the real moto server: the launcher
walks the launch chain (one RunTask token per step, so a replayed message never launches
twice) and hands an exhausted chain to the fallback worker; the reconciler retries the stops
Managed Instances adds, a capacity stop at the next step of the chain; the sweep stops a
task that waits for an instance too long, without touching the job's run timeout.

moto's ECS places any provider but FARGATE/FARGATE_SPOT on container instances it does not
have, so ``InstanceEcs`` starts the task on FARGATE in moto and answers with the provider
asked for; capacity failures are scripted as in ``test_launcher`` (``FaultyEcs``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from handlers import _aws, launcher
from handlers.sweep import Sweeper
from jobcontract import Env, JobField
from jobcontract.dispatch import DRAIN_MESSAGE, Dispatch
from jobcontract.managed_instances import StopKind
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec
from tests.runtime.helpers import call, job_messages, receive_all, sqs_event, stopped_event
from tests.runtime.test_launcher import (
    CAPACITY,
    CRASH_AFTER_LAUNCH,
    FaultyEcs,
    LauncherCrashed,
)
from tests.runtime.test_openapi_contract import DOC_PATH, resolve
from tests.runtime.test_reconciler import reconcile


def openapi_doc() -> dict[str, Any]:
    return dict(yaml.safe_load(DOC_PATH.read_text()))


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


def test_an_exhausted_chain_hands_the_job_to_the_fallback_worker(res) -> None:
    fake = ecs_with([CAPACITY, CAPACITY, GPU_ERROR])
    job_id = submit("gpu")
    out, _ = deliver(res)
    assert out == {"batchItemFailures": []} and len(fake.run_calls) == 3
    store = JobStore(res.table_name)
    job = store.get(job_id)
    assert job[JobField.STATUS] == "QUEUED" and job[JobField.ATTEMPTS] == 1
    assert job[JobField.ERROR]["type"] == StopKind.CAPACITY_UNAVAILABLE
    fallback = job[JobField.FALLBACK]
    assert (fallback["worker"], fallback["from"], fallback["attempt"]) == ("cpu", "gpu", 1)
    assert job[JobField.TASK_DEFINITION] == res.workers["cpu"].task_definition_arn
    assert job[JobField.MAX_ATTEMPTS] == 1 + 3  # the fallback worker's own budget from here
    counts, _ = Dispatch(store).counts()
    assert int(counts["gpu"].get("tasks", 0)) == 0  # the failed claim's slot was given back
    # The job view (GET /jobs/{id}, batchctl status) says so, in the documented shape.
    status, view, _ = call("GET", f"/jobs/{job_id}")
    assert status == 200 and view["worker"] == "gpu"
    assert view["fallback"] == fallback
    assert view["task_definition"] == res.workers["cpu"].task_definition_arn
    schema = resolve({"$ref": "#/components/schemas/Job"}, openapi_doc())
    OAS30Validator(schema).validate(view)
    # The next message launches the fallback worker's task: its definition, its Fargate
    # strategy, its size, one job per task (the lease is the GPU worker's).
    out, _ = deliver(res)
    assert out == {"batchItemFailures": []}
    run = fake.run_calls[-1]
    assert run["taskDefinition"] == res.workers["cpu"].task_definition_arn
    assert run["capacityProviderStrategy"][0]["capacityProvider"] == "FARGATE_SPOT"
    assert run["overrides"]["cpu"] == "1024" and "networkConfiguration" in run
    env = {e["name"]: e["value"] for e in run["overrides"]["containerOverrides"][0]["environment"]}
    assert env == {
        Env.JOB_ID: job_id,
        Env.JOB_ATTEMPT: "2",
        Env.REUSE_IDLE_SECONDS: "0",
        Env.HANDED_FROM: "gpu",  # the runtime runs a job of another worker only when told
    }
    job = store.get(job_id)
    assert job[JobField.STATUS] == "DISPATCHED" and job[JobField.ATTEMPTS] == 2
    assert job[JobField.TASK_ARN] and job["capacity_provider"] == "FARGATE_SPOT"


def deliver_kept(res) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``deliver`` as the event source mapping does it: received, not deleted (a message
    the launcher hands back stays in the queue, invisible for the timeout it set)."""
    url = res.workers["gpu"].queue_url
    got = (
        boto3.client("sqs")
        .receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=60
        )
        .get("Messages", [])
    )
    return launcher.handler(sqs_event(res.workers["gpu"].queue_arn, got), None), got


def visible_again(res, messages: list[dict[str, Any]]) -> None:
    """The messages a back-off held back, visible now (as after their visibility timeout)."""
    sqs = boto3.client("sqs")
    for m in messages:
        sqs.change_message_visibility(
            QueueUrl=res.workers["gpu"].queue_url,
            ReceiptHandle=m["ReceiptHandle"],
            VisibilityTimeout=0,
        )


def test_an_exhausted_chain_without_fallback_retries_then_fails(res, monkeypatch) -> None:
    fake = ecs_with([CAPACITY, GPU_ERROR, CAPACITY, CAPACITY])
    job_id = submit("lone")
    store = JobStore(res.table_name)
    assert deliver(res)[0] == {"batchItemFailures": []}
    job = store.get(job_id)
    assert job[JobField.STATUS] == "QUEUED" and job[JobField.ATTEMPTS] == 1
    assert job[JobField.ERROR]["type"] == "CapacityUnavailable"
    assert JobField.FALLBACK not in job
    # Not at once: the retry waits out its back-off (attempt 1: 15..30 s), claiming nothing.
    out, held = deliver_kept(res)
    assert out == {"batchItemFailures": [{"itemIdentifier": held[0]["MessageId"]}]}
    assert len(fake.run_calls) == 2 and store.get(job_id)[JobField.STATUS] == "QUEUED"
    assert deliver_kept(res)[1] == []  # invisible while it waits
    visible_again(res, held)
    later_ = float(job[JobField.RETRY_NOT_BEFORE]) + 1
    monkeypatch.setattr(launcher, "now_epoch", lambda: later_)
    assert deliver(res)[0] == {"batchItemFailures": []}  # attempt 2 walks the chain again
    assert providers(fake) == ["t-gpu-l4-spot", "t-gpu-a10g-spot"] * 2
    job = store.get(job_id)
    assert job[JobField.STATUS] == "FAILED" and job[JobField.ATTEMPTS] == 2
    assert job[JobField.ERROR]["type"] == "CapacityUnavailable"
    assert "launch chain" in job[JobField.ERROR]["message"]
    assert job_messages(res.workers["gpu"].queue_url) == []


def test_a_host_network_worker_gets_no_awsvpc_configuration(res) -> None:
    fake = ecs_with([])
    submit("host")
    assert deliver(res)[0] == {"batchItemFailures": []}
    assert "networkConfiguration" not in fake.run_calls[0]


def launched(res, worker: str) -> tuple[str, str]:
    ecs_with([])
    job_id = submit(worker)
    assert deliver(res)[0] == {"batchItemFailures": []}
    return job_id, str(JobStore(res.table_name).get(job_id)[JobField.TASK_ARN])


@pytest.mark.parametrize(
    ("stop_code", "reason", "kind"),
    [
        ("SpotInterruption", "Your Spot Task was interrupted.", StopKind.INSTANCE_RECLAIMED),
        ("TerminationNotice", "Instance scheduled for retirement", StopKind.INSTANCE_TERMINATED),
    ],
)
def test_a_reclaimed_instance_is_retried_on_the_same_chain_as_spot_is(
    res, stop_code: str, reason: str, kind: str
) -> None:
    store = JobStore(res.table_name)
    job_id, task = launched(res, "lone")
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    event = stopped_event(
        res.cluster_arn, task, exit_code=143, stop_code=stop_code, stopped_reason=reason
    )
    assert reconcile(event) == f"retry: {kind}"
    job = store.get(job_id)
    assert job[JobField.STATUS] == "QUEUED" and job[JobField.ERROR]["type"] == kind
    assert JobField.LAUNCH not in job  # the next attempt starts at the top of the chain
    # It counts as an attempt, as a Spot interruption does: attempt 2 of 2 is the last.
    assert deliver(res)[0] == {"batchItemFailures": []}
    task2 = str(store.get(job_id)[JobField.TASK_ARN])
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=2)
    again = stopped_event(
        res.cluster_arn, task2, exit_code=143, stop_code=stop_code, stopped_reason=reason
    )
    assert reconcile(again) == "final: FAILED"
    assert store.get(job_id)[JobField.ERROR]["type"] == kind


def test_a_capacity_stop_starts_the_retry_at_the_next_step(res) -> None:
    store = JobStore(res.table_name)
    job_id, task = launched(res, "lone")
    event = stopped_event(
        res.cluster_arn,
        task,
        exit_code=None,
        stop_code="TaskFailedToStart",
        stopped_reason="Capacity is unavailable at this time. Please try again later.",
    )
    assert reconcile(event) == "retry: CapacityUnavailable"
    job = store.get(job_id)
    assert job[JobField.LAUNCH] == {"attempt": 2, "tries": 0, "step": 1, "first": 1}
    fake = ecs_with([])
    assert deliver(res)[0] == {"batchItemFailures": []}
    assert providers(fake) == ["t-gpu-a10g-spot"]
    assert store.get(job_id)[JobField.ATTEMPTS] == 2


def test_a_capacity_stop_at_the_last_step_goes_to_the_fallback_worker(res) -> None:
    store = JobStore(res.table_name)
    ecs_with([CAPACITY, CAPACITY])  # the first launch ends on the chain's last step
    job_id = submit("gpu")
    assert deliver(res)[0] == {"batchItemFailures": []}
    task = str(store.get(job_id)[JobField.TASK_ARN])
    event = stopped_event(
        res.cluster_arn,
        task,
        exit_code=None,
        stop_code="TaskFailedToStart",
        stopped_reason="InsufficientInstanceCapacity: no g6.xlarge in us-east-1a",
    )
    assert reconcile(event) == "fallback: cpu"
    job = store.get(job_id)
    assert job[JobField.STATUS] == "QUEUED" and job[JobField.FALLBACK]["worker"] == "cpu"
    [message] = job_messages(res.workers["gpu"].queue_url)
    assert json.loads(message["Body"]) == {"job_id": job_id, "attempt": 1}


class WaitingEcs:
    """moto ECS whose tasks are still waiting for an instance (PROVISIONING), or RUNNING
    since ``started_at`` when given."""

    def __init__(self, started_at: datetime | None = None) -> None:
        self.real = boto3.client("ecs")
        self.started_at = started_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def describe_tasks(self, **kwargs: Any) -> Any:
        resp = self.real.describe_tasks(**kwargs)
        for task in resp.get("tasks", []):
            task.pop("startedAt", None)
            task["lastStatus"] = "PROVISIONING" if self.started_at is None else "RUNNING"
            if self.started_at is not None:
                task["startedAt"] = self.started_at
        return resp


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def stop_reason(res, task: str) -> str:
    described = boto3.client("ecs").describe_tasks(cluster=res.cluster_arn, tasks=[task])
    return str(described["tasks"][0].get("stoppedReason", ""))


def test_the_sweep_stops_a_task_waiting_for_an_instance_past_its_startup_timeout(
    res, monkeypatch
) -> None:
    monkeypatch.setenv("BATCH_DISPATCH_STALE_SECONDS", "200")  # shorter than the 300 s wait
    job_id, task = launched(res, "lone")
    _aws.set_client("ecs", WaitingEcs())
    # Past the generic dispatch limit, within the worker's start-up timeout: left alone.
    assert Sweeper(now=later(250)).run().stopped == []
    report = Sweeper(now=later(310)).run()
    assert report.stopped == [job_id]
    assert stop_reason(res, task).startswith("StartupTimeout: no instance after 3")
    assert stop_reason(res, task).endswith("(limit 300 s)")
    event = stopped_event(
        res.cluster_arn, task, exit_code=None, stop_code="UserInitiated",
        stopped_reason=stop_reason(res, task),
    )  # fmt: skip
    assert reconcile(event) == f"retry: {StopKind.STARTUP_TIMEOUT}"
    job = JobStore(res.table_name).get(job_id)
    assert job[JobField.LAUNCH]["step"] == 1  # the next attempt tries the next strategy


def test_a_task_that_got_its_instance_is_not_stopped_for_the_wait(res, monkeypatch) -> None:
    monkeypatch.setenv("BATCH_DISPATCH_STALE_SECONDS", "200")
    job_id, _ = launched(res, "lone")
    _aws.set_client("ecs", WaitingEcs(started_at=later(250)))  # ECS: RUNNING since 250 s
    assert Sweeper(now=later(310)).run().stopped == []
    assert Sweeper(now=later(460)).run().stopped == [job_id]  # never claimed: stale


def test_a_long_wait_for_an_instance_does_not_count_against_the_run_timeout(
    res, monkeypatch
) -> None:

    monkeypatch.setenv("BATCH_HEARTBEAT_STALE_SECONDS", "100000")
    store = JobStore(res.table_name)
    ecs_with([])
    job_id = submit("gpu")
    assert deliver(res)[0] == {"batchItemFailures": []}
    job = store.get(job_id)
    waited = (datetime.now(UTC) - timedelta(seconds=1200)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    store.update(
        job_id,
        status="DISPATCHED",
        set_fields={JobField.TIMESTAMPS: {**job[JobField.TIMESTAMPS], "DISPATCHED": waited}},
    )
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    assert int(store.get(job_id)[JobField.TIMEOUT_SECONDS]) == 900
    assert Sweeper(now=later(300)).run().stopped == []
    assert Sweeper(now=later(900 + 121)).run().stopped == [job_id]  # its own timeout still


# --- slots: a job handed to the fallback worker holds the fallback's slot -------------------
@pytest.fixture
def tight(pipeline_resources, monkeypatch):
    made = pipeline_resources(
        [
            WorkerSpec(
                "gpu", cpu=4096, memory=14336, max_cpu=4096, max_memory=14336,
                launch_chain=CHAIN[:1], fallback_worker="cpu", max_concurrency=1,
            ),
            WorkerSpec("cpu", cpu=1024, memory=2048, max_concurrency=1),
        ]
    )  # fmt: skip
    monkeypatch.setenv(Env.FARGATE_VCPU_LIMIT, "6")  # 6 vCPU: room for one of each
    return made


def counts(res) -> tuple[dict[str, dict[str, Any]], int]:
    return Dispatch(JobStore(res.table_name)).counts()


def held(res, worker: str) -> tuple[int, int, int]:
    item = counts(res)[0].get(worker) or {}
    return tuple(int(item.get(k, 0) or 0) for k in ("tasks", "cpu", "waiting"))  # type: ignore[return-value]


def handed_over(res) -> str:
    """A GPU job whose one-step chain found no capacity: QUEUED again for the fallback."""
    ecs_with([CAPACITY])
    job_id = submit("gpu")
    assert deliver(res)[0] == {"batchItemFailures": []}
    assert JobStore(res.table_name).get(job_id)[JobField.FALLBACK]["worker"] == "cpu"
    return job_id


def test_a_handed_over_job_holds_the_fallback_workers_slot_not_the_gpu_workers(tight) -> None:
    res = tight
    store = JobStore(res.table_name)
    job_id = handed_over(res)
    ecs_with([])
    assert deliver(res)[0] == {"batchItemFailures": []}  # the fallback's task starts
    job = store.get(job_id)
    assert job[JobField.STATUS] == "DISPATCHED" and job[JobField.ATTEMPTS] == 2
    assert held(res, "gpu") == (0, 0, 0)  # the GPU worker's one slot is free...
    assert held(res, "cpu") == (1, 1024, 0)  # ...the fallback's is taken, at its task cpu
    assert counts(res)[1] == 1024  # the stack's vCPU budget: the fallback's task cpu
    lease = Dispatch(store).get(f"slot#{job_id}-2")
    assert lease is not None and lease["for_worker"] == "cpu" and int(lease["cpu"]) == 1024
    # So a GPU job submitted now starts at once on the GPU worker's free slot.
    gpu_job = submit("gpu")
    assert deliver(res)[0] == {"batchItemFailures": []}
    assert store.get(gpu_job)[JobField.STATUS] == "DISPATCHED"
    assert held(res, "gpu") == (1, 4096, 0) and counts(res)[1] == 1024 + 4096
    # The fallback task's stop gives the slot back where it was taken.
    event = stopped_event(res.cluster_arn, str(job[JobField.TASK_ARN]), exit_code=0)
    reconcile(event)
    assert held(res, "cpu") == (0, 0, 0) and held(res, "gpu") == (1, 4096, 0)
    assert counts(res)[1] == 4096


def test_a_handed_over_job_waits_for_a_fallback_slot_and_takes_it_when_one_frees(tight) -> None:
    res = tight
    store = JobStore(res.table_name)
    ecs_with([])
    cpu_job = submit("cpu")
    assert deliver(res)[0] == {"batchItemFailures": []}  # the fallback worker's only slot
    job_id = handed_over(res)
    ecs_with([])
    assert deliver(res)[0] == {"batchItemFailures": []}
    job = store.get(job_id)
    assert job[JobField.STATUS] == "QUEUED" and job.get(JobField.WAITING_SINCE)  # parked
    assert held(res, "cpu") == (1, 1024, 0)
    assert held(res, "gpu") == (0, 0, 1)  # parked under its own worker, holding no slot
    cpu_task = str(store.get(cpu_job)[JobField.TASK_ARN])
    reconcile(stopped_event(res.cluster_arn, cpu_task, exit_code=0))  # frees it, drains
    fake = ecs_with([])
    drains = receive_all(res.workers["cpu"].queue_url)  # the reconciler's drain request
    assert [m["Body"] for m in drains] == [DRAIN_MESSAGE]
    event = sqs_event(res.workers["cpu"].queue_arn, drains)
    assert launcher.handler(event, None) == {"batchItemFailures": []}  # it wakes the job
    job = store.get(job_id)
    assert job[JobField.STATUS] == "DISPATCHED" and job[JobField.ATTEMPTS] == 2
    assert fake.run_calls[-1]["taskDefinition"] == res.workers["cpu"].task_definition_arn
    assert held(res, "cpu") == (1, 1024, 0) and held(res, "gpu") == (0, 0, 0)
    assert counts(res)[1] == 1024


def test_a_handed_over_job_is_woken_by_a_freed_fallback_slot_while_its_own_worker_is_full(
    tight,
) -> None:
    """The handed-over job waits parked under its own (GPU) worker for a slot of the fallback
    worker. The GPU worker's one slot is busy with a GPU job, so the fallback's freed slot is
    the only one it can take: the drain that follows must hand it that slot (the plan of own
    worker slots alone never wakes it), within the stack budget, and launch it once."""
    res = tight
    store = JobStore(res.table_name)
    ecs_with([])
    cpu_job = submit("cpu")
    assert deliver(res)[0] == {"batchItemFailures": []}  # the fallback worker's only slot
    job_id = handed_over(res)
    ecs_with([])
    gpu_job = submit("gpu")
    assert deliver(res)[0] == {"batchItemFailures": []}  # parks the handed job; the GPU job
    assert store.get(job_id).get(JobField.WAITING_SINCE)  # ...takes the GPU slot (drain)
    assert store.get(gpu_job)[JobField.STATUS] == "DISPATCHED"
    assert held(res, "gpu") == (1, 4096, 1) and held(res, "cpu") == (1, 1024, 0)
    assert counts(res)[1] == 4096 + 1024  # 5 of the 6 vCPU
    reconcile(stopped_event(res.cluster_arn, str(store.get(cpu_job)[JobField.TASK_ARN])))
    fake = ecs_with([])
    drains = receive_all(res.workers["cpu"].queue_url)
    assert [m["Body"] for m in drains] == [DRAIN_MESSAGE]
    event = sqs_event(res.workers["cpu"].queue_arn, drains)
    assert launcher.handler(event, None) == {"batchItemFailures": []}
    job = store.get(job_id)
    assert job[JobField.STATUS] == "DISPATCHED" and job[JobField.ATTEMPTS] == 2
    assert not job.get(JobField.WAITING_SINCE) and job[JobField.TASK_ARN]
    assert [c["taskDefinition"] for c in fake.run_calls] == [res.workers["cpu"].task_definition_arn]
    assert held(res, "cpu") == (1, 1024, 0) and held(res, "gpu") == (1, 4096, 0)
    assert counts(res)[1] == 4096 + 1024
    # A repeated drain finds nothing to start: no second task, counts unchanged.
    assert launcher.handler(sqs_event(res.workers["cpu"].queue_arn, drains), None) == {
        "batchItemFailures": []
    }
    assert len(fake.run_calls) == 1 and held(res, "cpu") == (1, 1024, 0)


def test_a_freed_fallback_slot_wakes_a_handed_over_job_only_within_the_stack_budget(
    tight, monkeypatch
) -> None:
    """As above, but the budget shrinks to 4.5 vCPU while the GPU task (4) runs: the freed
    fallback slot's drain must not start the 1-vCPU fallback task past it (the claim's
    conditional write refuses, nothing runs, the job stays parked and counted); the GPU
    task's stop then leaves room, and that drain starts it, once."""
    res = tight
    store = JobStore(res.table_name)
    ecs_with([])
    cpu_job = submit("cpu")
    assert deliver(res)[0] == {"batchItemFailures": []}
    job_id = handed_over(res)
    ecs_with([])
    gpu_job = submit("gpu")
    assert deliver(res)[0] == {"batchItemFailures": []}
    assert held(res, "gpu") == (1, 4096, 1) and counts(res)[1] == 4096 + 1024
    monkeypatch.setenv(Env.FARGATE_VCPU_LIMIT, "4.5")
    reconcile(stopped_event(res.cluster_arn, str(store.get(cpu_job)[JobField.TASK_ARN])))
    fake = ecs_with([])
    drains = receive_all(res.workers["cpu"].queue_url)
    assert launcher.handler(sqs_event(res.workers["cpu"].queue_arn, drains), None) == {
        "batchItemFailures": []
    }
    assert fake.run_calls == [] and store.get(job_id).get(JobField.WAITING_SINCE)
    assert held(res, "cpu") == (0, 0, 0) and held(res, "gpu") == (1, 4096, 1)
    assert counts(res)[1] == 4096
    reconcile(stopped_event(res.cluster_arn, str(store.get(gpu_job)[JobField.TASK_ARN])))
    drains = receive_all(res.workers["cpu"].queue_url)
    assert [m["Body"] for m in drains] == [DRAIN_MESSAGE]
    assert launcher.handler(sqs_event(res.workers["cpu"].queue_arn, drains), None) == {
        "batchItemFailures": []
    }
    job = store.get(job_id)
    assert job[JobField.STATUS] == "DISPATCHED" and len(fake.run_calls) == 1
    assert held(res, "cpu") == (1, 1024, 0) and held(res, "gpu") == (0, 0, 0)
    assert counts(res)[1] == 1024


# --- back-off after the whole chain found no capacity ---------------------------------------
def test_a_retry_after_an_exhausted_chain_backs_off_and_keeps_its_launch_records(
    res, monkeypatch
) -> None:
    """Attempt 1 finds no capacity anywhere: the job is QUEUED with a back-off deadline
    15..30 s away; its message, delivered meanwhile, is held back for exactly the time left
    (a visibility timeout, FIFO has no per-message delay) and nothing is claimed or run.
    After the deadline attempt 2 launches under its own token, from the chain's top."""
    import time as clock

    fake = ecs_with([CAPACITY, GPU_ERROR])
    store = JobStore(res.table_name)
    job_id = submit("lone")
    before = clock.time()
    assert deliver(res)[0] == {"batchItemFailures": []}
    job = store.get(job_id)
    wait = float(job[JobField.RETRY_NOT_BEFORE]) - before
    assert 15 - 1 <= wait <= 30 + 1, wait
    calls: list[dict[str, Any]] = []
    real = launcher._back_off
    monkeypatch.setattr(
        launcher, "_back_off", lambda record, seconds=None: (calls.append({"s": seconds}),
                                                             real(record, seconds))
    )  # fmt: skip
    out, held = deliver_kept(res)
    assert out["batchItemFailures"] == [{"itemIdentifier": held[0]["MessageId"]}]
    assert len(calls) == 1 and 0 < calls[0]["s"] <= 31 and len(fake.run_calls) == 2
    job = store.get(job_id)
    assert job[JobField.STATUS] == "QUEUED" and job[JobField.ATTEMPTS] == 1  # no claim
    assert deliver_kept(res)[1] == []  # held back: invisible for the time left
    visible_again(res, held)
    monkeypatch.setattr(launcher, "now_epoch", lambda: float(job[JobField.RETRY_NOT_BEFORE]))
    assert deliver(res)[0] == {"batchItemFailures": []}
    tokens = [c["clientToken"] for c in fake.run_calls]
    assert providers(fake) == ["t-gpu-l4-spot", "t-gpu-a10g-spot", "t-gpu-l4-spot"]
    assert len(set(tokens)) == 3  # attempt 2's token is its own: nothing replayed
    job = store.get(job_id)
    assert job[JobField.STATUS] == "DISPATCHED" and job[JobField.ATTEMPTS] == 2
