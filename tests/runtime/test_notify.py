"""Notification sinks: SNS, Slack and Notion (local HTTP stand-ins); a failing sink never
fails or blocks the job."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from handlers import notify, reconciler
from jobcontract import Env, JobField
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec, topic_tap
from tests.runtime.helpers import receive_all, stopped_event
from tests.runtime.test_reconciler import launch


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0


@pytest.fixture
def http_sink() -> Iterator[tuple[str, Recorder]]:
    """A local HTTP server on a free port that records POSTs (Slack / Notion stand-in)."""
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            recorder.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
            )
            time.sleep(recorder.delay)
            self.send_response(recorder.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def res(pipeline_resources, http_sink, monkeypatch):
    made = pipeline_resources([WorkerSpec("echo", max_attempts=1)])
    url, _ = http_sink
    sm = boto3.client("secretsmanager")
    slack = sm.create_secret(Name="slack", SecretString=f"{url}/slack-hook")["ARN"]
    notion = sm.create_secret(
        Name="notion", SecretString=json.dumps({"token": "secret-token", "database_id": "db1"})
    )["ARN"]
    monkeypatch.setenv(Env.SLACK_WEBHOOK_SECRET_ARN, slack)
    monkeypatch.setenv(Env.NOTION_SECRET_ARN, notion)
    monkeypatch.setenv(notify.NOTION_API_URL_ENV, url)
    monkeypatch.setenv(Env.API_URL, "https://api.example.test/v1")
    return made


@pytest.fixture
def topic_queue(res) -> str:
    return topic_tap(res.topic_arn, "tap")


def fail_job(res) -> str:
    job_id, task = launch(res)
    JobStore(res.table_name).transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    outcome = reconciler.handler(stopped_event(res.cluster_arn, task, exit_code=2), None)
    assert outcome["outcome"] == "final: FAILED"
    return job_id


def test_failed_job_reaches_every_sink(res, http_sink, topic_queue) -> None:
    _, recorder = http_sink
    job_id = fail_job(res)
    published = [json.loads(m["Body"]) for m in receive_all(topic_queue)]
    assert [p["job_id"] for p in published] == [job_id]
    slack = [r for r in recorder.requests if r["path"] == "/slack-hook"]
    assert len(slack) == 1
    assert job_id in slack[0]["body"]["text"]
    assert f"https://api.example.test/v1/jobs/{job_id}" in slack[0]["body"]["text"]
    pages = [r for r in recorder.requests if r["path"] == "/v1/pages"]
    assert len(pages) == 1
    page = pages[0]
    assert page["headers"]["Authorization"] == "Bearer secret-token"
    assert page["headers"]["Notion-Version"] == notify.NOTION_VERSION
    props = page["body"]["properties"]
    assert page["body"]["parent"] == {"database_id": "db1"}
    assert props["Name"]["title"][0]["text"]["content"] == job_id
    assert props["Status"]["select"]["name"] == "FAILED"
    assert props["Worker"]["rich_text"][0]["text"]["content"] == "echo"
    assert isinstance(props["Duration (s)"]["number"], float)
    assert props["Completed"]["date"]["start"].endswith("Z")


def test_failing_slack_does_not_block_the_job(res, http_sink, topic_queue) -> None:
    _, recorder = http_sink
    recorder.status = 500
    job_id = fail_job(res)
    assert JobStore(res.table_name).get(job_id)[JobField.STATUS] == "FAILED"
    assert len(receive_all(topic_queue)) == 1  # SNS still published


def test_unreachable_and_slow_sinks_are_bounded(res, http_sink, monkeypatch) -> None:
    _, recorder = http_sink
    recorder.delay = 2.0
    monkeypatch.setattr(notify, "HTTP_TIMEOUT_SECONDS", 0.3)
    item = {
        JobField.JOB_ID: "echo_" + "a" * 32,
        JobField.WORKER: "echo",
        JobField.STATUS: "FAILED",
        JobField.ATTEMPTS: 1,
        JobField.TIMESTAMPS: {"FAILED": "2026-01-01T00:00:01.000000Z"},
        JobField.CREATED_AT: "2026-01-01T00:00:00.000000Z",
    }
    # Time only the webhook posts: the SNS and Secrets Manager calls go to moto, whose
    # latency under CI load (seconds) says nothing about the sink timeout under test.
    post_seconds: list[float] = []
    real_post = notify._post_json

    def timed_post(*args: Any, **kwargs: Any) -> int:
        started = time.monotonic()
        try:
            return real_post(*args, **kwargs)
        finally:
            post_seconds.append(time.monotonic() - started)

    monkeypatch.setattr(notify, "_post_json", timed_post)
    results = notify.job_finished(item)
    assert len(post_seconds) == 2  # slack and notion were both tried
    assert all(seconds < recorder.delay * 0.75 for seconds in post_seconds), post_seconds
    assert results["sns"] == "ok"
    assert "timed out" in results["slack"].lower() or "timeout" in results["slack"].lower()
    monkeypatch.setenv(
        Env.SLACK_WEBHOOK_SECRET_ARN, "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing"
    )
    notify.clear_cache()
    results = notify.job_finished(item)
    assert results["slack"].startswith("ResourceNotFoundException")


def test_success_goes_to_notion_only(res, http_sink, topic_queue) -> None:
    _, recorder = http_sink
    item = {
        JobField.JOB_ID: "echo_" + "b" * 32,
        JobField.WORKER: "echo",
        JobField.STATUS: "SUCCEEDED",
        JobField.ATTEMPTS: 1,
        JobField.TIMESTAMPS: {
            "RUNNING": "2026-01-01T00:00:00.000000Z",
            "SUCCEEDED": "2026-01-01T00:01:30.500000Z",
        },
    }
    results = notify.job_finished(item)
    assert results == {"sns": "skipped", "slack": "skipped", "notion": "ok"}
    assert receive_all(topic_queue) == []
    (page,) = recorder.requests
    assert page["body"]["properties"]["Duration (s)"]["number"] == 90.5


def test_job_link_falls_back_to_the_url_batchapi_writes_to_the_table(res, monkeypatch) -> None:
    """In AWS the reconciler has no BATCH_API_URL (it exists before the API); BatchApi writes
    the stage URL as the ``config#api`` item, and links come from there."""
    from jobcontract import API_CONFIG_PK, API_CONFIG_URL, Table

    monkeypatch.delenv(Env.API_URL)
    notify.clear_cache()
    assert notify.job_link("echo_" + "a" * 32) is None  # no item yet: no link, no error
    boto3.client("dynamodb").put_item(
        TableName=res.table_name,
        Item={
            Table.PK: {"S": API_CONFIG_PK},
            API_CONFIG_URL: {"S": "https://abc.execute-api.us-east-1.amazonaws.com/v1/"},
        },
    )
    notify.clear_cache()
    assert notify.job_link("echo_" + "a" * 32) == (
        "https://abc.execute-api.us-east-1.amazonaws.com/v1/jobs/echo_" + "a" * 32
    )
