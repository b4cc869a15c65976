"""The local API Gateway stand-in: the proxy event it builds and the answers it gives before
the handler is reached (key, allow-list, unknown routes, payload limit, handler crash)."""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_pipeline import api_gateway
from local_pipeline.api_gateway import (
    GatewayConfig,
    LocalApiGateway,
    gateway_responses,
    routes_from_openapi,
)

KEY = "a-local-api-key-of-some-length"
DOC = {
    "paths": {
        "/jobs": {"get": {}, "post": {}},
        "/jobs/{id}": {"get": {}},
        "/jobs/{id}/cancel": {"post": {}},
        "/workers": {"get": {}, "parameters": []},
    },
    "x-amazon-apigateway-gateway-responses": {
        "INVALID_API_KEY": {
            "statusCode": 403,
            "responseTemplates": {"application/json": '{"error": {"code": "forbidden"}}'},
        },
        "DEFAULT_4XX": {
            "responseTemplates": {
                "application/json": '{"error": {"code": "bad", '
                '"message": $context.error.messageString}}'
            }
        },
    },
}


@pytest.fixture
def served() -> Iterator[tuple[LocalApiGateway, list[dict[str, Any]]]]:
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        if event["path"] == "/workers" and event["queryStringParameters"] == {"boom": "1"}:
            raise RuntimeError("handler bug")
        return {"statusCode": 201, "headers": {"X-Seen": "yes"}, "body": json.dumps({"ok": 1})}

    config = GatewayConfig(
        routes_from_openapi(DOC), KEY, "v1",
        [ipaddress.ip_network("127.0.0.0/8")], gateway_responses(DOC),
    )  # fmt: skip
    gateway = LocalApiGateway(config, handler)
    gateway.start()
    try:
        yield gateway, events
    finally:
        gateway.stop()


def _call(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_proxy_event_shape(served: tuple[LocalApiGateway, list[dict[str, Any]]]) -> None:
    gateway, events = served
    status, headers, body = _call(
        gateway.url + "/jobs/abc/cancel?x=1&x=2&y=",
        "POST",
        b'{"a": 1}',
        {"x-api-key": KEY, "Content-Type": "application/json"},
    )
    assert (status, headers["X-Seen"], body) == (201, "yes", {"ok": 1})
    (event,) = events
    assert event["resource"] == "/jobs/{id}/cancel" and event["path"] == "/jobs/abc/cancel"
    assert event["httpMethod"] == "POST" and event["pathParameters"] == {"id": "abc"}
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["stage"] == "v1" and ctx["path"] == "/v1/jobs/abc/cancel"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1" and ctx["requestId"]


def test_binary_body_arrives_base64(served: tuple[LocalApiGateway, list[dict[str, Any]]]) -> None:
    gateway, events = served
    _call(gateway.url + "/jobs", "POST", b"\xff\xfe", {"x-api-key": KEY})
    assert events[0]["isBase64Encoded"] is True and events[0]["body"] == "//4="


def test_key_route_and_method_checks_never_reach_the_handler(
    served: tuple[LocalApiGateway, list[dict[str, Any]]],
) -> None:
    gateway, events = served
    assert _call(gateway.url + "/workers")[0:3:2] == (403, {"error": {"code": "forbidden"}})
    assert _call(gateway.url + "/workers", headers={"x-api-key": KEY + "x"})[0] == 403
    status, _, body = _call(gateway.url + "/nope", headers={"x-api-key": KEY})
    # not customised: API Gateway's own status with the DEFAULT_4XX template
    assert status == 403
    assert body == {"error": {"code": "bad", "message": "Missing Authentication Token"}}
    assert _call(gateway.url + "/workers", "DELETE", headers={"x-api-key": KEY})[0] == 403
    assert events == []


STACK_DOC = Path(__file__).resolve().parents[2] / "components" / "openapi.yaml"


@pytest.mark.parametrize(
    ("responses", "status", "body"),
    [
        # AWS's own answer when the document customises nothing
        ({}, 403, {"message": "Missing Authentication Token"}),
        # the test document: not customised, so the status stays 403, in DEFAULT_4XX's body
        (DOC, 403, {"error": {"code": "bad", "message": "Missing Authentication Token"}}),
        # the stack's document customises MISSING_AUTHENTICATION_TOKEN as a 404
        ("stack", 404, {"error": {"code": "not_found", "message": "no such route"}}),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("TRACE", "/jobs"),
        ("CONNECT", "/jobs"),
        ("PATCH", "/workers"),
        ("PROPFIND", "/jobs/abc"),  # a WebDAV verb
        ("X-FROB", "/workers"),  # a made-up one
        ("get", "/workers"),  # methods are case-sensitive: not GET
        ("TRACE", "/nope"),  # no such resource either
    ],
)
def test_undeclared_methods_get_the_missing_authentication_token_answer(
    method: str, path: str, responses: Any, status: int, body: dict[str, Any]
) -> None:
    """Whatever the method, an undeclared one gets the stage's MISSING_AUTHENTICATION_TOKEN
    gateway response (JSON, x-amzn-ErrorType), never http.server's HTML 501 page, and the
    handler is not called, with or without a valid key."""
    import http.client

    import yaml

    doc = yaml.safe_load(STACK_DOC.read_text()) if responses == "stack" else responses
    events: list[dict[str, Any]] = []
    config = GatewayConfig(routes_from_openapi(DOC), KEY, "v1", [], gateway_responses(doc))
    gateway = LocalApiGateway(config, events.append)
    gateway.start()
    try:
        host, port = gateway.url.removeprefix("http://").split(":")
        for headers in ({"x-api-key": KEY}, {}):
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                conn.request(method, path, body=b"{}", headers=headers)
                resp = conn.getresponse()
                got = resp.read()
            finally:
                conn.close()
            assert resp.status == status, got
            assert resp.getheader("Content-Type") == "application/json"
            assert resp.getheader("x-amzn-ErrorType") == "MissingAuthenticationTokenException"
            assert json.loads(got) == body
    finally:
        gateway.stop()
    assert events == []


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/jobs", "GET, POST"),
        ("QUERY", "/workers", "GET"),
        ("DELETE", "/uploads", "POST"),
        ("PUT", "/jobs/content-analyzer_" + "0" * 32, "GET"),
        ("HEAD", "/jobs/content-analyzer_" + "0" * 32 + "/cancel", "POST"),
        ("X-FROB", "/workers", "GET"),
        ("get", "/workers", "GET"),  # methods are case-sensitive: not GET
    ],
)
def test_the_stack_answers_undeclared_methods_405_with_allow(
    method: str, path: str, allow: str
) -> None:
    """With the stack's document every resource has the catch-all ANY method: an undeclared
    method on a declared resource reaches the real handler (after the key check) and gets
    405 with the declared methods in ``Allow``; an undeclared path stays the stage's 404."""
    import http.client

    import yaml

    from handlers import api

    doc = yaml.safe_load(STACK_DOC.read_text())
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any]) -> Any:
        events.append(event)
        return api.handler(event, None)

    config = GatewayConfig(routes_from_openapi(doc), KEY, "v1", [], gateway_responses(doc))
    gateway = LocalApiGateway(config, handler)
    gateway.start()
    host, port = gateway.url.removeprefix("http://").split(":")

    def send(method: str, path: str, headers: dict[str, str]) -> tuple[int, Any, bytes]:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request(method, path, body=b"{}", headers=headers)
            resp = conn.getresponse()
            return resp.status, resp, resp.read()
        finally:
            conn.close()

    try:
        assert send(method, path, {})[0] == 403 and events == []  # no key: never reached
        status, resp, got = send(method, path, {"x-api-key": KEY})
        assert status == 405, got
        assert resp.getheader("Allow") == allow
        if method != "HEAD":
            assert json.loads(got)["error"]["code"] == "method_not_allowed"
        assert [e["httpMethod"] for e in events] == [method]
        status, _, got = send(method, "/nope", {"x-api-key": KEY})
        assert status == 404
        if method != "HEAD":
            assert json.loads(got)["error"]["code"] == "not_found"
    finally:
        gateway.stop()


