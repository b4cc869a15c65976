"""A local stand-in for the API Gateway REST API: HTTP -> Lambda proxy event -> the real handler.

moto cannot serve a REST API, so this does what the deployed stage does in front of the
handler, with the same answers API Gateway gives:
- a method a resource does not declare: to the handler when the resource has API Gateway's
  catch-all ``x-amazon-apigateway-any-method`` ("will catch any HTTP method that wasn't
  explicitly declared", API Gateway developer guide), as every resource of the stack's
  document has (the handler answers 405 with ``Allow``), after the same key and IP checks;
  this includes methods no operation could declare (TRACE, CONNECT, a made-up verb, a
  lower-case ``get``: HTTP methods are case-sensitive). On a resource without one, and on a
  path the API does not declare: MISSING_AUTHENTICATION_TOKEN (AWS default 403
  ``{"message": "Missing Authentication Token"}``, whatever the key). Never
  ``http.server``'s own HTML 501;
- source IP outside the resource policy's allow-list: ACCESS_DENIED (403);
- a missing or wrong ``x-api-key``: INVALID_API_KEY (403 ``{"message": "Forbidden"}``);
- a body over 10 MB: REQUEST_TOO_LARGE (413, API Gateway's payload limit);
- a handler exception or malformed proxy response: 502 ``Internal server error``.
Routes and the customised gateway responses (``x-amazon-apigateway-gateway-responses``) come
from the stack's OpenAPI document, so they cannot drift from what is deployed. Edge request
validation is not emulated: the handler validates every request itself.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("local_pipeline.api")

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway REST payload limit
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# Local-only admin routes (not part of the deployed API); they require the API key too.
ADMIN_PREFIX = "/_local/"

ProxyHandler = Callable[[dict[str, Any]], Any]
AdminHandler = Callable[[str, str, bytes], tuple[int, Any]]


@dataclass(frozen=True)
class Route:
    """One declared resource path, e.g. ``/jobs/{id}``, and its methods (upper case)."""

    resource: str
    methods: frozenset[str]
    any_method: bool = False  # x-amazon-apigateway-any-method: every other method too

    def accepts(self, method: str) -> bool:
        return method in self.methods or self.any_method

    @property
    def pattern(self) -> re.Pattern[str]:
        parts = [
            f"(?P<{seg[1:-1].rstrip('+')}>[^/]+)" if seg.startswith("{") else re.escape(seg)
            for seg in self.resource.strip("/").split("/")
        ]
        return re.compile("^/" + "/".join(parts) + "/?$") if parts != [""] else re.compile("^/$")


def routes_from_openapi(document: Mapping[str, Any]) -> list[Route]:
    """The resources and methods an OpenAPI document declares (x-amazon-* keys ignored)."""
    routes = []
    for path, item in (document.get("paths") or {}).items():
        item = item or {}
        methods = {m.upper() for m in item if m.lower() in HTTP_METHODS}
        any_method = "x-amazon-apigateway-any-method" in item
        routes.append(Route(str(path), frozenset(methods), any_method))
    # Literal segments win over parameters, as in API Gateway.
    routes.sort(key=lambda r: (r.resource.count("{"), -len(r.resource)))
    return routes


def match_route(routes: Iterable[Route], path: str) -> tuple[Route, dict[str, str]] | None:
    for route in routes:
        m = route.pattern.match(path)
        if m:
            return route, dict(m.groupdict())
    return None


def allowed_networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


@dataclass(frozen=True)
class GatewayResponse:
    """A customised gateway response (``x-amazon-apigateway-gateway-responses``)."""

    status: int | None
    template: str | None


def gateway_responses(document: Mapping[str, Any]) -> dict[str, GatewayResponse]:
    found = {}
    for kind, spec in (document.get("x-amazon-apigateway-gateway-responses") or {}).items():
        templates = (spec or {}).get("responseTemplates") or {}
        status = spec.get("statusCode")
        found[str(kind)] = GatewayResponse(
            int(status) if status is not None else None, templates.get("application/json")
        )
    return found


@dataclass
class GatewayConfig:
    routes: list[Route]
    api_key: str
    stage: str
    allowed_ips: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    responses: dict[str, GatewayResponse] = field(default_factory=dict)
    api_id: str = "local"
    api_key_id: str = "local-key"

    def render(self, kind: str, status: int, message: str, request_id: str) -> tuple[int, bytes]:
        """Status and body API Gateway sends for a gateway error of type ``kind``: the
        customised response if the document has one, else DEFAULT_4XX/5XX, else AWS's."""
        default = "DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX"
        custom = self.responses.get(kind)
        fallback = self.responses.get(default)
        out_status = (custom.status if custom else None) or status
        template = (custom.template if custom else None) or (
            fallback.template if fallback else None
        )
        if template is None:
            return out_status, json.dumps({"message": message}).encode()
        body = (
            template.replace("$context.error.messageString", json.dumps(message))
            .replace("$context.error.message", message)
            .replace("$context.requestId", request_id)
        )
        return out_status, body.encode()


