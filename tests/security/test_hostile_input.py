"""Hostile input against the real API handler, behind the local API Gateway stand-in
(``local_pipeline.api_gateway``: API key, IP allow-list, 10 MB limit, as the deployed stage),
backed by a real moto server.

- Property tests generated from components/openapi.yaml (schemathesis 4 + hypothesis): no
  5xx for any generated request, and every rejected (4xx) request leaves the jobs table, the
  queues and the results bucket exactly as they were.
- Explicit cases: missing/wrong API key, source IP outside the allow-list, oversized bodies,
  10k-level nested JSON, unicode edge cases (lone surrogates, NUL, RTL overrides, invalid
  UTF-8), cursor tampering, another worker's job id and malformed job ids.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from hypothesis import HealthCheck, settings

from tests.fixtures.moto_server import PipelineResources, WorkerSpec

OPENAPI = Path(__file__).resolve().parents[2] / "components" / "openapi.yaml"
WORKERS = (WorkerSpec("echo"), WorkerSpec("other"))


def openapi_document() -> dict[str, Any]:
    return dict(yaml.safe_load(OPENAPI.read_text()))


@dataclass
class Api:
    url: str
    key: str
    res: PipelineResources
    last_state: str = ""  # the property test's state after the previous request

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        key: str | None = "default",
    ) -> tuple[int, Any]:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if key == "default":
            all_headers["x-api-key"] = self.key
        elif key is not None:
            all_headers["x-api-key"] = key
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    def submit(self, worker: str = "echo", items: list[str] | None = None) -> str:
        body = json.dumps({"worker": worker, "input": {"items": items or ["a"]}}).encode()
        status, out = self.request("POST", "/jobs", body)
        assert status == 202, out
        return str(out["job_id"])


@cache
def clients(endpoint: str) -> tuple[Any, Any, Any]:
    """boto3 clients for the state digest, made once per moto endpoint (creation is slow)."""
    return tuple(  # type: ignore[return-value]
        boto3.client(service, endpoint_url=endpoint) for service in ("dynamodb", "sqs", "s3")
    )


def state(res: PipelineResources) -> str:
    """A digest of everything a request could change: every table item, every queue's
    message counts, every object in the results bucket (read in parallel: it runs once per
    generated request)."""
    from concurrent.futures import ThreadPoolExecutor

    ddb, sqs, s3 = clients(res.endpoint)

    def items() -> list[str]:
        found: list[Any] = []
        kwargs: dict[str, Any] = {"TableName": res.table_name}
        while True:
            page = ddb.scan(**kwargs)
            found += page["Items"]
            if "LastEvaluatedKey" not in page:
                return sorted(json.dumps(i, sort_keys=True) for i in found)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def queue(url: str) -> dict[str, str]:
        return dict(
            sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
        )

    def objects() -> list[tuple[str, str]]:
        listing = s3.list_objects_v2(Bucket=res.bucket).get("Contents", [])
        return sorted((o["Key"], o["ETag"]) for o in listing)

    urls = [u for w in res.workers.values() for u in (w.queue_url, w.dlq_url)]
    with ThreadPoolExecutor(max_workers=len(urls) + 2) as pool:
        f_items, f_objects = pool.submit(items), pool.submit(objects)
        f_queues = {u: pool.submit(queue, u) for u in urls}
        snapshot = {
            "items": f_items.result(),
            "queues": {u: f.result() for u, f in f_queues.items()},
            "objects": f_objects.result(),
        }
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()


def start_gateway(res: PipelineResources, allowed_ips: list[str]) -> tuple[Any, str]:
    from handlers import api as api_handler
    from local_pipeline.api_gateway import (
        GatewayConfig,
        LocalApiGateway,
        allowed_networks,
        gateway_responses,
        routes_from_openapi,
    )

    key = secrets.token_urlsafe(30)
    document = openapi_document()
    config = GatewayConfig(
        routes=routes_from_openapi(document),
        api_key=key,
        stage="v1",
        allowed_ips=allowed_networks(allowed_ips),
        responses=gateway_responses(document),  # the stage's customised gateway responses
    )
    gateway = LocalApiGateway(config, lambda event: api_handler.handler(event, None))
    gateway.start()
    return gateway, key


@pytest.fixture
def make_api(
    pipeline_resources: Callable[..., PipelineResources],
) -> Iterator[Callable[..., Api]]:
    res = pipeline_resources(WORKERS)
    started: list[Any] = []

    def make(allowed_ips: list[str] | None = None) -> Api:
        gateway, key = start_gateway(res, allowed_ips or [])
        started.append(gateway)
        return Api(gateway.url, key, res)

    yield make
    for gateway in started:
        gateway.stop()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


# --- property tests from the OpenAPI document ---------------------------------------------

try:
    import schemathesis

    SCHEMA = schemathesis.pytest.from_fixture("openapi_schema")
except ImportError:  # pragma: no cover - schemathesis is a pinned dev dependency
    SCHEMA = None


@pytest.fixture
def openapi_schema() -> Any:
    import schemathesis

    return schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture
def seeded_api(api: Api) -> Api:
    """One job per worker, so list/get routes have something to return."""
    api.submit("echo")
    api.submit("other")
    return api


if SCHEMA is not None:

    @SCHEMA.parametrize()
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    def test_generated_requests_never_5xx_and_rejections_change_nothing(
        case: Any, seeded_api: Api
    ) -> None:
        before = seeded_api.last_state or state(seeded_api.res)
        # Methods the API does not declare too (schemathesis' unsupported-method phase: TRACE
        # etc.): every resource's catch-all ANY method hands them to the handler, 405 + Allow.
        status, text = send_through_gateway(case, seeded_api)
        if case.method.lower() not in DECLARED.get(case.path, set()):
            assert status == 405 and json.loads(text)["error"]["code"] == "method_not_allowed"
        assert status < 500, f"{case.method} {case.formatted_path} -> {status}: {text}"
        after = state(seeded_api.res)
        seeded_api.last_state = after
        if status >= 400:
            assert after == before, (
                f"rejected {case.method} {case.formatted_path} ({status}) "
                "changed the table, a queue or the bucket"
            )


# --- schemathesis with every check on, as `schemathesis run -c all` ------------------------

# Bounded so the run fits the suite: about 45 s on an idle 2-core machine (all phases:
# examples, coverage incl. undeclared methods, fuzzing, stateful), deterministic by the seed.
ST_MAX_EXAMPLES = 5
ST_SEED = 11


# Every check on (what `-c all` selects), with one exception: GET /jobs's `cursor` is an opaque
# token only the API issues, so a generated one is schema-valid and still rightly refused (400
# invalid_cursor); positive_data_acceptance cannot be met there by any schema. Every other
# check stays on for GET /jobs, and that one for every other operation.
ST_CONFIG = """\
[checks]
enabled = true

