"""The reconciler against the real moto server: retries, final failure + notification,
duplicate events, cancellation and scheduled runs."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from handlers import _aws, attempt_ends, launcher, reconciler
from handlers.stopped_task import StoppedTask
from jobcontract import Env, JobField, WorkerExit
from jobcontract.dispatch import Dispatch
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec, topic_tap
from tests.runtime.helpers import call, job_messages, receive_all, sqs_event, stopped_event


@pytest.fixture
def res(pipeline_resources):
    return pipeline_resources([WorkerSpec("echo", max_attempts=2)])


@pytest.fixture
def topic_queue(res) -> str:
    """An SQS queue subscribed to the failure topic: what was published can be read back."""
    return topic_tap(res.topic_arn, "failures-tap")


def launch(res) -> tuple[str, str]:
    """Submit a job and run the launcher: (job id, task ARN)."""
    status, body, _ = call("POST", "/jobs", {"worker": "echo", "input": {"items": ["a"]}})
    assert status == 202
    return body["job_id"], relaunch(res, body["job_id"])


def relaunch(res, job_id: str) -> str:
    messages = job_messages(res.workers["echo"].queue_url)
    assert [json.loads(m["Body"])["job_id"] for m in messages] == [job_id]
    out = launcher.handler(sqs_event(res.workers["echo"].queue_arn, messages), None)
    assert out == {"batchItemFailures": []}
    job = JobStore(res.table_name).get(job_id)
    return job[JobField.TASK_ARN]


def reconcile(event: dict[str, Any]) -> str:
    return reconciler.handler(event, None)["outcome"]


def test_spot_interruption_retries_then_final_failure_notifies(res, topic_queue) -> None:
    store = JobStore(res.table_name)
    job_id, task1 = launch(res)
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    event = stopped_event(
        res.cluster_arn,
        task1,
        exit_code=143,
        stop_code="SpotInterruption",
        stopped_reason="Your Spot Task was interrupted.",
    )
    assert reconcile(event) == "retry: SpotInterruption"
    job = store.get(job_id)
    assert job[JobField.STATUS] == "QUEUED" and job[JobField.ATTEMPTS] == 1
    assert JobField.TASK_ARN not in job
    assert job[JobField.ERROR]["type"] == "SpotInterruption"
    # The same event again changes nothing and sends nothing.
    assert reconcile(event).startswith("ignored")
    task2 = relaunch(res, job_id)  # exactly one retry message was sent
    assert store.get(job_id)[JobField.ATTEMPTS] == 2
    # Attempt 2 of 2 dies of OOM: final failure, published once.
    oom = stopped_event(
        res.cluster_arn,
        task2,
        exit_code=137,
        container_reason="OutOfMemoryError: Container killed due to memory usage",
    )
    assert reconcile(oom) == "final: FAILED"
    assert reconcile(oom) == "terminal: FAILED"
    job = store.get(job_id)
    assert job[JobField.STATUS] == "FAILED"
    assert job[JobField.ERROR] == {
        "type": "OutOfMemory",
        "message": "the container ran out of memory",
        "exit_code": 137,
        "stop_reason": "Essential container in task exited",
        "attempt": 2,
    }
    published = [json.loads(m["Body"]) for m in receive_all(topic_queue)]
    assert len(published) == 1
    assert published[0]["job_id"] == job_id and published[0]["status"] == "FAILED"
    assert published[0]["error"]["type"] == "OutOfMemory"
    assert job_messages(res.workers["echo"].queue_url) == []


def test_event_for_older_task_is_ignored(res) -> None:
    job_id, task1 = launch(res)
    store = JobStore(res.table_name)
    event = stopped_event(res.cluster_arn, task1, exit_code=1)
    assert reconcile(event) == "retry: WorkerError"
    task2 = relaunch(res, job_id)
    assert task2 != task1
    assert reconcile(event).startswith("ignored")
    assert store.get(job_id)[JobField.STATUS] == "DISPATCHED"


def test_access_denied_exit_fails_the_job_without_a_retry(res, topic_queue) -> None:
    """Exit 11: AWS denied the runtime a call it needs before it could record the job; a
    retry would be denied the same way, so the job fails (and is reported) on attempt 1."""
    job_id, task = launch(res)
    event = stopped_event(res.cluster_arn, task, exit_code=WorkerExit.ACCESS_DENIED)
    assert reconcile(event) == "final: FAILED"
    job = JobStore(res.table_name).get(job_id)
    assert job[JobField.STATUS] == "FAILED" and job[JobField.ATTEMPTS] == 1
    assert job[JobField.ERROR]["type"] == "AccessDenied"
    assert job_messages(res.workers["echo"].queue_url) == []  # nothing re-enqueued
    assert [json.loads(m["Body"])["job_id"] for m in receive_all(topic_queue)] == [job_id]


class TableCalls:
    """Counts the DynamoDB requests the handlers' client sends (botocore event hook)."""

    def __init__(self) -> None:
        self.ops: list[str] = []
        _aws.client("dynamodb").meta.events.register(
            "before-parameter-build.dynamodb", self._record
        )

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.ops.append(model.name)


