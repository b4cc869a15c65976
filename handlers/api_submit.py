"""``POST /jobs`` (one job; an array job goes on to ``handlers.array_api``).

``create_job`` reads as its steps: parse and check the body, find the worker and check the
input against its schema, settle the resources, hash the request (an Idempotency-Key replays
the job it named), write the job item (input inline or in S3), then send the nudge.
Enqueueing follows the outbox rule in ``handlers.api``'s docstring: the item is written first.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers import _aws
from handlers.api_http import (
    ApiError,
    Request,
    Response,
    _json_body,
    _known_worker,
    _links,
    _store,
)
from handlers.registry import WorkerRegistration
from jobcontract import (
    DEFAULT_JOB_TTL_DAYS,
    FARGATE_CPU_MEMORY,
    MAX_INLINE_INPUT_BYTES,
    MAX_REQUEST_BYTES,
    Env,
    JobField,
    JobStatus,
    input_key,
    new_job_id,
)
from jobcontract.arrays import MAX_ARRAY_REQUEST_BYTES, request_failed_item_share
from jobcontract.store import JobExists, now_iso, storable

IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
JOB_REQUEST_FIELDS = frozenset({"worker", "input", "cpu", "memory", "max_failed_item_share"})


@dataclass(frozen=True)
class _JobRequest:
    """A checked one-job request: what its job item and its request hash are made of."""

    worker: WorkerRegistration
    input: dict[str, Any]
    cpu: int
    memory: int
    share: int | float  # max_failed_item_share; 0 when not sent
    key: str | None  # the Idempotency-Key, when sent


def create_job(req: Request) -> Response:
    payload = _submit_body(req.body)
    if "items" in payload or "manifest" in payload:  # an array job (handlers/array_api.py)
        from handlers.array_api import create_array_job

        return create_array_job(req, payload)
    worker_name = _checked_fields(payload)
    share = _failed_item_share(payload.get(JobField.MAX_FAILED_ITEM_SHARE))
    key = _idempotency_key(req)
    store = _store()
    job = _checked_request(_known_worker(store, worker_name), payload, share, key)
    request_hash = _request_hash(_hashed(job))
    if key is not None:
        job_id = keyed_job_id(job.worker.name, key)
        existing = store.get(job_id)
        if existing is not None:
            return _replay(existing, request_hash, job.worker)
    else:
        job_id = new_job_id(job.worker.name)
    try:
        created = store.create(_job_item(job, job_id, request_hash))
    except JobExists as exc:  # a concurrent request with the same Idempotency-Key won
        if exc.existing is None:
            raise
        return _replay(exc.existing, request_hash, job.worker)
    _enqueue(job.worker, job_id, 0)
    _aws.log(
        "INFO",
        "job_submitted",
        job_id=job_id,
        worker=job.worker.name,
        cpu=job.cpu,
        memory=job.memory,
    )
    return Response(202, _submitted(created), {"Location": _links(job_id)["self"]})


def _checked_fields(payload: dict[str, Any]) -> str:
    """The body's fields are the job request's, with a worker name and an input object; the
    worker name."""
    unknown = sorted(set(payload) - JOB_REQUEST_FIELDS)
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}")
    worker_name = payload.get("worker")
    if not isinstance(worker_name, str) or not worker_name:
        raise ApiError(400, "invalid_request", "'worker' is required and must be a string")
    if not isinstance(payload.get("input"), dict):
        raise ApiError(400, "invalid_request", "'input' is required and must be a JSON object")
    return worker_name


def _checked_request(
    worker: WorkerRegistration, payload: dict[str, Any], share: int | float, key: str | None
) -> _JobRequest:
    """The input matches the worker's schema; the resources are settled (``_resources``)."""
    job_input = payload["input"]
    errors = worker.validator.errors(job_input)
    if errors:
        raise ApiError(
            400, "invalid_input", f"input does not match the {worker.name} input schema", errors
        )
    cpu, memory = _resources(worker, payload.get("cpu"), payload.get("memory"))
    return _JobRequest(worker, job_input, cpu, memory, share, key)


def _hashed(job: _JobRequest) -> dict[str, Any]:
    """What the request hash covers (an Idempotency-Key's replay must match it)."""
    hashed: dict[str, Any] = {
        "worker": job.worker.name,
        "input": job.input,
        "cpu": job.cpu,
        "memory": job.memory,
    }
    if job.share:  # only when set: requests from before the field keep their hash (replays)
        hashed[JobField.MAX_FAILED_ITEM_SHARE] = float(job.share)  # 1 and 1.0 are one request
    return hashed


def _job_item(job: _JobRequest, job_id: str, request_hash: str) -> dict[str, Any]:
    """The QUEUED job item; an input too large (or not storable) for DynamoDB is put in S3
    first and the item points at it."""
    worker = job.worker
    encoded_input = json.dumps(job.input, separators=(",", ":")).encode()
    now = datetime.now(UTC)
    ttl_days = _aws.env_int(Env.JOB_TTL_DAYS, DEFAULT_JOB_TTL_DAYS)
    item: dict[str, Any] = {
        JobField.JOB_ID: job_id,
        JobField.WORKER: worker.name,
        JobField.STATUS: JobStatus.QUEUED.value,
        JobField.CREATED_AT: now_iso(now),
        JobField.TASK_DEFINITION: worker.task_definition,
        JobField.CPU: job.cpu,
        JobField.MEMORY: job.memory,
        JobField.ATTEMPTS: 0,
        JobField.MAX_ATTEMPTS: worker.max_attempts,
        JobField.TIMEOUT_SECONDS: worker.timeout_seconds,
        JobField.REQUEST_HASH: request_hash,
        JobField.SOURCE: "api",
        JobField.EXPIRES_AT: int((now + timedelta(days=ttl_days)).timestamp()),
    }
    if job.key is not None:
        item[JobField.IDEMPOTENCY_KEY] = job.key
    if job.share:
        item[JobField.MAX_FAILED_ITEM_SHARE] = job.share
    if len(encoded_input) > MAX_INLINE_INPUT_BYTES or not storable(job.input):
        s3_key = input_key(worker.name, job_id)
        _aws.client("s3").put_object(
            Bucket=_aws.env(Env.RESULTS_BUCKET),
            Key=s3_key,
            Body=encoded_input,
            ContentType="application/json",
        )
        item[JobField.INPUT_S3_KEY] = s3_key
    else:
        item[JobField.INPUT] = job.input
    return item


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
