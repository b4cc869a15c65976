"""One view of a job row (``jobcontract.job.Job``): a field the row lacks means the same to
every reader. Against the moto server: the API's status view, the reconciler's retry
decision and the worker runtime's item tolerance read a row without ``max_attempts`` (or
``max_failed_item_share``) at the same default."""

from __future__ import annotations

import boto3
import pytest

from handlers import reconciler
from jobcontract import DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_FAILED_ITEM_SHARE, JobField, job_pk
from jobcontract.job import Job
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec
from tests.runtime.helpers import call, stopped_event
from tests.runtime.test_reconciler import launch


@pytest.fixture
def res(pipeline_resources):
    return pipeline_resources([WorkerSpec("echo", max_attempts=2)])


def _drop(table: str, job_id: str, *fields: str) -> None:
    """The row as an older writer (or a hand-written row) left it: without ``fields``."""
    boto3.client("dynamodb").update_item(
        TableName=table,
        Key={"pk": {"S": job_pk(job_id)}},
        UpdateExpression="REMOVE " + ", ".join(f"#f{i}" for i in range(len(fields))),
        ExpressionAttributeNames={f"#f{i}": f for i, f in enumerate(fields)},
    )


def test_a_row_without_max_attempts_is_read_at_one_default_everywhere(res) -> None:
    store = JobStore(res.table_name)
    job_id, task = launch(res)
    _drop(res.table_name, job_id, JobField.MAX_ATTEMPTS)
    assert JobField.MAX_ATTEMPTS not in store.get(job_id)

    # The API shows the default the reconciler then applies.
    status, body, _ = call("GET", f"/jobs/{job_id}")
    assert status == 200
    assert (
        body["max_attempts"]
        == DEFAULT_MAX_ATTEMPTS
        == Job.from_item(store.get(job_id)).max_attempts
    )
    assert body["attempts"] == 1 < body["max_attempts"]

    # So attempt 1 of that default is retried, not failed as "1 of 1".
    event = stopped_event(res.cluster_arn, task, exit_code=1)
    assert reconciler.handler(event, None)["outcome"] == "retry: WorkerError"
    assert store.get(job_id)[JobField.STATUS] == "QUEUED"


def test_defaults_of_the_view() -> None:
    bare = Job.from_item({JobField.JOB_ID: "echo_" + "0" * 32, JobField.WORKER: "echo",
                          JobField.STATUS: "QUEUED"})  # fmt: skip
    assert (bare.attempts, bare.max_attempts, bare.source, bare.cancel_requested) == (
        0, DEFAULT_MAX_ATTEMPTS, "api", False,
    )  # fmt: skip
    assert bare.max_failed_item_share == DEFAULT_MAX_FAILED_ITEM_SHARE
    # A stored value wins; one that cannot be a limit (0, not a number) reads as absent.
    assert Job.from_item({**_row(), JobField.MAX_ATTEMPTS: 5}).max_attempts == 5
    for bad in (0, "x", True):
        assert Job.from_item({**_row(), JobField.MAX_ATTEMPTS: bad}).max_attempts == 3


def _row() -> dict[str, object]:
    return {JobField.JOB_ID: "echo_" + "0" * 32, JobField.WORKER: "echo", JobField.STATUS: "QUEUED"}
