"""The sweep's redrive of the reconciler's failed events, against the real moto server: a
scheduled array run whose every reconciler attempt failed is created and fanned out once
from its on-failure record; a record that is no ECS event is deleted; one whose handling
fails again stays on the queue."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from handlers import failed_events, sweep
from jobcontract import Env, JobField, scheduled_job_id
from jobcontract.arrays import child_id
from jobcontract.dispatch import Dispatch, worker_key
from jobcontract.scheduled import ScheduledArray
from jobcontract.store import JobStore
from tests.runtime.helpers import receive_all, stopped_event
from tests.runtime.test_scheduled_runs import _docs, _scheduled_task


@pytest.fixture
def res(pipeline_resources):
    from tests.runtime.test_array_jobs import DOCS

    return pipeline_resources([DOCS])


@pytest.fixture
def failed_queue(res, monkeypatch) -> str:
    """The reconciler's on-failure destination (standard queue), as the component sets it;
    visibility 0 here, so a kept record can be received again at once."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(
        QueueName="test-reconciler-failed", Attributes={"VisibilityTimeout": "0"}
    )["QueueUrl"]
    monkeypatch.setenv(Env.FAILED_EVENTS_URL, url)
    return str(url)


def _record(event: dict[str, Any]) -> str:
    """A Lambda invocation record of an event that failed every attempt (Lambda Developer
    Guide, "Capturing records of Lambda asynchronous invocations")."""
    return json.dumps(
        {
            "version": "1.0",
            "timestamp": "2026-12-04T02:00:00.000Z",
            "requestContext": {
                "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:r:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {"errorMessage": "the reconciler died here"},
        }
    )


def _put(url: str, body: str) -> None:
    boto3.client("sqs").send_message(QueueUrl=url, MessageBody=body)


def _scheduled_array_stopped(res) -> tuple[str, dict[str, Any]]:
    """A scheduled array run's task and its STOPPED event; no reconciler ever handled it."""
    array = ScheduledArray(items=_docs(5), shard_size=2)
    task, _ = _scheduled_task(res, "docs", {"language": "en"}, array)
    parent_id = scheduled_job_id("docs", task)
    assert parent_id is not None
    return parent_id, stopped_event(res.cluster_arn, task, exit_code=0)


def test_a_lost_scheduled_array_run_is_made_once_from_its_record(res, failed_queue) -> None:
    parent_id, event = _scheduled_array_stopped(res)
    store = JobStore(res.table_name)
    assert store.get(parent_id) is None  # every reconciler attempt failed before the parent
    _put(failed_queue, _record(event))
    _put(failed_queue, _record(event))  # delivered twice (SQS is at-least-once)
    report = sweep.Sweeper(store).run()
    assert sorted(report.failed_events.values()) == [
        "ignored: scheduled array job RUNNING, children created",
        "scheduled array job: 3 shards",
    ]
    parent = store.get(parent_id)
    assert parent[JobField.SOURCE] == "schedule" and parent[JobField.ARRAY]["created"] == 3
    kids = [store.get(child_id(parent_id, i)) for i in range(3)]
    assert [len(k[JobField.INPUT]["documents"]) for k in kids] == [2, 2, 1]
    assert Dispatch(store).get(worker_key("docs"))["waiting"] == 3  # each child parked once
    assert receive_all(failed_queue) == []  # both handled, both deleted
    drains = [json.loads(m["Body"]) for m in receive_all(res.workers["docs"].queue_url)]
    assert {"drain": True} in drains


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"requestPayload": {"source": "aws.s3", "detail": {}}}),
        json.dumps({"version": "1.0", "requestContext": {}}),
    ],
)
def test_a_record_without_an_ecs_event_is_deleted(res, failed_queue, body: str) -> None:
    _put(failed_queue, body)
    report = sweep.Sweeper(JobStore(res.table_name)).run()
    assert list(report.failed_events.values()) == [failed_events.NOT_AN_ECS_EVENT]
    assert receive_all(failed_queue) == []


def test_a_record_whose_handling_fails_stays_for_the_next_sweep(
    res, failed_queue, monkeypatch
) -> None:
    from handlers.reconciler import Reconciler

    parent_id, event = _scheduled_array_stopped(res)
    _put(failed_queue, _record(event))
    store = JobStore(res.table_name)

    def dies(self: Reconciler, event: dict[str, Any]) -> str:
        raise RuntimeError("still failing")

    with monkeypatch.context() as patched:
        patched.setattr(Reconciler, "handle_event", dies)
        report = sweep.Sweeper(store).run()
    # Visibility 0 here: the bounded loop may take it again within the sweep, kept each time.
    assert set(report.failed_events.values()) == {"kept: RuntimeError"}
    assert store.get(parent_id) is None
    # Still on the queue: the next sweep, with the reconciler healthy, makes the run.
    later = sweep.Sweeper(store).run()
    assert list(later.failed_events.values()) == ["scheduled array job: 3 shards"]
    assert store.get(parent_id)[JobField.ARRAY]["created"] == 3
    assert receive_all(failed_queue) == []


def test_no_queue_configured_reads_nothing(res, monkeypatch) -> None:
    monkeypatch.delenv(Env.FAILED_EVENTS_URL, raising=False)
    assert sweep.Sweeper(JobStore(res.table_name)).run().failed_events == {}