def succeed(res, job_id: str) -> None:
    store = JobStore(res.table_name)
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    store.transition(job_id, "RUNNING", "SUCCEEDED", attempt=1)


def test_clean_exit_zero_costs_no_table_request(res, topic_queue) -> None:
    """Benchmark 1 budget: exit 0 + EssentialContainerExited = SUCCEEDED recorded; without a
    sink that reports successes the job is not read: only the task's lease is read and
    released (one transaction), and the stack's parked count read: no job waits, so no drain
    request (nor its receive, delete and launcher invocation) is spent."""
    job_id, task = launch(res)
    succeed(res, job_id)
    calls = TableCalls()
    assert reconcile(stopped_event(res.cluster_arn, task)).startswith("skipped: exit 0")
    assert calls.ops == ["GetItem", "TransactWriteItems", "GetItem"]
    assert receive_all(res.workers["echo"].queue_url) == []
    # The same event again: the lease is gone, nothing is released twice.
    calls.ops.clear()
    assert reconcile(stopped_event(res.cluster_arn, task)).startswith("skipped: exit 0")
    assert calls.ops == ["GetItem"] and receive_all(res.workers["echo"].queue_url) == []
    job = JobStore(res.table_name).get(job_id)
    assert job[JobField.STATUS] == "SUCCEEDED" and attempt_ends.NOTIFIED_AT not in job
    assert receive_all(topic_queue) == []


def test_a_freed_slot_asks_for_a_drain_while_any_job_of_the_stack_waits(res) -> None:
    """A job parked (of any worker: the stack's vCPU budget is shared) makes the release ask
    the launcher to hand the slot on; once the launcher woke it, the next release does not."""
    job_id, task = launch(res)
    succeed(res, job_id)
    store = JobStore(res.table_name)
    waiting = call("POST", "/jobs", {"worker": "echo", "input": {"items": ["a"]}})[1]["job_id"]
    receive_all(res.workers["echo"].queue_url)  # its launch message: parked instead
    dispatch = Dispatch(store)
    assert dispatch.park(waiting, 0, "echo") and dispatch.anyone_waiting()
    assert reconcile(stopped_event(res.cluster_arn, task)).startswith("skipped: exit 0")
    drains = receive_all(res.workers["echo"].queue_url)
    assert [m["Body"] for m in drains] == ['{"drain": true}']
    launched = launcher.Launcher().drain()
    assert [o.job_id for o in launched] == [waiting] and not dispatch.anyone_waiting()
    assert store.get(waiting)[JobField.STATUS] == "DISPATCHED"
    task2 = store.get(waiting)[JobField.TASK_ARN]
    succeed(res, waiting)
    assert reconcile(stopped_event(res.cluster_arn, task2)).startswith("skipped: exit 0")
    assert receive_all(res.workers["echo"].queue_url) == []


def test_the_stop_of_a_task_that_freed_its_slot_gives_back_only_its_vcpus(res) -> None:
    """The task gave its worker's slot back at its job's end (``Dispatch.free_slot``): its
    STOPPED event releases the stack's vCPUs and the lease, never the worker's slot again,
    and still asks for a drain while a job waits (the budget it held may be what it waits
    for); a repeated event releases nothing."""
    job_id, task = launch(res)
    succeed(res, job_id)
    store = JobStore(res.table_name)
    dispatch = Dispatch(store)
    lease = f"slot#{job_id}-1"
    assert dispatch.free_slot(lease, job_id, 1) == "echo"
    other = call("POST", "/jobs", {"worker": "echo", "input": {"items": ["a"]}})[1]["job_id"]
    receive_all(res.workers["echo"].queue_url)
    assert dispatch.park(other, 0, "echo")
    workers, used = dispatch.counts()
    assert workers["echo"]["tasks"] == 0 and used > 0
    assert reconcile(stopped_event(res.cluster_arn, task)).startswith("skipped: exit 0")
    workers, used = dispatch.counts()
    assert workers["echo"]["tasks"] == 0 and workers["echo"]["cpu"] == 0 and used == 0
    assert dispatch.get(lease) is None
    assert [m["Body"] for m in receive_all(res.workers["echo"].queue_url)] == ['{"drain": true}']
    assert reconcile(stopped_event(res.cluster_arn, task)).startswith("skipped: exit 0")
    assert dispatch.counts()[0]["echo"]["tasks"] == 0