[[operations]]
include-operation-id = "listJobs"
checks.positive_data_acceptance.enabled = false
"""


def run_schemathesis(api: Api, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The schemathesis CLI with every check against the gateway in front of the real
    handler; exit code 0 only if no check failed on any generated request. Run in ``cwd``:
    schemathesis keeps a crash cache (``.schemathesis/``) in its working directory."""
    (cwd / "schemathesis.toml").write_text(ST_CONFIG)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", "schemathesis.toml", "run",
        str(OPENAPI), "--url", api.url, "-H", f"x-api-key: {api.key}",
        "--max-examples", str(ST_MAX_EXAMPLES), "--seed", str(ST_SEED),
        "--workers", "1", "--no-color", "--warnings", "off", *extra,
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=240, cwd=cwd, env=dict(os.environ)
    )


def test_schemathesis_with_every_check_finds_no_5xx_and_no_contract_violation(
    seeded_array_api: Api, tmp_path: Path
) -> None:
    """Every route, the array job, its children listing and the uploads included: no 5xx,
    every status and body as documented, undeclared methods 405 with Allow, schema-valid
    requests accepted and invalid ones rejected."""
    out = run_schemathesis(seeded_array_api, tmp_path)
    assert out.returncode == 0, out.stdout[-12000:] + out.stderr[-2000:]
    assert "6 selected / 6 total" in out.stdout.replace("  ", " ")


