"""The worker runtime against a real moto server: success, errors, fencing, cancel, timeout,
scheduled runs and idempotent results (in-process; SIGTERM is in test_runtime_signals.py)."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import boto3
import pytest

from jobcontract import Env, JobStatus, result_key, results_prefix, scheduled_job_id
from workers.runtime import (
    BedrockClient,
    JobContext,
    PermanentError,
    exit_codes,
    run_worker,
    worker,
)

from .conftest import WORKER, RuntimeEnv


def run(defn: Any, env: dict[str, str], **kwargs: Any) -> tuple[int, list[dict[str, Any]]]:
    stream = io.StringIO()
    code = run_worker(defn, env, stream=stream, install_signal_handlers=False, **kwargs)
    return code, [json.loads(line) for line in stream.getvalue().splitlines()]


def read_result(bucket: str, key: str) -> dict[str, Any]:
    return json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


@worker(name=WORKER)
def upper(ctx: JobContext) -> dict[str, Any]:
    """Upper-cases items; an item 'bad' fails alone; sleeps a little to let heartbeats beat."""

    def one(item: str) -> str:
        time.sleep(0.03)
        if item == "bad":
            raise ValueError("bad item")
        return item.upper()

    results = ctx.map(one, ctx.input["items"], concurrency=2)
    return {"items": [{"value": r.value} if r.ok else {"error": r.error} for r in results]}


def test_success_path_writes_result_and_records_everything(runtime_env: RuntimeEnv) -> None:
    items = ["a", "bad", "c", "d", "e", "f"]
    # 1 failed item of 6 is within a share of 0.2 (1.2 items): SUCCEEDED, the failure counted.
    job_id = runtime_env.dispatched_job({"items": items}, max_failed_item_share=0.2)
    task_arn = "arn:aws:ecs:us-east-1:000000000000:task/test-cluster/" + "ab" * 16
    code, logs = run(upper, runtime_env.job_env(job_id, **{Env.TASK_ARN: task_arn}))

    assert code == exit_codes.OK
    job = runtime_env.store.get(job_id)
    assert job is not None
    assert job["status"] == JobStatus.SUCCEEDED
    assert job["result_key"] == result_key(WORKER, job_id)
    assert job["progress"] == {"done": len(items), "total": len(items)}
    assert job["items"] == {"total": 6, "succeeded": 5, "failed": 1}
    assert "error" not in job
    assert job["task_arn"] == task_arn
    assert job["timestamps"]["RUNNING"] <= job["heartbeat_at"] <= job["timestamps"]["SUCCEEDED"]
    assert job["worker_status"] == f"{WORKER}#SUCCEEDED"
    doc = read_result(runtime_env.resources.bucket, job["result_key"])
    assert doc["job_id"] == job_id and doc["attempt"] == 1
    out = doc["output"]["items"]
    assert [o.get("value") for o in out] == ["A", None, "C", "D", "E", "F"]
    assert out[1]["error"] == {"type": "ValueError", "message": "bad item"}
    # structured logs: every line names the job; the end is logged with the exit code
    assert all(line["worker"] == WORKER for line in logs)
    assert {line["job_id"] for line in logs if "job_id" in line} == {job_id}
    assert [line["event"] for line in logs][-2:] == ["job_succeeded", "job_exit"]


def test_heartbeat_thread_writes_while_handler_runs(runtime_env: RuntimeEnv) -> None:
    job_id = runtime_env.dispatched_job({})
    beats: list[str] = []

    @worker(name=WORKER)
    def slow(ctx: JobContext) -> dict[str, Any]:
        for _ in range(6):
            time.sleep(0.05)
            job = runtime_env.store.get(ctx.job_id)
            assert job is not None
            beats.append(job["heartbeat_at"])
        return {}

    code, _ = run(slow, runtime_env.job_env(job_id))
    assert code == exit_codes.OK
    assert len(set(beats)) >= 3, beats  # heartbeat_at kept moving during the run


def test_input_is_read_from_s3_pointer(runtime_env: RuntimeEnv) -> None:
    key = "inputs/echo/big.json"
    boto3.client("s3").put_object(
        Bucket=runtime_env.resources.bucket, Key=key, Body=json.dumps({"items": ["x", "y"]})
    )
    job_id = runtime_env.dispatched_job({}, input_s3_key=key)
    code, _ = run(upper, runtime_env.job_env(job_id))
    assert code == exit_codes.OK
    doc = read_result(runtime_env.resources.bucket, result_key(WORKER, job_id))
    assert doc["output"]["items"] == [{"value": "X"}, {"value": "Y"}]


def test_a_job_whose_only_item_failed_ends_failed_not_succeeded(runtime_env: RuntimeEnv) -> None:
    """No tolerance given (0): one failed item fails the job, exit 10 (FAILED recorded, not
    retried: the reconciler leaves a recorded FAILED alone); the result is kept, so the
    item's error can be read there, and the counts are on the job."""
    job_id = runtime_env.dispatched_job({"items": ["bad"]})
    code, logs = run(upper, runtime_env.job_env(job_id))
    assert code == exit_codes.FAILED
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == JobStatus.FAILED
    assert job["items"] == {"total": 1, "succeeded": 0, "failed": 1}
    assert job["error"] == {
        "type": "ItemsFailed",
        "message": "1 of 1 items failed; the job tolerates 0 (max_failed_item_share 0)",
        "exit_code": exit_codes.FAILED,
    }
    assert job["attempts"] == 1 and job["progress"] == {"done": 1, "total": 1}
    doc = read_result(runtime_env.resources.bucket, job["result_key"])
    assert doc["output"]["items"] == [{"error": {"type": "ValueError", "message": "bad item"}}]
    assert [line["event"] for line in logs][-2:] == ["job_failed", "job_exit"]


