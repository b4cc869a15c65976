"""Array jobs whose items are an uploaded JSON Lines manifest (handlers/manifest_api.py,
handlers/manifests.py) against the real moto server: the API's checks, the launcher's
resumable validation and fan-out steps, invalid items failing the parent before anything is
enqueued, and a large manifest fanned out in steps (its memory: bench/manifest_fanout.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from handlers import arrays, launcher, manifests
from jobcontract import JobField
from jobcontract import arrays as contract
from jobcontract.arrays import MAX_ITEM_BYTES, MAX_SHARDS, child_id
from jobcontract.dispatch import Dispatch, worker_key
from jobcontract.store import JobStore
from tests.fixtures.manifests import BULK_SCHEMA, bulk_lines
from tests.fixtures.moto_server import WorkerSpec, topic_tap
from tests.runtime.helpers import call, receive_all, sqs_event, table_items
from tests.runtime.test_array_jobs import DOCS, PLAIN, _lines, run_array

KEY = "inputs/docs/0123456789abcdef0123456789abcdef/items.jsonl"
BULK = WorkerSpec("bulk", input_schema=BULK_SCHEMA)


@pytest.fixture
def res(pipeline_resources):
    return pipeline_resources([DOCS, PLAIN, BULK])


def _docs(n: int) -> list[dict[str, str]]:
    return [{"id": str(i), "text": f"text {i}"} for i in range(n)]


def _jsonl(items: list[Any]) -> bytes:
    return b"".join(json.dumps(i, separators=(",", ":")).encode() + b"\n" for i in items)


def _put(res, body: bytes, key: str = KEY) -> None:
    boto3.client("s3").put_object(Bucket=res.bucket, Key=key, Body=body)


def _submit(body: dict, key: str | None = None):
    headers = {"Idempotency-Key": key} if key else {}
    return call("POST", "/jobs", body, headers=headers)


def _job_rows(table: str) -> list[dict]:
    return [i for i in table_items(table) if i["pk"]["S"].startswith("job#")]


def _steps(res, limit: int = 200) -> int:
    """Feed the launch queue to the real launcher until no fan-out step is asked for; the
    number of fan-out messages handled."""
    handled = 0
    for _ in range(limit):
        messages = receive_all(res.workers["docs"].queue_url)
        fanouts = [m for m in messages if "fanout" in m["Body"]]
        if not messages:
            return handled
        handled += len(fanouts)
        out = launcher.handler(sqs_event(res.workers["docs"].queue_arn, messages), None)
        assert out == {"batchItemFailures": []}
    raise AssertionError("the fan-out did not end")


@pytest.fixture
def small_steps(monkeypatch):
    """Every step stops at its first look at the clock: 100 items validated, 150 children."""
    monkeypatch.setenv(manifests.STEP_SECONDS_ENV, "0")
    monkeypatch.setattr(manifests, "DEADLINE_CHECK_EVERY", 100)
    monkeypatch.setattr(contract, "FANOUT_STEP_CHILDREN", 150)


# --- the API's checks ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("manifest", "extra", "status", "code"),
    [
        ({"s3_key": "inputs/plain/u/items.jsonl", "items": 3}, {}, 400, "invalid_manifest"),
        ({"s3_key": "results/docs/x.jsonl", "items": 3}, {}, 400, "invalid_manifest"),
        ({"s3_key": "inputs/docs/u/../../plain/x", "items": 3}, {}, 400, "invalid_manifest"),
        ({"s3_key": "inputs/docs/" + "k" * 1020, "items": 3}, {}, 400, "invalid_manifest"),
        ({"s3_key": "inputs/docs/missing.jsonl", "items": 3}, {}, 400, "manifest_not_found"),
        ({"s3_key": KEY}, {}, 400, "invalid_manifest"),
        ({"s3_key": KEY, "items": 0}, {}, 400, "invalid_manifest"),
        ({"s3_key": KEY, "items": 3, "etag": "x"}, {}, 400, "invalid_manifest"),
        ({"s3_key": KEY, "items": 1000}, {}, 400, "invalid_manifest"),  # in 3 lines
        ({"s3_key": KEY, "items": MAX_SHARDS + 1}, {"shard_size": 1}, 400, "array_limit"),
        ({"s3_key": KEY, "items": 3}, {"items": _docs(3)}, 400, "invalid_request"),
        ({"s3_key": KEY, "items": 3}, {"input": {"language": 3}}, 400, "invalid_input"),
        ({"s3_key": KEY, "items": 3}, {"input": {"language": "x" * 70_000}}, 413,
         "shared_input_too_large"),
    ],
)  # fmt: skip
def test_rejected_manifest_jobs_name_the_rule_and_write_nothing(
    res, manifest, extra, status, code
) -> None:
    _put(res, _jsonl(_docs(3)))
    before = table_items(res.table_name)
    got, body, _ = _submit({"worker": "docs", "manifest": manifest, **extra})
    assert (got, body["error"]["code"]) == (status, code), body
    assert table_items(res.table_name) == before
    assert receive_all(res.workers["docs"].queue_url) == []


def test_a_manifest_above_the_size_limit_is_413_naming_it(res, monkeypatch) -> None:
    _put(res, _jsonl(_docs(3)))
    monkeypatch.setattr(contract, "MAX_MANIFEST_BYTES", 20)
    status, body, _ = _submit({"worker": "docs", "manifest": {"s3_key": KEY, "items": 3}})
    assert status == 413 and body["error"]["code"] == "manifest_too_large"
    assert body["error"]["limit"] == "max_manifest_bytes" and "max_manifest_bytes" in str(body)
    assert _job_rows(res.table_name) == []


# --- validation before anything is enqueued --------------------------------------------------
def test_invalid_items_at_known_indexes_fail_the_parent_and_enqueue_nothing(
    res, small_steps
) -> None:
    taps = topic_tap(res.topic_arn, "manifest-failures")
    lines = [json.dumps(d).encode() for d in _docs(1200)]
    lines[3] = b'{"id": "3"}'  # no text
    lines[9] = b""  # a blank line is an item, and not a valid one
    lines[777] = b'{"id": "777", "text": '  # not JSON
    lines[1100] = json.dumps({"id": "1100", "text": "x" * MAX_ITEM_BYTES}).encode()
    _put(res, b"\n".join(lines) + b"\n")
    status, body, _ = _submit(
        {"worker": "docs", "manifest": {"s3_key": KEY, "items": 1200}, "shard_size": 10}
    )
    assert status == 202 and body["children"] == 120 and body["status"] == "RUNNING"
    parent_id = body["job_id"]
    assert _steps(res) == 13  # 1,200 items validated 100 per step, then the verdict
    store = JobStore(res.table_name)
    parent = store.get(parent_id)
    assert parent[JobField.STATUS] == "FAILED"
    error = parent[JobField.ERROR]
    assert error["type"] == "InvalidItems" and error["limit"] == "max_item_bytes"
    assert error["invalid_items"] == [3, 9, 777, 1100] and error["invalid_count"] == 4
    assert any(d.startswith("items[3]") and "text" in d for d in error["details"])
    assert any(d.startswith("items[777]: not a JSON value") for d in error["details"])
    assert any("max_item_bytes" in d and d.startswith("items[1100]") for d in error["details"])
    assert [r["pk"]["S"] for r in _job_rows(res.table_name)] == [f"job#{parent_id}"]
    counts = Dispatch(store).get(worker_key("docs"))
    assert counts is None or counts["waiting"] == 0
    assert receive_all(res.workers["docs"].queue_url) == []
    published = [json.loads(m["Body"]) for m in receive_all(taps)]
    assert [p["job_id"] for p in published] == [parent_id]
    status, view, _ = call("GET", f"/jobs/{parent_id}")
    assert view["error"]["invalid_items"] == [3, 9, 777, 1100]
    assert view["array"]["manifest"]["validated_items"] == 1200


def test_only_the_first_invalid_items_are_listed_but_all_are_counted(res) -> None:
    _put(res, b"{}\n" * 250)
    status, body, _ = _submit({"worker": "docs", "manifest": {"s3_key": KEY, "items": 250}})
    assert status == 202
    _steps(res)
    error = JobStore(res.table_name).get(body["job_id"])[JobField.ERROR]
    assert error["invalid_count"] == 250
    assert error["invalid_items"] == list(range(contract.MAX_REPORTED_INVALID_ITEMS))


@pytest.mark.parametrize("actual", [4, 6])
def test_another_count_than_declared_fails_the_parent(res, actual) -> None:
    _put(res, _jsonl(_docs(actual)))
    status, body, _ = _submit({"worker": "docs", "manifest": {"s3_key": KEY, "items": 5}})
    assert status == 202
    _steps(res)
    parent = JobStore(res.table_name).get(body["job_id"])
    assert parent[JobField.STATUS] == "FAILED"
    assert parent[JobField.ERROR]["type"] == "InvalidManifest"
    assert f"holds {actual} items" in parent[JobField.ERROR]["message"]
    assert len(_job_rows(res.table_name)) == 1


def test_a_manifest_overwritten_after_submit_fails_the_parent(res) -> None:
    _put(res, _jsonl(_docs(5)))
    status, body, _ = _submit({"worker": "docs", "manifest": {"s3_key": KEY, "items": 5}})
    assert status == 202
    _put(res, _jsonl(_docs(5)).replace(b"text 1", b"TEXT 1"))  # same size, other bytes
    _steps(res)
    parent = JobStore(res.table_name).get(body["job_id"])
    assert parent[JobField.STATUS] == "FAILED" and "changed" in parent[JobField.ERROR]["message"]
    assert len(_job_rows(res.table_name)) == 1


def test_a_manifest_overwritten_while_children_are_written_cancels_the_array_job(
    res, small_steps, monkeypatch
) -> None:
    """The object is overwritten (same size, other bytes) in the middle of a write step, after
    150 children of an earlier step and 100 of this one exist. S3 answers the next ranged
    GetObject ``IfMatch`` the submitted ETag with 412 PreconditionFailed (moto 5.2.5 does so:
    asserted below), so no child is made from the new bytes; the parent is cancelled with an
    error naming the change, its queued children are cancelled at once, every shard is
    counted once, and the merged result still has each item exactly once."""
    docs = _docs(600)
    original = _jsonl(docs)
    _put(res, original)
    status, body, _ = _submit(
        {"worker": "docs", "manifest": {"s3_key": KEY, "items": 600}, "shard_size": 2}
    )
    assert status == 202 and body["children"] == 300
    parent_id = body["job_id"]
    store = JobStore(res.table_name)
    while not store.get(parent_id)[JobField.ARRAY]["manifest"].get("validated"):
        launcher.Launcher().fan_out(parent_id)
    monkeypatch.setenv(manifests.STEP_SECONDS_ENV, "20")  # write steps of 150 children
    monkeypatch.setattr(manifests, "READ_WINDOW_BYTES", 1024)  # about 33 items per GET
    launcher.Launcher().fan_out(parent_id)
    assert store.get(parent_id)[JobField.ARRAY]["created"] == 150
    etag = store.get(parent_id)[JobField.ARRAY]["manifest"]["etag"]
    changed = original.replace(b'"text 4', b'"TEXT 4')  # same size, other bytes
    real_get, gets = manifests._get_range, []

    def overwritten_after_8_reads(manifest, start, length, piece):
        gets.append(start)
        if len(gets) == 9:  # this step has made one chunk of 100 children and is in the next
            _put(res, changed)
        return real_get(manifest, start, length, piece)

    monkeypatch.setattr(manifests, "_get_range", overwritten_after_8_reads)
    monkeypatch.setattr(manifests, "CANCEL_MIN_SECONDS", 300)  # the whole cascade, even loaded
    receive_all(res.workers["docs"].queue_url)
    done = launcher.Launcher().fan_out(parent_id)
    with pytest.raises(ClientError) as refused:  # what the 9th read got
        boto3.client("s3").get_object(Bucket=res.bucket, Key=KEY, IfMatch=etag, Range="bytes=0-9")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert done.detail == "0 children created"  # by the cursor: this step's 100 not counted
    parent = store.get(parent_id)
    assert parent[JobField.CANCEL_REQUESTED] is True
    error = parent[JobField.ERROR]
    assert error["type"] == "InvalidManifest" and "changed while its children" in error["message"]
    assert "412 PreconditionFailed" in error["message"] and etag in error["message"]
    # Nothing from the new bytes: exactly the 250 children written before, from the old ones.
    kids = arrays.children(store, parent)
    assert [k[JobField.SHARD]["index"] for k in kids] == list(range(250))
    assert [d for k in kids for d in k[JobField.INPUT]["documents"]] == docs[:500]
    assert {k[JobField.STATUS] for k in kids} == {"CANCELLED"}  # none left for the drain
    assert contract.is_complete(parent) and len(parent[JobField.DONE_SHARDS]) == 300
    assert [m for m in receive_all(res.workers["docs"].queue_url) if "fanout" in m["Body"]] == []
    # A redelivered step writes nothing; the merge ends the parent CANCELLED, error kept.
    assert launcher.Launcher().fan_out(parent_id).detail == "array job cancelled"
    assert len(_job_rows(res.table_name)) == 251
    ended = arrays.finalize(store, store.get(parent_id))
    assert ended is not None and ended[JobField.STATUS] == "CANCELLED"
    assert ended[JobField.ERROR]["type"] == "InvalidManifest"
    assert [line["index"] for line in _lines(res, parent_id)] == list(range(600))
    view = call("GET", f"/jobs/{parent_id}")[1]
    assert view["status"] == "CANCELLED" and "changed while" in view["error"]["message"]


# --- resumable fan-out -----------------------------------------------------------------------
def test_fan_out_in_bounded_steps_survives_dying_steps_without_loss_or_duplicates(
    res, small_steps, monkeypatch
) -> None:
    docs = _docs(501)
    docs[250]["text"] = "a line with \\n and unicode \u00e9"
    _put(res, _jsonl(docs))
    request = {
        "worker": "docs",
        "manifest": {"s3_key": KEY, "items": 501},
        "shard_size": 2,
        "input": {"language": "de"},
    }
    status, body, _ = _submit(request, key="m-1")
    assert status == 202 and body["children"] == 251
    parent_id = body["job_id"]
    assert _submit(request, key="m-1")[0] == 200  # a replay: the same parent
    store = JobStore(res.table_name)
    assert len(_job_rows(res.table_name)) == 1  # the API writes the parent only
    # A validation step dies after reading 50 items: its cursor was not moved.
    real_lines = contract.iter_lines

    def dies_after_50(*args, **kwargs):
        for n, line in enumerate(real_lines(*args, **kwargs)):
            if n == 50:
                raise RuntimeError("Lambda timed out")
            yield line

    monkeypatch.setattr(contract, "iter_lines", dies_after_50)
    with pytest.raises(RuntimeError):
        launcher.Launcher().fan_out(parent_id)
    assert store.get(parent_id)[JobField.ARRAY]["manifest"]["offset"] == 0
    monkeypatch.setattr(contract, "iter_lines", real_lines)
    # Validated in six steps, then a write step that dies after 100 children ...
    for _ in range(6):
        launcher.Launcher().fan_out(parent_id)
    view = call("GET", f"/jobs/{parent_id}")[1]["array"]["manifest"]
    assert view["validated"] is True and view["validated_items"] == 501
    assert view["children_created"] == 0 and len(_job_rows(res.table_name)) == 1
    monkeypatch.setenv(manifests.STEP_SECONDS_ENV, "20")  # write steps of 150 children
    real_children = arrays.children_of

    def dies_after_100(*args, **kwargs):
        for n, child in enumerate(real_children(*args, **kwargs)):
            if n == 100:
                raise RuntimeError("Lambda timed out")
            yield child

    monkeypatch.setattr(arrays, "children_of", dies_after_100)
    with pytest.raises(RuntimeError):
        launcher.Launcher().fan_out(parent_id)
    assert len(_job_rows(res.table_name)) == 101
    assert store.get(parent_id)[JobField.ARRAY]["created"] == 0
    store.update(child_id(parent_id, 0), status="QUEUED", set_fields={"marker": 1})
    monkeypatch.setattr(arrays, "children_of", real_children)
    # ... and the steps go on from the queue: 150 children per step, nothing twice.
    receive_all(res.workers["docs"].queue_url)
    boto3.client("sqs").send_message(
        QueueUrl=res.workers["docs"].queue_url, **contract.fanout_message(parent_id)
    )
    assert _steps(res) == 2
    assert len(_job_rows(res.table_name)) == 252
    parent = store.get(parent_id)
    assert parent[JobField.ARRAY]["created"] == 251
    assert parent[JobField.ARRAY]["offset"] == parent[JobField.ARRAY]["manifest"]["bytes"]
    kids = arrays.children(store, parent)
    assert [k[JobField.SHARD]["index"] for k in kids] == list(range(251))
    assert [d for k in kids for d in k[JobField.INPUT]["documents"]] == docs
    assert all(k[JobField.INPUT]["language"] == "de" for k in kids)
    assert kids[250][JobField.SHARD] == {"index": 250, "offset": 500, "count": 1}
    assert store.get(child_id(parent_id, 0))["marker"] == 1
    assert Dispatch(store).get(worker_key("docs"))["waiting"] >= 249


def test_manifest_array_job_runs_to_a_merged_result_in_item_order(res) -> None:
    docs = _docs(7)
    docs[3]["text"] = "a bad one"
    _put(res, _jsonl(docs))
    status, body, _ = _submit(
        {
            "worker": "docs",
            "manifest": {"s3_key": KEY, "items": 7},
            "shard_size": 2,
            "max_failed_item_share": 0.2,
        }
    )
    assert status == 202
    _steps(res)
    parent = run_array(res, body["job_id"])
    assert parent[JobField.STATUS] == "SUCCEEDED"
    assert parent[JobField.ITEMS] == {"total": 7, "succeeded": 6, "failed": 1}
    lines = _lines(res, body["job_id"])
    assert [line["index"] for line in lines] == list(range(7))
    assert lines[3]["error"]["message"] == "cannot analyse 3"
    view = call("GET", f"/jobs/{body['job_id']}")[1]
    assert view["result"]["url"] and view["result"]["summary_url"]


def _bulk_job(res, n: int) -> tuple[str, int]:
    """A bulk array job of ``n`` items (about 125 B each) in shards of 1000: (parent, bytes)."""
    body = b"".join(bulk_lines(n))
    key = KEY.replace("/docs/", "/bulk/")
    _put(res, body, key)
    status, answer, _ = _submit(
        {"worker": "bulk", "manifest": {"s3_key": key, "items": n}, "shard_size": 1000}
    )
    assert status == 202 and answer["children"] == -(-n // 1000)
    return answer["job_id"], len(body)


def test_a_large_manifest_is_validated_and_fanned_out_in_steps(res) -> None:
    """50,000 items (6 MB): validated and fanned out into 50 children (their inputs, 125 KB
    each, in S3), every item once and in order. The 1,000,000-item run: bench/."""
    n = 50_000
    parent_id, _ = _bulk_job(res, n)
    start = time.monotonic()
    steps = 1
    while launcher.Launcher().fan_out(parent_id).detail != "children created already":
        steps += 1
    print(f"\n{n} manifest items fanned out in {time.monotonic() - start:.1f} s, {steps} steps")
    store = JobStore(res.table_name)
    parent = store.get(parent_id)
    assert parent[JobField.ARRAY]["created"] == 50
    kids = arrays.children(store, parent)
    assert [k[JobField.SHARD]["offset"] for k in kids] == list(range(0, n, 1000))
    last = kids[-1]
    docs = json.loads(
        boto3.client("s3")
        .get_object(Bucket=res.bucket, Key=last[JobField.INPUT_S3_KEY])["Body"]
        .read()
    )["documents"]
    assert [d["id"] for d in docs] == [str(i) for i in range(n - 1000, n)]


def test_uploads_let_a_manifest_be_larger_than_a_file(res) -> None:
    files = [
        {
            "name": "items.jsonl",
            "size": contract.MAX_MANIFEST_BYTES,
            "content_type": "application/x-ndjson",
        }
    ]
    status, body, _ = call("POST", "/uploads", {"worker": "docs", "files": files})
    assert status == 200 and body["uploads"][0]["key"].startswith("inputs/docs/")
    files[0]["size"] += 1
    status, body, _ = call("POST", "/uploads", {"worker": "docs", "files": files})
    assert status == 400 and "max_manifest_bytes" in body["error"]["message"]
    files[0].update(content_type="image/png", size=contract.MAX_MANIFEST_BYTES)
    status, body, _ = call("POST", "/uploads", {"worker": "docs", "files": files})
    assert status == 400 and body["error"]["code"] == "file_too_large"


def test_the_ranged_reader_hands_out_the_pieces_it_read_without_copying(monkeypatch) -> None:
    """A window is kept as the pieces S3's body was read in, each handed out as is and then
    dropped (no join, no slice of the window): memory is one window at most."""
    from collections import deque

    body = bytes(range(256)) * 40  # 10,240 bytes
    windows: list[deque[bytes]] = []
    pieces: list[bytes] = []  # every piece S3's body gave, in order

    def get_range(manifest, start, length, piece):
        data = body[start : start + length]
        windows.append(deque(data[i : i + piece] for i in range(0, len(data), piece)))
        pieces.extend(windows[-1])
        return windows[-1]

    monkeypatch.setattr(manifests, "READ_WINDOW_BYTES", 4096)
    monkeypatch.setattr(manifests, "_get_range", get_range)
    reader = manifests._RangedReader({"bytes": len(body)}, 100)
    got = []
    while data := reader.read(1024):
        got.append(data)
    assert b"".join(got) == body[100:]
    assert all(a is b for a, b in zip(got, pieces, strict=True))  # the pieces read, no copies
    assert [len(w) for w in windows] == [0, 0, 0]  # every piece dropped once handed out
    assert len(windows) == 3  # windows of 4,096 bytes: 100-4195, 4196-8291, 8292-10239
    import itertools

    mixed, parts = manifests._RangedReader({"bytes": len(body)}, 0), []
    for n in itertools.cycle((3000, 10, 5000, 1, 700)):  # any sizes; reads may be short
        data = mixed.read(n)
        assert len(data) <= n
        if not data:
            break
        parts.append(data)
    assert b"".join(parts) == body
