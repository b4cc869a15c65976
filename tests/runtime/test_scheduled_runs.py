"""Scheduled runs (``jobcontract.scheduled``) against the real moto server: one creator for
the worker runtime and the reconciler, and a scheduled run as an array job that fans out and
merges like one submitted to ``POST /jobs``, with the API's checks."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from handlers import reconciler
from jobcontract import Env, JobField, scheduled_job_id
from jobcontract.arrays import child_id
from jobcontract.dispatch import Dispatch, worker_key
from jobcontract.scheduled import ScheduledArray
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec
from tests.runtime.helpers import call, receive_all, stopped_event, table_items
from tests.runtime.test_array_jobs import DOCS, WORKER, _docs, _lines, run_array
from workers.runtime import exit_codes
from workers.runtime.lifecycle import run_worker

ECHO = WorkerSpec("echo", max_attempts=2, timeout_seconds=600)


@pytest.fixture
def res(pipeline_resources):
    return pipeline_resources([DOCS, ECHO])


def _scheduled_task(res, worker: str, job_input: dict, array: ScheduledArray | None = None):
    """RunTask as EventBridge Scheduler does for a ``ScheduledTask``: no job id, the request
    in the overrides (``components.scheduled_task.task_overrides``)."""
    from components.scheduled_task import task_overrides

    overrides = json.loads(task_overrides(job_input, array))
    task = boto3.client("ecs").run_task(
        cluster=res.cluster_arn,
        taskDefinition=res.workers[worker].task_definition_arn,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": list(res.subnet_ids), "securityGroups": []}
        },
        overrides=overrides,
    )["tasks"][0]
    env = {e["name"]: e["value"] for e in overrides["containerOverrides"][0]["environment"]}
    return task["taskArn"], env


def _runtime(res, worker, task_env: dict[str, str], task_arn: str) -> int:
    env = {
        **res.env(),
        **task_env,
        Env.WORKER_NAME: worker.name,
        Env.TASK_ARN: task_arn,
        Env.MODEL_BACKEND: "offline",
    }
    return run_worker(worker, env, install_signal_handlers=False, hard_exit=lambda code: None)


def _reconcile(res, task_arn: str, **kwargs: Any) -> str:
    return reconciler.handler(stopped_event(res.cluster_arn, task_arn, **kwargs), None)["outcome"]


def test_scheduled_array_run_fans_out_and_merges_like_a_submitted_one(res) -> None:
    docs = _docs(7)
    docs[5]["text"] = "a bad one"
    array = ScheduledArray(items=docs, shard_size=3, max_failed_item_share=0.2)
    task, env = _scheduled_task(res, "docs", {"language": "en"}, array)
    store = JobStore(res.table_name)
    parent_id = scheduled_job_id("docs", task)
    assert parent_id is not None
    # The task itself records nothing (no schema, no launch queue): it exits 0 at once.
    assert _runtime(res, WORKER, env, task) == exit_codes.OK
    assert store.get(parent_id) is None
    # Its STOPPED event (exit 0, normally skipped without a read) makes the parent and
    # its children, parked, and asks for one drain.
    assert _reconcile(res, task, exit_code=0) == "scheduled array job: 3 shards"
    parent = store.get(parent_id)
    assert parent[JobField.SOURCE] == "schedule" and parent[JobField.STATUS] == "RUNNING"
    assert parent[JobField.ARRAY]["shards"] == 3 and parent[JobField.ARRAY]["created"] == 3
    kids = [store.get(child_id(parent_id, i)) for i in range(3)]
    assert [k[JobField.INPUT] for k in kids] == [
        {"language": "en", "documents": docs[0:3]},
        {"language": "en", "documents": docs[3:6]},
        {"language": "en", "documents": docs[6:7]},
    ]
    assert all(k[JobField.STATUS] == "QUEUED" and k[JobField.WAITING_SINCE] for k in kids)
    assert Dispatch(store).get(worker_key("docs"))["waiting"] == 3
    # The same event again creates nothing twice.
    assert _reconcile(res, task, exit_code=0).startswith("ignored: scheduled array job")
    assert Dispatch(store).get(worker_key("docs"))["waiting"] == 3
    # The shards run on the worker's slots and merge back in item order.
    ended = run_array(res, parent_id)
    assert ended[JobField.STATUS] == "SUCCEEDED"
    assert ended[JobField.ITEMS] == {"total": 7, "succeeded": 6, "failed": 1}
    lines = _lines(res, parent_id)
    assert [line["index"] for line in lines] == list(range(7))
    assert lines[5]["error"]["message"] == "cannot analyse 5"
    status, view, _ = call("GET", f"/jobs/{parent_id}")
    assert status == 200 and view["source"] == "schedule"
    assert view["array"]["children"]["SUCCEEDED"] == 3


def test_scheduled_array_is_rejected_with_the_apis_error(res) -> None:
    """The API's checks, the API's codes and messages: the run is recorded FAILED with what
    ``POST /jobs`` answers for the same request, nothing is enqueued."""
    docs = _docs(3)
    docs[1] = {"id": "1"}  # no text
    request = {"items": docs, "shard_size": 2}
    status, answer, _ = call("POST", "/jobs", {"worker": "docs", **request})
    assert status == 400
    task, _ = _scheduled_task(res, "docs", {}, ScheduledArray(items=docs, shard_size=2))
    assert _reconcile(res, task, exit_code=0) == "terminal: FAILED"
    job = JobStore(res.table_name).get(scheduled_job_id("docs", task))
    assert job[JobField.STATUS] == "FAILED" and job[JobField.SOURCE] == "schedule"
    assert job[JobField.ERROR]["type"] == answer["error"]["code"] == "invalid_items"
    assert job[JobField.ERROR]["message"] == answer["error"]["message"]
    rows = [i for i in table_items(res.table_name) if i["pk"]["S"].startswith("job#")]
    assert len(rows) == 1  # no child
    assert receive_all(res.workers["docs"].queue_url) == []


def _echo(ctx: Any) -> dict[str, Any]:
    return {"items": [str(i).upper() for i in ctx.input["items"]]}


def test_runtime_and_reconciler_record_the_same_scheduled_job(res) -> None:
    """The two writers of a plain scheduled run: the runtime (the run started) and the
    reconciler (its task never started). Same request, same worker: the same row, but for
    the fields of the attempt itself (id, task, state and its times)."""
    from workers.runtime.definition import WorkerDefinition

    echo = WorkerDefinition(name="echo", handler=_echo)
    started, env = _scheduled_task(res, "echo", {"items": ["nightly"]})
    lost, _ = _scheduled_task(res, "echo", {"items": ["nightly"]})
    worker = res.workers["echo"]
    # What the task's metadata and environment say (the component sets these).
    task_env = {
        **env,
        Env.WORKER_MAX_ATTEMPTS: "2",
        Env.WORKER_TIMEOUT_SECONDS: "600",
        "ECS_CONTAINER_METADATA_URI_V4": "",
    }
    store = JobStore(res.table_name)
    from workers.runtime import claim  # the runtime's claim step reads the task metadata

    real = claim.task_metadata
    family, revision = worker.task_definition_arn.rsplit("/", 1)[-1].split(":")
    meta = {"TaskARN": started, "Family": family, "Revision": revision,
            "Limits": {"CPU": 0.25, "Memory": 512}}  # fmt: skip
    claim.task_metadata = lambda env, timeout=2.0: meta  # type: ignore[assignment]
    try:
        assert _runtime(res, echo, task_env, started) == exit_codes.OK
    finally:
        claim.task_metadata = real
    assert _reconcile(
        res, lost, exit_code=None, stop_code="TaskFailedToStart", stopped_reason="no image"
    ).startswith("retry")
    by_runtime = store.get(scheduled_job_id("echo", started))
    by_reconciler = store.get(scheduled_job_id("echo", lost))
    attempt_fields = {
        JobField.JOB_ID, JobField.TASK_ARN, JobField.STATUS, JobField.WORKER_STATUS,
        JobField.TIMESTAMPS, JobField.CREATED_AT, JobField.UPDATED_AT, JobField.HEARTBEAT_AT,
        JobField.EXPIRES_AT,
        JobField.RESULT_KEY, JobField.PROGRESS, JobField.ERROR, "pk", "gsi1pk", "gsi1sk",
    }  # fmt: skip

    def shape(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k not in attempt_fields}

    assert shape(by_runtime) == shape(by_reconciler)
    assert shape(by_runtime)[JobField.INPUT] == {"items": ["nightly"]}
    assert shape(by_runtime)[JobField.MAX_ATTEMPTS] == 2
    assert shape(by_runtime)[JobField.CPU] == 256


def test_an_unreadable_scheduled_request_is_recorded_failed_by_either_writer(res) -> None:
    from workers.runtime.definition import WorkerDefinition

    task, env = _scheduled_task(res, "echo", {})
    bad = {**env, Env.SCHEDULED_INPUT: "[1, 2"}
    echo = WorkerDefinition(name="echo", handler=_echo)
    assert _runtime(res, echo, bad, task) == exit_codes.CONFIG
    job = JobStore(res.table_name).get(scheduled_job_id("echo", task))
    assert job[JobField.STATUS] == "FAILED"
    assert job[JobField.ERROR]["type"] == "InvalidScheduledInput"
    assert Env.SCHEDULED_INPUT in job[JobField.ERROR]["message"]


def test_scheduled_array_run_from_a_manifest_is_fanned_out_by_the_launcher(res) -> None:
    from tests.runtime.test_array_manifests import KEY, _jsonl, _put, _steps

    docs = _docs(5)
    _put(res, _jsonl(docs))
    array = ScheduledArray(manifest_key=KEY, manifest_items=5, shard_size=2)
    task, _ = _scheduled_task(res, "docs", {"language": "de"}, array)
    assert _reconcile(res, task, exit_code=0) == "scheduled array job: 3 shards"
    parent_id = scheduled_job_id("docs", task)
    parent = JobStore(res.table_name).get(parent_id)
    # The API's record of a manifest: the object's size and ETag, read by the launcher.
    assert parent[JobField.INPUT_S3_KEY] == KEY and parent[JobField.ARRAY]["manifest"]["etag"]
    assert parent[JobField.ARRAY]["created"] == 0
    assert _steps(res) >= 1  # the launcher's fan-out steps: validate, then the children
    ended = run_array(res, parent_id)
    assert ended[JobField.STATUS] == "SUCCEEDED"
    assert [line["result"]["id"] for line in _lines(res, parent_id)] == ["0", "1", "2", "3", "4"]
    kid = JobStore(res.table_name).get(child_id(parent_id, 2))
    assert kid[JobField.INPUT] == {"language": "de", "documents": docs[4:5]}


def test_a_missing_manifest_fails_the_scheduled_run_as_the_api_answers(res) -> None:
    request = {"manifest": {"s3_key": "inputs/docs/none.jsonl", "items": 3}}
    status, answer, _ = call("POST", "/jobs", {"worker": "docs", **request})
    assert status == 400 and answer["error"]["code"] == "manifest_not_found"
    array = ScheduledArray(manifest_key="inputs/docs/none.jsonl", manifest_items=3)
    task, _ = _scheduled_task(res, "docs", {}, array)
    assert _reconcile(res, task, exit_code=0) == "terminal: FAILED"
    job = JobStore(res.table_name).get(scheduled_job_id("docs", task))
    assert job[JobField.ERROR] == {
        "type": "manifest_not_found",
        "message": answer["error"]["message"],
    }
    assert receive_all(res.workers["docs"].queue_url) == []


def _dies_after(monkeypatch, n: int) -> None:
    """The reconciler's fan-out dies (a Lambda timeout, a crash) before writing child ``n``;
    transactions of 2 children, so the first ``n`` (rounded down to pairs) are written."""
    from handlers import arrays
    from jobcontract import dispatch_claims

    real = arrays.children_of

    def dying(*args: Any, **kwargs: Any) -> Any:
        for made, child in enumerate(real(*args, **kwargs)):
            if made == n:
                raise RuntimeError("the reconciler died here")
            yield child

    # The module that writes parked children in chunks (``Dispatch.park_children``).
    monkeypatch.setattr(dispatch_claims, "TRANSACTION_ITEMS", 2)
    monkeypatch.setattr(arrays, "children_of", dying)


def _died_half_way(res, monkeypatch, docs: list[dict[str, str]]) -> tuple[str, str]:
    """A scheduled array run of one item per shard whose reconciler died after 4 children;
    the task's ARN and the parent's id."""
    from handlers import arrays

    real = arrays.children_of
    array = ScheduledArray(items=docs, shard_size=1)
    task, _ = _scheduled_task(res, "docs", {"language": "en"}, array)
    parent_id = scheduled_job_id("docs", task)
    assert parent_id is not None
    _dies_after(monkeypatch, 4)
    with pytest.raises(RuntimeError):
        reconciler.Reconciler().handle_event(stopped_event(res.cluster_arn, task, exit_code=0))
    monkeypatch.setattr(arrays, "children_of", real)
    store = JobStore(res.table_name)
    parent = store.get(parent_id)
    assert parent[JobField.ARRAY]["created"] == 0  # the cursor moves after the children
    assert [store.get(child_id(parent_id, i)) is not None for i in range(7)] == [True] * 4 + [
        False
    ] * 3
    assert receive_all(res.workers["docs"].queue_url) == []  # it died before its drain
    return task, parent_id


def _exactly_once_in_order(store: JobStore, parent_id: str, docs: list[Any]) -> None:
    kids = [store.get(child_id(parent_id, i)) for i in range(len(docs))]
    assert [k[JobField.INPUT] for k in kids] == [
        {"language": "en", "documents": [doc]} for doc in docs
    ]
    assert [k[JobField.SHARD]["index"] for k in kids] == list(range(len(docs)))
    stamps = [k[JobField.CREATED_AT] for k in kids]  # the drain starts the oldest first
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    parked = sum(k[JobField.STATUS] == "QUEUED" for k in kids)  # the others were launched
    assert Dispatch(store).get(worker_key("docs"))["waiting"] == parked
    parent = store.get(parent_id)
    assert parent[JobField.ARRAY]["created"] == len(docs)
    assert "kept_items" not in parent[JobField.ARRAY]  # dropped once every child is written


def test_a_repeated_event_finishes_a_scheduled_fan_out_that_died(res, monkeypatch) -> None:
    docs = _docs(7)
    task, parent_id = _died_half_way(res, monkeypatch, docs)
    # The items are kept with the parent, not only in the task's environment.
    parent = JobStore(res.table_name).get(parent_id)
    assert json.loads(parent[JobField.ARRAY]["kept_items"]) == docs
    assert _reconcile(res, task, exit_code=0) == "scheduled array job: 7 shards"
    store = JobStore(res.table_name)
    _exactly_once_in_order(store, parent_id, docs)
    assert Dispatch(store).get(worker_key("docs"))["waiting"] == 7
    bodies = [json.loads(m["Body"]) for m in receive_all(res.workers["docs"].queue_url)]
    assert bodies == [{"drain": True}]  # one drain for the whole array


def test_the_sweep_finishes_a_scheduled_fan_out_whose_events_are_gone(res, monkeypatch) -> None:
    """No event comes again (retries exhausted): the sweep asks the launcher's fan-out step,
    which creates the missing children from the items kept with the parent, in steps."""
    from datetime import UTC, datetime, timedelta

    from handlers import launcher, sweep
    from jobcontract import arrays as contract
    from tests.runtime.helpers import sqs_event

    docs = _docs(7)
    _, parent_id = _died_half_way(res, monkeypatch, docs)
    store = JobStore(res.table_name)
    assert parent_id not in sweep.Sweeper(store).run().redriven  # not quiet long enough yet
    later = sweep.Sweeper(store, now=datetime.now(UTC) + timedelta(hours=1)).run()
    assert parent_id in later.redriven
    # Steps of 2 from the cursor (0: it had not moved): 0-2 and 2-4 exist, 4-6 and 6-7 not.
    monkeypatch.setattr(contract, "FANOUT_STEP_CHILDREN", 2)
    queue, steps = res.workers["docs"], 0
    while fanouts := [m for m in receive_all(queue.queue_url) if "fanout" in json.loads(m["Body"])]:
        launcher.handler(sqs_event(queue.queue_arn, fanouts), None)
        steps += len(fanouts)
    assert steps == 4
    _exactly_once_in_order(store, parent_id, docs)
    ended = run_array(res, parent_id)
    assert ended[JobField.STATUS] == "SUCCEEDED"
    lines = _lines(res, parent_id)
    assert [line["index"] for line in lines] == list(range(7))
    assert [line["result"]["id"] for line in lines] == [d["id"] for d in docs]


def test_kept_items_round_trip_as_given_and_are_bounded() -> None:
    from jobcontract import arrays as contract

    parent: dict[str, Any] = {JobField.ARRAY: {"shards": 1}}
    assert contract.kept_items(parent) is None and not contract.fan_out_source(parent)
    odd = [{"": 1e200, "x": [None, True]}, "é"]  # not storable as a DynamoDB map
    contract.keep_items(parent, odd)
    assert contract.kept_items(parent) == odd and contract.fan_out_source(parent)
    with pytest.raises(ValueError, match="exceed"):
        contract.keep_items(parent, ["x" * contract.MAX_KEPT_ITEMS_BYTES])
