"""The API's HTTP plumbing: the error a route raises, the parsed request and the response, the
proxy-event parser, links and the JSON body rule, shared by every route module
(``api_submit`` for ``POST /jobs``, ``api_jobs`` for the reads, cancel, workers and uploads)
and by ``handlers.api``, the router."""

from __future__ import annotations

import base64
import contextvars
import json
from dataclasses import dataclass, field
from typing import Any

from handlers import _aws
from handlers.registry import WorkerRegistration, get_worker
from jobcontract import JOB_ID_RE, WORKER_NAME_MAX, WORKER_NAME_RE, Env
from jobcontract.arrays import RequestRejected
from jobcontract.store import JobStore


class ApiError(RequestRejected):
    """A response with an error body; raised anywhere in a route. A ``RequestRejected`` of
    the job contract (an array request's rule) is answered the same way, without headers.
    Its parameters repeat ``RequestRejected``'s (plus ``headers``): call sites name them."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[str] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status, code, message, details, extra)
        self.headers = headers or {}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    query: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)
    request_id: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def to_proxy(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": {"Content-Type": "application/json", **self.headers},
            "body": json.dumps(self.body, separators=(",", ":")),
            "isBase64Encoded": False,
        }


# --- plumbing ---------------------------------------------------------------------------
def _store() -> JobStore:
    return JobStore(_aws.env(Env.JOBS_TABLE), client=_aws.client("dynamodb"))


# Base URL of the API as the caller reached it (set per request by ``handler``).
_base_url: contextvars.ContextVar[str] = contextvars.ContextVar("base_url", default="")


def _links(job_id: str) -> dict[str, str]:
    base = (_aws.env(Env.API_URL, "") or _base_url.get()).rstrip("/")
    return {"self": f"{base}/jobs/{job_id}", "cancel": f"{base}/jobs/{job_id}/cancel"}


def base_url(event: dict[str, Any]) -> str:
    """``https://<domain>/<stage or base path>`` from an API Gateway event, or "" when the
    event does not say (then links are relative). ``BATCH_API_URL`` takes precedence."""
    context = event.get("requestContext") or {}
    domain, full_path = context.get("domainName"), context.get("path")
    path = str(event.get("path") or "")
    if not domain or not isinstance(full_path, str) or not full_path.endswith(path):
        return ""
    return f"https://{domain}{full_path[: len(full_path) - len(path)]}"


def _error_body(
    code: str, message: str, details: list[str] | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details[:20]
    error.update(extra or {})
    return {"error": error}


def parse_event(event: dict[str, Any]) -> Request:
    """API Gateway REST proxy event -> Request (headers lower-cased, body decoded)."""
    headers: dict[str, str] = {}
    for name, values in (event.get("multiValueHeaders") or {}).items():
        if values:
            headers[name.lower()] = str(values[-1])
    for name, value in (event.get("headers") or {}).items():
        if value is not None:
            headers[name.lower()] = str(value)
    query: dict[str, list[str]] = {}
    for name, value in (event.get("queryStringParameters") or {}).items():
        query[name] = [str(value)]
    for name, values in (event.get("multiValueQueryStringParameters") or {}).items():
        query[name] = [str(v) for v in values or []]
    raw = event.get("body") or ""
    if event.get("isBase64Encoded") and isinstance(raw, str):
        try:
            body = base64.b64decode(raw, validate=True)
        except ValueError as exc:
            raise ApiError(400, "invalid_body", "body is not valid base64") from exc
    else:
        body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    context = event.get("requestContext") or {}
    return Request(
        # As sent: methods are case-sensitive (RFC 9110, 9.1), so "get" is not GET (405).
        method=str(event.get("httpMethod") or context.get("httpMethod") or "GET"),
        path=str(event.get("path") or "/"),
        headers=headers,
        query=query,
        body=body,
        request_id=str(context.get("requestId", "")),
    )


def _json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise ApiError(400, "invalid_json", "request body is empty; send a JSON object")
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_request", "request body must be a JSON object")
    try:  # JSON escapes can spell lone surrogates: valid JSON text, not valid Unicode
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(
            400, "invalid_json", "request body contains invalid Unicode (a lone surrogate)"
        ) from exc
    return payload


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _known_worker(store: JobStore, name: str) -> WorkerRegistration:
    if len(name) > WORKER_NAME_MAX or not WORKER_NAME_RE.match(name):
        raise ApiError(
            400, "invalid_request", f"'worker' is not a valid worker name: {name[:64]!r}"
        )
    worker = get_worker(store, name)
    if worker is None:
        raise ApiError(404, "unknown_worker", f"no worker named {name!r}; see GET /workers")
    return worker


def _job_id_param(req: Request) -> str:
    job_id = req.path_params["id"]
    if not JOB_ID_RE.match(job_id):
        raise ApiError(404, "not_found", f"no job {job_id[:80]!r}")
    return job_id