@pytest.mark.parametrize(
    ("share", "bad", "status"),
    [
        (0, 0, JobStatus.SUCCEEDED),  # nothing failed: the default tolerance is enough
        (0.25, 1, JobStatus.SUCCEEDED),  # 1 of 4 = 25 %: within the share (not above)
        (0.25, 2, JobStatus.FAILED),  # 2 of 4: above it
        (0.2, 1, JobStatus.FAILED),  # 0.2 of 4 items is 0.8: not one whole item tolerated
        (1, 4, JobStatus.SUCCEEDED),  # every item may fail
    ],
)
def test_the_failed_item_share_decides_the_end(
    runtime_env: RuntimeEnv, share: float, bad: int, status: JobStatus
) -> None:
    items = ["bad"] * bad + ["ok"] * (4 - bad)
    job_id = runtime_env.dispatched_job({"items": items}, max_failed_item_share=share)
    code, _ = run(upper, runtime_env.job_env(job_id))
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == status
    assert job["items"] == {"total": 4, "succeeded": 4 - bad, "failed": bad}
    assert code == (exit_codes.OK if status == JobStatus.SUCCEEDED else exit_codes.FAILED)
    assert (job.get("error") or {}).get("type") == (
        None if status == JobStatus.SUCCEEDED else "ItemsFailed"
    )


def test_permanent_error_marks_failed_and_exits_failed(runtime_env: RuntimeEnv) -> None:
    """Exit 0 is kept for "SUCCEEDED recorded" (the reconciler trusts it without a read)."""

    @worker(name=WORKER)
    def picky(ctx: JobContext) -> dict[str, Any]:
        raise PermanentError("documents must not be empty")

    job_id = runtime_env.dispatched_job({})
    code, logs = run(picky, runtime_env.job_env(job_id))
    assert code == exit_codes.FAILED == 10
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == JobStatus.FAILED
    assert job["error"] == {
        "type": "PermanentError",
        "message": "documents must not be empty",
        "exit_code": 10,
    }
    assert "result_key" not in job and "items" not in job  # no map call: no item counts
    assert any(line["event"] == "job_failed" for line in logs)


def test_crash_exits_nonzero_and_leaves_job_running_for_reconciler(
    runtime_env: RuntimeEnv,
) -> None:
    @worker(name=WORKER)
    def broken(ctx: JobContext) -> dict[str, Any]:
        raise KeyError("boom")

    job_id = runtime_env.dispatched_job({})
    code, _ = run(broken, runtime_env.job_env(job_id))
    assert code == exit_codes.CRASH
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == JobStatus.RUNNING
    assert job["error"]["type"] == "KeyError" and job["error"]["exit_code"] == 1
    objects = boto3.client("s3").list_objects_v2(
        Bucket=runtime_env.resources.bucket, Prefix=results_prefix(WORKER)
    )
    assert objects.get("KeyCount", 0) == 0


def test_stale_attempt_cannot_start(runtime_env: RuntimeEnv) -> None:
    job_id = runtime_env.dispatched_job({"items": ["a"]}, attempts=2)
    code, logs = run(upper, runtime_env.job_env(job_id, attempt=1))
    assert code == exit_codes.NOT_RUNNABLE
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == JobStatus.DISPATCHED and job["attempts"] == 2
    assert any(line["event"] == "job_not_runnable" for line in logs)


