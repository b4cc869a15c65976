"""The public API: an API Gateway REST proxy-integration handler.

Routes (components/openapi.yaml is the contract):
``POST /jobs``, ``GET /jobs``, ``GET /jobs/{id}``, ``POST /jobs/{id}/cancel``, ``GET /workers``,
``POST /uploads`` (presigned S3 POST forms for input files: ``handlers.uploads``).

Every bad request gets a 4xx ``{"error": {"code", "message"}}`` and writes nothing; only a
failure of AWS itself gives a 5xx. Routing lives here (:func:`handler`, ``ROUTES``); parsing and
the error shape in ``handlers.api_http``; each route is a plain function of a parsed
:class:`Request` (``handlers.api_submit`` for ``POST /jobs``, ``handlers.api_jobs`` for the
rest) so tests can call it directly.

Enqueueing follows an outbox rule: the job item in DynamoDB is the source of truth and is
written first; the SQS message is only a nudge to the launcher. If SendMessage fails after
the item was written, the job stays QUEUED and the sweep re-sends its message later (the
launcher's claim is conditional on status and attempt, so a duplicate message is harmless).
Nothing accepted is ever lost, and nothing is launched twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws
from handlers.api_http import (
    ApiError,
    Request,
    Response,
    _base_url,
    _error_body,
    base_url,
    parse_event,
)
from handlers.api_jobs import (
    DEFAULT_PAGE,
    LIST_PARAMS,
    MAX_PAGE,
    cancel_job,
    create_uploads,
    get_job,
    get_workers,
    job_view,
    list_jobs,
)
from handlers.api_submit import (
    IDEMPOTENCY_KEY_RE,
    JOB_REQUEST_FIELDS,
    create_job,
    keyed_job_id,
)
from jobcontract import MAX_REQUEST_BYTES
from jobcontract.arrays import RequestRejected

__all__ = [  # the routes and contract constants, as before the split (tests, array_api)
    "DEFAULT_PAGE",
    "IDEMPOTENCY_KEY_RE",
    "JOB_REQUEST_FIELDS",
    "LIST_PARAMS",
    "MAX_PAGE",
    "MAX_REQUEST_BYTES",
    "ROUTES",
    "ApiError",
    "Request",
    "Response",
    "base_url",
    "cancel_job",
    "create_job",
    "create_uploads",
    "dispatch",
    "get_job",
    "get_workers",
    "handle",
    "handler",
    "job_view",
    "keyed_job_id",
    "list_jobs",
    "parse_event",
    "route_table",
]


# --- routing ----------------------------------------------------------------------------
Route = Callable[[Request], Response]
SEGMENT = r"([^/]+)"
ROUTES: tuple[tuple[str, re.Pattern[str], tuple[str, ...], dict[str, Route]], ...] = (
    ("/jobs", re.compile(r"^/jobs$"), (), {"POST": create_job, "GET": list_jobs}),
    ("/jobs/{id}", re.compile(rf"^/jobs/{SEGMENT}$"), ("id",), {"GET": get_job}),
    (
        "/jobs/{id}/cancel",
        re.compile(rf"^/jobs/{SEGMENT}/cancel$"),
        ("id",),
        {"POST": cancel_job},
    ),
    ("/workers", re.compile(r"^/workers$"), (), {"GET": get_workers}),
    ("/uploads", re.compile(r"^/uploads$"), (), {"POST": create_uploads}),
)


def route_table() -> dict[str, set[str]]:
    """Path template -> methods (the contract test compares this with the OpenAPI doc)."""
    return {template: set(methods) for template, _, _, methods in ROUTES}


def dispatch(req: Request) -> Response:
    path = req.path.rstrip("/") or "/"
    for _template, pattern, names, methods in ROUTES:
        match = pattern.match(path)
        if match is None:
            continue
        req.path_params = dict(zip(names, match.groups(), strict=True))
        route = methods.get(req.method)
        if route is None:
            allowed = ", ".join(sorted(methods))
            raise ApiError(
                405,
                "method_not_allowed",
                f"{req.method} is not allowed on {path}; use {allowed}",
                headers={"Allow": allowed},
            )
        return route(req)
    raise ApiError(404, "not_found", f"no route {req.method} {path}")


def handle(req: Request) -> Response:
    """Dispatch, turning every error into a JSON response (4xx for the caller's mistakes,
    503 for AWS throttling/unavailability, 500 only for bugs)."""
    try:
        return dispatch(req)
    except RequestRejected as exc:  # an ApiError, or an array request's rule (jobcontract)
        body = _error_body(exc.code, exc.message, exc.details, exc.extra)
        return Response(exc.status, body, getattr(exc, "headers", {}))
    except (ClientError, BotoCoreError) as exc:
        code = (
            {"code": exc.response.get("Error", {}).get("Code", "")}
            if isinstance(exc, ClientError)
            else {}
        )
        _aws.log("ERROR", "aws_error", path=req.path, **code, error=str(exc))
        return Response(
            503,
            _error_body("service_unavailable", "a backing service failed; retry later"),
            {"Retry-After": "1"},
        )
    except Exception as exc:
        _aws.log("ERROR", "unhandled", path=req.path, error=repr(exc))
        return Response(500, _error_body("internal_error", "internal error"))


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (API Gateway REST proxy integration)."""
    try:
        req = parse_event(event)
    except ApiError as exc:
        return Response(exc.status, _error_body(exc.code, exc.message)).to_proxy()
    if context is not None and not req.request_id:
        req.request_id = str(getattr(context, "aws_request_id", ""))
    token = _base_url.set(base_url(event))
    try:
        response = handle(req)
    finally:
        _base_url.reset(token)
    _aws.log(
        "INFO",
        "request",
        method=req.method,
        path=req.path,
        status=response.status,
        request_id=req.request_id,
    )
    return response.to_proxy()
