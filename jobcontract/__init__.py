"""The job contract: every name the infrastructure (``components/``) and the runtime
(``handlers/``, ``workers/``) share, defined once.

Nothing here imports anything heavier than the standard library: this module is
packaged into every Lambda zip and every worker image, and sits on the cold-start path.
"""

from __future__ import annotations

import re
import secrets
from enum import StrEnum
from typing import Final


class Env:
    """Environment variable names set by the components and read by the runtime."""

    STACK: Final = "BATCH_STACK"
    JOBS_TABLE: Final = "BATCH_JOBS_TABLE"
    RESULTS_BUCKET: Final = "BATCH_RESULTS_BUCKET"
    CLUSTER_ARN: Final = "BATCH_CLUSTER_ARN"
    SUBNETS: Final = "BATCH_SUBNETS"  # comma-separated subnet ids
    SECURITY_GROUPS: Final = "BATCH_SECURITY_GROUPS"  # comma-separated security group ids
    ASSIGN_PUBLIC_IP: Final = "BATCH_ASSIGN_PUBLIC_IP"  # "ENABLED" | "DISABLED"
    FAILURE_TOPIC_ARN: Final = "BATCH_FAILURE_TOPIC_ARN"
    SLACK_WEBHOOK_SECRET_ARN: Final = "BATCH_SLACK_WEBHOOK_SECRET_ARN"  # optional
    NOTION_SECRET_ARN: Final = "BATCH_NOTION_SECRET_ARN"  # optional; JSON {"token", "database_id"}
    API_URL: Final = "BATCH_API_URL"  # optional; used for links in notifications
    RESULT_URL_TTL_SECONDS: Final = "BATCH_RESULT_URL_TTL_SECONDS"
    JOB_TTL_DAYS: Final = "BATCH_JOB_TTL_DAYS"
    HEARTBEAT_STALE_SECONDS: Final = "BATCH_HEARTBEAT_STALE_SECONDS"
    LOG_LEVEL: Final = "BATCH_LOG_LEVEL"
    # Set on the worker container (task definition environment or RunTask overrides).
    JOB_ID: Final = "BATCH_JOB_ID"
    JOB_ATTEMPT: Final = "BATCH_JOB_ATTEMPT"
    WORKER_NAME: Final = "BATCH_WORKER_NAME"
    # The folder a worker deployed under another name was built from (``source_dir``, e.g. a
    # GPU worker's CPU fallback built from the GPU worker's folder): its code runs as
    # ``WORKER_NAME``. Absent: the folder is the name.
    WORKER_SOURCE: Final = "BATCH_WORKER_SOURCE"
    WORKER_TIMEOUT_SECONDS: Final = "BATCH_WORKER_TIMEOUT_SECONDS"
    # Runs per job; a scheduled task reads it here (its role may not read the registration).
    WORKER_MAX_ATTEMPTS: Final = "BATCH_WORKER_MAX_ATTEMPTS"
    MODEL_ID: Final = "BATCH_MODEL_ID"  # Bedrock model id or cross-Region inference profile id
    MODEL_BACKEND: Final = "BATCH_MODEL_BACKEND"  # "bedrock" | "offline" (never implied)
    MODEL_RETRY_BUDGET_SECONDS: Final = "BATCH_MODEL_RETRY_BUDGET_SECONDS"  # throttling backoff
    # boto3 itself honours AWS_ENDPOINT_URL; the local pipeline sets it to the moto server.
    AWS_ENDPOINT_URL: Final = "AWS_ENDPOINT_URL"
    # Worker runtime extras. A scheduled task starts without BATCH_JOB_ID: the runtime then
    # creates its own job from BATCH_SCHEDULED_INPUT (JSON) and the task ARN (ECS metadata,
    # or BATCH_TASK_ARN when run locally).
    SCHEDULED_INPUT: Final = "BATCH_SCHEDULED_INPUT"
    # An array-job schedule: the array fields of POST /jobs (jobcontract/scheduled.py).
    SCHEDULED_ARRAY: Final = "BATCH_SCHEDULED_ARRAY"
    TASK_ARN: Final = "BATCH_TASK_ARN"
    HEARTBEAT_INTERVAL_SECONDS: Final = "BATCH_HEARTBEAT_INTERVAL_SECONDS"  # default 30
    # Dispatch (jobcontract/dispatch.py). Stack setting ``fargateVcpuLimit``: the Fargate vCPUs
    # the stack's launched tasks may hold at once (0 = no limit); on the control-plane Lambdas.
    FARGATE_VCPU_LIMIT: Final = "BATCH_FARGATE_VCPU_LIMIT"
    # Warm reuse, on a worker's task: how long a task that finished a job waits for the next
    # job of its worker before it exits (0 = reuse off: one job per task).
    REUSE_IDLE_SECONDS: Final = "BATCH_REUSE_IDLE_SECONDS"
    # Set by the launcher on a fallback worker's task that runs a job handed over to it (job
    # field ``fallback``): the worker the job belongs to, i.e. its id's prefix. The runtime
    # then runs that job although its id names another worker (it checks the hand-over in
    # the job item when it claims it).
    HANDED_FROM: Final = "BATCH_HANDED_FROM"
    # The stack's launch queue (one FIFO queue for every worker), on the control plane.
    LAUNCH_QUEUE_URL: Final = "BATCH_LAUNCH_QUEUE_URL"
    # Stack setting ``launcherConcurrency``: the launch queue trigger's maximum concurrency,
    # i.e. the most launcher invocations at once (each may use 1/N of RunTask's account rate).
    LAUNCHER_CONCURRENCY: Final = "BATCH_LAUNCHER_CONCURRENCY"
    # Array jobs: the most children the API writes within the request (default
    # jobcontract.arrays.DEFAULT_SYNC_CHILDREN); more go through the launcher's fan-out step.
    ARRAY_SYNC_CHILDREN: Final = "BATCH_ARRAY_SYNC_CHILDREN"


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    DISPATCHED = "DISPATCHED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: Final = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