def test_stale_attempt_cannot_finish_and_its_result_never_survives(
    runtime_env: RuntimeEnv,
) -> None:
    """A stale attempt finishing first may put the object (no fence round trip on the common
    path), but it cannot record SUCCEEDED, and the attempt that does overwrites the object."""
    store = runtime_env.store

    @worker(name=WORKER)
    def overtaken(ctx: JobContext) -> dict[str, Any]:
        # Meanwhile the reconciler retried the job and the launcher claimed attempt 2.
        store.transition(ctx.job_id, "RUNNING", "QUEUED", increment_attempts=True)
        store.transition(ctx.job_id, "QUEUED", "DISPATCHED")
        return {"items": [{"value": "stale"}]}

    job_id = runtime_env.dispatched_job({"items": ["fresh"]})
    code, _ = run(overtaken, runtime_env.job_env(job_id, attempt=1))
    assert code == exit_codes.NOT_RUNNABLE
    job = store.get(job_id)
    assert job is not None and job["status"] == JobStatus.DISPATCHED and job["attempts"] == 2
    code, _ = run(upper, runtime_env.job_env(job_id, attempt=2))
    assert code == exit_codes.OK
    job = store.get(job_id)
    assert job is not None and job["status"] == JobStatus.SUCCEEDED
    doc = read_result(runtime_env.resources.bucket, result_key(WORKER, job_id))
    assert doc["attempt"] == 2 and doc["output"] == {"items": [{"value": "FRESH"}]}


def test_stale_attempt_cannot_overwrite_a_newer_result(runtime_env: RuntimeEnv) -> None:
    store = runtime_env.store
    bucket = runtime_env.resources.bucket

    @worker(name=WORKER)
    def overtaken(ctx: JobContext) -> dict[str, Any]:
        # Meanwhile a newer attempt ran to the end and stored its result.
        store.transition(ctx.job_id, "RUNNING", "QUEUED", increment_attempts=True)
        store.transition(ctx.job_id, "QUEUED", "DISPATCHED")
        store.transition(ctx.job_id, "DISPATCHED", "RUNNING", attempt=2)
        key = result_key(WORKER, ctx.job_id)
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b'{"attempt": 2}')
        store.transition(
            ctx.job_id, "RUNNING", "SUCCEEDED", attempt=2, set_fields={"result_key": key}
        )
        return {"stale": True}

    job_id = runtime_env.dispatched_job({})
    code, _ = run(overtaken, runtime_env.job_env(job_id, attempt=1))
    assert code == exit_codes.NOT_RUNNABLE
    job = store.get(job_id)
    assert job is not None and job["status"] == JobStatus.SUCCEEDED and job["attempts"] == 2
    assert read_result(bucket, result_key(WORKER, job_id)) == {"attempt": 2}


