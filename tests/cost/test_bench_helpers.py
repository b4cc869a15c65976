"""The benchmark scripts' own logic: call attribution, sample inputs, result parsing, fits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from bench.count_hook import CallRecorder, install_file_recorder, read_calls_file
from bench.program_scaling import _descendants, _fit
from bench.requests_per_job import sample_input
from bench.run_all import _handler_imports_result
from components import seed_workers
from components.offline import MockResource
from jobcontract import schema


def _client() -> Any:
    return boto3.session.Session(
        aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    ).client("dynamodb")


def _call_as(module: str, fn: Any) -> Any:
    """Run ``fn`` from a frame whose module is ``module`` (as a handler would call boto3)."""
    namespace: dict[str, Any] = {"__name__": module, "fn": fn}
    exec("def call():\n    return fn()\n", namespace)
    return namespace["call"]()


def test_recorder_attributes_calls_to_the_outermost_handler() -> None:
    client = _client()
    stub = Stubber(client)
    stub.add_response("get_item", {})
    stub.add_response("get_item", {})
    stub.add_response("update_item", {})
    recorder = CallRecorder().install()
    try:
        with stub:
            inner = lambda: _call_as("handlers.notify", lambda: client.get_item(  # noqa: E731
                TableName="t", Key={"pk": {"S": "a"}}))
            _call_as("handlers.reconciler", inner)  # reconciler -> notify -> boto3
            _call_as("handlers._aws", lambda: client.get_item(TableName="t",
                                                              Key={"pk": {"S": "b"}}))
            _call_as("handlers.launcher", lambda: client.update_item(
                TableName="t", Key={"pk": {"S": "a"}}, UpdateExpression="SET #s = :s",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": {"S": "X"}}))
    finally:
        recorder.uninstall()
    got = [(c.actor, c.operation, c.what) for c in recorder.calls]
    assert got == [
        ("reconciler", "GetItem", ""),  # reconciler -> notify: the outermost handler
        ("other", "GetItem", ""),  # handlers._aws is plumbing, not an actor
        ("launcher", "UpdateItem", "status"),
    ]
    client2 = _client()
    with Stubber(client2) as stub2:
        stub2.add_response("get_item", {})
        client2.get_item(TableName="t", Key={"pk": {"S": "c"}})
    assert len(recorder.calls) == 3  # uninstalled: nothing more is counted


def test_file_recorder_for_worker_processes(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    client = _client()
    recorder = install_file_recorder(str(path))
    try:
        with Stubber(client) as stub:
            stub.add_response("put_item", {})
            client.put_item(TableName="t", Item={"pk": {"S": "a"}})
    finally:
        recorder.uninstall()
    (call,) = read_calls_file(path)
    assert (call.actor, call.service, call.operation) == ("worker", "dynamodb", "PutItem")


@pytest.mark.parametrize("seed", seed_workers.SEED_WORKERS, ids=lambda s: s.name)
def test_sample_inputs_satisfy_the_seed_schemas(seed: Any) -> None:
    worker_schema = seed_workers.input_schema(seed.name)
    assert schema.validate(sample_input(worker_schema), worker_schema) == []


def test_handler_imports_table_is_read() -> None:
    lines = [
        "module                   median ms   x boto3   (runs=9)",
        "boto3                        250.0      1.00",
        "handlers.api                 118.0      0.47",
        "handlers.notify              300.0      1.20",
        "handlers.api is 0.47x bare boto3: within the 1.2x budget",
    ]
    (result,) = _handler_imports_result(lines)
    assert result["figure"] == 1.2 and result["ok"] is True
    assert "api 0.47x" in str(result["detail"])
    assert _handler_imports_result(["nothing to see"]) == []


def test_least_squares_fit() -> None:
    slope, intercept, r2 = _fit([3, 10, 20, 30], [1.0 + 0.1 * n for n in (3, 10, 20, 30)])
    assert slope == pytest.approx(0.1) and intercept == pytest.approx(1.0)
    assert r2 == pytest.approx(1.0)


def test_descendants_survive_a_child_named_like_its_parent() -> None:
    def res(name: str, parent: str | None) -> MockResource:
        return MockResource("t", name, {}, {}, parent, True)

    resources = [res("w", None), res("w", "w"), res("w-role", "w"), res("q", "w-role")]
    assert sorted(r.name for r in _descendants(resources, "w")) == ["q", "w", "w-role"]


def test_a_warm_tasks_idle_poll_is_told_apart_from_per_job_reads() -> None:
    """requests_per_job leaves out a warm task's polls while idle (a cost of the reuse
    window): only a read inside ``take_next(idle=True)`` counts as one."""
    from bench.count_hook import _in_idle_poll

    def take_next(*, idle: bool) -> bool:
        return _in_idle_poll()

    assert take_next(idle=True) is True
    assert take_next(idle=False) is False
    assert _in_idle_poll() is False


def test_array_bench_bills_one_task_per_shard_and_per_single_job() -> None:
    """bench/array_fanout.py: 10,000 items of 10 ms, shards of 100, 30-s start-up: an array
    job starts 100 tasks of 31 s (billed the 60-s minimum each), single jobs 10,000 tasks of
    60 s; a last, smaller shard is a task of its own."""
    from bench.array_fanout import billing
    from bench.run_all import BENCHMARKS, KEPT_HEADINGS

    bill = billing(10_000, 100, 0.01, 30.0)
    assert bill["array_tasks"] == 100 and bill["single_tasks"] == 10_000
    assert bill["array_per_item"] == pytest.approx(100 * 60 / 10_000)
    assert bill["single_per_item"] == pytest.approx(60.0)
    long = billing(1_001, 100, 1.0, 30.0)  # 10 shards of 130 s, one of 31 s (60 s billed)
    assert long["array_tasks"] == 11
    assert long["array_per_item"] == pytest.approx((10 * 130 + 60) / 1_001)
    assert "array_fanout" in {b.module for b in BENCHMARKS}
    assert "## Array jobs (issue 11)" in KEPT_HEADINGS
