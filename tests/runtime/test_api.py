"""The API handler against the real moto server: every route and every error class."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from handlers import api
from jobcontract import (
    DEFAULT_REUSE_IDLE_SECONDS,
    MAX_INLINE_INPUT_BYTES,
    MAX_REQUEST_BYTES,
    Env,
    JobField,
    JobStatus,
)
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec
from tests.runtime.helpers import api_event, call, queue_depth, receive_all, table_items

ECHO = WorkerSpec("echo", cpu=256, memory=512, max_cpu=1024, max_memory=4096, max_attempts=4)
OTHER = WorkerSpec(
    "other",
    input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
)


@pytest.fixture
def res(pipeline_resources):
    return pipeline_resources([ECHO, OTHER])


def _submit(body=None, key=None, **kw):
    headers = {"Idempotency-Key": key} if key else {}
    return call(
        "POST",
        "/jobs",
        body or {"worker": "echo", "input": {"items": ["a"]}},
        headers=headers,
        **kw,
    )


def test_submit_writes_job_and_enqueues_one_message(res) -> None:
    status, body, headers = _submit()
    assert status == 202
    job_id = body["job_id"]
    assert job_id.startswith("echo_") and body["status"] == "QUEUED"
    assert body["links"] == {"self": f"/jobs/{job_id}", "cancel": f"/jobs/{job_id}/cancel"}
    assert headers["Location"] == f"/jobs/{job_id}"
    item = JobStore(res.table_name).get(job_id)
    assert item is not None
    assert item[JobField.TASK_DEFINITION] == res.workers["echo"].task_definition_arn
    assert item[JobField.INPUT] == {"items": ["a"]}
    assert (item[JobField.CPU], item[JobField.MEMORY]) == (256, 512)
    assert item[JobField.MAX_ATTEMPTS] == 4 and item[JobField.ATTEMPTS] == 0
    assert item[JobField.SOURCE] == "api" and item[JobField.EXPIRES_AT] > 0
    messages = receive_all(res.workers["echo"].queue_url)
    assert [json.loads(m["Body"]) for m in messages] == [{"job_id": job_id, "attempt": 0}]
    assert messages[0]["Attributes"]["MessageGroupId"] == job_id


def test_idempotent_replay_and_conflict(res) -> None:
    s1, b1, _ = _submit(key="order-42")
    s2, b2, _ = _submit(key="order-42")
    assert s1 == 202 and s2 == 200 and b1["job_id"] == b2["job_id"]
    # header names are case-insensitive
    s3, b3, _ = call(
        "POST",
        "/jobs",
        {"worker": "echo", "input": {"items": ["a"]}},
        headers={"idempotency-key": "order-42"},
    )
    assert s3 == 200 and b3["job_id"] == b1["job_id"]
    assert len(receive_all(res.workers["echo"].queue_url)) == 1
    before = table_items(res.table_name)
    s4, b4, _ = _submit({"worker": "echo", "input": {"items": ["b"]}}, key="order-42")
    assert s4 == 409 and b4["error"]["code"] == "idempotency_conflict"
    assert table_items(res.table_name) == before
    # The same key for another worker is another job.
    s5, b5, _ = _submit({"worker": "other", "input": {}}, key="order-42")
    assert s5 == 202 and b5["job_id"].startswith("other_")


def test_replay_resends_when_first_send_was_lost(res) -> None:
    _submit(key="k1")
    receive_all(res.workers["echo"].queue_url)  # the message is gone (e.g. never sent)
    boto3.client("sqs").purge_queue(QueueUrl=res.workers["echo"].queue_url)
    status, body, _ = _submit(key="k1")
    assert status == 200
    bodies = [json.loads(m["Body"]) for m in receive_all(res.workers["echo"].queue_url)]
    assert bodies == [{"job_id": body["job_id"], "attempt": 0}]


def test_send_failure_keeps_job_queued_for_the_sweep(res, monkeypatch) -> None:
    from handlers import _aws

    class BrokenSqs:
        def send_message(self, **kwargs):
            raise boto3.client("sqs").exceptions.QueueDoesNotExist(
                {"Error": {"Code": "QueueDoesNotExist", "Message": "gone"}}, "SendMessage"
            )

    _aws.set_client("sqs", BrokenSqs())
    status, body, _ = _submit()
    assert status == 202
    item = JobStore(res.table_name).get(body["job_id"])
    assert item is not None and item[JobField.STATUS] == "QUEUED"


def test_enqueue_job_is_the_one_send_of_a_launch_message(res, capsys) -> None:
    """``_aws.enqueue_job`` (used by the API, the reconciler's retry and the sweep's redrive):
    the contract's message, an optional deduplication id, and on an SQS error one ERROR line
    naming the caller's event and the job, never an exception."""
    from handlers import _aws, reconciler, sweep

    url = res.workers["echo"].queue_url
    assert _aws.enqueue_job(url, "echo_" + "1" * 32, 2)
    assert _aws.enqueue_job(url, "echo_" + "2" * 32, 0, dedup_id="redrive-x")
    sent = sorted(receive_all(url), key=lambda m: m["Body"])
    assert [json.loads(m["Body"]) for m in sent] == [
        {"job_id": "echo_" + "1" * 32, "attempt": 2},
        {"job_id": "echo_" + "2" * 32, "attempt": 0},
    ]
    dedup = [m["Attributes"]["MessageDeduplicationId"] for m in sent]
    assert dedup == ["echo_" + "1" * 32 + "-2", "redrive-x"]

    capsys.readouterr()
    assert not _aws.enqueue_job(url + "-gone", "echo_" + "3" * 32, 1, failed_event="x_failed")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["level"], r["event"], r["job_id"]) for r in lines] == [
        ("ERROR", "x_failed", "echo_" + "3" * 32)
    ]
    # The three callers go through it (no send of their own left to drift).
    for module in (api, reconciler, sweep):
        assert "queue_message(" not in Path(str(module.__file__)).read_text(), module.__name__