def build_event(
    *,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    route: Route,
    path_params: dict[str, str],
    source_ip: str,
    config: GatewayConfig,
) -> dict[str, Any]:
    """The REST API Lambda proxy integration event (payload format 1.0)."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    q_single: dict[str, str] = {}
    q_multi: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        q_single[name] = value
        q_multi.setdefault(name, []).append(value)
    text: str | None
    encoded = False
    if not body:
        text = None
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode("ascii"), True
    request_id = str(uuid.uuid4())
    now = time.time()
    return {
        "resource": route.resource,
        "path": path,
        "httpMethod": method,
        "headers": single or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": q_single or None,
        "multiValueQueryStringParameters": q_multi or None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "body": text,
        "isBase64Encoded": encoded,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": route.resource,
            "httpMethod": method,
            "path": f"/{config.stage}{path}",
            "stage": config.stage,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "protocol": "HTTP/1.1",
            "domainName": single.get("Host", "localhost"),
            "apiId": config.api_id,
            "accountId": "000000000000",
            "identity": {
                "sourceIp": source_ip,
                "userAgent": single.get("User-Agent"),
                "apiKey": config.api_key,
                "apiKeyId": config.api_key_id,
            },
        },
    }


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class LocalApiGateway:
    """ThreadingHTTPServer on loopback in front of the API handler."""

    def __init__(
        self,
        config: GatewayConfig,
        handler: ProxyHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        admin: AdminHandler | None = None,
    ) -> None:
        self.config = config
        self.handler = handler
        self.admin = admin
        gateway = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.client_address[0], *args)

            def _serve(self) -> None:
                gateway.serve(self)

            def __getattr__(self, name: str) -> Any:
                # BaseHTTPRequestHandler calls do_<METHOD> and answers a method without one
                # with its own HTML 501. API Gateway has no such answer: every method, declared
                # or not, goes through serve(), which answers an undeclared one as the stage
                # does (the resource's ANY method, else MISSING_AUTHENTICATION_TOKEN).
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

        self._server = ThreadingHTTPServer((host, port), _RequestHandler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-api-gateway", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # --- one request -----------------------------------------------------------------------
    def serve(self, req: BaseHTTPRequestHandler) -> None:
        split = urlsplit(req.path)
        path, query = split.path or "/", split.query
        headers = list(req.headers.items())
        method = req.command  # as sent: "get" is not GET (methods are case-sensitive)
        length = int(req.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            # Read and drop the body in chunks so the client sees the answer, not a reset.
            remaining = length
            while remaining > 0:
                chunk = req.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            self._gateway_error(req, "REQUEST_TOO_LARGE", 413, "Request Too Long")
            return
        body = req.rfile.read(length) if length else b""
        source_ip = str(req.client_address[0])

        if path.startswith(ADMIN_PREFIX) and self.admin is not None:
            if not self._key_ok(headers):
                self._gateway_error(req, "INVALID_API_KEY", 403, "Forbidden")
                return
            status, payload = self.admin(method, path[len(ADMIN_PREFIX) - 1 :], body)
            self._reply(req, status, payload)
            return

        found = match_route(self.config.routes, path)
        if found is None or not found[0].accepts(method):
            self._gateway_error(
                req, "MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token"
            )
            return
        route, params = found
        if self.config.allowed_ips and not self._ip_ok(source_ip):
            message = (
                "User: anonymous is not authorized to perform: execute-api:Invoke on resource: "
                f"arn:aws:execute-api:local:000000000000:{self.config.api_id}/"
                f"{self.config.stage}/{method}{path}"
            )
            self._gateway_error(req, "ACCESS_DENIED", 403, message)
            return
        if not self._key_ok(headers):
            self._gateway_error(req, "INVALID_API_KEY", 403, "Forbidden")
            return
        event = build_event(
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=body,
            route=route,
            path_params=params,
            source_ip=source_ip,
            config=self.config,
        )
        try:
            response = self.handler(event)
            status, out_headers, out_body = self._proxy_response(response)
        except Exception:
            log.exception("API handler failed for %s %s", method, path)
            self._gateway_error(req, "DEFAULT_5XX", 502, "Internal server error")
            return
        self._send(req, status, out_headers, out_body, event["requestContext"]["requestId"])

    def _key_ok(self, headers: list[tuple[str, str]]) -> bool:
        given = _header(headers, "x-api-key") or ""
        return hmac.compare_digest(given.encode(), self.config.api_key.encode())

    def _ip_ok(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        return any(address in net for net in self.config.allowed_ips)

    @staticmethod
    def _proxy_response(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
            raise ValueError(f"malformed Lambda proxy response: {response!r:.200}")
        headers: list[tuple[str, str]] = [
            (str(k), str(v)) for k, v in (response.get("headers") or {}).items()
        ]
        for k, values in (response.get("multiValueHeaders") or {}).items():
            headers.extend((str(k), str(v)) for v in values)
        raw = response.get("body") or ""
        body = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
        return int(response["statusCode"]), headers, body

    _ERROR_TYPES = {
        "REQUEST_TOO_LARGE": "RequestTooLongException",
        "INVALID_API_KEY": "ForbiddenException",
        "MISSING_AUTHENTICATION_TOKEN": "MissingAuthenticationTokenException",
        "ACCESS_DENIED": "AccessDeniedException",
    }

    def _gateway_error(
        self, req: BaseHTTPRequestHandler, kind: str, status: int, message: str
    ) -> None:
        request_id = str(uuid.uuid4())
        out_status, body = self.config.render(kind, status, message, request_id)
        headers = [("Content-Type", "application/json")]
        if kind in self._ERROR_TYPES:
            headers.append(("x-amzn-ErrorType", self._ERROR_TYPES[kind]))
        self._send(req, out_status, headers, body, request_id)

    def _reply(
        self,
        req: BaseHTTPRequestHandler,
        status: int,
        payload: Any,
    ) -> None:
        headers = [("Content-Type", "application/json")]
        self._send(req, status, headers, json.dumps(payload).encode(), str(uuid.uuid4()))

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        request_id: str,
    ) -> None:
        req.send_response(status)
        names = {k.lower() for k, _ in headers}
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                req.send_header(key, value)
        if "content-type" not in names:
            req.send_header("Content-Type", "application/json")
        req.send_header("x-amzn-RequestId", request_id)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)