def test_ip_outside_the_allow_list_is_denied(
    served: tuple[LocalApiGateway, list[dict[str, Any]]],
) -> None:
    gateway, events = served
    gateway.config.allowed_ips = [ipaddress.ip_network("10.0.0.0/8")]
    status, _, body = _call(gateway.url + "/workers", headers={"x-api-key": KEY})
    assert status == 403 and "not authorized" in body["error"]["message"]
    assert events == []


def test_payload_over_the_limit_is_413(
    served: tuple[LocalApiGateway, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, events = served
    monkeypatch.setattr(api_gateway, "MAX_PAYLOAD_BYTES", 1000)
    status, _, _ = _call(gateway.url + "/jobs", "POST", b"x" * 1001, {"x-api-key": KEY})
    assert status == 413 and events == []
    assert _call(gateway.url + "/jobs", "POST", b"x" * 1000, {"x-api-key": KEY})[0] == 201


def test_handler_exception_is_502(served: tuple[LocalApiGateway, list[dict[str, Any]]]) -> None:
    gateway, _ = served
    status, _, body = _call(gateway.url + "/workers?boom=1", headers={"x-api-key": KEY})
    assert (status, body) == (502, {"message": "Internal server error"})  # no DEFAULT_5XX


def test_gateway_settings_come_from_the_stack_config() -> None:
    from local_pipeline.pipeline import _stack_settings

    api = json.dumps({"allowedIps": ["10.0.0.0/8"], "stageName": "beta"})
    settings = _stack_settings(
        "dev", {"ai-batch:api": api, "ai-batch:sweepRate": "rate(2 minutes)"}
    )
    assert settings == {"stage": "beta", "allowed_ips": ["10.0.0.0/8"], "sweep_seconds": 120}
    assert _stack_settings("dev", {})["allowed_ips"] == []
