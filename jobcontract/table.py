"""The jobs table's layout: its key and indexes (``Table``) and the attribute names of a job
item (``JobField``) and of a worker registration (``WorkerField``)."""

from __future__ import annotations

from typing import Final


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