BAD_REQUESTS = [
    (None, "{not json", 400, "invalid_json"),
    (None, "", 400, "invalid_json"),
    (None, "[1, 2]", 400, "invalid_request"),
    (None, '{"worker": "echo", "input": {"items": [NaN]}}', 400, "invalid_json"),
    ({"input": {"items": []}}, None, 400, "invalid_request"),
    ({"worker": "echo"}, None, 400, "invalid_request"),
    ({"worker": 7, "input": {}}, None, 400, "invalid_request"),
    ({"worker": "echo", "input": {"items": []}, "priority": 1}, None, 400, "invalid_request"),
    ({"worker": "nope", "input": {}}, None, 404, "unknown_worker"),
    ({"worker": "../etc", "input": {}}, None, 400, "invalid_request"),
    ({"worker": "echo", "input": ["a"]}, None, 400, "invalid_request"),
    ({"worker": "echo", "input": {"items": "a"}}, None, 400, "invalid_input"),
    ({"worker": "echo", "input": {"items": ["a"], "x": 1}}, None, 400, "invalid_input"),
    ({"worker": "echo", "input": {"items": ["a"]}, "cpu": 300}, None, 400, "invalid_resources"),
    (
        {"worker": "echo", "input": {"items": ["a"]}, "cpu": 2048, "memory": 4096},
        None,
        422,
        "resources_exceed_limits",
    ),
    (
        {"worker": "echo", "input": {"items": ["a"]}, "memory": 8192},
        None,
        422,
        "resources_exceed_limits",
    ),
    (
        {"worker": "echo", "input": {"items": ["a"]}, "cpu": 256, "memory": 4096},
        None,
        400,
        "invalid_resources",
    ),
    ({"worker": "echo", "input": {"items": ["a"]}, "cpu": "512"}, None, 400, "invalid_resources"),
    ({"worker": "echo", "input": {"items": ["a"]}, "memory": True}, None, 400, "invalid_resources"),
    *[
        (
            {"worker": "echo", "input": {"items": ["a"]}, "max_failed_item_share": v},
            None,
            400,
            "invalid_request",
        )
        for v in (-0.1, 1.01, 2, "0.5", True, [0.5], {"share": 0.5})
    ],
    (
        None,
        '{"worker": "echo", "input": {}, "max_failed_item_share": 1e400}',
        400,
        "invalid_request",
    ),
    (None, "[" * 100_000 + "]" * 100_000, 400, "invalid_json"),
    (None, '{"worker": "echo", "input": {"items": ["\\ud800"]}}', 400, "invalid_json"),
]


@pytest.mark.parametrize(("body", "raw", "status", "code"), BAD_REQUESTS)
def test_bad_submissions_are_4xx_and_write_nothing(res, body, raw, status, code) -> None:
    before = table_items(res.table_name)
    got_status, got, _ = call("POST", "/jobs", body, raw_body=raw)
    assert (got_status, got["error"]["code"]) == (status, code), got
    assert got["error"]["message"]
    assert table_items(res.table_name) == before
    assert queue_depth(res.workers["echo"].queue_url) == 0