class CountingClients:
    """Real boto3 clients whose requests are recorded by botocore event hooks."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.dynamodb = boto3.client("dynamodb")
        self.s3 = boto3.client("s3")
        for client in (self.dynamodb, self.s3):
            client.meta.events.register("before-parameter-build", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        updates = params.get("UpdateExpression", "")
        values = params.get("ExpressionAttributeValues", {})
        target = values.get(":to", {}).get("S", "") if ":to" in updates else ""
        self.calls.append(f"{model.name}{' ' + target if target else ''}")


def test_short_job_makes_exactly_three_requests(runtime_env: RuntimeEnv) -> None:
    """Benchmark 1 budget: RUNNING (carries the first heartbeat), the result put, SUCCEEDED
    (carries the final progress); no progress or fence write in between."""
    job_id = runtime_env.dispatched_job({"items": ["a", "b", "c"]})
    clients = CountingClients()
    env = runtime_env.job_env(job_id, **{Env.HEARTBEAT_INTERVAL_SECONDS: "30"})
    code, _ = run(
        upper,
        env,
        store=type(runtime_env.store)(runtime_env.resources.table_name, client=clients.dynamodb),
        s3=clients.s3,
    )
    assert code == exit_codes.OK
    assert clients.calls == ["UpdateItem RUNNING", "PutObject", "UpdateItem SUCCEEDED"]
    job = runtime_env.store.get(job_id)
    assert job is not None and job["progress"] == {"done": 3, "total": 3}
    assert job["items"] == {"total": 3, "succeeded": 3, "failed": 0}  # in the same write
    assert job["heartbeat_at"]


def test_retry_overwrites_the_same_result_key(runtime_env: RuntimeEnv) -> None:
    job_id = runtime_env.dispatched_job({"items": ["new"]}, attempts=2)
    key = result_key(WORKER, job_id)
    s3 = boto3.client("s3")
    bucket = runtime_env.resources.bucket
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"output": "from attempt 1"}')
    code, _ = run(upper, runtime_env.job_env(job_id, attempt=2))
    assert code == exit_codes.OK
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=results_prefix(WORKER))
    assert [o["Key"] for o in listed["Contents"]] == [key]
    assert read_result(bucket, key)["output"] == {"items": [{"value": "NEW"}]}
    assert read_result(bucket, key)["attempt"] == 2


def test_cancel_request_stops_taking_items(runtime_env: RuntimeEnv) -> None:
    started: list[int] = []

    @worker(name=WORKER)
    def cancellable(ctx: JobContext) -> dict[str, Any]:
        def one(i: int) -> int:
            started.append(i)
            if i == 1:
                runtime_env.store.request_cancel(ctx.job_id)
            time.sleep(0.05)
            return i

        ctx.map(one, range(200), concurrency=1)
        return {}

    job_id = runtime_env.dispatched_job({})
    code, logs = run(cancellable, runtime_env.job_env(job_id))
    assert code == exit_codes.NOT_RUNNABLE
    assert len(started) < 50  # stopped within a few heartbeats, not after 200 items
    assert any(line["event"] == "cancel_requested" for line in logs)
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == JobStatus.RUNNING  # the reconciler finishes it


def test_timeout_stops_items_and_marks_failed(runtime_env: RuntimeEnv) -> None:
    @worker(name=WORKER)
    def slow_items(ctx: JobContext) -> dict[str, Any]:
        ctx.map(lambda i: time.sleep(0.1), range(100), concurrency=2)
        return {}

    job_id = runtime_env.dispatched_job({})
    started = time.monotonic()
    code, _ = run(slow_items, runtime_env.job_env(job_id, **{Env.WORKER_TIMEOUT_SECONDS: "0.4"}))
    assert code == exit_codes.TIMEOUT
    # All items would take 5 s; stopping at the timeout takes about 1 s (more on a loaded
    # CI machine), so this bound tells "stopped" from "ran to the end" without racing.
    assert time.monotonic() - started < 4.0
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == JobStatus.FAILED
    assert job["error"]["type"] == "Timeout" and job["error"]["exit_code"] == exit_codes.TIMEOUT
    assert 0 < job["progress"]["done"] < job["progress"]["total"] == 100


def test_job_timeout_field_is_enforced_when_smaller(runtime_env: RuntimeEnv) -> None:
    @worker(name=WORKER)
    def cooperative(ctx: JobContext) -> dict[str, Any]:
        while True:
            ctx.check_stop()
            time.sleep(0.02)

    job_id = runtime_env.dispatched_job({}, timeout_seconds=0.3)
    code, _ = run(cooperative, runtime_env.job_env(job_id, **{Env.WORKER_TIMEOUT_SECONDS: "60"}))
    assert code == exit_codes.TIMEOUT


def test_unresponsive_handler_is_ended_by_the_watchdog(runtime_env: RuntimeEnv) -> None:
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    @worker(name=WORKER)
    def hung(ctx: JobContext) -> dict[str, Any]:
        exited.wait(10)  # ignores ctx.should_stop
        return {}

    job_id = runtime_env.dispatched_job({})
    started = time.monotonic()
    run(
        hung,
        runtime_env.job_env(job_id, **{Env.WORKER_TIMEOUT_SECONDS: "0.2"}),
        hard_exit=fake_exit,
    )
    assert codes == [exit_codes.TIMEOUT]
    assert time.monotonic() - started < 5
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == JobStatus.FAILED
    assert "did not stop" in job["error"]["message"]


class _Metadata(BaseHTTPRequestHandler):
    payload: dict[str, Any] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.payload).encode() if self.path == "/v4/abc/task" else b"{}"
        self.send_response(200 if self.path == "/v4/abc/task" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_scheduled_run_creates_its_own_job_from_task_metadata(runtime_env: RuntimeEnv) -> None:
    task_hex = "0123456789abcdef" * 2
    arn = f"arn:aws:ecs:us-east-1:000000000000:task/test-cluster/{task_hex}"
    _Metadata.payload = {"TaskARN": arn, "Family": "test-echo", "Revision": "7"}
    server = HTTPServer(("127.0.0.1", 0), _Metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = runtime_env.env(
            **{
                Env.SCHEDULED_INPUT: json.dumps({"items": ["nightly"]}),
                Env.WORKER_MAX_ATTEMPTS: "4",
                Env.JOB_TTL_DAYS: "14",
                "ECS_CONTAINER_METADATA_URI_V4": f"http://127.0.0.1:{server.server_port}/v4/abc",
            }
        )
        code, _ = run(upper, env)
        # A second start of the same task (same id) does not run the job twice.
        again, _ = run(upper, env | {Env.TASK_ARN: arn})
    finally:
        server.shutdown()
        server.server_close()
    assert code == exit_codes.OK
    job_id = f"{WORKER}_{task_hex}"
    job = runtime_env.store.get(job_id)
    assert job is not None
    assert job["status"] == JobStatus.SUCCEEDED and job["source"] == "schedule"
    # From the task's environment: the task role may not read the registration item.
    assert job["attempts"] == 1 and job["max_attempts"] == 4
    assert 13 * 86400 < int(job["expires_at"]) - time.time() <= 14 * 86400  # rows expire
    assert job["input"] == {"items": ["nightly"]}
    # The task definition's ARN, as the reconciler records it from the event
    # (jobcontract.scheduled.task_definition_arn).
    definition = "arn:aws:ecs:us-east-1:000000000000:task-definition/test-echo:7"
    assert job["task_arn"] == arn and job["task_definition"] == definition
    assert "RUNNING" in job["timestamps"] and "QUEUED" not in job["timestamps"]
    doc = read_result(runtime_env.resources.bucket, result_key(WORKER, job_id))
    assert doc["output"] == {"items": [{"value": "NIGHTLY"}]}
    assert again == exit_codes.NOT_RUNNABLE


def test_scheduled_run_with_bad_input_is_a_config_error(runtime_env: RuntimeEnv) -> None:
    code, logs = run(upper, runtime_env.env(**{Env.SCHEDULED_INPUT: "[1, 2"}))
    assert code == exit_codes.CONFIG
    assert logs[-1]["event"] == "config_error"


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({Env.JOBS_TABLE: ""}, Env.JOBS_TABLE),
        ({Env.JOB_ID: "other_" + "0" * 32, Env.JOB_ATTEMPT: "1"}, Env.JOB_ID),
        ({Env.JOB_ID: "echo_" + "0" * 32}, Env.JOB_ATTEMPT),
        ({Env.JOB_ID: "echo_" + "0" * 32, Env.JOB_ATTEMPT: "zero"}, Env.JOB_ATTEMPT),
        ({Env.WORKER_NAME: "content-analyzer"}, Env.WORKER_NAME),
        ({Env.WORKER_TIMEOUT_SECONDS: "-1"}, Env.WORKER_TIMEOUT_SECONDS),
        ({Env.MODEL_BACKEND: "bedrock", Env.MODEL_ID: ""}, Env.MODEL_ID),
    ],
)
def test_config_errors_exit_2_naming_the_variable(
    runtime_env: RuntimeEnv, overrides: dict[str, str], needle: str
) -> None:
    code, logs = run(upper, runtime_env.env(**overrides))
    assert code == exit_codes.CONFIG
    assert needle in logs[-1]["message"]


def test_scheduled_run_id_matches_what_the_reconciler_derives(runtime_env: RuntimeEnv) -> None:
    """Emulators use hyphenated UUID task ids; runtime and reconciler must agree on the id."""
    arn = (
        "arn:aws:ecs:us-east-1:000000000000:task/test-cluster/1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    )
    scheduled = {Env.TASK_ARN: arn, Env.SCHEDULED_INPUT: '{"items": []}'}
    code, logs = run(upper, runtime_env.env(**scheduled))
    assert code == exit_codes.OK
    expected = scheduled_job_id(WORKER, arn)
    assert expected == f"{WORKER}_1b4e28ba2fa111d2883f0016d3cca427"
    job = runtime_env.store.get(expected)
    assert (
        job is not None and job["status"] == JobStatus.SUCCEEDED and job["input"] == {"items": []}
    )
    assert {line.get("job_id") for line in logs if "job_id" in line} == {expected}


class _DenyingS3:
    """The real moto S3 client, except that GetObject answers as S3 does for a key the role
    may not read (or may not list, when the key is missing): 403 AccessDenied."""

    def __init__(self) -> None:
        self._real = boto3.client("s3")
        self.exceptions = self._real.exceptions

    def get_object(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                 "ResponseMetadata": {"HTTPStatusCode": 403}}  # fmt: skip
        raise ClientError(error, "GetObject")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_denied_input_read_fails_the_job_at_once_naming_the_object(
    runtime_env: RuntimeEnv,
) -> None:
    """S3 answers 403 (not 404) for a key the role may not read or list: that is the job's
    input problem, FAILED with the object named, not a crash retried max_attempts times."""
    key = "inputs/echo/expired.json"
    job_id = runtime_env.dispatched_job({}, input_s3_key=key)
    code, _ = run(upper, runtime_env.job_env(job_id), s3=_DenyingS3())
    assert code == exit_codes.FAILED
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == JobStatus.FAILED
    message = job["error"]["message"]
    assert (
        "s3:GetObject denied" in message and f"s3://{runtime_env.resources.bucket}/{key}" in message
    )


def test_an_access_denied_from_aws_in_the_handler_fails_the_job_naming_the_call(
    runtime_env: RuntimeEnv,
) -> None:
    from botocore.exceptions import ClientError

    @worker(name=WORKER)
    def denied(ctx: JobContext) -> dict[str, Any]:
        message = "User: arn:aws:sts::1:assumed-role/echo-task/x is not authorized to perform: "
        error = {
            "Error": {"Code": "AccessDeniedException", "Message": message + "bedrock:InvokeModel"}
        }
        raise ClientError(error, "Converse")

    job_id = runtime_env.dispatched_job({})
    code, _ = run(denied, runtime_env.job_env(job_id))
    assert code == exit_codes.FAILED  # recorded FAILED: not exit 1, which the reconciler retries
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == JobStatus.FAILED
    assert job["error"]["type"] == "AccessDenied"
    assert (
        "Converse" in job["error"]["message"] and "bedrock:InvokeModel" in job["error"]["message"]
    )


class AlwaysThrottled:
    """A bedrock-runtime client that only ever answers ThrottlingException."""

    def __init__(self) -> None:
        self.calls = 0

    def converse(self, **_: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self.calls += 1
        raise ClientError(
            {
                "Error": {"Code": "ThrottlingException", "Message": "Too many requests"},
                "ResponseMetadata": {"HTTPStatusCode": 429},
            },
            "Converse",
        )


def test_the_model_from_the_environment_stops_backing_off_when_the_job_must_stop(
    runtime_env: RuntimeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_worker hands the job's stop flag to the Bedrock client it builds, so a throttled call
    waiting out its backoff ends at once on timeout / SIGTERM / cancel instead of sleeping on
    (here the budget would keep it waiting a minute)."""
    fake = AlwaysThrottled()
    monkeypatch.setattr(BedrockClient, "client", property(lambda _self: fake))

    @worker(name=WORKER)
    def calls_model(ctx: JobContext) -> dict[str, Any]:
        assert isinstance(ctx.model, BedrockClient)
        model = ctx.model
        ctx.map(lambda prompt: model.generate(prompt), ["a", "b"], concurrency=2)
        return {}

    job_id = runtime_env.dispatched_job({})
    env = runtime_env.job_env(
        job_id,
        **{
            Env.MODEL_BACKEND: "bedrock",
            Env.MODEL_ID: "amazon.nova-lite-v1:0",
            Env.MODEL_RETRY_BUDGET_SECONDS: "60",
            Env.WORKER_TIMEOUT_SECONDS: "0.5",
        },
    )
    hard_exits: list[int] = []
    started = time.monotonic()
    code, _ = run(calls_model, env, hard_exit=hard_exits.append)
    assert time.monotonic() - started < 5
    assert code == exit_codes.TIMEOUT and hard_exits == []  # the handler stopped by itself
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == JobStatus.FAILED
    assert job["error"]["type"] == "Timeout"
    assert fake.calls >= 2