def test_schemathesis_run_catches_a_contract_violation(
    pipeline_resources: Callable[..., PipelineResources], tmp_path: Path
) -> None:
    """The check can fail: a gateway without the catch-all ANY methods (undeclared methods
    answered as unknown routes, 404) is reported (ST204)."""
    from local_pipeline.api_gateway import Route

    res = pipeline_resources(WORKERS)
    gateway, key = start_gateway(res, [])
    try:
        gateway.config.routes = [
            Route(r.resource, r.methods, any_method=False) for r in gateway.config.routes
        ]
        out = run_schemathesis(
            Api(gateway.url, key, res),
            tmp_path,
            "--phases",
            "coverage",
            "--include-path",
            "/workers",
        )
    finally:
        gateway.stop()
    assert out.returncode != 0 and "undeclared method" in out.stdout, out.stdout[-4000:]


@pytest.fixture
def seeded_array_api(seeded_api: Api) -> Api:
    """Also an array job, so GET /jobs?parent= and the parent's view have data."""
    body = json.dumps({"worker": "echo", "items": ["a", "b", "c"], "shard_size": 2}).encode()
    status, out = seeded_api.request("POST", "/jobs", body)
    assert status == 202, out
    return seeded_api


DECLARED: dict[str, set[str]] = {
    path: {m for m in item if m in ("get", "put", "post", "delete", "patch", "head", "options")}
    for path, item in openapi_document()["paths"].items()
}


