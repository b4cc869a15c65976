"""End to end through the local pipeline: the dev stack's own resources in moto, the real API
handler behind the local gateway, the real launcher, reconciler and worker runtime, worker
processes started from the tasks the launcher runs.

One pipeline for the module (start-up evaluates the stack and provisions moto: seconds), so
everything here runs in one xdist worker. The worker processes go through
``tests/e2e/fault_worker.py``, which runs the real runtime unless the job input carries a
fault marker (crash / hang / slow).

Every AWS call the handlers and worker processes make here is recorded with the principal it
runs as on AWS (``tests/authz/recorder.py``), and the last test proves each one, and each call
AWS makes for the stack, authorized by the exact policies of the dev and prod stacks."""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.main import main as batchctl
from jobcontract import Env, scheduled_job_id
from local_pipeline.pipeline import LocalPipeline
from tests.authz import recorder
from tests.e2e.local_gateway import call, running

pytestmark = pytest.mark.xdist_group("e2e-local-pipeline")

FAULT_WORKER = Path(__file__).with_name("fault_worker.py")
TRACE_WORKER = Path(__file__).parents[1] / "authz" / "trace_worker.py"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
# A 2x1 PNG (red, blue): the image worker decodes headers and colours itself, offline.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAIAAAB7QOjdAAAAEElEQVR4nGP4z8DAwMDAAAAP/AH/"
    "u8ZcVQAAAABJRU5ErkJggg=="
)


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc; zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    state = tmp_path_factory.mktemp("local-state")
    children_before = set(_children(os.getpid()))
    trace = recorder.Trace(state / "aws-calls.jsonl")
    local = LocalPipeline(
        stack="dev",
        # One job per task: these tests follow a job's own task (crash, cancel, logs, Spot).
        # Warm reuse is exercised by tests/runtime/test_dispatch.py and the worker runtime's
        # tests/runtime_worker/test_runtime_lifecycle.py, and measured by bench/dispatch_reuse.
        overrides={"taskReuse": "false"},
        port=0,
        state_dir=state,
        max_tasks=4,
        sweep_interval=3600,  # the sweep is driven explicitly below
        poll_interval=0.1,
        redelivery_seconds=1,
        worker_command=lambda w: [
            sys.executable,
            str(TRACE_WORKER),
            str(trace.path),
            "--worker",
            w,
        ],
    )
    local.trace = trace  # type: ignore[attr-defined]
    recorder.install(trace.append)
    try:
        with running(local, state):
            yield local
    finally:
        recorder.uninstall()
    # Clean shutdown: no worker process, no emulation thread, no state file left behind.
    assert set(_children(os.getpid())) - children_before == set()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("local-")]
    assert not (state / "endpoint.json").exists()
    assert os.environ.get(Env.AWS_ENDPOINT_URL) != local.moto_endpoint


def submit(p: LocalPipeline, worker: str, job_input: Any) -> str:
    status, body = call(p, "POST", "/jobs", {"worker": worker, "input": job_input})
    assert status == 202, body
    return str(body["job_id"])


