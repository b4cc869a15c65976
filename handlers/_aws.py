"""Shared boto3 client cache and environment helpers for the Lambda handlers.

Clients are created lazily on first use and then reused for the life of the execution
environment (cold-start cost is paid once, not at import time). boto3 honours
``AWS_ENDPOINT_URL`` by itself, so the same code reaches moto locally and AWS in production.
Tests that change the endpoint or credentials call :func:`reset_clients`.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

# Imported at module level on purpose: Lambda runs module import in its (CPU-boosted) init
# phase, so the first request does not pay for it. Clients themselves are created lazily.
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from jobcontract import logs, queue_message

_clients: dict[str, Any] = {}
_lock = threading.Lock()
# One session for every client: each botocore session parses its own copy of the endpoint
# data (~6.7 MB of Python objects) and service models, so a session per client cost about
# 21 MB and 0.3 s for the launcher's four clients (bench/RESULTS.md, "Manifest fan-out").
# A session is not thread-safe: it is only used under ``_lock``; its clients are.
_session: Any = None


def client(service: str) -> Any:
    """A cached low-level boto3 client for ``service`` (thread-safe creation)."""
    found = _clients.get(service)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(service)
        if found is None:
            # Short connect timeout and standard retries: a Lambda should fail fast and let
            # its event source retry rather than hang until its own timeout.
            config = Config(
                connect_timeout=5,
                read_timeout=20,
                retries={"mode": "standard", "max_attempts": 3},
            )
            found = _shared_session().client(service, config=config)
            _clients[service] = found
        return found


def _shared_session() -> Any:
    """The session every client is made from (the caller holds ``_lock``)."""
    global _session
    if _session is None:
        _session = boto3.session.Session()
    return _session


def set_client(service: str, value: Any) -> None:
    """Install a client (e.g. a fault-injecting wrapper in tests) for ``service``."""
    with _lock:
        _clients[service] = value


def reset_clients() -> None:
    """Forget every cached client (and the worker registration cache), so the next use picks
    up the current environment. Tests call this after changing the endpoint or env."""
    global _session
    with _lock:
        _clients.clear()
        _session = None  # credentials and region are read again
    for name in ("handlers.registry", "handlers.notify"):
        module = sys.modules.get(name)
        if module is not None:
            module.clear_cache()


def log(level: str, event: str, **fields: Any) -> None:
    """One structured JSON log line (the schema and the level threshold: ``jobcontract.logs``)."""
    logs.log(level, event, **fields)


def enqueue_job(
    queue_url: str,
    job_id: str,
    attempt: int,
    *,
    dedup_id: str | None = None,
    failed_event: str = "enqueue_failed",
    **log_fields: Any,
) -> bool:
    """Send the launch message of ``job_id``'s ``attempt`` (``jobcontract.queue_message``);
    False, with one ERROR line ``failed_event`` (``job_id``, ``log_fields``, the error), when
    SQS refuses it. Never raises for an AWS error: the job item is durable and QUEUED, and
    the sweep re-sends the message of a job left QUEUED (``BATCH_REDRIVE_SECONDS``).
    ``dedup_id`` replaces the FIFO deduplication id (a deliberate re-send: SQS drops a
    message whose id it accepted in the last 5 minutes)."""
    message = queue_message(job_id, attempt)
    if dedup_id is not None:
        message["MessageDeduplicationId"] = dedup_id
    try:
        client("sqs").send_message(QueueUrl=queue_url, **message)
    except (ClientError, BotoCoreError) as exc:
        log("ERROR", failed_event, job_id=job_id, **log_fields, error=str(exc))
        return False
    return True


def env(name: str, default: str | None = None) -> str:
    """A required environment variable (``default`` when given and unset)."""
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise RuntimeError(f"environment variable {name} is not set")
        return default
    return value


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return int(value)


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return float(value)


def env_list(name: str) -> list[str]:
    """A comma-separated environment variable as a list (empty when unset)."""
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]