def send_through_gateway(case: Any, api: Api) -> tuple[int, str]:
    """Send a generated case over HTTP with urllib (one connection per request: the
    stand-in answers keep-alive clients such as requests about 40 ms slower per call)."""
    from urllib.parse import urlencode

    kwargs = case.as_transport_kwargs(base_url=api.url, headers={"x-api-key": api.key})
    url = kwargs["url"]
    if kwargs.get("params"):
        url += "?" + urlencode(kwargs["params"], doseq=True)
    if "json" in kwargs:
        data: bytes | None = json.dumps(kwargs["json"]).encode()
    else:
        raw = kwargs.get("data")
        data = raw.encode() if isinstance(raw, str) else raw
    headers = {
        k: str(v)
        for k, v in kwargs["headers"].items()
        if k.lower() not in ("connection", "accept-encoding")
    }
    req = urllib.request.Request(url, data=data, method=kwargs["method"], headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")
    except (UnicodeEncodeError, ValueError):
        # http.client refuses to send this (e.g. a non-latin-1 header value); no HTTP client
        # could deliver it, but the handler must still cope with whatever the event holds.
        return call_handler_directly(case)


def call_handler_directly(case: Any) -> tuple[int, str]:
    from urllib.parse import urlencode

    from handlers import api as api_handler

    body = case.body
    if body is None or type(body).__name__ == "NotSet":
        text = None
    elif isinstance(body, bytes):
        text = body.decode("latin-1")
    else:
        text = json.dumps(body)
    path = case.formatted_path
    event = {
        "resource": case.path,
        "path": path,
        "httpMethod": case.method.upper(),
        "headers": {k: str(v) for k, v in (case.headers or {}).items()},
        "multiValueHeaders": None,
        "queryStringParameters": {k: str(v) for k, v in (case.query or {}).items()} or None,
        "multiValueQueryStringParameters": None,
        "pathParameters": case.path_parameters or None,
        "body": text,
        "isBase64Encoded": False,
        "requestContext": {
            "requestId": "schemathesis",
            "stage": "v1",
            "identity": {"sourceIp": "127.0.0.1"},
            "rawQuery": urlencode(case.query or {}),
        },
    }
    out = api_handler.handler(event, None)
    return int(out["statusCode"]), str(out.get("body"))


# --- explicit hostile cases ---------------------------------------------------------------

GOOD_BODY = json.dumps({"worker": "echo", "input": {"items": ["x"]}}).encode()


def test_state_digest_sees_an_accepted_write(api: Api) -> None:
    """The 'nothing changed' checks can fail: an accepted submit changes the digest."""
    before = state(api.res)
    api.submit("echo")
    assert state(api.res) != before


@pytest.mark.parametrize("key", [None, "", "wrong-key", "x" * 4096])
def test_missing_or_wrong_api_key_is_403_and_writes_nothing(api: Api, key: str | None) -> None:
    before = state(api.res)
    for method, path, body in (
        ("POST", "/jobs", GOOD_BODY),
        ("GET", "/jobs", None),
        ("GET", "/workers", None),
    ):
        status, _ = api.request(method, path, body, key=key)
        assert status == 403, (method, path, key)
    assert state(api.res) == before


def test_api_key_is_checked_exactly(api: Api) -> None:
    """Prefix, suffix and case variants of the real key are all refused."""
    # (Leading/trailing blanks are not a variant: HTTP strips them from header values.)
    for variant in (api.key[:-1], api.key + "x", api.key.swapcase(), api.key[::-1]):
        assert variant != api.key
        assert api.request("GET", "/workers", key=variant)[0] == 403


def test_ip_outside_allow_list_is_403_even_with_the_key(make_api: Callable[..., Api]) -> None:
    outside = make_api(["203.0.113.0/24", "2001:db8::/32"])  # loopback is not in these
    before = state(outside.res)
    status, body = outside.request("POST", "/jobs", GOOD_BODY)
    assert status == 403 and "not authorized" in json.dumps(body)
    assert state(outside.res) == before
    inside = make_api(["127.0.0.0/8"])
    assert inside.request("POST", "/jobs", GOOD_BODY)[0] == 202


def test_oversized_bodies_are_413_and_write_nothing(api: Api) -> None:
    before = state(api.res)
    # Just over the handler's 1 MiB limit (jobcontract.MAX_REQUEST_BYTES).
    from jobcontract import MAX_REQUEST_BYTES

    filler = "a" * (MAX_REQUEST_BYTES + 1)
    big = json.dumps({"worker": "echo", "input": {"items": [filler]}}).encode()
    assert api.request("POST", "/jobs", big)[0] == 413
    # Over API Gateway's 10 MB payload limit: the gateway answers before the handler.
    huge = b'{"worker": "echo", "input": {"items": ["' + b"b" * (10 * 1024 * 1024) + b'"]}}'
    assert api.request("POST", "/jobs", huge)[0] == 413
    assert state(api.res) == before


@pytest.mark.parametrize("depth", [100, 1_000, 10_000, 100_000])
def test_deeply_nested_json_is_a_clean_4xx(api: Api, depth: int) -> None:
    before = state(api.res)
    nested_input = b'{"worker": "echo", "input": {"items": ' + b"[" * depth + b"]" * depth + b"}}"
    nested_top = b"[" * depth + b"]" * depth
    nested_obj = b'{"a":' * depth + b"1" + b"}" * depth
    for body in (nested_input, nested_top, nested_obj):
        status, out = api.request("POST", "/jobs", body)
        assert 400 <= status < 500, (depth, status, out)
    assert state(api.res) == before


UNICODE_BODIES = [
    # lone surrogates, escaped (valid JSON text, not valid Unicode)
    b'{"worker": "echo", "input": {"items": ["\\ud800"]}}',
    b'{"worker": "\\udfff", "input": {"items": ["x"]}}',
    # NUL and other control characters
    b'{"worker": "echo\\u0000", "input": {"items": ["x"]}}',
    b'{"worker": "echo", "input": {"items": ["x"]}, "cpu\\u0000": 1}',
    # RTL override / zero-width / homoglyph worker names
    '{"worker": "\u202eohce", "input": {"items": ["x"]}}'.encode(),
    '{"worker": "ech\u200bo", "input": {"items": ["x"]}}'.encode(),
    '{"worker": "\u0435cho", "input": {"items": ["x"]}}'.encode(),  # Cyrillic ie
    # invalid UTF-8 bytes, overlong encodings, BOM
    b'{"worker": "echo", "input": {"items": ["\xff\xfe"]}}',
    b'{"worker": "\xc0\xafecho", "input": {"items": ["x"]}}',
    b'\xef\xbb\xbf{"worker": "echo", "input": {"items": ["x"]}}',
]


@pytest.mark.parametrize("body", UNICODE_BODIES, ids=lambda b: repr(b)[:40])
def test_unicode_edge_cases_never_5xx_and_rejections_write_nothing(api: Api, body: bytes) -> None:
    before = state(api.res)
    status, out = api.request("POST", "/jobs", body)
    assert status < 500, (body, status, out)
    if status >= 400:
        assert state(api.res) == before
    else:  # accepted: the job is readable back through the API without a 5xx
        assert api.request("GET", f"/jobs/{out['job_id']}")[0] == 200


@pytest.mark.parametrize(
    "header",
    ["\u202e-key", "a\u0000b", "\udcff", "x" * 300, "résumé", " "],
)
def test_hostile_idempotency_keys_never_5xx(api: Api, header: str) -> None:
    before = state(api.res)
    encoded = header.encode("utf-8", "surrogateescape").decode("latin-1")
    try:
        status, out = api.request("POST", "/jobs", GOOD_BODY, {"Idempotency-Key": encoded})
    except ValueError:
        pytest.skip("http.client refuses this header value before sending (client-side check)")
    assert status < 500, (header, status, out)
    if status >= 400:
        assert state(api.res) == before


def test_cursor_tampering_is_400(api: Api) -> None:
    for _ in range(3):
        api.submit("echo")
    api.submit("other")
    status, page = api.request("GET", "/jobs?limit=1&worker=echo")
    assert status == 200 and page["next_cursor"], page
    cursor = page["next_cursor"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    flipped = bytes([raw[0] ^ 1]) + raw[1:]
    tampered = [
        base64.urlsafe_b64encode(flipped).decode().rstrip("="),
        cursor[:-2],
        cursor + "AA",
        base64.urlsafe_b64encode(b'{"pk": {"S": "job#other_00"}}').decode(),
        "not a cursor",
        "%00",
        "A" * 5000,
    ]
    before = state(api.res)
    for bad in tampered:
        status, out = api.request("GET", f"/jobs?limit=1&worker=echo&cursor={urlquote(bad)}")
        assert status == 400, (bad, status, out)
    # A real cursor replayed under another filter is refused too, not silently re-scoped.
    status, out = api.request("GET", f"/jobs?limit=1&worker=other&cursor={urlquote(cursor)}")
    assert status == 400, (status, out)
    assert state(api.res) == before


def urlquote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def test_another_workers_job_id_and_malformed_ids(api: Api) -> None:
    echo_job = api.submit("echo")
    other_job = api.submit("other")
    token = echo_job.split("_", 1)[1]
    forged = f"other_{token}"  # the echo job's token under another worker's prefix
    before = state(api.res)
    assert api.request("GET", f"/jobs/{forged}")[0] == 404
    assert api.request("POST", f"/jobs/{forged}/cancel", b"")[0] == 404
    # Listing one worker never shows another's jobs.
    status, page = api.request("GET", "/jobs?worker=echo&limit=100")
    assert status == 200
    ids = {j["job_id"] for j in page["jobs"]}
    assert echo_job in ids and other_job not in ids
    malformed = [
        "..%2F..%2Fetc%2Fpasswd",
        "echo_" + "G" * 32,
        "echo_" + token.upper(),
        "ECHO_" + token,
        "echo_" + token + "0",
        "echo",
        "_" + token,
        "%00",
        "echo_%F0%9F%92%A9",
        "echo%2F" + token,
        "x" * 2000,
    ]
    for bad in malformed:
        for method, path in (("GET", f"/jobs/{bad}"), ("POST", f"/jobs/{bad}/cancel")):
            status, out = api.request(method, path, b"" if method == "POST" else None)
            assert 400 <= status < 500, (bad, method, status, out)
    assert state(api.res) == before


def test_local_pipeline_enforces_the_stacks_allowed_ips() -> None:
    """End to end from stack config: an ``api.allowedIps`` override that excludes loopback
    makes the local pipeline's API refuse us even with the right key, and write nothing."""
    from tests.security.conftest import require_program

    require_program("dev")
    from local_pipeline.pipeline import LocalPipeline

    override = {"api": json.dumps({"allowedIps": ["203.0.113.0/24"]})}
    with LocalPipeline("dev", overrides=override, state_dir=None, max_tasks=1) as pipeline:
        assert pipeline.provisioned is not None
        ddb, table = pipeline.client("dynamodb"), pipeline.provisioned.jobs_table

        def job_items() -> list[Any]:
            # (moto servers in one process share their state: compare, do not expect empty)
            return sorted(
                json.dumps(i, sort_keys=True)
                for i in ddb.scan(
                    TableName=table,
                    FilterExpression="kind = :k",
                    ExpressionAttributeValues={":k": {"S": "job"}},
                )["Items"]
            )

        before = job_items()
        req = urllib.request.Request(
            pipeline.api_url + "/jobs",
            data=GOOD_BODY,
            method="POST",
            headers={"x-api-key": pipeline.api_key, "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 403
        assert "not authorized" in err.value.read().decode()  # the allow-list, not the key
        assert job_items() == before