def test_warm_reuse_runs_the_parked_jobs_in_the_same_task_each_as_its_own_job(
    runtime_env: RuntimeEnv,
) -> None:
    """A task that finished its job takes its worker's parked jobs, oldest first: each keeps
    its own claim (attempt), result and log lines; a crash ends the reuse (the reconciler
    retries that job); the lease records what the task ran."""
    from jobcontract.dispatch import Claimed, Dispatch

    store = runtime_env.store
    dispatch = Dispatch(store)
    first = new_queued(runtime_env, {"items": ["a"]})
    claimed = dispatch.claim(first, 0, WORKER, cap=1, cpu=256)
    assert isinstance(claimed, Claimed)
    second = new_queued(runtime_env, {"items": ["b"]})
    crashing = new_queued(runtime_env, {"items": ["bad"], "crash": True})
    never = new_queued(runtime_env, {"items": ["z"]})
    for job_id in (second, crashing, never):
        assert dispatch.park(job_id, 0, WORKER)
    task_arn = "arn:aws:ecs:us-east-1:000000000000:task/test-cluster/" + "cd" * 16
    env = runtime_env.job_env(first, **{Env.TASK_ARN: task_arn, Env.REUSE_IDLE_SECONDS: "0.3"})
    code, logs = run(crash_on_flag, env)
    assert code == exit_codes.CRASH  # the last job's exit: the crashed one
    for job_id in (first, second):
        job = store.get(job_id)
        assert job["status"] == "SUCCEEDED" and job["attempts"] == 1
        assert job["task_arn"] == task_arn
        assert read_result(runtime_env.resources.bucket, job["result_key"])["job_id"] == job_id
    assert store.get(crashing)["status"] == "RUNNING"  # error recorded; the reconciler decides
    assert store.get(never)["status"] == "QUEUED"  # the task exited after the crash
    lease = dispatch.get(claimed.lease)
    assert lease["current_job"] == crashing and lease["ran"] == {first, second}
    by_job = {line.get("job_id") for line in logs if line["event"] == "job_exit"}
    assert by_job == {first, second, crashing}
    ran_lines = [line for line in logs if line.get("job_id") == second]
    assert ran_lines and all(line.get("attempt") == 1 for line in ran_lines)