@pytest.mark.parametrize(
    ("exit_code", "stop_code"),
    [
        (0, "UserInitiated"),
        (0, "SpotInterruption"),
        (0, "TaskFailedToStart"),
        (1, "EssentialContainerExited"),
        (10, "EssentialContainerExited"),
        (None, "EssentialContainerExited"),
    ],
)
def test_any_other_stop_is_read_and_reconciled(res, exit_code, stop_code) -> None:
    job_id, task = launch(res)
    calls = TableCalls()
    event = stopped_event(res.cluster_arn, task, exit_code=exit_code, stop_code=stop_code)
    assert reconcile(event).startswith("retry: ")
    assert calls.ops[0] == "GetItem"
    assert JobStore(res.table_name).get(job_id)[JobField.STATUS] == "QUEUED"


def test_exit_zero_of_a_sidecar_is_not_trusted(res) -> None:
    """Only the worker container's exit code says SUCCEEDED was recorded."""
    _job_id, task = launch(res)
    event = stopped_event(res.cluster_arn, task, exit_code=0)
    event["detail"]["containers"] = [
        {"name": "log-router", "exitCode": 0},
        {"name": "app", "exitCode": 0},
    ]
    assert not StoppedTask.from_detail(event["detail"]).clean_success
    assert reconcile(event) == "retry: WorkerExitedEarly"


def test_skipped_exit_zero_without_success_is_caught_by_the_sweep(res, monkeypatch) -> None:
    """Exit 0 without SUCCEEDED breaks the worker contract; should it ever happen, the event is
    skipped, and the sweep settles the job once its heartbeat goes stale: a retry."""
    from datetime import UTC, datetime, timedelta

    from handlers.sweep import Sweeper

    monkeypatch.setenv("BATCH_HEARTBEAT_STALE_SECONDS", "120")
    store = JobStore(res.table_name)
    job_id, task = launch(res)
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    store.heartbeat(job_id, 1)
    assert reconcile(stopped_event(res.cluster_arn, task, exit_code=0)).startswith("skipped")
    assert store.get(job_id)[JobField.STATUS] == "RUNNING"
    boto3.client("ecs").stop_task(cluster=res.cluster_arn, task=task, reason="exited")
    report = Sweeper(now=datetime.now(UTC) + timedelta(seconds=130)).run()
    assert report.settled[job_id].startswith("retry: ")
    job = store.get(job_id)
    assert job[JobField.STATUS] == "QUEUED" and JobField.TASK_ARN not in job
    assert [json.loads(m["Body"]) for m in job_messages(res.workers["echo"].queue_url)] == [
        {"job_id": job_id, "attempt": 1}
    ]


def test_succeeded_job_is_left_alone(res, topic_queue) -> None:
    job_id, task = launch(res)
    succeed(res, job_id)
    calls = TableCalls()
    event = stopped_event(res.cluster_arn, task, stop_code="UserInitiated")
    assert reconcile(event) == "terminal: SUCCEEDED"
    # The lease, the job; then the slot's release and the stack's parked count (nothing
    # waits: no drain). No sink reports successes: no write.
    assert calls.ops == ["GetItem", "GetItem", "TransactWriteItems", "GetItem"]
    assert JobStore(res.table_name).get(job_id)[JobField.STATUS] == "SUCCEEDED"
    assert receive_all(topic_queue) == []  # success is not a failure notification


def test_success_is_read_and_reported_when_notion_is_configured(res, monkeypatch) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setenv(Env.NOTION_SECRET_ARN, "arn:aws:secretsmanager:r:1:secret:notion")
    monkeypatch.setattr(reconciler.notify, "job_finished", sent.append)
    job_id, task = launch(res)
    succeed(res, job_id)
    event = stopped_event(res.cluster_arn, task)
    assert reconcile(event) == "terminal: SUCCEEDED"
    assert reconcile(event) == "terminal: SUCCEEDED"  # a duplicate event reports nothing
    assert [item[JobField.JOB_ID] for item in sent] == [job_id]
    assert JobStore(res.table_name).get(job_id)[attempt_ends.NOTIFIED_AT]


def test_cancel_requested_ends_cancelled(res) -> None:
    job_id, task = launch(res)
    status, _view, _ = call("POST", f"/jobs/{job_id}/cancel")
    assert status == 202
    event = stopped_event(
        res.cluster_arn,
        task,
        exit_code=143,
        stop_code="UserInitiated",
        stopped_reason=f"Cancelled by API request for job {job_id}",
    )
    assert reconcile(event) == "final: CANCELLED"
    assert JobStore(res.table_name).get(job_id)[JobField.STATUS] == "CANCELLED"


