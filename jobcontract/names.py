"""Ids and keys: worker names and job ids, table keys (``job_pk``, ``worker_pk``,
``worker_status``), S3 keys of inputs, results, checkpoints and uploads, the SQS message of one
dispatch, and the names ``POST /uploads`` accepts."""

from __future__ import annotations

import re
import secrets
from typing import Final

from jobcontract.states import JobStatus

WORKER_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
WORKER_NAME_MAX: Final = 32
# Job ids are "<worker>_<32 hex>": the worker prefix lets IAM scope a task role to its own
# rows (dynamodb:LeadingKeys "job#<worker>_*"); only [A-Za-z0-9_-], so the id is valid as
# ECS startedBy, an SQS message group id and a URL path segment.
JOB_ID_RE: Final = re.compile(r"^([a-z][a-z0-9]*(?:-[a-z0-9]+)*)_([0-9a-f]{32})$")


def new_job_id(worker: str, token_hex: str | None = None) -> str:
    return f"{worker}_{token_hex or secrets.token_hex(16)}"


def scheduled_job_id(worker: str, task_arn: str) -> str | None:
    """Job id of a scheduled run (a task started without BATCH_JOB_ID): ``<worker>_<task id>``.

    Fargate task ids are 32 hex digits; emulators (moto) use hyphenated UUIDs, which this
    normalises to the same 32 hex. The worker runtime and the reconciler both derive the id
    here, so they agree on it. None when the ARN carries no such id.
    """
    tail = task_arn.rsplit("/", 1)[-1].replace("-", "").lower()
    return new_job_id(worker, tail) if re.fullmatch(r"[0-9a-f]{32}", tail) else None


def worker_of_job_id(job_id: str) -> str | None:
    m = JOB_ID_RE.match(job_id)
    return m.group(1) if m else None


JOB_PK_PREFIX: Final = "job#"  # every job item's pk starts so (IAM LeadingKeys: + "*")


def job_pk(job_id: str) -> str:
    return f"{JOB_PK_PREFIX}{job_id}"


def job_pk_prefix(worker: str) -> str:
    """What every pk of this worker's jobs starts with (IAM LeadingKeys pattern: prefix + '*')."""
    return f"{JOB_PK_PREFIX}{worker}_"


# The deployed API's URL, written by the BatchApi component as a table item: the control-plane
# Lambdas exist before the API (the API invokes one of them), so it cannot be in their env.
API_CONFIG_PK: Final = "config#api"
API_CONFIG_URL: Final = "url"


def worker_pk(worker: str) -> str:
    return f"worker#{worker}"


def worker_status(worker: str, status: JobStatus | str) -> str:
    return f"{worker}#{JobStatus(status).value}"


def results_prefix(worker: str) -> str:
    """S3 prefix a worker's task role may write; ends with '/'."""
    return f"results/{worker}/"


def result_key(worker: str, job_id: str) -> str:
    # One fixed key per job: a retry overwrites, never duplicates.
    return f"{results_prefix(worker)}{job_id}/result.json"


def inputs_prefix(worker: str) -> str:
    return f"inputs/{worker}/"


def checkpoint_key(worker: str, job_id: str) -> str:
    # Items an interrupted attempt finished (workers/runtime/checkpoint.py); next to the result.
    return f"{results_prefix(worker)}{job_id}/checkpoint.json"


def input_key(worker: str, job_id: str) -> str:
    return f"{inputs_prefix(worker)}{job_id}.json"


def queue_message(job_id: str, attempt: int) -> dict[str, str]:
    """SQS FIFO send arguments (without QueueUrl) for one dispatch of one attempt."""
    import json

    return {
        "MessageBody": json.dumps({"job_id": job_id, "attempt": attempt}),
        "MessageGroupId": job_id,
        "MessageDeduplicationId": f"{job_id}-{attempt}",
    }


# --- uploads (POST /uploads): files a client without AWS credentials hands to a job --------
MAX_UPLOAD_FILES: Final = 100  # files per POST /uploads call
MAX_UPLOAD_BYTES: Final = 100 * 1024 * 1024  # per file, enforced by S3 (content-length-range)
# Our rule: a presigned POST signed with the API Lambda's temporary credentials stops working
# when those credentials expire, whatever its own expiry says, and AWS does not promise a
# Lambda execution role session any fixed length. 15 minutes is far inside it, and the client
# (batchctl) uploads right after asking; a failed upload asks again.
UPLOAD_URL_TTL_SECONDS: Final = 900
UPLOAD_NAME_MAX: Final = 128
# A file name the API accepts (also the pattern of UploadFile.name in components/openapi.yaml):
# one path segment (no '/' or '\'), not starting with '.' or a blank, no C0/C1 control
# character (no lookahead: schema-based generators negate one badly). Other characters
# outside [A-Za-z0-9._-] become '_' in its key.
UPLOAD_NAME_RE: Final = re.compile(r"^[^./\\\x00-\x20\x7f-\x9f][^/\\\x00-\x1f\x7f-\x9f]*$")
UPLOAD_ID_RE: Final = re.compile(r"^[0-9a-f]{32}$")
# The events the reconciler consumes, as EventBridge delivers them from ECS: the rule's
# pattern (components), the failed-events redrive (handlers) and the local pipeline use these.
ECS_EVENT_SOURCE: Final = "aws.ecs"
ECS_TASK_STATE_CHANGE: Final = "ECS Task State Change"


def upload_key(worker: str, upload_id: str, safe_name: str) -> str:
    """``inputs/<worker>/<upload id>/<name>``: under the worker's own inputs prefix (its task
    role reads only that), beside but never equal to a large input (``<job id>.json``)."""
    return f"{inputs_prefix(worker)}{upload_id}/{safe_name}"