def test_reuse_off_runs_one_job(runtime_env: RuntimeEnv) -> None:
    from jobcontract.dispatch import Claimed, Dispatch

    dispatch = Dispatch(runtime_env.store)
    first = new_queued(runtime_env, {"items": ["a"]})
    assert isinstance(dispatch.claim(first, 0, WORKER, cap=1, cpu=256), Claimed)
    parked = new_queued(runtime_env, {"items": ["b"]})
    dispatch.park(parked, 0, WORKER)
    code, _ = run(crash_on_flag, runtime_env.job_env(first, **{Env.REUSE_IDLE_SECONDS: "0"}))
    assert code == exit_codes.OK and runtime_env.store.get(parked)["status"] == "QUEUED"


def test_a_task_exits_after_an_array_child_instead_of_staying_warm(
    runtime_env: RuntimeEnv,
) -> None:
    """A child is counted on its parent when its task stops, so after a child the task does
    not idle or take the next parked job: the parent's end is not held back by reuse."""
    from jobcontract.dispatch import Claimed, Dispatch

    dispatch = Dispatch(runtime_env.store)
    parent = new_queued(runtime_env, {"items": ["p"]})
    child = new_queued(runtime_env, {"items": ["a"]}, parent_id=parent)
    assert isinstance(dispatch.claim(child, 0, WORKER, cap=1, cpu=256), Claimed)
    parked = new_queued(runtime_env, {"items": ["b"]})
    assert dispatch.park(parked, 0, WORKER)
    started = time.monotonic()
    env = runtime_env.job_env(child, **{Env.REUSE_IDLE_SECONDS: "5"})
    code, logs = run(crash_on_flag, env)
    assert code == exit_codes.OK and time.monotonic() - started < 4  # no 5-s idle window
    assert runtime_env.store.get(child)["status"] == "SUCCEEDED"
    assert runtime_env.store.get(parked)["status"] == "QUEUED"  # left to a new task
    assert [line["event"] for line in logs if line["event"].startswith("reuse_")] == [
        "reuse_ends_after_array_child"
    ]


