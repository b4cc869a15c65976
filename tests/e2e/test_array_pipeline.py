"""An array job end to end through the local pipeline, under faults: 2,000 items in 20 shards,
three shards crash on their first attempt, two are interrupted (Fargate Spot) mid-shard.

The real API handler behind the local gateway, the real launcher (its fan-out step writes the
children: ``BATCH_ARRAY_SYNC_CHILDREN`` is below the shard count), reconciler and worker
runtime, one worker process per task through ``tests/e2e/fault_worker.py`` (its ``E2E-ARRAY``
handler: a few milliseconds an item, so the test is about the pipeline, not the work).

What must hold (issue 11, "Proven"): every item appears exactly once in the merged result, in
item order; the parent's summary counts the items and children; only the shards that failed
ran again (one more task each, nothing else re-run); a Spot-interrupted shard resumed from its
checkpoint; the parent ends SUCCEEDED (its failed items within its tolerance), once.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobcontract import Env
from jobcontract import arrays as contract
from local_pipeline.pipeline import LocalPipeline
from tests.e2e.local_gateway import call, running
from tests.e2e.test_local_pipeline import wait

pytestmark = pytest.mark.xdist_group("e2e-array-pipeline")

FAULT_WORKER = Path(__file__).with_name("fault_worker.py")
WORKER = "content-analyzer"
ITEMS, SHARD_SIZE = 2000, 100
SHARDS = ITEMS // SHARD_SIZE
CRASH_SHARDS = {3, 11, 17}  # die (exit 1) before the runtime starts, first attempt only
SPOT_SHARDS = {6, 14}  # interrupted by the test once a few of their items are done
BAD_ITEMS = {250, 1105, 1999}  # the handler raises for these: item errors, not shard failures
TOLERANCE = 0.01  # 20 failed items tolerated of 2,000


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    state = tmp_path_factory.mktemp("array-state")
    local = LocalPipeline(
        stack="dev",
        overrides={"taskReuse": "false"},  # one shard per task: retries are visible as tasks
        port=0,
        state_dir=state,
        max_tasks=5,  # the worker's cap in dev
        sweep_interval=3600,  # nothing here may depend on the backstop
        poll_interval=0.1,
        redelivery_seconds=1,
        worker_command=lambda w: [sys.executable, str(FAULT_WORKER), "--worker", w],
    )
    with running(local, state):
        yield local


def _document(i: int) -> dict[str, str]:
    shard = i // SHARD_SIZE
    text = "E2E-ARRAY item"
    if i % SHARD_SIZE == 0 and shard in CRASH_SHARDS:
        text = "E2E-ARRAY-CRASH item"
    elif i % SHARD_SIZE == 0 and shard in SPOT_SHARDS:
        text = "E2E-ARRAY-SPOT item"
    if i in BAD_ITEMS:
        text += " E2E-ARRAY-BADITEM"
    return {"id": f"doc-{i:04d}", "text": text}


def test_array_job_with_shard_crashes_and_spot_interruptions(
    pipeline: LocalPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    monkeypatch.setenv(Env.ARRAY_SYNC_CHILDREN, "5")  # the launcher's fan-out step writes them
    docs = [_document(i) for i in range(ITEMS)]
    status, body = call(
        pipeline,
        "POST",
        "/jobs",
        {
            "worker": WORKER,
            "items": docs,
            "shard_size": SHARD_SIZE,
            "max_failed_item_share": TOLERANCE,
        },
    )
    assert status == 202 and body["children"] == SHARDS, body
    parent_id = str(body["job_id"])
    child_ids = [contract.child_id(parent_id, i) for i in range(SHARDS)]

    # Interrupt each Spot shard 1.5 s after it is seen RUNNING (its first attempt takes 0.1 s
    # an item: a dozen or so are done, 100 are not), then wait for the parent.
    assert pipeline.fargate is not None
    running_since: dict[int, float] = {}
    interrupted: dict[int, str] = {}
    deadline = time.monotonic() + 150
    while True:
        for index in sorted(SPOT_SHARDS - set(interrupted)):
            _, child = call(pipeline, "GET", f"/jobs/{child_ids[index]}")
            if child.get("status") != "RUNNING" or not child.get("task_arn"):
                continue
            since = running_since.setdefault(index, time.monotonic())
            if time.monotonic() - since >= 1.5:
                pipeline.fargate.interrupt_spot(child["task_arn"])
                interrupted[index] = str(child["task_arn"])
        _, parent = call(pipeline, "GET", f"/jobs/{parent_id}")
        if parent["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        assert time.monotonic() < deadline, parent
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    lives = [
        t["stopped"] - t["started"]
        for t in pipeline.fargate.task_timelines()
        if t["started"] and t["stopped"]
    ]
    print(
        f"\n{ITEMS} items in {SHARDS} shards: {elapsed:.1f} s to the parent's end, "
        f"{len(lives)} tasks, {sum(lives) / max(1, len(lives)):.1f} s a task (process start "
        f"to STOPPED), load average {os.getloadavg()[0]:.1f}"
    )
    assert set(interrupted) == SPOT_SHARDS, "a Spot shard finished before it was interrupted"

    # The parent: SUCCEEDED (3 failed items, 20 tolerated), its counts.
    assert parent["status"] == "SUCCEEDED", parent
    assert parent["items"] == {"total": ITEMS, "succeeded": ITEMS - 3, "failed": 3}, parent
    assert parent["array"]["children"]["SUCCEEDED"] == SHARDS, parent["array"]
    assert parent["array"]["children"]["FAILED"] == 0, parent["array"]
    s3, bucket = pipeline.client("s3"), os.environ[Env.RESULTS_BUCKET]
    summary = json.loads(
        s3.get_object(Bucket=bucket, Key=contract.summary_key(WORKER, parent_id))["Body"].read()
    )
    assert summary["status"] == "SUCCEEDED" and summary["shards"] == SHARDS
    assert summary["items"] == {"total": ITEMS, "succeeded": ITEMS - 3, "failed": 3}
    assert summary["children"]["SUCCEEDED"] == SHARDS
    assert summary["tolerated_failed_items"] == 20

    # The merged result: every item once, in item order, its result or its error.
    with urllib.request.urlopen(parent["result"]["url"], timeout=30) as resp:
        lines = [json.loads(line) for line in resp.read().decode().splitlines()]
    assert [line["index"] for line in lines] == list(range(ITEMS))
    assert [line["shard"] for line in lines] == [i // SHARD_SIZE for i in range(ITEMS)]
    assert {i for i, line in enumerate(lines) if "error" in line} == BAD_ITEMS
    assert all("bad item" in lines[i]["error"]["message"] for i in BAD_ITEMS)
    ok = [line for line in lines if "error" not in line]
    assert [line["result"]["id"] for line in ok] == [
        d["id"] for i, d in enumerate(docs) if i not in BAD_ITEMS
    ]

    # Only the failed shards ran again: one task per shard, two for each crashed or
    # interrupted one; the retry of an interrupted shard kept the items it had done.
    retried = CRASH_SHARDS | SPOT_SHARDS
    with pipeline.fargate._lock:
        tasks = Counter(t.started_by for t in pipeline.fargate.tasks.values())
    assert {i: tasks[c] for i, c in enumerate(child_ids)} == {
        i: 2 if i in retried else 1 for i in range(SHARDS)
    }
    _, listing = call(pipeline, "GET", f"/jobs?parent={parent_id}&limit=100")
    assert [c["job_id"] for c in listing["jobs"]] == child_ids  # shard order
    attempts = {i: c["attempts"] for i, c in enumerate(listing["jobs"])}
    assert attempts == {i: 2 if i in retried else 1 for i in range(SHARDS)}, attempts
    by_shard: dict[int, Counter[str]] = {}
    for line in ok:
        by_shard.setdefault(line["shard"], Counter())[line["result"]["attempt"]] += 1
    for index in CRASH_SHARDS:
        assert set(by_shard[index]) == {"2"}, by_shard[index]  # the first attempt did nothing
    for index in SPOT_SHARDS:
        assert by_shard[index]["1"] > 0 and by_shard[index]["2"] > 0, by_shard[index]
    for index in set(range(SHARDS)) - retried:
        assert set(by_shard[index]) == {"1"}, (index, by_shard[index])
    # The parent ended once: a later look finds it as it was (no second merge rewrote it).
    again = wait(pipeline, parent_id)
    assert again["updated_at"] == parent["updated_at"], (again, parent)
