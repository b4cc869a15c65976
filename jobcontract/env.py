"""Environment variable names: what the components set and the runtime reads (``Env``).

Standard library only, like the rest of ``jobcontract`` (see its docstring)."""

from __future__ import annotations

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
    # The reconciler's on-failure destination (standard SQS), read by the sweep's redrive.
    FAILED_EVENTS_URL: Final = "BATCH_FAILED_EVENTS_URL"
    # Stack setting ``launcherConcurrency``: the launch queue trigger's maximum concurrency,
    # i.e. the most launcher invocations at once (each may use 1/N of RunTask's account rate).
    LAUNCHER_CONCURRENCY: Final = "BATCH_LAUNCHER_CONCURRENCY"
    # Array jobs: the most children the API writes within the request (default
    # jobcontract.arrays.DEFAULT_SYNC_CHILDREN); more go through the launcher's fan-out step.
    ARRAY_SYNC_CHILDREN: Final = "BATCH_ARRAY_SYNC_CHILDREN"