# Every allowed transition. A transition is a conditional write on the current status
# (and, for worker-side transitions, on the attempt number), so none happens twice and
# no stale actor overwrites a newer state. RUNNING/DISPATCHED -> QUEUED is a retry.
TRANSITIONS: Final[dict[JobStatus, frozenset[JobStatus]]] = {
    JobStatus.QUEUED: frozenset({JobStatus.DISPATCHED, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.DISPATCHED: frozenset(
        {JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.QUEUED, JobStatus.CANCELLED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    return new in TRANSITIONS[current]


class Table:
    """The jobs table: one string partition key, ``pk``; job and worker items share it."""

    PK: Final = "pk"
    TTL_ATTRIBUTE: Final = "expires_at"  # epoch seconds; DynamoDB TTL deletes old jobs
    # Global secondary indexes: (name, hash key, range key). All project everything.
    BY_WORKER_STATUS: Final = "by-worker-status"  # worker_status = "<worker>#<STATUS>"
    BY_WORKER: Final = "by-worker"
    BY_STATUS: Final = "by-status"  # the sweep finds DISPATCHED/RUNNING jobs here
    BY_KIND: Final = "by-kind"  # kind = "job" | "worker": list all jobs, list all workers
    INDEXES: Final[tuple[tuple[str, str, str], ...]] = (
        (BY_WORKER_STATUS, "worker_status", "created_at"),
        (BY_WORKER, "worker", "created_at"),
        (BY_STATUS, "status", "created_at"),
        (BY_KIND, "kind", "created_at"),
    )
    KIND_JOB: Final = "job"
    KIND_WORKER: Final = "worker"


class JobField:
    """Attribute names of a job item."""

    JOB_ID: Final = "job_id"
    WORKER: Final = "worker"
    STATUS: Final = "status"
    WORKER_STATUS: Final = "worker_status"
    KIND: Final = "kind"
    CREATED_AT: Final = "created_at"  # ISO-8601 UTC with microseconds, sorts as text
    UPDATED_AT: Final = "updated_at"
    TIMESTAMPS: Final = "timestamps"  # map STATUS -> ISO time it was last entered
    INPUT: Final = "input"  # the job input, when it fits in the item
    INPUT_S3_KEY: Final = "input_s3_key"  # else a pointer into the results bucket
    CPU: Final = "cpu"
    MEMORY: Final = "memory"
    ATTEMPTS: Final = "attempts"  # attempt number of the current / last run, starts at 0
    MAX_ATTEMPTS: Final = "max_attempts"
    TIMEOUT_SECONDS: Final = "timeout_seconds"
    # ARN with revision, fixed at submit time (a hand-over to the fallback worker sets its)
    TASK_DEFINITION: Final = "task_definition"
    TASK_ARN: Final = "task_arn"
    # {"attempt", "tries", "step", "first"}: where the current attempt's launch stands on its
    # worker's launch chain, i.e. which RunTask token a resumed launch repeats (see
    # handlers/launcher.py LaunchState). The reconciler may write it for the next attempt.
    LAUNCH: Final = "launch"
    # {"worker", "from", "attempt", "at"}: the job's launch chain ran out of capacity and it
    # was handed to the registration's fallback worker, whose task runs it from then on (the
    # job keeps its id and its own worker, whose row it stays; its task holds a dispatch slot
    # of the fallback worker, see jobcontract/dispatch.py ``claim(runs_on=...)``).
    FALLBACK: Final = "fallback"
    # Epoch seconds before which the launcher does not launch the job's next attempt: set by
    # the reconciler when a Managed Instances job found no capacity anywhere in its launch
    # chain and is retried from the top (jobcontract.managed_instances.capacity_backoff).
    RETRY_NOT_BEFORE: Final = "retry_not_before"
    HEARTBEAT_AT: Final = "heartbeat_at"
    PROGRESS: Final = "progress"  # {"done": int, "total": int}
    RESULT_KEY: Final = "result_key"
    CHECKPOINT_KEY: Final = "checkpoint_key"  # set when an interrupted attempt kept items
    # {"total", "succeeded", "failed"}: the items of the handler's ``ctx.map`` calls, written
    # with the job's end by the worker runtime (absent when the handler mapped nothing).
    ITEMS: Final = "items"
    # Share of the items (0..1) that may fail with the job still SUCCEEDED; absent = 0.
    MAX_FAILED_ITEM_SHARE: Final = "max_failed_item_share"
    ERROR: Final = "error"  # {"type", "message", "exit_code", "stop_reason"}
    IDEMPOTENCY_KEY: Final = "idempotency_key"
    REQUEST_HASH: Final = "request_hash"  # detects an Idempotency-Key reused for another body
    CANCEL_REQUESTED: Final = "cancel_requested"
    # Set while a QUEUED job waits for a slot ("parked", jobcontract/dispatch.py): its
    # message is gone, the dispatch state starts it when a slot frees.
    WAITING_SINCE: Final = "waiting_since"
    SOURCE: Final = "source"  # "api" | "schedule" | "array" (a child of an array job)
    EXPIRES_AT: Final = Table.TTL_ATTRIBUTE
    # Array jobs (jobcontract/arrays.py). On the parent: ``array`` {"item_field",
    # "total_items", "shards", "shard_size"}, ``children`` {"SUCCEEDED", "FAILED",
    # "CANCELLED"} counts, ``done_shards`` (string set of the shard indexes counted: the
    # fan-in's once-only marker), ``merge`` {"owner", "at"} (who merges), ``summary_key``.
    ARRAY: Final = "array"
    CHILDREN: Final = "children"
    DONE_SHARDS: Final = "done_shards"
    MERGE: Final = "merge"
    SUMMARY_KEY: Final = "summary_key"
    # On a child: its parent's job id and ``shard`` {"index", "offset", "count"}.
    PARENT_ID: Final = "parent_id"
    SHARD: Final = "shard"


class WorkerField:
    """Attribute names of a worker registration item (written by FargateWorker / InstanceWorker)."""

    NAME: Final = "name"
    DESCRIPTION: Final = "description"
    TASK_DEFINITION: Final = "task_definition"  # ARN with revision
    CONTAINER_NAME: Final = "container_name"
    QUEUE_URL: Final = "queue_url"
    DLQ_URL: Final = "dlq_url"
    CPU: Final = "cpu"  # default task cpu units
    MEMORY: Final = "memory"  # default task memory MiB
    MAX_CPU: Final = "max_cpu"  # largest override a job may ask for
    MAX_MEMORY: Final = "max_memory"
    MAX_ATTEMPTS: Final = "max_attempts"
    TIMEOUT_SECONDS: Final = "timeout_seconds"
    MAX_CONCURRENCY: Final = "max_concurrency"  # max tasks of this worker at once
    CAPACITY_STRATEGY: Final = "capacity_strategy"  # JSON list of {capacityProvider, weight, base}
    SPOT_FALLBACK: Final = "spot_fallback"  # retry on FARGATE when Spot has no capacity
    INPUT_SCHEMA: Final = "input_schema"  # JSON text of the worker's input JSON schema
    ARCHITECTURE: Final = "architecture"
    REUSE_IDLE_SECONDS: Final = "reuse_idle_seconds"  # 0 = one job per task
    # Workers on ECS Managed Instances (``InstanceWorker``; ``jobcontract.managed_instances``).
    # A registration without them is a Fargate worker: compute "fargate", launch chain
    # ``[capacity_strategy]``, no fallback worker, no start-up timeout.
    COMPUTE: Final = "compute"  # "managed_instances" | "fargate" (absent: fargate)
    LAUNCH_CHAIN: Final = "launch_chain"  # JSON list of capacity provider strategies, in order
    FALLBACK_WORKER: Final = "fallback_worker"  # CPU Fargate worker taking an exhausted chain
    STARTUP_TIMEOUT_SECONDS: Final = "startup_timeout_seconds"  # wait for an instance
    GPU_COUNT: Final = "gpu_count"
    GPU_NAMES: Final = "gpu_names"  # JSON list, order of preference
    NETWORK_MODE: Final = "network_mode"  # "awsvpc" | "host" (absent: awsvpc)


class WorkerExit:
    """Exit codes of a worker container (``workers.runtime``); the reconciler reads them from
    the ECS STOPPED event. The job item is the truth: these explain, they do not decide."""

    # 0 means exactly "this attempt recorded SUCCEEDED": the reconciler trusts a clean exit 0
    # (stopCode EssentialContainerExited) without reading the job; the sweep is the backstop.
    OK: Final = 0
    CRASH: Final = 1  # unexpected exception: job left RUNNING (error recorded) -> retry
    CONFIG: Final = 2  # missing/invalid environment: the task definition is wrong
    NOT_RUNNABLE: Final = 3  # job not DISPATCHED to this attempt (stale, cancelled): no work
    FAILED: Final = 10  # permanent error or ItemsFailed: FAILED recorded, nothing to retry
    TIMEOUT: Final = 124  # worker timeout reached: FAILED (type "Timeout") recorded
    INTERRUPTED: Final = 143  # SIGTERM (Spot interruption, stop): progress saved -> retry
    # AWS denied a call the runtime needs and the job could not be recorded FAILED itself
    # (e.g. its own row): the reconciler fails the job, a retry would be denied again.
    ACCESS_DENIED: Final = 11


def access_denied_error(exc: BaseException) -> dict[str, str] | None:
    """The job ``error`` for an AWS call IAM denied (botocore ``ClientError`` with a denial
    code or HTTP 403), naming the operation and AWS's message; None for anything else.
    Duck-typed so the Lambda zip needs no botocore import here."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error") or {}
    code = str(error.get("Code", ""))
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if code not in ACCESS_DENIED_CODES and not (code in ("403", "Forbidden") or status == 403):
        return None
    operation = getattr(exc, "operation_name", "an AWS call")
    detail = str(error.get("Message") or "access denied")
    return {
        "type": "AccessDenied",
        "message": (
            f"AWS denied {operation} ({code or status}): {detail}. The role this code runs as "
            "needs that action on that resource; a retry would be denied again."
        )[:1000],
    }


# Warm reuse: seconds a task that finished a job waits for its worker's next job (the
# ``FargateWorker`` default; stack setting ``taskReuse: false`` makes it 0 for every worker).
# Waiting costs Fargate time; a new task costs its start-up (image pull on, about 30 s
# modelled) plus Fargate's one-minute minimum, so waiting up to a start-up is the cheaper side.
DEFAULT_REUSE_IDLE_SECONDS: Final = 30
# Days a job row lives when the stack does not say (``BATCH_JOB_TTL_DAYS``; DynamoDB TTL).
DEFAULT_JOB_TTL_DAYS: Final = 30
# Runs per job when a worker does not say (the component's ``max_attempts`` default).
DEFAULT_MAX_ATTEMPTS: Final = 3
# AWS error codes that mean "IAM (or a resource policy) denied this call": never transient.
ACCESS_DENIED_CODES: Final = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
)


# --- item outcomes ---------------------------------------------------------------------------
# A job's items are what its handler's ``ctx.map`` calls ran (workers/runtime/context.py). An
# item that raised is that item's error, not the job's; whether the job as a whole succeeded is
# decided once, when it ends, from the counts and the job's ``max_failed_item_share``.
ITEMS_FAILED: Final = "ItemsFailed"  # error.type of a job that ended FAILED for its items
DEFAULT_MAX_FAILED_ITEM_SHARE: Final = 0
# Shares below this count as 0: DynamoDB stores no smaller magnitude than 1e-130, and
# floor(share * total) is 0 for such a share whatever the item count of a job.
MIN_FAILED_ITEM_SHARE: Final = 1e-100


def max_failed_item_share(value: object) -> float | int:
    """The tolerated share as stored on a job (absent or not a number in 0..1: 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DEFAULT_MAX_FAILED_ITEM_SHARE
    if not 0 <= value <= 1 or value < MIN_FAILED_ITEM_SHARE:
        return DEFAULT_MAX_FAILED_ITEM_SHARE
    return value


def tolerated_failed_items(total: int, share: float | int) -> int:
    """How many of ``total`` items may fail: ``floor(share * total)``, computed on the decimal
    the share was written as (``0.29`` of 100 items tolerates 29, not 28.999...)."""
    from fractions import Fraction  # not at import time: this module is on the cold start

    return int(Fraction(repr(max_failed_item_share(share))) * max(0, int(total)) // 1)


def items_failed_error(items: dict[str, int], share: float | int) -> dict[str, str] | None:
    """The job ``error`` when more items failed than the job tolerates, else None.

    Such a job ends FAILED, like a ``PermanentError``, and is not retried: every item was
    attempted and its failure is the job's own outcome (the item's function raised after the
    model client's own backoff), not an infrastructure failure a new task could fix. The
    reconciler's rules agree: a recorded FAILED is final, only crashes, interruptions and
    lost tasks are retried. A retry would also run every item again, the succeeded ones too.
    """
    total, failed = int(items.get("total", 0)), int(items.get("failed", 0))
    share = max_failed_item_share(share)
    allowed = tolerated_failed_items(total, share)
    if failed <= allowed:
        return None
    tolerated = f"the job tolerates {allowed} (max_failed_item_share {share:g})"
    return {
        "type": ITEMS_FAILED,
        "message": f"{failed} of {total} items failed; {tolerated}",
    }


CONTAINER_NAME: Final = "worker"
MAX_INLINE_INPUT_BYTES: Final = 64 * 1024  # larger inputs go to S3 (DynamoDB items max 400 KB)
MAX_REQUEST_BYTES: Final = 1024 * 1024  # POST /jobs body limit (SQS/Lambda limits are higher)
TAG_JOB_ID: Final = "batch:job-id"  # ECS task tag carrying the job id
# The worker container's stopTimeout: seconds between SIGTERM and SIGKILL. AWS rule: Fargate
# allows at most 120 s, and a Spot interruption warns 2 minutes ahead. The task definition
# (components/fargate_worker.py) sets it; the runtime keeps every model call shorter so an
# interrupted job still has time to save its checkpoint (workers/runtime/model.py).
TASK_STOP_TIMEOUT_SECONDS: Final = 120

# AWS rule: Fargate task cpu units -> allowed memory MiB (ECS developer guide, "Task CPU and
# memory"). Defined here once so the API handler (job overrides) and components/aws_rules.py
# (task definitions) enforce the same table; 8 and 16 vCPU need platform version 1.4.0+.
FARGATE_CPU_MEMORY: Final[dict[int, tuple[int, ...]]] = {
    256: (512, 1024, 2048),
    512: tuple(m * 1024 for m in range(1, 5)),
    1024: tuple(m * 1024 for m in range(2, 9)),
    2048: tuple(m * 1024 for m in range(4, 17)),
    4096: tuple(m * 1024 for m in range(8, 31)),
    8192: tuple(m * 1024 for m in range(16, 61, 4)),
    16384: tuple(m * 1024 for m in range(32, 121, 8)),
}

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


def upload_key(worker: str, upload_id: str, safe_name: str) -> str:
    """``inputs/<worker>/<upload id>/<name>``: under the worker's own inputs prefix (its task
    role reads only that), beside but never equal to a large input (``<job id>.json``)."""
    return f"{inputs_prefix(worker)}{upload_id}/{safe_name}"
