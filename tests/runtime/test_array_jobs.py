"""Array jobs (jobcontract/arrays.py) against the real moto server: submit, fan-out, fan-in,
merge, tolerance, listing and cancel."""

from __future__ import annotations

import json

import boto3
import pytest

from jobcontract import JobField, JobStatus
from jobcontract.arrays import MAX_ITEM_BYTES, MAX_SHARDS, child_id
from jobcontract.dispatch import DRAIN_MESSAGE, Dispatch, worker_key
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec
from tests.runtime.helpers import call, receive_all, table_items

DOCS = WorkerSpec(
    "docs",
    max_concurrency=2,
    input_schema={
        "type": "object",
        "required": ["documents"],
        "additionalProperties": False,
        "properties": {
            "documents": {
                "type": "array",
                "minItems": 1,
                "maxItems": 50,
                "items": {
                    "type": "object",
                    "required": ["id", "text"],
                    "properties": {"id": {"type": "string"}, "text": {"type": "string"}},
                },
            },
            "language": {"type": "string"},
        },
    },
)
PLAIN = WorkerSpec(
    "plain", input_schema={"type": "object", "properties": {"a": {"type": "string"}}}
)


@pytest.fixture
def res(pipeline_resources):
    return pipeline_resources([DOCS, PLAIN])


def _docs(n: int) -> list[dict[str, str]]:
    return [{"id": str(i), "text": f"text {i}"} for i in range(n)]


def _submit(body: dict, key: str | None = None):
    headers = {"Idempotency-Key": key} if key else {}
    return call("POST", "/jobs", body, headers=headers)


def _job_rows(table: str) -> list[dict]:
    return [i for i in table_items(table) if i["pk"]["S"].startswith("job#")]


def test_invalid_items_reported_by_index_and_nothing_written(res) -> None:
    items = _docs(6)
    items[1] = {"id": "1"}  # no text
    items[4] = {"id": 4, "text": "x"}  # id not a string
    before = table_items(res.table_name)
    status, body, _ = _submit({"worker": "docs", "items": items, "shard_size": 2})
    assert status == 400 and body["error"]["code"] == "invalid_items"
    assert body["error"]["invalid_items"] == [1, 4]
    assert any(d.startswith("items[1]") for d in body["error"]["details"])
    assert any(d.startswith("items[4].id") for d in body["error"]["details"])
    assert table_items(res.table_name) == before
    assert receive_all(res.workers["docs"].queue_url) == []


@pytest.mark.parametrize(
    ("body", "status", "code", "limit"),
    [
        ({"items": _docs(3), "shard_size": 51}, 400, "array_limit", "shard_size"),
        ({"items": [{"id": "1", "text": "x"}] * (MAX_SHARDS + 1), "shard_size": 1}, 400,
         "array_limit", "max_shards"),
        ({"items": [{"id": "1", "text": "x" * MAX_ITEM_BYTES}]}, 413, "item_too_large",
         "max_item_bytes"),
    ],
)  # fmt: skip
def test_limits_name_the_limit_and_write_nothing(res, body, status, code, limit) -> None:
    before = table_items(res.table_name)
    got, answer, _ = _submit({"worker": "docs", **body})
    assert (got, answer["error"]["code"], answer["error"].get("limit")) == (status, code, limit)
    assert limit in answer["error"]["message"]
    assert table_items(res.table_name) == before


def test_total_size_limit_and_workers_without_one_array_property(res) -> None:
    from handlers import api

    big = {"worker": "docs", "items": [{"id": "1", "text": "x" * (11 * 1024 * 1024)}]}
    event_status, body, _ = _submit(big)
    assert event_status == 413 and "max_array_request_bytes" in body["error"]["message"]
    status, body, _ = _submit({"worker": "plain", "items": [{"a": "x"}]})
    assert status == 400 and body["error"]["code"] == "not_an_array_worker"
    assert api.MAX_REQUEST_BYTES < 11 * 1024 * 1024
    assert _job_rows(res.table_name) == []


def test_submit_creates_parent_and_parked_children_once_on_replay(res) -> None:
    body = {"worker": "docs", "items": _docs(7), "shard_size": 3, "input": {"language": "en"}}
    s1, b1, _ = _submit(body, key="batch-1")
    assert s1 == 202 and b1["status"] == "RUNNING" and b1["children"] == 3
    parent_id = b1["job_id"]
    store = JobStore(res.table_name)
    children = [store.get(child_id(parent_id, i)) for i in range(3)]
    assert [c[JobField.INPUT] for c in children] == [
        {"language": "en", "documents": _docs(7)[0:3]},
        {"language": "en", "documents": _docs(7)[3:6]},
        {"language": "en", "documents": _docs(7)[6:7]},
    ]
    assert [c[JobField.SHARD] for c in children] == [
        {"index": 0, "offset": 0, "count": 3},
        {"index": 1, "offset": 3, "count": 3},
        {"index": 2, "offset": 6, "count": 1},
    ]
    assert all(c[JobField.PARENT_ID] == parent_id and c[JobField.WAITING_SINCE] for c in children)
    assert all(c[JobField.STATUS] == "QUEUED" for c in children)
    counts = Dispatch(store).get(worker_key("docs"))
    assert counts is not None and counts["waiting"] == 3
    assert [m["Body"] for m in receive_all(res.workers["docs"].queue_url)] == [DRAIN_MESSAGE]
    # A child moved on; the replay must neither rewrite it nor add children or counts.
    store.update(child_id(parent_id, 0), status="QUEUED", set_fields={"marker": 1})
    s2, b2, _ = _submit(body, key="batch-1")
    assert s2 == 200 and b2["job_id"] == parent_id
    assert len(_job_rows(res.table_name)) == 4
    assert store.get(child_id(parent_id, 0))["marker"] == 1
    assert Dispatch(store).get(worker_key("docs"))["waiting"] == 3
    s3, b3, _ = _submit({**body, "shard_size": 2}, key="batch-1")
    assert s3 == 409 and b3["error"]["code"] == "idempotency_conflict"


def test_replay_completes_a_fan_out_that_failed_half_way(res, monkeypatch) -> None:
    from handlers import array_api

    body = {"worker": "docs", "items": _docs(5), "shard_size": 1}
    real = array_api._children

    def first_two(*args, **kwargs):
        for n, child in enumerate(real(*args, **kwargs)):
            if n == 2:
                raise RuntimeError("the Lambda died here")
            yield child

    monkeypatch.setattr(array_api, "_children", first_two)
    status, _, _ = _submit(body, key="half")
    assert status == 500
    assert len(_job_rows(res.table_name)) == 1  # chunks are all-or-nothing: the parent only
    monkeypatch.setattr(array_api, "_children", real)
    status, answer, _ = _submit(body, key="half")
    assert status == 200 and answer["children"] == 5
    assert len(_job_rows(res.table_name)) == 6
    assert Dispatch(JobStore(res.table_name)).get(worker_key("docs"))["waiting"] >= 5


def _unused() -> None:  # keep imports used while the file grows
    _ = (json, boto3, JobStatus)
