"""An interrupted job resumes where it stopped: items a Spot-interrupted attempt finished are
kept (S3, named on the job) and not run again by the retry. Against the real moto server."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from typing import Any

import boto3

from jobcontract import JobField, JobStatus, checkpoint_key
from workers.runtime import JobContext, exit_codes, run_worker, worker
from workers.runtime.checkpoint import Checkpoint, items_digest

from .conftest import WORKER, RuntimeEnv

ITEMS = list(range(8))
STOP_AT = 3  # the first attempt gets SIGTERM while running this item (concurrency 1)


def _squares(calls: list[tuple[int, int]], values: Any = None) -> Any:
    @worker(name=WORKER)
    def squares(ctx: JobContext) -> dict[str, Any]:
        def one(i: int) -> Any:
            calls.append((ctx.attempt, i))
            if ctx.attempt == 1 and i == STOP_AT:
                os.kill(os.getpid(), signal.SIGTERM)  # the Spot interruption, mid-item
                time.sleep(0.1)
            return values(i) if values else i * i

        results = ctx.map(one, ITEMS, concurrency=1)
        return {"squares": [r.value for r in results]}

    return squares


def _run(defn: Any, env: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    stream = io.StringIO()
    code = run_worker(defn, env, stream=stream, install_signal_handlers=True)
    return code, [json.loads(line) for line in stream.getvalue().splitlines()]


def _retry(runtime_env: RuntimeEnv, job_id: str) -> None:
    """What the reconciler and the launcher do after exit 143: back to QUEUED, claim again."""
    runtime_env.store.transition(job_id, JobStatus.RUNNING, JobStatus.QUEUED, attempt=1)
    runtime_env.store.transition(
        job_id, JobStatus.QUEUED, JobStatus.DISPATCHED, attempt=1, increment_attempts=True
    )


def test_interrupted_job_resumes_without_repeating_finished_items(
    runtime_env: RuntimeEnv,
) -> None:
    calls: list[tuple[int, int]] = []
    defn = _squares(calls)
    job_id = runtime_env.dispatched_job({})
    code, logs = _run(defn, runtime_env.job_env(job_id, attempt=1))
    assert code == exit_codes.INTERRUPTED
    first = [i for attempt, i in calls if attempt == 1]
    assert first == list(range(STOP_AT + 1))  # took no new item after SIGTERM
    job = runtime_env.store.get(job_id)
    assert job is not None and job[JobField.CHECKPOINT_KEY] == checkpoint_key(WORKER, job_id)
    assert any(
        line["event"] == "checkpoint_saved" and line["items"] == STOP_AT + 1 for line in logs
    )

    _retry(runtime_env, job_id)
    code, logs = _run(defn, runtime_env.job_env(job_id, attempt=2))
    assert code == exit_codes.OK
    second = [i for attempt, i in calls if attempt == 2]
    assert second == ITEMS[STOP_AT + 1 :]  # only what the first attempt did not finish
    assert any(line["event"] == "map_resumed" and line["restored"] == STOP_AT + 1 for line in logs)
    job = runtime_env.store.get(job_id)
    assert job is not None and job[JobField.STATUS] == JobStatus.SUCCEEDED
    assert job[JobField.PROGRESS] == {"done": len(ITEMS), "total": len(ITEMS)}
    # the restored items are the job's items too
    assert job[JobField.ITEMS] == {"total": len(ITEMS), "succeeded": len(ITEMS), "failed": 0}
    result = json.loads(
        boto3.client("s3")
        .get_object(Bucket=runtime_env.resources.bucket, Key=job[JobField.RESULT_KEY])["Body"]
        .read()
    )
    assert result["output"]["squares"] == [i * i for i in ITEMS]


def test_values_that_are_not_json_are_not_kept_and_the_retry_starts_over(
    runtime_env: RuntimeEnv,
) -> None:
    calls: list[tuple[int, int]] = []
    defn = _squares(calls, values=lambda i: {i})  # a set: not JSON
    job_id = runtime_env.dispatched_job({})
    code, logs = _run(defn, runtime_env.job_env(job_id, attempt=1))
    assert code == exit_codes.INTERRUPTED
    job = runtime_env.store.get(job_id)
    assert job is not None and JobField.CHECKPOINT_KEY not in job
    assert not any(line["event"] == "checkpoint_saved" for line in logs)


def test_a_checkpoint_only_applies_to_the_same_map_call_and_items() -> None:
    saved = Checkpoint()
    saved.record(0, [1, 2, 3], [(0, "one", None), (2, None, {"type": "E"})])
    body = saved.to_bytes()
    assert body is not None
    assert json.loads(body)["maps"]["0"]["digest"] == items_digest([1, 2, 3])
    loaded = Checkpoint.from_bytes(body)
    assert loaded.restored(0, [1, 2, 3]) == {0: ("one", None), 2: (None, {"type": "E"})}
    assert loaded.restored(0, [1, 2, 4]) == {}  # other items
    assert loaded.restored(1, [1, 2, 3]) == {}  # another map call
    for junk in (b"not json", b"[]", b'{"format": 99, "maps": {}}'):
        assert Checkpoint.from_bytes(junk).item_count == 0
    assert Checkpoint().to_bytes() is None  # nothing to keep
