"""JobStore against the real moto server: conditional transitions, fencing, listing, cursors."""

from __future__ import annotations

import base64

import pytest

from jobcontract import JobField, JobStatus, new_job_id
from jobcontract.store import (
    InvalidCursor,
    InvalidTransition,
    JobExists,
    JobStore,
    TransitionConflict,
    from_attr,
    to_attr,
)
from tests.fixtures.moto_server import WorkerSpec


@pytest.fixture
def store(pipeline_resources) -> JobStore:
    res = pipeline_resources([WorkerSpec("echo"), WorkerSpec("other")])
    return JobStore(res.table_name)


def _job(worker: str = "echo", **extra):
    return {JobField.JOB_ID: new_job_id(worker), JobField.WORKER: worker, **extra}


def test_wire_format_round_trip() -> None:
    value = {"a": [1, 2.5, "x", None, True, {"b": -3}], "big": 2**53 + 1}
    assert from_attr(to_attr(value)) == value
    with pytest.raises(ValueError):
        to_attr(float("nan"))


def test_create_is_conditional_and_returns_existing(store: JobStore) -> None:
    job = _job(input={"items": ["a"]})
    created = store.create(job)
    assert created[JobField.STATUS] == "QUEUED" and created[JobField.ATTEMPTS] == 0
    with pytest.raises(JobExists) as err:
        store.create({**job, "input": {"items": ["other"]}})
    assert err.value.existing is not None
    assert err.value.existing["input"] == {"items": ["a"]}
    got = store.get(job[JobField.JOB_ID])
    assert got is not None and got[JobField.WORKER_STATUS] == "echo#QUEUED"
    assert store.get(new_job_id("echo")) is None


def test_transition_claim_fencing_and_conflict_item(store: JobStore) -> None:
    job_id = store.create(_job())[JobField.JOB_ID]
    claimed = store.transition(
        job_id, "QUEUED", JobStatus.DISPATCHED, attempt=0, increment_attempts=True
    )
    assert claimed[JobField.ATTEMPTS] == 1
    assert claimed[JobField.WORKER_STATUS] == "echo#DISPATCHED"
    assert set(claimed[JobField.TIMESTAMPS]) == {"QUEUED", "DISPATCHED"}
    # A duplicate claim of the same message fails with the current item, no extra read.
    with pytest.raises(TransitionConflict) as err:
        store.transition(job_id, "QUEUED", "DISPATCHED", attempt=0, increment_attempts=True)
    assert err.value.current is not None
    assert err.value.current[JobField.STATUS] == "DISPATCHED"
    # A stale attempt cannot move the job.
    with pytest.raises(TransitionConflict):
        store.transition(job_id, "DISPATCHED", "RUNNING", attempt=0)
    running = store.transition(job_id, ["DISPATCHED"], "RUNNING", attempt=1)
    assert running[JobField.STATUS] == "RUNNING"
    with pytest.raises(InvalidTransition):
        store.transition(job_id, "SUCCEEDED", "RUNNING")
    with pytest.raises(TransitionConflict) as missing:
        store.transition(new_job_id("echo"), "QUEUED", "CANCELLED")
    assert missing.value.current is None


def test_transition_expect_set_and_remove(store: JobStore) -> None:
    job_id = store.create(_job())[JobField.JOB_ID]
    store.transition(job_id, "QUEUED", "DISPATCHED", attempt=0, increment_attempts=True)
    store.update(job_id, status="DISPATCHED", attempt=1, set_fields={JobField.TASK_ARN: "arn:1"})
    with pytest.raises(TransitionConflict):
        store.transition(job_id, "DISPATCHED", "QUEUED", expect={JobField.TASK_ARN: "arn:2"})
    back = store.transition(
        job_id,
        ("DISPATCHED", "RUNNING"),
        "QUEUED",
        expect={JobField.TASK_ARN: "arn:1"},
        remove_fields=[JobField.TASK_ARN],
        set_fields={JobField.ERROR: {"type": "SpotInterruption"}},
    )
    assert JobField.TASK_ARN not in back
    assert back[JobField.ERROR] == {"type": "SpotInterruption"}
    with pytest.raises(ValueError):
        store.update(job_id, status="QUEUED", set_fields={JobField.STATUS: "RUNNING"})


def test_heartbeat_only_for_running_attempt(store: JobStore) -> None:
    job_id = store.create(_job())[JobField.JOB_ID]
    with pytest.raises(TransitionConflict):
        store.heartbeat(job_id, 0)
    store.transition(job_id, "QUEUED", "DISPATCHED", attempt=0, increment_attempts=True)
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    item = store.heartbeat(job_id, 1, {"done": 2, "total": 5})
    assert item[JobField.PROGRESS] == {"done": 2, "total": 5}
    assert JobField.HEARTBEAT_AT in item
    with pytest.raises(TransitionConflict):
        store.heartbeat(job_id, 2)
    flagged = store.request_cancel(job_id)
    assert flagged[JobField.CANCEL_REQUESTED] is True


def test_list_jobs_pages_newest_first_without_duplicates(store: JobStore) -> None:
    ids = [store.create(_job())[JobField.JOB_ID] for _ in range(7)]
    other = store.create(_job("other"))[JobField.JOB_ID]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        items, cursor = store.list_jobs(worker="echo", limit=3, cursor=cursor)
        seen += [i[JobField.JOB_ID] for i in items]
        pages += 1
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))
    everything, _ = store.list_jobs(limit=100)
    assert [i[JobField.JOB_ID] for i in everything] == [other, *reversed(ids)]
    store.transition(ids[0], "QUEUED", "CANCELLED")
    cancelled, nxt = store.list_jobs(worker="echo", status="CANCELLED", limit=5)
    assert [i[JobField.JOB_ID] for i in cancelled] == [ids[0]] and nxt is None
    by_status, _ = store.list_jobs(status="QUEUED", limit=100)
    assert ids[0] not in {i[JobField.JOB_ID] for i in by_status} and len(by_status) == 7
    assert {i[JobField.JOB_ID] for i in store.list_by_status("CANCELLED")} == {ids[0]}
    assert [w["name"] for w in store.list_workers()] == ["echo", "other"]
    assert store.get_worker("echo") is not None and store.get_worker("nope") is None


def test_cursor_tampering_is_rejected(store: JobStore) -> None:
    for _ in range(3):
        store.create(_job())
    _, cursor = store.list_jobs(worker="echo", limit=1)
    assert cursor is not None
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-3] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for bad in (forged, "!!!", "a", cursor[:-2], "x" * 5000):
        with pytest.raises(InvalidCursor):
            store.list_jobs(worker="echo", limit=1, cursor=bad)
    # A genuine cursor used for a different listing is rejected too.
    with pytest.raises(InvalidCursor):
        store.list_jobs(worker="other", limit=1, cursor=cursor)
    items, _ = store.list_jobs(worker="echo", limit=1, cursor=cursor)
    assert len(items) == 1
