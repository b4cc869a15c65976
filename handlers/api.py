"""The public API: an API Gateway REST proxy-integration handler.

Routes (components/openapi.yaml is the contract):
``POST /jobs``, ``GET /jobs``, ``GET /jobs/{id}``, ``POST /jobs/{id}/cancel``, ``GET /workers``,
``POST /uploads`` (presigned S3 POST forms for input files: ``handlers.uploads``).

Every bad request gets a 4xx ``{"error": {"code", "message"}}`` and writes nothing; only a
failure of AWS itself gives a 5xx. Routing and parsing live in :func:`handler`; each route is
a plain function of a parsed :class:`Request` so tests can call it directly.

Enqueueing follows an outbox rule: the job item in DynamoDB is the source of truth and is
written first; the SQS message is only a nudge to the launcher. If SendMessage fails after
the item was written, the job stays QUEUED and the sweep re-sends its message later (the
launcher's claim is conditional on status and attempt, so a duplicate message is harmless).
Nothing accepted is ever lost, and nothing is launched twice.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws, uploads
from handlers.registry import WorkerRegistration, get_worker, list_workers
from jobcontract import (
    DEFAULT_JOB_TTL_DAYS,
    FARGATE_CPU_MEMORY,
    JOB_ID_RE,
    MAX_INLINE_INPUT_BYTES,
    MAX_REQUEST_BYTES,
    WORKER_NAME_MAX,
    WORKER_NAME_RE,
    Env,
    JobField,
    JobStatus,
    input_key,
    new_job_id,
)
from jobcontract.arrays import (
    MAX_ARRAY_REQUEST_BYTES,
    RequestRejected,
    request_failed_item_share,
)
from jobcontract.job import Job
from jobcontract.store import (
    InvalidCursor,
    JobExists,
    JobStore,
    TransitionConflict,
    now_iso,
    storable,
)

DEFAULT_RESULT_URL_TTL = 900
DEFAULT_PAGE = 20
MAX_PAGE = 100
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
JOB_REQUEST_FIELDS = frozenset({"worker", "input", "cpu", "memory", "max_failed_item_share"})
LIST_PARAMS = frozenset({"worker", "status", "limit", "cursor", "parent"})


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


# --- routes -----------------------------------------------------------------------------
def create_job(req: Request) -> Response:
    payload = _submit_body(req.body)
    if "items" in payload or "manifest" in payload:  # an array job (handlers/array_api.py)
        from handlers.array_api import create_array_job

        return create_array_job(req, payload)
    unknown = sorted(set(payload) - JOB_REQUEST_FIELDS)
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}")
    worker_name = payload.get("worker")
    if not isinstance(worker_name, str) or not worker_name:
        raise ApiError(400, "invalid_request", "'worker' is required and must be a string")
    if not isinstance(payload.get("input"), dict):
        raise ApiError(400, "invalid_request", "'input' is required and must be a JSON object")
    share = _failed_item_share(payload.get(JobField.MAX_FAILED_ITEM_SHARE))
    key = _idempotency_key(req)
    store = _store()
    worker = _known_worker(store, worker_name)
    job_input = payload["input"]
    errors = worker.validator.errors(job_input)
    if errors:
        raise ApiError(
            400, "invalid_input", f"input does not match the {worker.name} input schema", errors
        )
    cpu, memory = _resources(worker, payload.get("cpu"), payload.get("memory"))
    hashed: dict[str, Any] = {
        "worker": worker.name,
        "input": job_input,
        "cpu": cpu,
        "memory": memory,
    }
    if share:  # only when set: requests from before the field keep their hash (replays)
        hashed[JobField.MAX_FAILED_ITEM_SHARE] = float(share)  # 1 and 1.0 are one request
    request_hash = _request_hash(hashed)
    if key is not None:
        job_id = keyed_job_id(worker.name, key)
        existing = store.get(job_id)
        if existing is not None:
            return _replay(existing, request_hash, worker)
    else:
        job_id = new_job_id(worker.name)

    encoded_input = json.dumps(job_input, separators=(",", ":")).encode()
    now = datetime.now(UTC)
    ttl_days = _aws.env_int(Env.JOB_TTL_DAYS, DEFAULT_JOB_TTL_DAYS)
    item: dict[str, Any] = {
        JobField.JOB_ID: job_id,
        JobField.WORKER: worker.name,
        JobField.STATUS: JobStatus.QUEUED.value,
        JobField.CREATED_AT: now_iso(now),
        JobField.TASK_DEFINITION: worker.task_definition,
        JobField.CPU: cpu,
        JobField.MEMORY: memory,
        JobField.ATTEMPTS: 0,
        JobField.MAX_ATTEMPTS: worker.max_attempts,
        JobField.TIMEOUT_SECONDS: worker.timeout_seconds,
        JobField.REQUEST_HASH: request_hash,
        JobField.SOURCE: "api",
        JobField.EXPIRES_AT: int((now + timedelta(days=ttl_days)).timestamp()),
    }
    if key is not None:
        item[JobField.IDEMPOTENCY_KEY] = key
    if share:
        item[JobField.MAX_FAILED_ITEM_SHARE] = share
    if len(encoded_input) > MAX_INLINE_INPUT_BYTES or not storable(job_input):
        s3_key = input_key(worker.name, job_id)
        _aws.client("s3").put_object(
            Bucket=_aws.env(Env.RESULTS_BUCKET),
            Key=s3_key,
            Body=encoded_input,
            ContentType="application/json",
        )
        item[JobField.INPUT_S3_KEY] = s3_key
    else:
        item[JobField.INPUT] = job_input
    try:
        created = store.create(item)
    except JobExists as exc:  # a concurrent request with the same Idempotency-Key won
        if exc.existing is None:
            raise
        return _replay(exc.existing, request_hash, worker)
    _enqueue(worker, job_id, 0)
    _aws.log("INFO", "job_submitted", job_id=job_id, worker=worker.name, cpu=cpu, memory=memory)
    return Response(202, _submitted(created), {"Location": _links(job_id)["self"]})


def _submit_body(body: bytes) -> dict[str, Any]:
    """The parsed ``POST /jobs`` body: up to ``MAX_REQUEST_BYTES`` for a job, up to
    ``MAX_ARRAY_REQUEST_BYTES`` (API Gateway's 10 MB) for an array job (``items``)."""
    if len(body) > MAX_ARRAY_REQUEST_BYTES:
        raise ApiError(
            413,
            "payload_too_large",
            f"request body exceeds {MAX_ARRAY_REQUEST_BYTES} bytes (max_array_request_bytes)",
        )
    if len(body) <= MAX_REQUEST_BYTES:
        return _json_body(body)
    try:
        payload = _json_body(body)
    except ApiError:
        payload = {}
    if not isinstance(payload.get("items"), list):
        raise ApiError(
            413,
            "payload_too_large",
            f"request body exceeds {MAX_REQUEST_BYTES} bytes (max_request_bytes; an array job "
            f"with 'items' may send up to {MAX_ARRAY_REQUEST_BYTES})",
        )
    return payload


def _idempotency_key(req: Request) -> str | None:
    key = req.header("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY_RE.match(key):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-255 printable ASCII characters without spaces",
        )
    return key


def keyed_job_id(worker: str, key: str) -> str:
    """The job id an Idempotency-Key names (per worker): a replay finds its job by id."""
    return new_job_id(worker, hashlib.sha256(f"{worker}\n{key}".encode()).hexdigest()[:32])


def _request_hash(hashed: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(hashed, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _replay(existing: dict[str, Any], request_hash: str, worker: WorkerRegistration) -> Response:
    job_id = str(existing[JobField.JOB_ID])
    if existing.get(JobField.REQUEST_HASH) != request_hash:
        raise ApiError(
            409,
            "idempotency_conflict",
            "this Idempotency-Key was already used with a different request",
        )
    if existing.get(JobField.STATUS) == JobStatus.QUEUED and existing.get(JobField.ATTEMPTS) == 0:
        # The first request may have failed between the put and the send; re-sending is
        # safe (FIFO deduplication id, and the launcher's claim is conditional).
        _enqueue(worker, job_id, 0)
    _aws.log("INFO", "job_replayed", job_id=job_id, worker=worker.name)
    return Response(200, _submitted(existing), {"Location": _links(job_id)["self"]})


def _submitted(item: dict[str, Any]) -> dict[str, Any]:
    job_id = str(item[JobField.JOB_ID])
    return {"job_id": job_id, "status": item[JobField.STATUS], "links": _links(job_id)}


def _enqueue(worker: WorkerRegistration, job_id: str, attempt: int) -> bool:
    return _aws.enqueue_job(worker.queue_url, job_id, attempt, worker=worker.name)


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


def _failed_item_share(value: Any) -> int | float:
    return request_failed_item_share(value)


def _resources(worker: WorkerRegistration, cpu: Any, memory: Any) -> tuple[int, int]:
    """Effective (cpu, memory): the worker's defaults unless overridden within its limits
    and Fargate's valid pairs."""
    for name, value in (("cpu", cpu), ("memory", memory)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value <= 0
        ):
            raise ApiError(400, "invalid_resources", f"'{name}' must be a positive integer")
    eff_cpu = worker.cpu if cpu is None else int(cpu)
    eff_memory = worker.memory if memory is None else int(memory)
    if eff_cpu > worker.max_cpu or eff_memory > worker.max_memory:
        raise ApiError(
            422,
            "resources_exceed_limits",
            f"{worker.name} allows at most cpu {worker.max_cpu} and memory {worker.max_memory} "
            f"(asked cpu {eff_cpu}, memory {eff_memory})",
        )
    allowed = FARGATE_CPU_MEMORY.get(eff_cpu)
    if allowed is None:
        raise ApiError(
            400,
            "invalid_resources",
            f"cpu {eff_cpu} is not a Fargate size; use one of {sorted(FARGATE_CPU_MEMORY)}",
        )
    if eff_memory not in allowed:
        raise ApiError(
            400,
            "invalid_resources",
            f"memory {eff_memory} is not valid with cpu {eff_cpu} on Fargate; "
            f"use one of {list(allowed)}",
        )
    return eff_cpu, eff_memory


def _job_id_param(req: Request) -> str:
    job_id = req.path_params["id"]
    if not JOB_ID_RE.match(job_id):
        raise ApiError(404, "not_found", f"no job {job_id[:80]!r}")
    return job_id


def job_view(item: dict[str, Any], *, result_url: bool = True) -> dict[str, Any]:
    """The public shape of a job (no input, no internal fields)."""
    job = Job.from_item(item)  # every defaulted field at its one default
    job_id = job.job_id
    view: dict[str, Any] = {
        "job_id": job_id,
        "worker": job.worker,
        "status": job.status.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "cpu": job.cpu,
        "memory": job.memory,
        "created_at": item.get(JobField.CREATED_AT),
        "updated_at": item.get(JobField.UPDATED_AT),
        "timestamps": item.get(JobField.TIMESTAMPS, {}),
        "source": job.source,
        "cancel_requested": job.cancel_requested,
        "max_failed_item_share": job.max_failed_item_share,
        "links": _links(job_id),
    }
    for public, name in (
        ("progress", JobField.PROGRESS),
        ("items", JobField.ITEMS),
        ("error", JobField.ERROR),
        ("heartbeat_at", JobField.HEARTBEAT_AT),
        ("task_definition", JobField.TASK_DEFINITION),
        ("task_arn", JobField.TASK_ARN),
        ("parent_id", JobField.PARENT_ID),
        ("shard", JobField.SHARD),
        ("fallback", JobField.FALLBACK),
    ):
        if item.get(name) is not None:
            view[public] = item[name]
    if item.get(JobField.ARRAY):
        view["array"] = array_view(item)
    key = item.get(JobField.RESULT_KEY)
    # SUCCEEDED, or FAILED for its items (ItemsFailed): the result holds each item's outcome.
    if result_url and key and item[JobField.STATUS] in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        ttl = _aws.env_int(Env.RESULT_URL_TTL_SECONDS, DEFAULT_RESULT_URL_TTL)
        url = _aws.client("s3").generate_presigned_url(
            "get_object",
            Params={"Bucket": _aws.env(Env.RESULTS_BUCKET), "Key": key},
            ExpiresIn=ttl,
        )
        view["result"] = {"url": url, "expires_in": ttl}
        summary = item.get(JobField.SUMMARY_KEY)  # an array job's summary.json, beside it
        if summary:
            view["result"]["summary_url"] = _aws.client("s3").generate_presigned_url(
                "get_object",
                Params={"Bucket": _aws.env(Env.RESULTS_BUCKET), "Key": summary},
                ExpiresIn=ttl,
            )
    return view


def array_view(item: dict[str, Any]) -> dict[str, Any]:
    """An array job's shape: shards, items, its children by end state (and how many have
    not ended; ``GET /jobs?parent=ID`` lists each child with its state)."""
    array = item[JobField.ARRAY]
    counts = {str(k): int(v) for k, v in (item.get(JobField.CHILDREN) or {}).items()}
    shards = int(array.get("shards", 0))
    view: dict[str, Any] = {
        "item_field": array.get("item_field"),
        "total_items": array.get("total_items"),
        "shards": shards,
        "shard_size": array.get("shard_size"),
        "children": {**counts, "unfinished": max(0, shards - sum(counts.values()))},
        "children_link": f"{_links(str(item[JobField.JOB_ID]))['self'].rsplit('/', 1)[0]}"
        f"?parent={item[JobField.JOB_ID]}",
    }
    manifest = array.get("manifest")
    if manifest:  # an uploaded manifest: the fan-out's progress (handlers/manifests.py)
        view["manifest"] = {
            "s3_key": manifest.get("key"),
            "bytes": manifest.get("bytes"),
            "validated": bool(manifest.get("validated")),
            "validated_items": int(manifest.get("items", 0)),
            "invalid_items": int(manifest.get("invalid_count", 0)),
            "children_created": int(array.get("created", 0)),
        }
    return view


def get_job(req: Request) -> Response:
    job_id = _job_id_param(req)
    item = _store().get(job_id)
    if item is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    return Response(200, job_view(item))


def list_jobs(req: Request) -> Response:
    unknown = sorted(set(req.query) - LIST_PARAMS)
    if unknown:
        raise ApiError(400, "invalid_query", f"unknown query parameter(s): {', '.join(unknown)}")
    params: dict[str, str] = {}
    for name, values in req.query.items():
        if len(values) != 1:
            raise ApiError(400, "invalid_query", f"give '{name}' once")
        params[name] = values[0]
    limit_text = params.get("limit", str(DEFAULT_PAGE))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
        raise ApiError(400, "invalid_query", f"'limit' must be an integer 1..{MAX_PAGE}")
    worker = params.get("worker")
    if worker is not None and (len(worker) > WORKER_NAME_MAX or not WORKER_NAME_RE.match(worker)):
        raise ApiError(400, "invalid_query", "'worker' is not a valid worker name")
    status = params.get("status")
    if status is not None and status not in JobStatus.__members__:
        raise ApiError(
            400, "invalid_query", f"'status' must be one of {', '.join(JobStatus.__members__)}"
        )
    if "parent" in params:  # an array job's children (handlers/array_api.py)
        from handlers.array_api import list_children

        return list_children(_store(), params, int(limit_text))
    try:
        items, cursor = _store().list_jobs(
            worker=worker, status=status, limit=int(limit_text), cursor=params.get("cursor")
        )
    except InvalidCursor as exc:
        raise ApiError(400, "invalid_cursor", f"'cursor' is not valid: {exc}") from exc
    return Response(
        200, {"jobs": [job_view(i, result_url=False) for i in items], "next_cursor": cursor}
    )


def cancel_job(req: Request) -> Response:
    job_id = _job_id_param(req)
    store = _store()
    item = store.get(job_id)
    for _ in range(5):  # the job can move while we look: act on what the write reports
        if item is None:
            raise ApiError(404, "not_found", f"no job {job_id!r}")
        status = JobStatus(item[JobField.STATUS])
        if status.terminal:
            raise ApiError(409, "job_terminal", f"job {job_id} is already {status.value}")
        if item.get(JobField.ARRAY):  # cancels every child (handlers/array_api.py)
            from handlers.array_api import cancel_array

            return cancel_array(store, item)
        try:
            if status == JobStatus.QUEUED:
                done = store.transition(
                    job_id,
                    JobStatus.QUEUED,
                    JobStatus.CANCELLED,
                    attempt=int(item.get(JobField.ATTEMPTS, 0)),
                )
                _aws.log("INFO", "job_cancelled", job_id=job_id, status_before="QUEUED")
                return Response(200, job_view(done))
            flagged = store.request_cancel(job_id)
        except TransitionConflict as exc:
            item = exc.current
            continue
        _stop_task(flagged)
        _aws.log("INFO", "job_cancel_requested", job_id=job_id, status=flagged[JobField.STATUS])
        return Response(202, job_view(flagged))
    raise ApiError(409, "conflict", f"job {job_id} is changing state; try again")


def _stop_task(item: dict[str, Any]) -> None:
    task_arn = item.get(JobField.TASK_ARN)
    if not task_arn:
        return  # not launched yet: the launcher sees cancel_requested and stops it
    try:
        _aws.client("ecs").stop_task(
            cluster=_aws.env(Env.CLUSTER_ARN),
            task=task_arn,
            reason=f"Cancelled by API request for job {item[JobField.JOB_ID]}",
        )
    except (ClientError, BotoCoreError) as exc:
        # The flag is recorded; the sweep stops the task later if it is still running.
        _aws.log("WARNING", "stop_task_failed", job_id=item[JobField.JOB_ID], error=str(exc))


def get_workers(req: Request) -> Response:
    workers = [
        {
            "name": w.name,
            "description": w.description,
            "limits": w.limits(),
            "input_schema": w.input_schema,
        }
        for w in list_workers(_store())
    ]
    return Response(200, {"workers": workers, "fargate_vcpu_limit": _fargate_vcpu_limit()})


def _fargate_vcpu_limit() -> float:
    """The stack's ``fargateVcpuLimit`` (vCPUs its tasks may hold at once; 0 = no limit)."""
    raw = os.environ.get(Env.FARGATE_VCPU_LIMIT, "").strip()
    try:
        return float(raw) if raw else 0.0
    except ValueError:
        return 0.0


# --- uploads (POST /uploads) -------------------------------------------------------------
def create_uploads(req: Request) -> Response:
    """Presigned S3 POST forms for a worker's input files (``handlers.uploads``): the way a
    client without AWS credentials puts a file under ``inputs/<worker>/``."""
    if len(req.body) > MAX_REQUEST_BYTES:
        raise ApiError(413, "payload_too_large", f"request body exceeds {MAX_REQUEST_BYTES} bytes")
    payload = _json_body(req.body)
    worker_name = payload.get("worker")
    if not isinstance(worker_name, str) or not worker_name:
        raise ApiError(400, "invalid_request", "'worker' is required and must be a string")
    try:
        files = uploads.parse_files(payload)
    except uploads.UploadRejected as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    worker = _known_worker(_store(), worker_name)
    body = uploads.presign(
        _aws.client("s3"),
        _aws.env(Env.RESULTS_BUCKET),
        worker.name,
        files,
        uploads.UPLOAD_URL_TTL_SECONDS,
    )
    _aws.log(
        "INFO",
        "uploads_presigned",
        worker=worker.name,
        files=len(files),
        upload_id=body["upload_id"],
    )
    return Response(200, body)


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
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        _aws.log("ERROR", "aws_error", path=req.path, code=code, error=str(exc))
        return Response(
            503,
            _error_body("service_unavailable", "a backing service failed; retry later"),
            {"Retry-After": "1"},
        )
    except BotoCoreError as exc:
        _aws.log("ERROR", "aws_error", path=req.path, error=str(exc))
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
