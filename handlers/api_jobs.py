"""The job reads, cancel, the worker list and uploads: ``GET /jobs``, ``GET /jobs/{id}``,
``POST /jobs/{id}/cancel``, ``GET /workers`` and ``POST /uploads``; ``job_view`` is the public
shape of a job (``array_view`` of an array job)."""

from __future__ import annotations

import os
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws, uploads
from handlers.api_http import (
    ApiError,
    Request,
    Response,
    _job_id_param,
    _json_body,
    _known_worker,
    _links,
    _store,
)
from handlers.registry import list_workers
from jobcontract import (
    MAX_REQUEST_BYTES,
    WORKER_NAME_MAX,
    WORKER_NAME_RE,
    Env,
    JobField,
    JobStatus,
)
from jobcontract.job import Job
from jobcontract.store import InvalidCursor, TransitionConflict

DEFAULT_RESULT_URL_TTL = 900
DEFAULT_PAGE = 20
MAX_PAGE = 100
LIST_PARAMS = frozenset({"worker", "status", "limit", "cursor", "parent"})


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
