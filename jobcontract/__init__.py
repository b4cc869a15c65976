"""The job contract: every name the infrastructure (``components/``) and the runtime
(``handlers/``, ``workers/``) share, defined once.

Each rule has one module, and this package re-exports them all, so ``from jobcontract import
X`` is how callers read them: ``env`` (``Env``), ``states`` (``JobStatus``, transitions),
``table`` (key, indexes, ``JobField``, ``WorkerField``), ``names`` (ids, table and S3 keys,
the queue message, upload names), ``outcomes`` (exit codes, denied calls, failed items). The
task's own limits and the defaults are below.

Nothing here imports anything heavier than the standard library: this module is
packaged into every Lambda zip and every worker image, and sits on the cold-start path.
"""

from __future__ import annotations

from typing import Final

from jobcontract.env import Env
from jobcontract.names import (
    API_CONFIG_PK,
    API_CONFIG_URL,
    ECS_EVENT_SOURCE,
    ECS_TASK_STATE_CHANGE,
    JOB_ID_RE,
    JOB_PK_PREFIX,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_FILES,
    UPLOAD_ID_RE,
    UPLOAD_NAME_MAX,
    UPLOAD_NAME_RE,
    UPLOAD_URL_TTL_SECONDS,
    WORKER_NAME_MAX,
    WORKER_NAME_RE,
    checkpoint_key,
    input_key,
    inputs_prefix,
    job_pk,
    job_pk_prefix,
    new_job_id,
    queue_message,
    result_key,
    results_prefix,
    scheduled_job_id,
    upload_key,
    worker_of_job_id,
    worker_pk,
    worker_status,
)
from jobcontract.outcomes import (
    ACCESS_DENIED_CODES,
    DEFAULT_MAX_FAILED_ITEM_SHARE,
    ITEMS_FAILED,
    MIN_FAILED_ITEM_SHARE,
    WorkerExit,
    access_denied_error,
    items_failed_error,
    max_failed_item_share,
    tolerated_failed_items,
)
from jobcontract.states import TERMINAL_STATES, TRANSITIONS, JobStatus, can_transition
from jobcontract.table import JobField, Table, WorkerField

# Warm reuse: seconds a task that finished a job waits for its worker's next job (the
# ``FargateWorker`` default; stack setting ``taskReuse: false`` makes it 0 for every worker).
# Waiting costs Fargate time; a new task costs its start-up (image pull on, about 30 s
# modelled) plus Fargate's one-minute minimum, so waiting up to a start-up is the cheaper side.
DEFAULT_REUSE_IDLE_SECONDS: Final = 30
# Days a job row lives when the stack does not say (``BATCH_JOB_TTL_DAYS``; DynamoDB TTL).
DEFAULT_JOB_TTL_DAYS: Final = 30
# Runs per job when a worker does not say (the component's ``max_attempts`` default).
DEFAULT_MAX_ATTEMPTS: Final = 3


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

__all__ = [
    "ACCESS_DENIED_CODES",
    "API_CONFIG_PK",
    "API_CONFIG_URL",
    "CONTAINER_NAME",
    "DEFAULT_JOB_TTL_DAYS",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_FAILED_ITEM_SHARE",
    "DEFAULT_REUSE_IDLE_SECONDS",
    "ECS_EVENT_SOURCE",
    "ECS_TASK_STATE_CHANGE",
    "FARGATE_CPU_MEMORY",
    "ITEMS_FAILED",
    "JOB_ID_RE",
    "JOB_PK_PREFIX",
    "MAX_INLINE_INPUT_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_FILES",
    "MIN_FAILED_ITEM_SHARE",
    "TAG_JOB_ID",
    "TASK_STOP_TIMEOUT_SECONDS",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "UPLOAD_ID_RE",
    "UPLOAD_NAME_MAX",
    "UPLOAD_NAME_RE",
    "UPLOAD_URL_TTL_SECONDS",
    "WORKER_NAME_MAX",
    "WORKER_NAME_RE",
    "Env",
    "JobField",
    "JobStatus",
    "Table",
    "WorkerExit",
    "WorkerField",
    "access_denied_error",
    "can_transition",
    "checkpoint_key",
    "input_key",
    "inputs_prefix",
    "items_failed_error",
    "job_pk",
    "job_pk_prefix",
    "max_failed_item_share",
    "new_job_id",
    "queue_message",
    "result_key",
    "results_prefix",
    "scheduled_job_id",
    "tolerated_failed_items",
    "upload_key",
    "worker_of_job_id",
    "worker_pk",
    "worker_status",
]