def wait(
    p: LocalPipeline, job_id: str, until: set[str] = TERMINAL, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, job = call(p, "GET", f"/jobs/{job_id}")
        assert status == 200, job
        if job["status"] in until:
            return dict(job)
        assert time.monotonic() < deadline, f"{job_id} stuck in {job['status']}: {job}"
        time.sleep(0.2)


def wait_for_task(p: LocalPipeline, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """The job once its task is recorded (DISPATCHED comes a moment before the task ARN)."""
    deadline = time.monotonic() + timeout
    while True:
        job = wait(p, job_id, until={"DISPATCHED", "RUNNING"}, timeout=timeout)
        if job.get("task_arn"):
            return job
        assert time.monotonic() < deadline, f"{job_id} has no task: {job}"
        time.sleep(0.1)


def result_of(job: dict[str, Any]) -> dict[str, Any]:
    with urllib.request.urlopen(job["result"]["url"], timeout=30) as resp:  # presigned GET
        data: dict[str, Any] = json.loads(resp.read())
    return data


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = batchctl(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- the gateway ------------------------------------------------------------------------------
def test_gateway_enforces_key_and_routes_like_api_gateway(pipeline: LocalPipeline) -> None:
    assert call(pipeline, "GET", "/workers", key="wrong-key-" * 3)[0] == 403
    assert call(pipeline, "GET", "/workers", key="")[0] == 403
    status, body = call(pipeline, "GET", "/no/such/route")
    assert status == 404 and body["error"]["code"] == "not_found"  # the stack's custom answer
    # An undeclared method reaches the path's ANY method: the handler answers 405 (+ Allow).
    assert call(pipeline, "DELETE", "/workers")[0] == 405
    status, body = call(pipeline, "GET", "/workers")
    assert status == 200
    assert {w["name"] for w in body["workers"]} == {
        "image-alt-generator",
        "meta-desc-generator",
        "content-analyzer",
    }


# --- the three seed workers -----------------------------------------------------------------
def test_three_seed_workers_produce_results(pipeline: LocalPipeline) -> None:
    s3 = pipeline.client("s3")
    bucket = os.environ[Env.RESULTS_BUCKET]
    s3.put_object(
        Bucket=bucket,
        Key="inputs/image-alt-generator/e2e/two-pixels.png",
        Body=PNG,
        ContentType="image/png",
    )
    jobs = {
        "image-alt-generator": submit(
            pipeline,
            "image-alt-generator",
            {
                "images": [
                    {
                        "s3_key": "inputs/image-alt-generator/e2e/two-pixels.png",
                        "context": "a banner",
                    }
                ]
            },
        ),
        "meta-desc-generator": submit(
            pipeline,
            "meta-desc-generator",
            {
                "pages": [
                    {
                        "url": "https://example.com/a",
                        "html": "<html><head><title>Quiet lakes</title>"
                        "</head><body><p>Quiet lakes reflect the sky. Visitors paddle at dawn. "
                        "The lakes freeze in winter.</p></body></html>",
                    }
                ]
            },
        ),
        "content-analyzer": submit(
            pipeline,
            "content-analyzer",
            {
                "documents": [
                    {
                        "id": "d1",
                        "text": "Serverless batch jobs scale to zero. Batch jobs cost "
                        "nothing when idle. Queues absorb bursts.",
                    }
                ]
            },
        ),
    }
    for worker, job_id in jobs.items():
        job = wait(pipeline, job_id)
        assert job["status"] == "SUCCEEDED", job
        assert job["attempts"] == 1 and job["worker"] == worker
        result = result_of(job)
        assert result["job_id"] == job_id and result["worker"] == worker
        assert result["output"]["backend"] == "offline"
    text = json.dumps(result_of(wait(pipeline, jobs["meta-desc-generator"])))
    assert "lake" in text.lower()  # the description comes from the page, not a template


def test_array_job_fans_out_runs_every_shard_and_merges(
    pipeline: LocalPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seed worker, unchanged, as an array job: the launcher's fan-out step writes the
    children (BATCH_ARRAY_SYNC_CHILDREN 2 < 3 shards), they run as ordinary jobs, and the
    reconciler merges one line per item in item order."""
    monkeypatch.setenv(Env.ARRAY_SYNC_CHILDREN, "2")
    docs = [
        {"id": f"d{i}", "text": f"Batch jobs scale to zero. Item {i} is short."} for i in range(5)
    ]
    status, body = call(
        pipeline, "POST", "/jobs", {"worker": "content-analyzer", "items": docs, "shard_size": 2}
    )
    assert status == 202 and body["children"] == 3, body
    parent = wait(pipeline, body["job_id"], timeout=120)
    assert parent["status"] == "SUCCEEDED", parent
    assert parent["items"] == {"total": 5, "succeeded": 5, "failed": 0}
    assert parent["array"]["children"]["SUCCEEDED"] == 3
    with urllib.request.urlopen(parent["result"]["url"], timeout=30) as resp:
        lines = [json.loads(line) for line in resp.read().decode().splitlines()]
    assert [line["index"] for line in lines] == list(range(5))
    assert [line["result"]["id"] for line in lines] == [d["id"] for d in docs]
    status, children = call(pipeline, "GET", f"/jobs?parent={body['job_id']}")
    assert status == 200 and [c["status"] for c in children["jobs"]] == ["SUCCEEDED"] * 3


# --- failure, retry, notification -----------------------------------------------------------
def test_crashing_job_is_retried_then_failed_and_reported(
    pipeline: LocalPipeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sns, sqs = pipeline.client("sns"), pipeline.client("sqs")
    inbox = sqs.create_queue(QueueName="e2e-failure-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=os.environ[Env.FAILURE_TOPIC_ARN], Protocol="sqs", Endpoint=inbox_arn)

    job_input = tmp_path / "crash.json"
    job_input.write_text(json.dumps({"documents": [{"id": "x", "text": "E2E-CRASH"}]}))
    code, out, err = run_cli(
        capsys,
        "submit",
        "content-analyzer",
        "--input",
        str(job_input),
        "--wait",
        "--poll",
        "0.2",
        "--timeout",
        "90",
    )
    assert code == 1, (out, err)  # FAILED -> exit 1, with the error on stderr
    assert "FAILED" in err
    job_id = err.split("submitted ", 1)[1].split()[0]
    _, job = call(pipeline, "GET", f"/jobs/{job_id}")
    attempts = job["max_attempts"]
    assert attempts >= 2, "the seed worker must allow a retry for this test to mean anything"
    assert job["status"] == "FAILED" and job["attempts"] == attempts, job
    assert f"attempts {attempts}" in err
    assert job["error"].get("exit_code") == 1, job["error"]
    # Every attempt ran as its own task with its own process log.
    code, out, _ = run_cli(capsys, "logs", job_id)
    assert code == 0 and out.count("e2e: simulated crash") == attempts

    deadline, bodies = time.monotonic() + 20, ""
    while job_id not in bodies:
        assert time.monotonic() < deadline, "no failure notification on the topic"
        messages = sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=1).get("Messages", [])
        bodies += "".join(m["Body"] for m in messages)


# --- cancel -----------------------------------------------------------------------------------
def test_cancel_stops_the_running_task(
    pipeline: LocalPipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = submit(pipeline, "content-analyzer", {"documents": [{"id": "h", "text": "E2E-HANG"}]})
    job = wait_for_task(pipeline, job_id)
    log_file = pipeline.logs_dir / f"{job['task_arn'].rsplit('/', 1)[-1]}.log"
    deadline = time.monotonic() + 20
    while not (log_file.exists() and "hanging until SIGTERM" in log_file.read_text()):
        assert time.monotonic() < deadline, "hang worker never started"
        time.sleep(0.1)
    code, out, _ = run_cli(capsys, "cancel", job_id)
    assert code == 0 and "cancel requested" in out
    job = wait(pipeline, job_id, timeout=30)
    assert job["status"] == "CANCELLED", job
    code, _, err = run_cli(capsys, "status", job_id)
    assert code == 1  # CANCELLED is not success for scripts
    code, _, err = run_cli(capsys, "cancel", job_id)
    assert code == 2 and "409" in err  # already terminal


# --- the CLI against the pipeline -------------------------------------------------------------
def test_cli_commands(
    pipeline: LocalPipeline,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_input = tmp_path / "doc.json"
    job_input.write_text(json.dumps({"documents": [{"id": "c", "text": "Short text. Tiny."}]}))
    code, out, err = run_cli(
        capsys,
        "submit",
        "content-analyzer",
        "-i",
        str(job_input),
        "--wait",
        "--poll",
        "0.2",
        "--idempotency-key",
        "e2e-cli-1",
    )
    assert code == 0, err
    assert json.loads(out)["output"]["documents"][0]["id"] == "c"  # the result itself
    assert "SUCCEEDED" in err  # the progress line on stderr
    job_id = err.split("submitted ", 1)[1].split()[0]

    code, out, _ = run_cli(
        capsys, "submit", "content-analyzer", "-i", str(job_input), "--idempotency-key", "e2e-cli-1"
    )
    assert code == 0 and out.strip() == job_id  # a replay, not a new job

    code, out, _ = run_cli(capsys, "status", job_id, "--json")
    assert code == 0 and json.loads(out)["status"] == "SUCCEEDED"

    code, out, _ = run_cli(
        capsys, "list", "--worker", "content-analyzer", "--status", "succeeded", "--all"
    )
    assert code == 0 and job_id in out and out.splitlines()[0].split()[:2] == ["JOB", "ID"]

    code, out, _ = run_cli(capsys, "logs", job_id)
    assert code == 0 and "job_succeeded" in out

    code, out, _ = run_cli(capsys, "workers")
    assert code == 0 and all(
        w in out for w in ("image-alt-generator", "meta-desc-generator", "content-analyzer")
    )

    code, _, err = run_cli(capsys, "submit", "no-such-worker", "-i", str(job_input))
    assert code == 3 and "no-such-worker" in err
    code, _, err = run_cli(capsys, "status", "content-analyzer_" + "0" * 32)
    assert code == 3
    code, _, err = run_cli(capsys, "workers", "--api-url", pipeline.api_url, "--api-key", "x" * 40)
    assert code == 4


def test_retry_redrives_the_dead_letter_queue(
    pipeline: LocalPipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    state = json.loads((pipeline.state_dir / "endpoint.json").read_text())
    urls = state["workers"]["meta-desc-generator"]
    sqs = pipeline.client("sqs")
    body = json.dumps({"job_id": "meta-desc-generator_" + "f" * 32, "attempt": 0})
    sqs.send_message(
        QueueUrl=urls["dlq_url"], MessageBody=body, MessageGroupId="g", MessageDeduplicationId="d1"
    )
    code, out, _ = run_cli(capsys, "retry", "meta-desc-generator")
    assert code == 0 and "moved 1 message" in out
    attrs = sqs.get_queue_attributes(
        QueueUrl=urls["dlq_url"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_scheduled_task_runs_on_demand_as_a_recorded_job(
    pipeline: LocalPipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "local", "run-schedule", "nightly-content-analysis")
    assert code == 0, out
    task_arn = json.loads(out)["task_arns"][0]
    deadline = time.monotonic() + 30
    while True:
        _, page = call(pipeline, "GET", "/jobs?worker=content-analyzer&limit=50")
        mine = [j for j in page["jobs"] if j.get("source") == "schedule"]
        if mine and mine[0]["status"] in TERMINAL:
            break
        assert time.monotonic() < deadline, f"no scheduled job finished for {task_arn}"
        time.sleep(0.3)
    assert mine[0]["status"] == "SUCCEEDED"
    code, _, err = run_cli(capsys, "local", "run-schedule", "no-such-schedule")
    assert code == 3 and "no-such-schedule" in err


def test_scheduled_run_that_dies_before_recording_is_recorded_by_the_reconciler(
    pipeline: LocalPipeline,
) -> None:
    """A scheduled task crashes before the runtime creates its job row: the reconciler records
    the run from the STOPPED event (with the stack's job TTL), and retries it as a job."""
    assert pipeline.fargate is not None and pipeline.provisioned is not None
    fargate = pipeline.fargate
    fargate.base_env["E2E_FAULT"] = "E2E-CRASH"
    try:  # the fault reaches the first task only: its environment is fixed when it spawns
        task_arn = pipeline.run_schedule("nightly-content-analysis")["task_arns"][0]
        deadline = time.monotonic() + 30
        while task_arn not in fargate.tasks or fargate.tasks[task_arn].started_ts is None:
            assert time.monotonic() < deadline, f"the scheduled task {task_arn} never started"
            time.sleep(0.05)
    finally:
        del fargate.base_env["E2E_FAULT"]
    job_id = scheduled_job_id("content-analyzer", task_arn)
    deadline = time.monotonic() + 30
    while call(pipeline, "GET", f"/jobs/{job_id}")[0] != 200:
        assert time.monotonic() < deadline, f"the reconciler never recorded {job_id}"
        time.sleep(0.2)
    job = wait(pipeline, job_id, timeout=60)  # the retry runs without the fault
    assert job["source"] == "schedule" and job["status"] == "SUCCEEDED", job
    assert job["attempts"] == 2, job
    item = pipeline.client("dynamodb").get_item(
        TableName=pipeline.provisioned.jobs_table, Key={"pk": {"S": f"job#{job_id}"}}
    )["Item"]
    days = (int(item["expires_at"]["N"]) - time.time()) / 86400
    assert 13 < days <= 14, days  # dev's jobTtlDays: scheduled rows expire too


def test_weekly_array_schedule_runs_on_demand_as_an_array_job(
    pipeline: LocalPipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """The program's array schedule (``components/seed_workers.py``): its task records
    nothing and exits 0; the reconciler makes the parent from the STOPPED event and fans out
    three shards of two pages on the worker's slots, merged in page order."""
    from components.seed_workers import WEEKLY_PAGES

    code, out, _ = run_cli(capsys, "local", "run-schedule", "weekly-meta-descriptions")
    assert code == 0, out
    task_arn = json.loads(out)["task_arns"][0]
    parent_id = scheduled_job_id("meta-desc-generator", task_arn)
    deadline = time.monotonic() + 30
    while call(pipeline, "GET", f"/jobs/{parent_id}")[0] != 200:
        assert time.monotonic() < deadline, f"the reconciler never made {parent_id}"
        time.sleep(0.2)
    parent = wait(pipeline, parent_id, timeout=120)
    assert parent["status"] == "SUCCEEDED" and parent["source"] == "schedule", parent
    assert parent["array"]["shards"] == 3 and parent["array"]["children"]["SUCCEEDED"] == 3
    assert parent["items"]["total"] == len(WEEKLY_PAGES) == 6
    with urllib.request.urlopen(parent["result"]["url"], timeout=30) as resp:
        lines = [json.loads(line) for line in resp.read().decode().splitlines()]
    assert [line["index"] for line in lines] == list(range(6))
    assert [line["shard"] for line in lines] == [0, 0, 1, 1, 2, 2]
    assert [line["result"]["url"] for line in lines] == [p["url"] for p in WEEKLY_PAGES]


def test_sweep_runs_on_demand(pipeline: LocalPipeline, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "local", "sweep")
    assert code == 0, err
    report = json.loads(out)["result"]
    assert {"stopped", "settled", "redriven"} <= set(report)
    assert report["stopped"] == []  # nothing here runs past its timeout


def test_an_event_the_reconciler_failed_every_time_is_redriven_by_the_sweep(
    pipeline: LocalPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three failed attempts: the pipeline records the event on the reconciler's on-failure
    destination, as Lambda does; the next sweep hands it to the reconciler and deletes it."""
    from handlers.reconciler import Reconciler

    assert pipeline.provisioned is not None
    reconciler = pipeline.provisioned.function_by_role("reconciler").logical_name
    assert pipeline.provisioned.on_failure[reconciler] == (
        pipeline.provisioned.queues["platform-control-reconciler-failed"]
    )
    other = "arn:aws:ecs:us-east-1:123456789012:cluster/another"
    event = {
        "version": "0",
        "id": "redrive-me",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "region": "us-east-1",
        "resources": [],
        "detail": {"lastStatus": "STOPPED", "clusterArn": other, "taskArn": f"{other}/0a1b"},
    }

    def down(self: Reconciler, event: dict[str, Any]) -> str:
        raise RuntimeError("the reconciler is down")

    with monkeypatch.context() as patched:
        patched.setattr(Reconciler, "handle_event", down)
        pipeline.deliver_ecs_event(event)
    report = pipeline.run_sweep()
    assert "ignored: other cluster" in report["failed_events"].values()
    assert pipeline.run_sweep()["failed_events"] == {}  # deleted once handled


def test_logs_follow_until_the_job_ends(
    pipeline: LocalPipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = submit(pipeline, "content-analyzer", {"documents": [{"id": "f", "text": "E2E-HANG"}]})
    job = wait_for_task(pipeline, job_id)
    log_file = pipeline.logs_dir / f"{job['task_arn'].rsplit('/', 1)[-1]}.log"
    deadline = time.monotonic() + 20
    while not (log_file.exists() and "hanging until SIGTERM" in log_file.read_text()):
        assert time.monotonic() < deadline, "hang worker never started"
        time.sleep(0.1)
    canceller = threading.Timer(1.0, call, (pipeline, "POST", f"/jobs/{job_id}/cancel"))
    canceller.start()
    try:
        code, out, _ = run_cli(capsys, "logs", job_id, "--follow")
    finally:
        canceller.join()
    assert code == 0 and "hanging until SIGTERM" in out
    assert wait(pipeline, job_id)["status"] == "CANCELLED"


# --- Spot: no capacity, interruption ------------------------------------------------------
def test_spot_capacity_shortage_falls_back_to_on_demand(pipeline: LocalPipeline) -> None:
    """ECS answers the Spot RunTask with a capacity failure (as ECS words it); the launcher
    starts the job on on-demand Fargate instead."""
    from botocore.awsrequest import AWSResponse

    from handlers import _aws

    ecs = _aws.client("ecs")
    refused: list[str] = []

    def no_spot_capacity(params: dict[str, Any], **_: Any) -> Any:
        request = json.loads(params["body"] or b"{}")
        strategy = request.get("capacityProviderStrategy", [])
        if refused or not any(s.get("capacityProvider") == "FARGATE_SPOT" for s in strategy):
            return None  # only the first Spot launch while armed finds no capacity
        refused.append(request["startedBy"])
        reason = "Capacity is unavailable at this time. Please try again later."
        answer = {"tasks": [], "failures": [{"arn": request["taskDefinition"], "reason": reason}]}
        return AWSResponse(params["url"], 200, {}, None), answer

    ecs.meta.events.register("before-call.ecs.RunTask", no_spot_capacity)
    try:
        job_id = submit(
            pipeline,
            "meta-desc-generator",
            {"pages": [{"url": "https://e.x/", "html": "<p>Spot.</p>"}]},
        )
        job = wait(pipeline, job_id)
    finally:
        ecs.meta.events.unregister("before-call.ecs.RunTask", no_spot_capacity)
    assert refused == [job_id]
    assert job["status"] == "SUCCEEDED", job
    launches = [
        [s["capacityProvider"] for s in c.params.get("capacityProviderStrategy", [])]
        for c in pipeline.trace.calls()  # type: ignore[attr-defined]
        if c.key == "ecs:RunTask" and c.params.get("startedBy") == job_id
    ]
    assert launches[0] and "FARGATE_SPOT" in launches[0], launches
    assert launches[-1] == ["FARGATE"], launches  # the fallback: on-demand only


def test_spot_interruption_resumes_from_the_checkpoint(pipeline: LocalPipeline) -> None:
    documents = [{"id": f"d{i}", "text": "E2E-SLOW"} for i in range(40)]
    job_id = submit(pipeline, "content-analyzer", {"documents": documents})
    job = wait(pipeline, job_id, until={"RUNNING"})
    time.sleep(2.0)  # a few of the 40 items (0.3 s each) are done
    assert pipeline.fargate is not None
    pipeline.fargate.interrupt_spot(job["task_arn"])
    job = wait(pipeline, job_id, timeout=90)
    assert job["status"] == "SUCCEEDED" and job["attempts"] == 2, job
    items = result_of(job)["output"]["items"]
    assert [i["id"] for i in items] == [d["id"] for d in documents]  # each once, in order
    first = [i for i in items if i["attempt"] == "1"]
    assert first and len(first) < len(documents), items  # the retry skipped what was done


# --- the authorization check (keep last: it reads the trace of everything above) ----------
# What the module's paths must have put in the trace for the check to mean anything.
EXPECTED_IN_TRACE = {
    ("function", "api"): {
        "dynamodb:BatchGetItem",  # an array job's children
        "dynamodb:PutItem",
        "sqs:SendMessage",
        "s3:presign:GetObject",
        "ecs:StopTask",
    },
    ("function", "launcher"): {
        "ecs:RunTask",
        "dynamodb:UpdateItem",
        "s3:GetObject",  # an array job's manifest, in its fan-out step
    },
    ("function", "reconciler"): {
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",  # a scheduled run that died before recording itself
        "sqs:SendMessage",
        "sns:Publish",
        "s3:GetObject",  # an array job's children's results ...
        "s3:PutObject",  # ... merged
    },
    ("function", "sweep"): {
        "dynamodb:Query",
        "sqs:ReceiveMessage",  # the reconciler's failed events ...
        "sqs:DeleteMessage",  # ... deleted once handled
    },
    ("task", "content-analyzer"): {
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "s3:PutObject",
        "s3:GetObject",
    },
    ("task", "image-alt-generator"): {"s3:GetObject", "s3:PutObject"},
    ("task", "meta-desc-generator"): {"s3:PutObject"},
}


def test_every_recorded_call_is_authorized_in_dev_and_prod(pipeline: LocalPipeline) -> None:
    from components.offline import ACCOUNT_ID, REGION, evaluate_stack
    from tests.authz.check import StackPolicies, check, rebind, rebind_map

    trace = pipeline.trace  # type: ignore[attr-defined]
    assert pipeline.provisioned is not None
    # moto's names -> the dev graph's (the same names, but moto's URLs and ids)
    moto_to_dev = {
        real: mock for mock, real in pipeline.provisioned.substitutions.mapping().items()
    }
    calls = rebind(trace.calls(), moto_to_dev)
    seen: dict[tuple[str, str], set[str]] = {}
    for c in calls:
        seen.setdefault((c.principal.kind, c.principal.name), set()).add(c.key)
    missing = {p: sorted(ops - seen.get(p, set())) for p, ops in EXPECTED_IN_TRACE.items()}
    assert not any(missing.values()), f"trace incomplete (run the whole module): {missing}"
    assert not [c for c in calls if c.principal.kind == "unattributed"]

    dev = evaluate_stack("dev")
    report = []
    for name, graph in (("dev", dev), ("prod", evaluate_stack("prod"))):
        stack = StackPolicies(graph, ACCOUNT_ID, REGION)
        bound = calls if graph is dev else rebind(calls, rebind_map(dev, graph))
        problems = check([*bound, *stack.service_calls()], stack)
        report += [f"[{name}] {p}" for p in problems]
    assert not report, "\n".join(dict.fromkeys(report))