def test_a_bad_failed_item_share_is_refused_naming_the_limit(res) -> None:
    body = {"worker": "echo", "input": {"items": ["a"]}, "max_failed_item_share": 1.5}
    status, got, _ = call("POST", "/jobs", body)
    assert status == 400 and got["error"]["code"] == "invalid_request"
    message = got["error"]["message"]
    assert "'max_failed_item_share' must be a number from 0 to 1" in message and "1.5" in message


def test_the_failed_item_share_is_stored_shown_and_part_of_the_request(res) -> None:
    good = {"worker": "echo", "input": {"items": ["a"]}}
    status, body, _ = _submit({**good, "max_failed_item_share": 0.25}, key="share")
    assert status == 202
    store = JobStore(res.table_name)
    item = store.get(body["job_id"])
    assert item is not None and item[JobField.MAX_FAILED_ITEM_SHARE] == 0.25
    _, view, _ = call("GET", f"/jobs/{body['job_id']}")
    assert view["max_failed_item_share"] == 0.25 and "items" not in view  # not run yet
    # Another share is another request: the same key is a conflict, not a replay.
    status, got, _ = _submit({**good, "max_failed_item_share": 0.5}, key="share")
    assert (status, got["error"]["code"]) == (409, "idempotency_conflict")
    # Not given: 0, not stored, and the request hashes as before the field existed.
    _, plain, _ = _submit(good, key="plain")
    item = store.get(plain["job_id"])
    assert item is not None and JobField.MAX_FAILED_ITEM_SHARE not in item
    _, view, _ = call("GET", f"/jobs/{plain['job_id']}")
    assert view["max_failed_item_share"] == 0
    status, again, _ = _submit({**good, "max_failed_item_share": 0}, key="plain")
    assert status == 200 and again["job_id"] == plain["job_id"]  # 0 is the default: a replay


def test_a_job_failed_for_its_items_shows_the_counts_and_its_result(res) -> None:
    _, body, _ = _submit()
    job_id = body["job_id"]
    store = JobStore(res.table_name)
    store.transition(job_id, "QUEUED", "DISPATCHED", attempt=0, increment_attempts=True)
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    key = f"results/echo/{job_id}/result.json"
    boto3.client("s3").put_object(Bucket=res.bucket, Key=key, Body=b'{"items": []}')
    error = {"type": "ItemsFailed", "message": "1 of 1 items failed", "exit_code": 10}
    items = {"total": 1, "succeeded": 0, "failed": 1}
    store.transition(
        job_id,
        "RUNNING",
        "FAILED",
        attempt=1,
        set_fields={JobField.RESULT_KEY: key, JobField.ERROR: error, JobField.ITEMS: items},
    )
    status, view, _ = call("GET", f"/jobs/{job_id}")
    assert status == 200 and view["status"] == "FAILED"
    assert view["items"] == items and view["error"]["type"] == "ItemsFailed"
    assert view["result"]["url"]  # the per-item outcomes stay readable


def test_schema_errors_are_listed(res) -> None:
    status, body, _ = call("POST", "/jobs", {"worker": "echo", "input": {"items": [1, "b"]}})
    assert status == 400
    assert body["error"]["details"] == ["$.items[0]: expected string, got integer"]


def test_bad_idempotency_key_and_oversized_body(res) -> None:
    status, body, _ = _submit(key="has space")
    assert (status, body["error"]["code"]) == (400, "invalid_idempotency_key")
    huge = json.dumps({"worker": "echo", "input": {"items": ["x" * MAX_REQUEST_BYTES]}})
    status, body, _ = call("POST", "/jobs", raw_body=huge)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert len(table_items(res.table_name)) == 2  # the two registrations only