def test_a_worker_built_from_another_workers_folder_runs_under_its_own_name(
    runtime_env: RuntimeEnv,
) -> None:
    """A fallback built from the GPU worker's folder (``source_dir``): the image runs that
    folder's worker, ``BATCH_WORKER_SOURCE`` names it, and the job, result and prefixes are
    the deployed worker's. Without the source variable the mismatch is a config error."""

    @worker(name="gpu-folder")
    def from_folder(ctx: JobContext) -> dict[str, Any]:
        return {"ran": ctx.input["x"]}

    job_id = runtime_env.dispatched_job({"x": 1})
    code, _ = run(from_folder, runtime_env.job_env(job_id))
    assert code == exit_codes.CONFIG  # BATCH_WORKER_NAME is WORKER, the image runs gpu-folder
    assert runtime_env.store.get(job_id)["status"] == JobStatus.DISPATCHED

    env = runtime_env.job_env(job_id, **{Env.WORKER_SOURCE: "gpu-folder"})
    code, _ = run(from_folder, env)
    assert code == exit_codes.OK
    job = runtime_env.store.get(job_id)
    assert job is not None and job["status"] == JobStatus.SUCCEEDED
    assert job["result_key"].startswith(f"results/{WORKER}/")
    doc = read_result(runtime_env.resources.bucket, job["result_key"])
    assert doc["output"] == {"ran": 1} and doc["worker"] == WORKER


@worker(name=WORKER)
def crash_on_flag(ctx: JobContext) -> dict[str, Any]:
    if ctx.input.get("crash"):
        raise RuntimeError("boom")
    return {"items": [i.upper() for i in ctx.input["items"]]}


def new_queued(
    runtime_env: RuntimeEnv, job_input: dict[str, Any], parent_id: str | None = None
) -> str:
    from jobcontract import new_job_id

    job_id = new_job_id(WORKER)
    runtime_env.store.create(
        {
            "job_id": job_id,
            "worker": WORKER,
            "attempts": 0,
            "max_attempts": 3,
            "input": job_input,
            "source": "api",
            **({"parent_id": parent_id} if parent_id else {}),
        }
    )
    time.sleep(0.002)  # distinct created_at: oldest first is observable
    return job_id


