"""batchctl: endpoint resolution and exit codes, against a local gateway with a fake handler.

The gateway stand-in (local_pipeline.api_gateway) enforces the key and routes exactly as in
the local pipeline; the handler behind it is scripted per test, so each exit code is driven
by the HTTP answer that should produce it."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.api import Endpoint, Exit, resolve_endpoint
from cli.main import main
from local_pipeline.api_gateway import GatewayConfig, LocalApiGateway, Route

KEY = "k" * 40
ROUTES = [
    Route("/jobs", frozenset({"GET", "POST"})),
    Route("/workers", frozenset({"GET"})),
    Route("/jobs/{id}/cancel", frozenset({"POST"})),
    Route("/jobs/{id}", frozenset({"GET"})),
]
JOB_ID = "echo_" + "a" * 32


def _proxy(status: int, body: Any) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }


class FakeApi:
    """Routes -> scripted proxy responses; records the events it received."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.answer: Callable[[dict[str, Any]], dict[str, Any]] = lambda e: _proxy(200, {})

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return self.answer(event)


@pytest.fixture
def api(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[LocalApiGateway, FakeApi]]:
    for var in ("BATCH_API_URL", "BATCH_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BATCH_LOCAL_STATE", str(tmp_path / "none.json"))
    fake = FakeApi()
    gateway = LocalApiGateway(GatewayConfig(ROUTES, KEY, "v1", []), fake)
    gateway.start()
    try:
        yield gateway, fake
    finally:
        gateway.stop()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- endpoint resolution --------------------------------------------------------------------
def test_flags_beat_env_and_env_beats_state(tmp_path: Path) -> None:
    state = tmp_path / "endpoint.json"
    state.write_text(json.dumps({"api_url": "http://state", "api_key": "state-key"}))
    env = {
        "BATCH_API_URL": "http://env",
        "BATCH_API_KEY": "env-key",
        "BATCH_LOCAL_STATE": str(state),
    }
    flags = resolve_endpoint(api_url="http://flag/", api_key="flag-key", stack=None, environ=env)
    assert (flags.api_url, flags.api_key, flags.source) == ("http://flag", "flag-key", "flags")
    from_env = resolve_endpoint(api_url=None, api_key=None, stack=None, environ=env)
    assert (from_env.api_url, from_env.api_key, from_env.source) == ("http://env", "env-key", "env")
    local = resolve_endpoint(
        api_url=None, api_key=None, stack=None, environ={"BATCH_LOCAL_STATE": str(state)}
    )
    assert (local.api_url, local.api_key, local.source) == ("http://state", "state-key", "local")
    assert local.is_local and not from_env.is_local