def test_valid_override_and_large_input_goes_to_s3(res) -> None:
    items = ["y" * 1000 for _ in range(MAX_INLINE_INPUT_BYTES // 1000 + 5)]
    status, body, _ = call(
        "POST", "/jobs", {"worker": "echo", "input": {"items": items}, "cpu": 1024, "memory": 4096}
    )
    assert status == 202
    item = JobStore(res.table_name).get(body["job_id"])
    assert item is not None and JobField.INPUT not in item
    assert (item[JobField.CPU], item[JobField.MEMORY]) == (1024, 4096)
    key = item[JobField.INPUT_S3_KEY]
    assert key == f"inputs/echo/{body['job_id']}.json"
    stored = boto3.client("s3").get_object(Bucket=res.bucket, Key=key)["Body"].read()
    assert json.loads(stored) == {"items": items}


def test_get_job_with_result_url(res) -> None:
    _, body, _ = _submit()
    job_id = body["job_id"]
    status, view, _ = call("GET", f"/jobs/{job_id}")
    assert status == 200 and view["status"] == "QUEUED" and "result" not in view
    assert view["attempts"] == 0 and set(view["timestamps"]) == {"QUEUED"}
    store = JobStore(res.table_name)
    store.transition(job_id, "QUEUED", "DISPATCHED", attempt=0, increment_attempts=True)
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    key = f"results/echo/{job_id}/result.json"
    boto3.client("s3").put_object(Bucket=res.bucket, Key=key, Body=b'{"ok": true}')
    store.transition(
        job_id, "RUNNING", "SUCCEEDED", attempt=1, set_fields={JobField.RESULT_KEY: key}
    )
    status, view, _ = call("GET", f"/jobs/{job_id}")
    assert view["status"] == "SUCCEEDED" and view["result"]["expires_in"] == 900
    with urllib.request.urlopen(view["result"]["url"], timeout=5) as resp:
        assert json.loads(resp.read()) == {"ok": True}
    for missing in ("/jobs/echo_" + "0" * 32, "/jobs/not-a-job", "/jobs/%2e%2e"):
        status, err, _ = call("GET", missing)
        assert (status, err["error"]["code"]) == (404, "not_found")


def test_list_pagination_filters_and_bad_queries(res) -> None:
    ids = [_submit()[1]["job_id"] for _ in range(7)]
    other = _submit({"worker": "other", "input": {}})[1]["job_id"]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"worker": "echo", "limit": "3", **({"cursor": cursor} if cursor else {})}
        status, page, _ = call("GET", "/jobs", query=query)
        assert status == 200
        seen += [j["job_id"] for j in page["jobs"]]
        cursor, pages = page["next_cursor"], pages + 1
        if not cursor:
            break
    assert pages == 3 and seen == list(reversed(ids))
    _, everything, _ = call("GET", "/jobs")
    assert [j["job_id"] for j in everything["jobs"]] == [other, *reversed(ids)]
    call("POST", f"/jobs/{ids[0]}/cancel")
    _, cancelled, _ = call("GET", "/jobs", query={"status": "CANCELLED"})
    assert [j["job_id"] for j in cancelled["jobs"]] == [ids[0]]
    _, first, _ = call("GET", "/jobs", query={"worker": "echo", "limit": "1"})
    bad = [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "x"},
        {"status": "DONE"},
        {"worker": "Bad Name"},
        {"sort": "asc"},
        {"cursor": "garbage"},
        {"cursor": first["next_cursor"][:-1] + "A"},
        {"worker": "other", "cursor": first["next_cursor"]},
    ]
    for query in bad:
        status, err, _ = call("GET", "/jobs", query=query)
        assert status == 400, query
        assert err["error"]["code"] in {"invalid_query", "invalid_cursor"}


def test_cancel_in_each_state(res) -> None:
    store = JobStore(res.table_name)
    queued = _submit()[1]["job_id"]
    status, view, _ = call("POST", f"/jobs/{queued}/cancel")
    assert status == 200 and view["status"] == "CANCELLED"
    status, err, _ = call("POST", f"/jobs/{queued}/cancel")
    assert (status, err["error"]["code"]) == (409, "job_terminal")

    running = _submit()[1]["job_id"]
    store.transition(running, "QUEUED", "DISPATCHED", attempt=0, increment_attempts=True)
    ecs = boto3.client("ecs")
    task = ecs.run_task(
        cluster=res.cluster_arn,
        taskDefinition=res.workers["echo"].task_definition_arn,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": list(res.subnet_ids), "securityGroups": []}
        },
    )["tasks"][0]["taskArn"]
    store.update(running, status="DISPATCHED", set_fields={JobField.TASK_ARN: task})
    store.transition(running, "DISPATCHED", "RUNNING", attempt=1)
    status, view, _ = call("POST", f"/jobs/{running}/cancel")
    assert status == 202 and view["status"] == "RUNNING" and view["cancel_requested"] is True
    described = ecs.describe_tasks(cluster=res.cluster_arn, tasks=[task])["tasks"][0]
    assert described["desiredStatus"] == "STOPPED"
    assert running in described.get("stoppedReason", "")

    dispatched = _submit()[1]["job_id"]
    store.transition(dispatched, "QUEUED", "DISPATCHED", attempt=0, increment_attempts=True)
    status, view, _ = call("POST", f"/jobs/{dispatched}/cancel")
    assert status == 202 and view["cancel_requested"] is True

    status, err, _ = call("POST", "/jobs/echo_" + "1" * 32 + "/cancel")
    assert status == 404