def test_timeout_stop_is_classified(res) -> None:
    _job_id, task = launch(res)
    event = stopped_event(
        res.cluster_arn,
        task,
        exit_code=143,
        stop_code="UserInitiated",
        stopped_reason="Timeout: job ran longer than 900 s",
    )
    assert reconcile(event) == "retry: Timeout"


def test_other_cluster_and_non_stopped_events_are_ignored(res) -> None:
    job_id, task = launch(res)
    event = stopped_event(res.cluster_arn, task, exit_code=1)
    other = json.loads(json.dumps(event))
    other["detail"]["clusterArn"] = "arn:aws:ecs:us-east-1:000000000000:cluster/elsewhere"
    assert reconcile(other) == "ignored: other cluster"
    running = json.loads(json.dumps(event))
    running["detail"]["lastStatus"] = "RUNNING"
    assert reconcile(running) == "ignored: not STOPPED"
    assert JobStore(res.table_name).get(job_id)[JobField.STATUS] == "DISPATCHED"


def test_scheduled_run_without_job_is_recorded_and_retried(res) -> None:
    ecs = boto3.client("ecs")
    task = ecs.run_task(
        cluster=res.cluster_arn,
        taskDefinition=res.workers["echo"].task_definition_arn,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": list(res.subnet_ids), "securityGroups": []}
        },
        overrides={
            "containerOverrides": [
                {
                    "name": "worker",
                    "environment": [
                        {"name": Env.SCHEDULED_INPUT, "value": '{"items": ["nightly"]}'}
                    ],
                }
            ]
        },
    )["tasks"][0]["taskArn"]
    event = stopped_event(
        res.cluster_arn,
        task,
        exit_code=None,
        stop_code="TaskFailedToStart",
        stopped_reason="CannotPullContainerError",
    )
    assert reconcile(event) == "retry: TaskFailedToStart"
    job_id = "echo_" + task.rsplit("/", 1)[-1].replace("-", "")
    job = JobStore(res.table_name).get(job_id)
    assert job[JobField.SOURCE] == "schedule" and job[JobField.STATUS] == "QUEUED"
    assert job[JobField.INPUT] == {"items": ["nightly"]}
    assert job[JobField.TASK_DEFINITION] == res.workers["echo"].task_definition_arn
    # The retry goes through the launcher like any job.
    relaunch(res, job_id)
    assert reconcile(event).startswith("ignored")


@pytest.mark.parametrize(
    ("stop_code", "reason", "expected"),
    [
        # SIGKILL nobody asked for: the kernel's OOM killer is the likely sender.
        ("EssentialContainerExited", "Essential container in task exited", "OutOfMemory"),
        # SIGKILL after a StopTask (cancel): the stopTimeout grace period ran out.
        ("UserInitiated", "Cancelled by API request", "WorkerError"),
        ("UserInitiated", "Timeout: job ran longer than its 60 s timeout", "Timeout"),
        ("UserInitiated", "Heartbeat: no heartbeat for 400 s (limit 300 s)", "HeartbeatLost"),
    ],
)
def test_exit_137_is_out_of_memory_only_when_nobody_stopped_the_task(
    stop_code: str, reason: str, expected: str
) -> None:
    from handlers.stopped_task import classify

    task = StoppedTask.from_detail(
        {
            "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/0",
            "stopCode": stop_code,
            "stoppedReason": reason,
            "containers": [{"name": "worker", "exitCode": 137}],
        }
    )
    assert classify(task)["type"] == expected


def test_an_access_denied_event_is_not_retried_into_a_crash_loop(res, monkeypatch) -> None:
    """IAM answers Lambda's async retries the same: the handler logs the denial and returns
    (no exception, so no retries); the sweep settles the job from its stale heartbeat."""
    _, task = launch(res)
    event = stopped_event(res.cluster_arn, task, exit_code=1)

    def denied(self: Any, *_: Any, **__: Any) -> Any:
        message = "not authorized to perform: dynamodb:UpdateItem"
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": message}}, "UpdateItem"
        )

    monkeypatch.setattr(JobStore, "transition", denied)
    assert reconciler.handler(event)["outcome"] == "denied"

    def throttled(self: Any, *_: Any, **__: Any) -> Any:
        error = {"Error": {"Code": "ProvisionedThroughputExceededException"}}
        raise ClientError(error, "UpdateItem")  # type: ignore[arg-type]

    monkeypatch.setattr(JobStore, "transition", throttled)
    with pytest.raises(ClientError):  # anything else still propagates for a retry
        reconciler.handler(event)