def test_a_fallback_task_runs_a_job_handed_over_to_it_and_no_other(
    runtime_env: RuntimeEnv,
) -> None:
    """A GPU worker's job handed to this (fallback) worker keeps its id (``gpu_...``): the
    launcher names its owner in BATCH_HANDED_FROM, and the runtime runs it only if the job's
    ``fallback`` record names this worker. The result goes under this worker's prefix."""
    from jobcontract import new_job_id

    def gpu_job(fallback: dict[str, Any] | None) -> str:
        job_id = new_job_id("gpu")
        runtime_env.store.create(
            {
                "job_id": job_id, "worker": "gpu", "status": JobStatus.DISPATCHED.value,
                "attempts": 2, "max_attempts": 4, "input": {"items": ["a", "b"]},
                "source": "api", **({"fallback": fallback} if fallback else {}),
            }
        )  # fmt: skip
        return job_id

    handed = gpu_job({"worker": WORKER, "from": "gpu", "attempt": 1, "at": "2026-12-03T16:00Z"})
    # Without the launcher's hand-over variable the id is refused, as before.
    code, _ = run(upper, runtime_env.job_env(handed, attempt=2))
    assert code == exit_codes.CONFIG
    code, _ = run(upper, runtime_env.job_env(handed, attempt=2, **{Env.HANDED_FROM: "gpu"}))
    assert code == exit_codes.OK
    job = runtime_env.store.get(handed)
    assert job is not None and job["status"] == JobStatus.SUCCEEDED
    assert job["result_key"] == result_key(WORKER, handed)  # this worker's prefix
    assert read_result(runtime_env.resources.bucket, job["result_key"])["output"]["items"] == [
        {"value": "A"}, {"value": "B"},
    ]  # fmt: skip
    # A job of that worker that was NOT handed over is not run (nor claimed).
    other = gpu_job(None)
    code, logs = run(upper, runtime_env.job_env(other, attempt=2, **{Env.HANDED_FROM: "gpu"}))
    assert code != exit_codes.OK
    assert runtime_env.store.get(other)["status"] == JobStatus.DISPATCHED
    assert any(line.get("reason") == "not handed to this worker" for line in logs)


def _launch_queue(name: str) -> str:
    sqs = boto3.client("sqs")
    attributes = {"FifoQueue": "true"}
    return str(sqs.create_queue(QueueName=f"{name}.fifo", Attributes=attributes)["QueueUrl"])


def _messages(url: str) -> list[str]:
    got = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [m["Body"] for m in got.get("Messages", [])]


def test_a_task_frees_its_slot_after_its_last_job_and_asks_for_a_drain(
    runtime_env: RuntimeEnv,
) -> None:
    """Reuse off: once the job's end is recorded, the task gives its worker's slot back (the
    stack's vCPUs stay held until it stopped) and, with a job parked, sends a drain request:
    the next task need not wait for this one's STOPPED event."""
    from jobcontract.dispatch import DRAIN_MESSAGE, Claimed, Dispatch

    dispatch = Dispatch(runtime_env.store)
    first = new_queued(runtime_env, {"items": ["a"]})
    claimed = dispatch.claim(first, 0, WORKER, cap=1, cpu=256)
    assert isinstance(claimed, Claimed)
    parked = new_queued(runtime_env, {"items": ["b"]})
    assert dispatch.park(parked, 0, WORKER)
    url = _launch_queue("free-slot-drain")
    env = runtime_env.job_env(first, **{Env.REUSE_IDLE_SECONDS: "0", Env.LAUNCH_QUEUE_URL: url})
    code, logs = run(crash_on_flag, env)
    assert code == exit_codes.OK
    assert dispatch.get(claimed.lease)["freed"] == 1
    workers, used = dispatch.counts()
    assert workers[WORKER]["tasks"] == 0 and workers[WORKER]["cpu"] == 0
    assert used == 256  # the task still runs until ECS stops it: the budget keeps it
    assert _messages(url) == [DRAIN_MESSAGE]
    assert [line["drain"] for line in logs if line["event"] == "slot_freed"] == [True]
    assert dispatch.release(claimed.lease)  # its STOPPED event: the stack's vCPUs only
    workers, used = dispatch.counts()
    assert workers[WORKER]["tasks"] == 0 and used == 0


def test_a_crashed_task_leaves_its_slot_to_the_stopped_event(runtime_env: RuntimeEnv) -> None:
    """After a crash the reconciler settles the job from the exit code: the task frees
    nothing itself and sends no drain."""
    from jobcontract.dispatch import Claimed, Dispatch

    dispatch = Dispatch(runtime_env.store)
    job = new_queued(runtime_env, {"items": ["bad"], "crash": True})
    claimed = dispatch.claim(job, 0, WORKER, cap=1, cpu=256)
    assert isinstance(claimed, Claimed)
    assert dispatch.park(new_queued(runtime_env, {"items": ["b"]}), 0, WORKER)
    url = _launch_queue("crash-no-drain")
    env = runtime_env.job_env(job, **{Env.REUSE_IDLE_SECONDS: "0", Env.LAUNCH_QUEUE_URL: url})
    code, _ = run(crash_on_flag, env)
    assert code == exit_codes.CRASH
    assert "freed" not in dispatch.get(claimed.lease)
    assert dispatch.counts()[0][WORKER]["tasks"] == 1 and _messages(url) == []