def test_stack_outputs_come_from_pulumi(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def runner(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        out = {
            "apiUrl": "https://x.execute-api.us-east-1.amazonaws.com/v1",
            "apiKey": "s3cret",
            "clusterArn": "arn:aws:ecs:us-east-1:1:cluster/c",
        }
        return subprocess.CompletedProcess(cmd, 0, json.dumps(out), "")

    ep = resolve_endpoint(api_url=None, api_key=None, stack="dev", environ={}, runner=runner)
    assert calls == [["pulumi", "stack", "output", "--json", "--show-secrets", "-s", "dev"]]
    assert ep.api_url.endswith("/v1") and ep.api_key == "s3cret" and ep.source == "stack:dev"
    assert ep.stack_outputs["clusterArn"].endswith("cluster/c")


def test_missing_stack_is_not_found(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def runner(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 255, "", "error: no stack named 'nope' found")

    from cli.api import CliError

    with pytest.raises(CliError) as info:
        resolve_endpoint(api_url=None, api_key=None, stack="nope", environ={}, runner=runner)
    assert info.value.code == Exit.NOT_FOUND and "no stack named 'nope'" in info.value.message


def test_pulumi_missing_is_a_usage_error() -> None:
    from cli.api import CliError

    def runner(cmd: list[str], **_: Any) -> Any:
        raise FileNotFoundError("pulumi")

    with pytest.raises(CliError) as info:
        resolve_endpoint(api_url=None, api_key=None, stack="dev", environ={}, runner=runner)
    assert info.value.code == Exit.USAGE and "Pulumi CLI" in info.value.message


def test_no_endpoint_anywhere_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("BATCH_API_URL", "BATCH_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BATCH_LOCAL_STATE", str(tmp_path / "missing.json"))
    code, _, err = _run(capsys, "status", JOB_ID)
    assert code == Exit.USAGE and "no API endpoint" in err


# --- exit codes -----------------------------------------------------------------------------
def test_unreachable_endpoint_exits_5(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_LOCAL_STATE", str(tmp_path / "none.json"))
    url = f"http://127.0.0.1:{_free_port()}"
    code, _, err = _run(capsys, "workers", "--api-url", url, "--api-key", KEY)
    assert code == Exit.UNREACHABLE and "cannot reach" in err


def test_wrong_key_exits_4_and_never_reaches_the_handler(
    api: tuple[LocalApiGateway, FakeApi], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, fake = api
    code, _, err = _run(capsys, "workers", "--api-url", gateway.url, "--api-key", "wrong" * 8)
    assert code == Exit.AUTH and "API key" in err
    assert fake.events == []


def test_unknown_worker_exits_3(
    api: tuple[LocalApiGateway, FakeApi], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gateway, fake = api
    fake.answer = lambda e: _proxy(
        404, {"error": {"code": "unknown_worker", "message": "no worker named 'nope'"}}
    )
    (tmp_path / "in.json").write_text('{"items": []}')
    code, _, err = _run(
        capsys,
        "submit",
        "nope",
        "--input",
        str(tmp_path / "in.json"),
        "--api-url",
        gateway.url,
        "--api-key",
        KEY,
    )
    assert code == Exit.NOT_FOUND and "no worker named 'nope'" in err
    assert json.loads(fake.events[0]["body"]) == {"worker": "nope", "input": {"items": []}}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, Exit.USAGE),
        (409, Exit.USAGE),
        (422, Exit.USAGE),
        (404, Exit.NOT_FOUND),
        (500, Exit.SERVER),
        (503, Exit.SERVER),
    ],
)
def test_http_errors_map_to_exit_codes(
    api: tuple[LocalApiGateway, FakeApi],
    capsys: pytest.CaptureFixture[str],
    status: int,
    expected: int,
) -> None:
    gateway, fake = api
    fake.answer = lambda e: _proxy(status, {"error": {"code": "x", "message": f"said {status}"}})
    code, _, err = _run(capsys, "status", JOB_ID, "--api-url", gateway.url, "--api-key", KEY)
    assert code == expected and f"said {status}" in err


def test_handler_crash_is_a_502_server_error(
    api: tuple[LocalApiGateway, FakeApi], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, fake = api

    def boom(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("bug")

    fake.answer = boom
    code, _, err = _run(capsys, "status", JOB_ID, "--api-url", gateway.url, "--api-key", KEY)
    assert code == Exit.SERVER and "502" in err


def test_status_of_a_failed_job_exits_1(
    api: tuple[LocalApiGateway, FakeApi], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, fake = api
    fake.answer = lambda e: _proxy(
        200,
        {
            "job_id": JOB_ID,
            "worker": "echo",
            "status": "FAILED",
            "attempts": 3,
            "max_attempts": 3,
            "error": {"type": "Crash", "message": "exit 1"},
        },
    )
    code, out, _ = _run(capsys, "status", JOB_ID, "--api-url", gateway.url, "--api-key", KEY)
    assert code == Exit.JOB_FAILED and "Crash: exit 1" in out
    event = fake.events[0]
    assert event["pathParameters"] == {"id": JOB_ID} and event["resource"] == "/jobs/{id}"


def test_status_shows_the_fallback_worker_a_job_was_handed_to(
    api: tuple[LocalApiGateway, FakeApi], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, fake = api
    job = {"job_id": JOB_ID, "worker": "echo", "status": "RUNNING", "attempts": 2}
    fake.answer = lambda e: _proxy(200, job)
    code, out, _ = _run(capsys, "status", JOB_ID, "--api-url", gateway.url, "--api-key", KEY)
    assert code == Exit.OK and "fallback" not in out
    job["fallback"] = {"worker": "cpu", "from": "echo", "attempt": 1, "at": "2026-12-03T16:00Z"}
    code, out, _ = _run(capsys, "status", JOB_ID, "--api-url", gateway.url, "--api-key", KEY)
    assert code == Exit.OK
    assert "fallback  cpu (handed over from echo after attempt 1: no instance capacity" in out


def _job(status: str, failed: int, share: float = 0) -> dict[str, Any]:
    return {
        "job_id": JOB_ID,
        "worker": "echo",
        "status": status,
        "attempts": 1,
        "max_attempts": 3,
        "items": {"total": 10, "succeeded": 10 - failed, "failed": failed},
        "max_failed_item_share": share,
        **({"error": {"type": "ItemsFailed", "message": f"{failed} of 10 items failed"}}
           if status == "FAILED" else {}),
    }  # fmt: skip


def test_status_of_a_job_that_succeeded_with_failed_items_exits_7(
    api: tuple[LocalApiGateway, FakeApi], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, fake = api
    fake.answer = lambda e: _proxy(200, _job("SUCCEEDED", 1, 0.1))
    code, out, _ = _run(capsys, "status", JOB_ID, "--api-url", gateway.url, "--api-key", KEY)
    assert code == Exit.ITEMS_FAILED == 7
    assert "items     9 succeeded, 1 failed of 10 (max_failed_item_share 0.1)" in out
    fake.answer = lambda e: _proxy(200, _job("SUCCEEDED", 0))
    code, out, _ = _run(capsys, "status", JOB_ID, "--api-url", gateway.url, "--api-key", KEY)
    assert code == Exit.OK and "0 failed of 10" in out


@pytest.mark.parametrize(
    ("final", "expected"),
    [
        (_job("SUCCEEDED", 0, 0.2), Exit.OK),
        (_job("SUCCEEDED", 2, 0.2), Exit.ITEMS_FAILED),  # within the share: still reported
        (_job("FAILED", 3, 0.2), Exit.JOB_FAILED),  # above it: the job FAILED (ItemsFailed)
    ],
)
def test_submit_wait_exit_code_tells_failed_items_apart(
    api: tuple[LocalApiGateway, FakeApi],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    final: dict[str, Any],
    expected: int,
) -> None:
    gateway, fake = api

    def answer(event: dict[str, Any]) -> dict[str, Any]:
        if event["httpMethod"] == "POST":
            return _proxy(202, {"job_id": JOB_ID, "status": "QUEUED", "links": {}})
        return _proxy(200, final)

    fake.answer = answer
    job_input = tmp_path / "in.json"
    job_input.write_text('{"items": []}')
    code, _, err = _run(
        capsys,
        *("submit", "echo", "--input", str(job_input), "--wait", "--poll", "0.01"),
        *("--max-failed-item-share", "0.2", "--api-url", gateway.url, "--api-key", KEY),
    )
    assert code == expected, err
    sent = json.loads(fake.events[0]["body"])
    assert sent == {"worker": "echo", "input": {"items": []}, "max_failed_item_share": 0.2}
    if expected == Exit.ITEMS_FAILED:
        assert "SUCCEEDED with failed items: 8 succeeded, 2 failed of 10" in err
    if expected == Exit.JOB_FAILED:
        assert "ItemsFailed: 3 of 10 items failed" in err


def test_submit_items_sends_an_array_job(
    api: tuple[LocalApiGateway, FakeApi], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gateway, fake = api
    fake.answer = lambda e: _proxy(202, {"job_id": JOB_ID, "status": "RUNNING", "links": {}})
    items, shared = tmp_path / "items.json", tmp_path / "in.json"
    items.write_text('["a", "b", "c"]')
    shared.write_text('{"language": "en"}')
    endpoint = ("--api-url", gateway.url, "--api-key", KEY)
    code, out, err = _run(
        capsys, "submit", "echo", "--items", str(items), "--input", str(shared), "--shard-size",
        "2", *endpoint,
    )  # fmt: skip
    assert code == Exit.OK and out.strip() == JOB_ID, err
    assert json.loads(fake.events[0]["body"]) == {
        "worker": "echo",
        "items": ["a", "b", "c"],
        "input": {"language": "en"},
        "shard_size": 2,
    }
    shared.write_text('{"not": "a list"}')
    code, _, err = _run(capsys, "submit", "echo", "--items", str(shared), *endpoint)
    assert code == Exit.USAGE and "must hold a JSON array" in err


def test_a_share_outside_0_to_1_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("1.5", "-0.1", "nan", "half"):
        assert main(["submit", "echo", "--max-failed-item-share", bad]) == Exit.USAGE
    assert "is not a number from 0 to 1" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--status", "BOGUS"]) == Exit.USAGE
    assert main(["no-such-command"]) == Exit.USAGE


def test_list_follows_cursors_with_all(
    api: tuple[LocalApiGateway, FakeApi], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, fake = api

    def pages(event: dict[str, Any]) -> dict[str, Any]:
        cursor = (event["queryStringParameters"] or {}).get("cursor")
        n = 0 if cursor is None else int(cursor)
        job = {
            "job_id": f"echo_{n:032x}",
            "worker": "echo",
            "status": "QUEUED",
            "attempts": 0,
            "created_at": f"2026-01-01T00:00:0{n}Z",
        }
        return _proxy(200, {"jobs": [job], "next_cursor": str(n + 1) if n < 2 else None})

    fake.answer = pages
    code, out, _ = _run(
        capsys,
        "list",
        "--all",
        "--limit",
        "1",
        "--worker",
        "echo",
        "--api-url",
        gateway.url,
        "--api-key",
        KEY,
    )
    assert code == Exit.OK
    assert [line.split()[0] for line in out.splitlines()[1:]] == [
        f"echo_{n:032x}" for n in range(3)
    ]
    assert fake.events[0]["queryStringParameters"] == {"worker": "echo", "limit": "1"}
    code, out, _ = _run(capsys, "list", "--limit", "1", "--api-url", gateway.url, "--api-key", KEY)
    assert "next cursor: 1" in out


def test_local_endpoint_is_flagged_local(tmp_path: Path) -> None:
    ep = Endpoint("http://a", "k", "local", {}, {"api_url": "http://a"})
    assert ep.is_local
    assert not Endpoint("http://b", "k", "flags", {}, {"api_url": "http://a"}).is_local


# --- workers and retry with the stack's one launch queue -----------------------------------
def test_workers_shows_max_tasks_reuse_and_the_stack_vcpu_limit(
    api: tuple[LocalApiGateway, FakeApi], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, fake = api
    limits = {"cpu": 1024, "memory": 2048, "max_cpu": 1024, "max_memory": 2048,
              "timeout_seconds": 900, "max_attempts": 3, "max_concurrency": 5,
              "reuse_idle_seconds": 30}  # fmt: skip
    workers = [
        {"name": "echo", "description": "d", "limits": limits, "input_schema": {}},
        {"name": "cold", "description": "c", "input_schema": {},
         "limits": {**limits, "max_concurrency": 2, "reuse_idle_seconds": 0}},
    ]  # fmt: skip
    fake.answer = lambda e: _proxy(200, {"workers": workers, "fargate_vcpu_limit": 6})
    code, out, _ = _run(capsys, "workers", "--api-url", gateway.url, "--api-key", KEY)
    assert code == Exit.OK
    header, echo, cold, limit = out.splitlines()
    assert "MAX TASKS" in header and "REUSE" in header
    assert echo.split()[5:7] == ["5", "30"] and cold.split()[5:7] == ["2", "off"]
    assert limit == "Stack Fargate vCPU limit: 6 vCPUs at once, all workers together"
    fake.answer = lambda e: _proxy(200, {"workers": workers, "fargate_vcpu_limit": 0})
    _, out, _ = _run(capsys, "workers", "--api-url", gateway.url, "--api-key", KEY)
    assert out.splitlines()[-1] == "Stack Fargate vCPU limit: none"


def test_redrive_moves_only_the_workers_messages_of_the_shared_dlq(aws_env: str) -> None:
    import boto3

    from cli.commands import redrive

    sqs = boto3.client("sqs")
    attrs = {"FifoQueue": "true"}
    dlq = sqs.create_queue(QueueName="t-launch-dlq.fifo", Attributes=attrs)["QueueUrl"]
    queue = sqs.create_queue(QueueName="t-launch.fifo", Attributes=attrs)["QueueUrl"]
    mine = [f"echo_{i:032x}" for i in range(3)]
    theirs = [f"other_{i:032x}" for i in range(2)]
    for job in mine + theirs:
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"job_id": job, "attempt": 0}),
                         MessageGroupId=job, MessageDeduplicationId=f"{job}-0")  # fmt: skip
    assert redrive(sqs, dlq, queue, worker="echo") == 3

    def bodies(url: str) -> set[str]:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return {json.loads(m["Body"])["job_id"] for m in got.get("Messages", [])}

    assert bodies(queue) == set(mine)
    assert bodies(dlq) == set(theirs)  # left in the DLQ, visible again at once
