"""The sweep against the real moto server: timeouts, stale heartbeats, lost tasks, redrive."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from handlers import reconciler
from handlers.sweep import Sweeper
from jobcontract import JobField
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec
from tests.runtime.helpers import receive_all, stopped_event
from tests.runtime.test_reconciler import launch


@pytest.fixture
def res(pipeline_resources):
    return pipeline_resources([WorkerSpec("echo", timeout_seconds=600, max_attempts=3)])


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def describe(res, task_arn: str) -> dict:
    return boto3.client("ecs").describe_tasks(cluster=res.cluster_arn, tasks=[task_arn])["tasks"][0]


def test_fresh_jobs_are_left_alone(res) -> None:
    store = JobStore(res.table_name)
    job_id, task = launch(res)
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    store.heartbeat(job_id, 1)
    report = Sweeper(now=later(60)).run()
    assert report.as_dict() == {
        "stopped": [],
        "settled": {},
        "redriven": [],
        "released": [],
        "resumed": [],
        "drain_requested": False,
        "failed_events": {},
    }
    assert describe(res, task)["desiredStatus"] == "RUNNING"


def test_timeout_stops_task_and_reconciler_retries(res, monkeypatch) -> None:
    monkeypatch.setenv("BATCH_HEARTBEAT_STALE_SECONDS", "100000")
    store = JobStore(res.table_name)
    job_id, task = launch(res)
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    assert Sweeper(now=later(600)).run().stopped == []  # within timeout + grace
    report = Sweeper(now=later(600 + 121)).run()
    assert report.stopped == [job_id]
    described = describe(res, task)
    assert described["desiredStatus"] == "STOPPED"
    assert described["stoppedReason"].startswith("Timeout: job ran longer than its 600 s")
    event = stopped_event(
        res.cluster_arn,
        task,
        exit_code=143,
        stop_code="UserInitiated",
        stopped_reason=described["stoppedReason"],
    )
    assert reconciler.handler(event, None)["outcome"] == "retry: Timeout"
    assert store.get(job_id)[JobField.STATUS] == "QUEUED"


def test_stale_heartbeat_stops_task(res, monkeypatch) -> None:
    monkeypatch.setenv("BATCH_HEARTBEAT_STALE_SECONDS", "120")
    store = JobStore(res.table_name)
    job_id, task = launch(res)
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    store.heartbeat(job_id, 1)
    assert Sweeper(now=later(100)).run().stopped == []
    assert Sweeper(now=later(130)).run().stopped == [job_id]
    assert describe(res, task)["stoppedReason"].startswith("Heartbeat: no heartbeat for")


def test_dispatched_without_task_is_settled_directly(res) -> None:
    store = JobStore(res.table_name)
    # A launch that claimed the job but never recorded a task (e.g. the message hit the DLQ).
    from tests.runtime.helpers import call

    job_id = call("POST", "/jobs", {"worker": "echo", "input": {"items": []}})[1]["job_id"]
    receive_all(res.workers["echo"].queue_url)
    store.transition(job_id, "QUEUED", "DISPATCHED", attempt=0, increment_attempts=True)
    report = Sweeper(now=later(901)).run()
    assert report.settled == {job_id: "retry: TaskLost"}
    job = store.get(job_id)
    assert job[JobField.STATUS] == "QUEUED" and job[JobField.ATTEMPTS] == 1
    sent = [json.loads(m["Body"]) for m in receive_all(res.workers["echo"].queue_url)]
    assert sent == [{"job_id": job_id, "attempt": 1}]


def test_task_stopped_without_event_is_settled(res, monkeypatch) -> None:
    monkeypatch.setenv("BATCH_HEARTBEAT_STALE_SECONDS", "60")
    store = JobStore(res.table_name)
    job_id, task = launch(res)
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    boto3.client("ecs").stop_task(cluster=res.cluster_arn, task=task, reason="host died")
    for _ in range(5):  # moto moves a task one step per describe
        if describe(res, task)["lastStatus"] == "STOPPED":
            break
    report = Sweeper(now=later(61)).run()
    assert report.stopped == [] and list(report.settled) == [job_id]
    assert store.get(job_id)[JobField.STATUS] == "QUEUED"
    # Running the sweep again does nothing more.
    assert Sweeper(now=later(61)).run().settled == {}


def test_stale_queued_job_is_redriven_once(res) -> None:
    from tests.runtime.helpers import call

    job_id = call("POST", "/jobs", {"worker": "echo", "input": {"items": []}})[1]["job_id"]
    receive_all(res.workers["echo"].queue_url)  # the message was lost
    assert Sweeper(now=later(100)).run().redriven == []
    assert Sweeper(now=later(901)).run().redriven == [job_id]
    sent = [json.loads(m["Body"]) for m in receive_all(res.workers["echo"].queue_url)]
    assert sent == [{"job_id": job_id, "attempt": 0}]


def _dedup_ids(queue_url: str) -> list[str]:
    sqs = boto3.client("sqs")
    got = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["MessageDeduplicationId"],
    ).get("Messages", [])
    for m in got:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return [m["Attributes"]["MessageDeduplicationId"] for m in got]


def test_redrive_uses_a_fresh_deduplication_id_each_time(res) -> None:
    """Real SQS FIFO drops (silently) a send whose deduplication id it accepted in the last
    5 minutes, even after that message was deleted (moto does not model this). A redrive
    must therefore not reuse the original send's id, nor an earlier redrive's."""
    from tests.runtime.helpers import call

    job_id = call("POST", "/jobs", {"worker": "echo", "input": {"items": []}})[1]["job_id"]
    url = res.workers["echo"].queue_url
    original = _dedup_ids(url)
    assert Sweeper(now=later(901)).run().redriven == [job_id]
    first = _dedup_ids(url)
    assert Sweeper(now=later(1900)).run().redriven == [job_id]
    second = _dedup_ids(url)
    assert len(original) == len(first) == len(second) == 1
    assert len({original[0], first[0], second[0]}) == 3
    assert all(len(d) <= 128 for d in first + second)
