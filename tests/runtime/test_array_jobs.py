"""Array jobs (jobcontract/arrays.py) against the real moto server: submit, fan-out, fan-in,
merge, tolerance, listing and cancel."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest

from handlers import arrays, launcher, reconciler, sweep
from jobcontract import Env, JobField
from jobcontract.arrays import MAX_ITEM_BYTES, MAX_SHARDS, child_id, merged_key, summary_key
from jobcontract.dispatch import DRAIN_MESSAGE, Dispatch, worker_key
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec, topic_tap
from tests.runtime.helpers import call, receive_all, sqs_event, stopped_event, table_items
from workers.runtime import PermanentError
from workers.runtime.definition import WorkerDefinition
from workers.runtime.lifecycle import run_worker

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
    body = {"worker": "docs", "items": _docs(5), "shard_size": 1}
    real = arrays.children_of

    def first_two(*args, **kwargs):
        for n, child in enumerate(real(*args, **kwargs)):
            if n == 2:
                raise RuntimeError("the Lambda died here")
            yield child

    monkeypatch.setattr(arrays, "children_of", first_two)
    status, _, _ = _submit(body, key="half")
    assert status == 500
    assert len(_job_rows(res.table_name)) == 1  # chunks are all-or-nothing: the parent only
    monkeypatch.setattr(arrays, "children_of", real)
    status, answer, _ = _submit(body, key="half")
    assert status == 200 and answer["children"] == 5
    assert len(_job_rows(res.table_name)) == 6
    assert Dispatch(JobStore(res.table_name)).get(worker_key("docs"))["waiting"] >= 5


def test_big_array_jobs_are_fanned_out_by_the_launcher_from_a_manifest(res, monkeypatch) -> None:
    from jobcontract import arrays as contract

    monkeypatch.setenv(Env.ARRAY_SYNC_CHILDREN, "2")  # more than 2 children: the launcher's
    monkeypatch.setattr(contract, "FANOUT_STEP_CHILDREN", 150)  # 250 children: two steps
    body = {"worker": "docs", "items": _docs(500), "shard_size": 2, "input": {"language": "de"}}
    status, answer, _ = _submit(body, key="big")
    assert status == 202 and answer["children"] == 250
    parent_id = answer["job_id"]
    store = JobStore(res.table_name)
    parent = store.get(parent_id)
    assert len(_job_rows(res.table_name)) == 1  # the parent only, with its manifest
    manifest = boto3.client("s3").get_object(Bucket=res.bucket, Key=parent[JobField.INPUT_S3_KEY])
    assert json.loads(manifest["Body"].read())["items"] == _docs(500)
    # A fan-out step that died after its first 100 children (one transaction) ...
    real = arrays.children_of

    def dies_after_100(*args, **kwargs):
        for n, child in enumerate(real(*args, **kwargs)):
            if n == 100:
                raise RuntimeError("the launcher timed out")
            yield child

    monkeypatch.setattr(arrays, "children_of", dies_after_100)
    messages = receive_all(res.workers["docs"].queue_url)
    assert [json.loads(m["Body"]) for m in messages] == [{"fanout": parent_id}]
    with pytest.raises(RuntimeError):
        launcher.Launcher().fan_out(parent_id)
    assert len(_job_rows(res.table_name)) == 101
    # One of those children moved on meanwhile: the redelivered step must not rewrite it.
    store.update(child_id(parent_id, 0), status="QUEUED", set_fields={"marker": 1})
    # ... is redelivered: the rest of its step is created, nothing twice, and the next step
    # is asked for; that one ends the fan-out, and the drain launches two (max_concurrency).
    monkeypatch.setattr(arrays, "children_of", real)
    for _ in range(2):
        out = launcher.handler(sqs_event(res.workers["docs"].queue_arn, messages), None)
        assert out == {"batchItemFailures": []}
        messages = receive_all(res.workers["docs"].queue_url)
    assert len(_job_rows(res.table_name)) == 251
    kids = arrays.children(store, store.get(parent_id))
    assert [k[JobField.SHARD]["index"] for k in kids] == list(range(250))
    assert kids[249][JobField.INPUT] == {"language": "de", "documents": _docs(500)[498:]}
    assert sum(1 for c in kids if c[JobField.STATUS] == "DISPATCHED") == 2
    assert store.get(parent_id)[JobField.ARRAY]["created"] == 250
    assert store.get(child_id(parent_id, 0))["marker"] == 1
    assert launcher.Launcher().fan_out(parent_id).detail == "children created already"
    assert _submit(body, key="big")[0] == 200  # a replay: no new manifest, no new children
    assert len(_job_rows(res.table_name)) == 251


# --- running the children: the real launcher, worker runtime and reconciler ------------------
def _analyze(doc: dict[str, str]) -> dict[str, Any]:
    if "bad" in doc["text"]:
        raise ValueError(f"cannot analyse {doc['id']}")
    return {"id": doc["id"], "words": len(doc["text"].split())}


def _handler(ctx: Any) -> dict[str, Any]:
    docs = ctx.input["documents"]
    if any(d["text"] == "boom" for d in docs):
        raise PermanentError("this shard cannot run")
    results = ctx.map(_analyze, docs, concurrency=2)
    # The seed workers' shape: one entry per item, in order; a failed one has "error".
    pairs = zip(docs, results, strict=True)
    out = [r.value if r.ok else {"id": d["id"], "error": r.error} for d, r in pairs]
    return {"documents": out}


WORKER = WorkerDefinition(name="docs", handler=_handler)


def _run_task(res, child: dict[str, Any]) -> int:
    env = {
        **res.env(),
        Env.WORKER_NAME: "docs",
        Env.JOB_ID: str(child[JobField.JOB_ID]),
        Env.JOB_ATTEMPT: str(child[JobField.ATTEMPTS]),
        Env.TASK_ARN: str(child[JobField.TASK_ARN]),
        Env.MODEL_BACKEND: "offline",
    }
    return run_worker(WORKER, env, install_signal_handlers=False, hard_exit=lambda code: None)


def _drain(res) -> None:
    messages = receive_all(res.workers["docs"].queue_url)
    if messages:
        launcher.handler(sqs_event(res.workers["docs"].queue_arn, messages), None)


def run_array(res, parent_id: str, rounds: int = 30) -> dict[str, Any]:
    """Launch, run and reconcile children until the parent ends; the parent."""
    store = JobStore(res.table_name)
    for _ in range(rounds):
        parent = store.get(parent_id)
        if parent[JobField.STATUS] != "RUNNING":
            return parent
        _drain(res)
        for child in arrays.children(store, parent):
            if child[JobField.STATUS] == "DISPATCHED" and child.get(JobField.TASK_ARN):
                code = _run_task(res, child)
                event = stopped_event(res.cluster_arn, child[JobField.TASK_ARN], exit_code=code)
                reconciler.handler(event, None)
    raise AssertionError(f"parent {parent_id} did not end: {store.get(parent_id)}")


def _lines(res, parent_id: str) -> list[dict[str, Any]]:
    body = boto3.client("s3").get_object(Bucket=res.bucket, Key=merged_key("docs", parent_id))
    return [json.loads(line) for line in body["Body"].read().decode().splitlines()]


def test_fan_in_merges_in_item_order_and_succeeds_within_tolerance(res) -> None:
    docs = _docs(7)
    docs[3]["text"] = "a bad one"
    status, body, _ = _submit(
        {"worker": "docs", "items": docs, "shard_size": 2, "max_failed_item_share": 0.2}
    )
    assert status == 202 and body["children"] == 4
    parent = run_array(res, body["job_id"])
    assert parent[JobField.STATUS] == "SUCCEEDED"
    assert parent[JobField.ITEMS] == {"total": 7, "succeeded": 6, "failed": 1}
    assert parent[JobField.CHILDREN] == {"SUCCEEDED": 4, "FAILED": 0, "CANCELLED": 0}
    lines = _lines(res, body["job_id"])
    assert [line["index"] for line in lines] == list(range(7))
    assert [line["shard"] for line in lines] == [0, 0, 1, 1, 2, 2, 3]
    assert lines[3]["error"]["message"] == "cannot analyse 3"
    assert lines[4]["result"] == {"id": "4", "words": 2}
    summary = json.loads(
        boto3.client("s3")
        .get_object(Bucket=res.bucket, Key=summary_key("docs", body["job_id"]))["Body"]
        .read()
    )
    assert summary["items"] == {"total": 7, "succeeded": 6, "failed": 1}
    assert summary["tolerated_failed_items"] == 1 and summary["status"] == "SUCCEEDED"
    status, view, _ = call("GET", f"/jobs/{body['job_id']}")
    assert view["array"]["children"] == {
        "SUCCEEDED": 4,
        "FAILED": 0,
        "CANCELLED": 0,
        "unfinished": 0,
    }
    assert view["result"]["url"] and view["items"]["failed"] == 1


def test_parent_fails_beyond_tolerance_and_is_reported_once(res) -> None:
    taps = topic_tap(res.topic_arn, "array-failures")
    docs = _docs(6)
    docs[0]["text"] = "bad"
    docs[5]["text"] = "boom"  # its whole shard fails (PermanentError): both of its items
    status, body, _ = _submit({"worker": "docs", "items": docs, "shard_size": 2})
    assert status == 202
    parent = run_array(res, body["job_id"])
    assert parent[JobField.STATUS] == "FAILED"
    assert parent[JobField.ERROR]["type"] == "ItemsFailed"
    assert parent[JobField.ITEMS] == {"total": 6, "succeeded": 3, "failed": 3}
    assert parent[JobField.CHILDREN] == {"SUCCEEDED": 2, "FAILED": 1, "CANCELLED": 0}
    lines = _lines(res, body["job_id"])
    assert [("error" in line) for line in lines] == [True, False, False, False, True, True]
    assert lines[4]["error"]["type"] == "PermanentError"
    published = [json.loads(m["Body"]) for m in receive_all(taps)]
    assert [p["job_id"] for p in published] == [body["job_id"]]


def _ended_children(res, n: int, shard_size: int = 1) -> tuple[str, list[dict[str, Any]]]:
    """An array job whose children all SUCCEEDED (recorded as the runtime records them),
    none counted on the parent yet: (parent id, children)."""
    status, body, _ = _submit({"worker": "docs", "items": _docs(n), "shard_size": shard_size})
    assert status == 202
    store = JobStore(res.table_name)
    parent_id = body["job_id"]
    ended = []
    for child in arrays.children(store, store.get(parent_id)):
        child_id_ = child[JobField.JOB_ID]
        docs = child[JobField.INPUT]["documents"]
        key = f"results/docs/{child_id_}/result.json"
        output = {"documents": [{"id": d["id"]} for d in docs]}
        boto3.client("s3").put_object(
            Bucket=res.bucket, Key=key, Body=json.dumps({"output": output}).encode()
        )
        store.transition(child_id_, "QUEUED", "DISPATCHED", attempt=0, increment_attempts=True)
        store.transition(child_id_, "DISPATCHED", "RUNNING", attempt=1)
        ended.append(
            store.transition(
                child_id_,
                "RUNNING",
                "SUCCEEDED",
                set_fields={
                    JobField.RESULT_KEY: key,
                    JobField.ITEMS: {"total": len(docs), "succeeded": len(docs), "failed": 0},
                },
            )
        )
    return parent_id, ended


def test_each_child_counted_once_under_duplicate_and_concurrent_endings(res) -> None:
    parent_id, ended = _ended_children(res, 12)
    store = JobStore(res.table_name)
    counted: list[str] = []
    lock = threading.Lock()

    def end(child: dict[str, Any]) -> None:
        if arrays.record_end(JobStore(res.table_name), child) is not None:
            with lock:
                counted.append(child[JobField.JOB_ID])

    threads = [threading.Thread(target=end, args=(c,)) for c in ended * 3]  # each ends 3 times
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counted) == sorted(c[JobField.JOB_ID] for c in ended)
    parent = store.get(parent_id)
    assert parent[JobField.DONE_SHARDS] == {str(i) for i in range(12)}
    assert parent[JobField.CHILDREN]["SUCCEEDED"] == 12
    assert parent[JobField.ITEMS] == {"total": 12, "succeeded": 12, "failed": 0}
    assert parent[JobField.PROGRESS] == {"done": 12, "total": 12}
    # The reconciler sees a child's end again (a repeated event): nothing changes.
    rec = reconciler.Reconciler(store)
    rec._ended(ended[0])
    assert store.get(parent_id)[JobField.CHILDREN]["SUCCEEDED"] == 12


def test_exactly_one_actor_merges_and_ends_the_parent(res, monkeypatch) -> None:
    parent_id, ended = _ended_children(res, 5)
    store = JobStore(res.table_name)
    for child in ended:
        arrays.record_end(store, child)
    complete = store.get(parent_id)
    # A merge claimed a moment ago by another actor: this one neither merges nor ends it.
    claim = {"owner": "someone", "at": complete[JobField.UPDATED_AT]}
    claimed = store.update(parent_id, status="RUNNING", set_fields={JobField.MERGE: claim})
    assert arrays.finalize(store, claimed) is None
    listed = boto3.client("s3").list_objects_v2(Bucket=res.bucket, Prefix="results/docs/")
    assert not [o for o in listed.get("Contents", []) if o["Key"].endswith("results.jsonl")]
    complete = store.update(parent_id, status="RUNNING", remove_fields=[JobField.MERGE])
    # BatchGetItem keeps no order: the merge must not depend on it.
    real_get_many = JobStore.get_many
    monkeypatch.setattr(JobStore, "get_many", lambda self, ids: real_get_many(self, ids)[::-1])
    results: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(arrays.finalize(JobStore(res.table_name), complete))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0][JobField.STATUS] == "SUCCEEDED"
    assert arrays.finalize(store, store.get(parent_id)) is None  # ended: nothing more
    assert [line["index"] for line in _lines(res, parent_id)] == list(range(5))


def test_children_listed_by_parent_page_by_page(res) -> None:
    status, body, _ = _submit({"worker": "docs", "items": _docs(5), "shard_size": 1})
    parent_id = body["job_id"]
    status, page1, _ = call("GET", "/jobs", query={"parent": parent_id, "limit": "3"})
    assert status == 200 and page1["next_cursor"] == "3"
    assert [j["shard"]["index"] for j in page1["jobs"]] == [0, 1, 2]
    assert all(j["parent_id"] == parent_id and j["status"] == "QUEUED" for j in page1["jobs"])
    query = {"parent": parent_id, "limit": "3", "cursor": page1["next_cursor"]}
    status, page2, _ = call("GET", "/jobs", query=query)
    assert [j["shard"]["index"] for j in page2["jobs"]] == [3, 4] and page2["next_cursor"] is None
    status, view, _ = call("GET", f"/jobs/{parent_id}")
    assert view["status"] == "RUNNING" and view["array"]["shards"] == 5
    assert view["array"]["children"]["unfinished"] == 5
    assert view["items"] == {"total": 5, "succeeded": 0, "failed": 0}
    # worker and status filter the children (schema-valid together with parent)
    status, same, _ = call("GET", "/jobs", query={"parent": parent_id, "worker": "docs"})
    assert status == 200 and len(same["jobs"]) == 5
    status, none, _ = call("GET", "/jobs", query={"parent": parent_id, "status": "RUNNING"})
    assert status == 200 and none["jobs"] == []
    status, err, _ = call("GET", "/jobs", query={"parent": parent_id, "status": "nope"})
    assert status == 400 and err["error"]["code"] == "invalid_query"
    status, err, _ = call("GET", "/jobs", query={"parent": child_id(parent_id, 0)})
    assert status == 404


def test_plain_listings_show_the_parent_not_its_children(res, monkeypatch) -> None:
    """GET /jobs (also by worker and by status) lists top-level jobs only, page by page past
    any number of children (more than one read of the index); children: ?parent=."""
    monkeypatch.setenv(Env.ARRAY_SYNC_CHILDREN, "300")  # written by the request itself
    _, single, _ = call("POST", "/jobs", {"worker": "docs", "input": {"documents": _docs(1)}})
    _, array, _ = _submit({"worker": "docs", "items": _docs(150), "shard_size": 1})
    _, later, _ = call("POST", "/jobs", {"worker": "docs", "input": {"documents": _docs(1)}})
    assert len(_job_rows(res.table_name)) == 3 + 150  # the children exist

    def listed(**query: str) -> list[str]:
        ids, cursor = [], None
        for _ in range(10):
            page = {**query, "limit": "1", **({"cursor": cursor} if cursor else {})}
            status, body, _ = call("GET", "/jobs", query=page)
            assert status == 200, body
            ids += [j["job_id"] for j in body["jobs"]]
            assert not any(j.get("parent_id") for j in body["jobs"])
            cursor = body["next_cursor"]
            if cursor is None:
                return ids
        raise AssertionError(f"no end after 10 pages: {ids}")

    newest_first = [later["job_id"], array["job_id"], single["job_id"]]
    assert listed() == newest_first
    assert listed(worker="docs") == newest_first
    assert listed(status="QUEUED") == [later["job_id"], single["job_id"]]
    assert listed(worker="docs", status="RUNNING") == [array["job_id"]]


def test_cancelling_the_parent_cancels_every_child(res) -> None:
    status, body, _ = _submit({"worker": "docs", "items": _docs(5), "shard_size": 1})
    parent_id = body["job_id"]
    store = JobStore(res.table_name)
    _drain(res)  # max_concurrency 2: two children launched, three parked
    launched = [c for c in arrays.children(store, store.get(parent_id)) if c.get("task_arn")]
    assert len(launched) == 2
    status, view, _ = call("POST", f"/jobs/{parent_id}/cancel")
    assert status == 202 and view["cancel"] == {"cancelled": 3, "stopping": 2}
    assert view["cancel_requested"] is True
    kids = arrays.children(store, store.get(parent_id))
    assert sorted(c[JobField.STATUS] for c in kids) == ["CANCELLED"] * 3 + ["DISPATCHED"] * 2
    tasks = boto3.client("ecs").describe_tasks(
        cluster=res.cluster_arn, tasks=[c[JobField.TASK_ARN] for c in launched]
    )["tasks"]
    assert {t["desiredStatus"] for t in tasks} == {"STOPPED"}
    for child in launched:  # the stopped tasks' events end and count them; the last merges
        event = stopped_event(
            res.cluster_arn, child[JobField.TASK_ARN], exit_code=143, stop_code="UserInitiated"
        )
        reconciler.handler(event, None)
    parent = store.get(parent_id)
    assert parent[JobField.STATUS] == "CANCELLED"
    assert parent[JobField.CHILDREN] == {"SUCCEEDED": 0, "FAILED": 0, "CANCELLED": 5}
    assert [line["error"]["type"] for line in _lines(res, parent_id)] == ["Cancelled"] * 5
    status, err, _ = call("POST", f"/jobs/{parent_id}/cancel")
    assert status == 409 and err["error"]["code"] == "job_terminal"


def test_sweep_counts_lost_ends_and_merges_what_nobody_merged(res) -> None:
    from datetime import UTC, datetime, timedelta

    parent_id, ended = _ended_children(res, 3)
    store = JobStore(res.table_name)
    arrays.record_end(store, ended[0])  # the other two ends were never counted (lost events)
    early = sweep.Sweeper(store).run()
    assert parent_id not in early.settled  # not quiet long enough yet
    assert store.get(parent_id)[JobField.STATUS] == "RUNNING"
    later = sweep.Sweeper(store, now=datetime.now(UTC) + timedelta(hours=1)).run()
    assert later.settled[parent_id] == "final: SUCCEEDED"
    assert store.get(parent_id)[JobField.CHILDREN]["SUCCEEDED"] == 3
    # An all-queued parent cancelled through the API: the API counts every end, the sweep
    # merges (the API has no write access to results).
    status, body, _ = _submit({"worker": "docs", "items": _docs(2), "shard_size": 1})
    assert status == 202
    assert call("POST", f"/jobs/{body['job_id']}/cancel")[0] == 202
    assert store.get(body["job_id"])[JobField.STATUS] == "RUNNING"
    assert sweep.Sweeper(store).run().settled[body["job_id"]] == "final: CANCELLED"


def test_sweep_resends_a_lost_fan_out_message(res, monkeypatch) -> None:
    from datetime import UTC, datetime, timedelta

    monkeypatch.setenv(Env.ARRAY_SYNC_CHILDREN, "0")
    status, body, _ = _submit({"worker": "docs", "items": _docs(3), "shard_size": 1}, key="lost")
    assert status == 202
    receive_all(res.workers["docs"].queue_url)  # the fan-out message is lost
    store = JobStore(res.table_name)
    assert body["job_id"] not in sweep.Sweeper(store).run().redriven  # not quiet long enough
    later = sweep.Sweeper(store, now=datetime.now(UTC) + timedelta(hours=1)).run()
    assert body["job_id"] in later.redriven
    messages = receive_all(res.workers["docs"].queue_url)
    assert [json.loads(m["Body"]) for m in messages] == [{"fanout": body["job_id"]}]
    launcher.handler(sqs_event(res.workers["docs"].queue_arn, messages), None)
    assert len(arrays.children(store, store.get(body["job_id"]))) == 3


def test_cancel_before_the_fan_out_counts_unwritten_shards_cancelled(res, monkeypatch) -> None:
    monkeypatch.setenv(Env.ARRAY_SYNC_CHILDREN, "0")
    status, body, _ = _submit({"worker": "docs", "items": _docs(5), "shard_size": 2}, key="c")
    assert status == 202 and body["children"] == 3
    parent_id = body["job_id"]
    status, view, _ = call("POST", f"/jobs/{parent_id}/cancel")
    assert status == 202 and view["cancel"] == {"cancelled": 3, "stopping": 0}
    store = JobStore(res.table_name)
    parent = store.get(parent_id)
    assert parent[JobField.CHILDREN]["CANCELLED"] == 3
    assert parent[JobField.ITEMS] == {"total": 5, "succeeded": 0, "failed": 5}
    assert launcher.Launcher().fan_out(parent_id).detail == "array job cancelled"
    assert arrays.children(store, parent) == []
    assert sweep.Sweeper(store).run().settled[parent_id] == "final: CANCELLED"
    assert [line["index"] for line in _lines(res, parent_id)] == [0, 1, 2, 3, 4]