def test_workers_route(res, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(Env.FARGATE_VCPU_LIMIT, "6")
    status, body, _ = call("GET", "/workers")
    assert status == 200
    echo = {w["name"]: w for w in body["workers"]}["echo"]
    assert echo["limits"] == {
        "cpu": 256,
        "memory": 512,
        "max_cpu": 1024,
        "max_memory": 4096,
        "timeout_seconds": 900,
        "max_attempts": 4,
        "max_concurrency": 10,
        # a registration without the field reads as the default warm-reuse window
        "reuse_idle_seconds": DEFAULT_REUSE_IDLE_SECONDS,
    }
    assert body["fargate_vcpu_limit"] == 6  # the stack setting, from the Lambda's environment
    assert echo["input_schema"] == ECHO.input_schema
    assert [w["name"] for w in body["workers"]] == ["echo", "other"]


def test_unknown_route_and_wrong_method(res) -> None:
    status, err, _ = call("GET", "/nope")
    assert (status, err["error"]["code"]) == (404, "not_found")
    status, err, headers = call("DELETE", "/jobs")
    assert (status, err["error"]["code"]) == (405, "method_not_allowed")
    assert headers["Allow"] == "GET, POST"
    status, _, _ = call("GET", "/jobs/echo_" + "0" * 32 + "/cancel")
    assert status == 405


def test_base64_body_and_bad_base64(res) -> None:
    import base64

    event = api_event(
        "POST",
        "/jobs",
        raw_body=base64.b64encode(
            json.dumps({"worker": "echo", "input": {"items": []}}).encode()
        ).decode(),
    )
    event["isBase64Encoded"] = True
    assert api.handler(event, None)["statusCode"] == 202
    event["body"] = "***"
    out = api.handler(event, None)
    assert out["statusCode"] == 400


def test_status_enum_matches_contract() -> None:
    assert set(JobStatus.__members__) == {s.value for s in JobStatus}


def test_links_follow_the_stage_url(res, monkeypatch) -> None:
    event = api_event("POST", "/jobs", {"worker": "echo", "input": {"items": []}})
    event["requestContext"].update({"domainName": "abc.execute-api.example", "path": "/v1/jobs"})
    body = json.loads(api.handler(event, None)["body"])
    assert body["links"]["self"] == f"https://abc.execute-api.example/v1/jobs/{body['job_id']}"
    monkeypatch.setenv("BATCH_API_URL", "https://api.example.test/prod/")
    body = json.loads(api.handler(event, None)["body"])
    assert body["links"]["cancel"] == f"https://api.example.test/prod/jobs/{body['job_id']}/cancel"


@pytest.mark.parametrize(
    ("error", "logged_code"),
    [
        (
            ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Query"
            ),
            {"code": "ThrottlingException"},
        ),
        (EndpointConnectionError(endpoint_url="x"), {}),
    ],
)
def test_an_aws_failure_is_a_503_to_retry_logged_with_its_code(
    monkeypatch, error, logged_code
) -> None:
    """A ClientError and a BotoCoreError both answer 503 + Retry-After; the log line names
    the AWS error code when there is one (ClientError) and has no code field otherwise."""
    lines: list[tuple[str, str, dict]] = []

    def failing(req: api.Request) -> api.Response:
        raise error

    monkeypatch.setattr(api, "dispatch", failing)
    monkeypatch.setattr(api._aws, "log", lambda level, event, **f: lines.append((level, event, f)))
    response = api.handle(api.Request("GET", "/jobs"))
    assert (response.status, response.headers) == (503, {"Retry-After": "1"})
    assert response.body["error"]["code"] == "service_unavailable"
    ((level, event, fields),) = lines
    assert (level, event) == ("ERROR", "aws_error")
    assert fields == {"path": "/jobs", **logged_code, "error": str(error)}
