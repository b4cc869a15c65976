"""Notification sinks for finished jobs: SNS (always), Slack and Notion (when configured).

Called only after the job's terminal state is written, and never raises: a failing sink is
logged and skipped, so notifications can neither fail nor block a job. HTTP sinks use short
timeouts. Which sinks see what:

- SNS failure topic (``BATCH_FAILURE_TOPIC_ARN``): every FAILED job.
- Slack (``BATCH_SLACK_WEBHOOK_SECRET_ARN``: secret string = webhook URL, or JSON with
  ``url``): every FAILED job, with a link to ``<BATCH_API_URL>/jobs/<id>``.
- Notion (``BATCH_NOTION_SECRET_ARN``: JSON ``{"token", "database_id"}``): every finished job
  as a page in the database, whose properties must be: ``Name`` (title, the job id),
  ``Worker`` (rich text), ``Status`` (select), ``Duration (s)`` (number), ``Completed``
  (date). ``BATCH_NOTION_API_URL`` overrides ``https://api.notion.com`` (tests).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers import _aws
from jobcontract import API_CONFIG_PK, API_CONFIG_URL, Env, JobField, JobStatus, Table
from jobcontract.store import parse_iso

HTTP_TIMEOUT_SECONDS = 3.0
SECRET_CACHE_SECONDS = 300.0
NOTION_API_URL_ENV = "BATCH_NOTION_API_URL"
NOTION_VERSION = "2022-06-28"

_secrets: dict[str, tuple[float, str]] = {}


def _secret(arn: str) -> str:
    hit = _secrets.get(arn)
    if hit is not None and time.monotonic() - hit[0] < SECRET_CACHE_SECONDS:
        return hit[1]
    value = str(_aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])
    _secrets[arn] = (time.monotonic(), value)
    return value


def clear_cache() -> None:
    _secrets.clear()
    _api_url.clear()


_api_url: list[str] = []  # cached per container: the URL changes only with a redeploy


def api_url() -> str:
    """``BATCH_API_URL`` if set (local pipeline), else the URL BatchApi wrote to the table."""
    if env_url := os.environ.get(Env.API_URL, ""):
        return env_url.rstrip("/")
    if not _api_url:
        try:
            item = (
                _aws.client("dynamodb")
                .get_item(
                    TableName=os.environ[Env.JOBS_TABLE], Key={Table.PK: {"S": API_CONFIG_PK}}
                )
                .get("Item")
                or {}
            )
        except (KeyError, ClientError, BotoCoreError) as exc:  # a link is nice, not needed
            _aws.log("WARNING", "api_url_unavailable", error=str(exc))
            return ""
        _api_url.append(str(item.get(API_CONFIG_URL, {}).get("S", "")).rstrip("/"))
    return _api_url[0]


def job_link(job_id: str) -> str | None:
    base = api_url()
    return f"{base}/jobs/{job_id}" if base else None


def duration_seconds(item: dict[str, Any]) -> float | None:
    """Run time: from when the job last started RUNNING (else was created) to its end."""
    stamps = item.get(JobField.TIMESTAMPS) or {}
    end = stamps.get(str(item.get(JobField.STATUS)))
    start = stamps.get(JobStatus.RUNNING.value) or item.get(JobField.CREATED_AT)
    if not end or not start:
        return None
    return max(0.0, round((parse_iso(end) - parse_iso(start)).total_seconds(), 3))


def summary(item: dict[str, Any]) -> dict[str, Any]:
    status = str(item.get(JobField.STATUS))
    return {
        "job_id": item.get(JobField.JOB_ID),
        "worker": item.get(JobField.WORKER),
        "status": status,
        "attempts": item.get(JobField.ATTEMPTS),
        "error": item.get(JobField.ERROR),
        "duration_seconds": duration_seconds(item),
        "completed_at": (item.get(JobField.TIMESTAMPS) or {}).get(status),
        "link": job_link(str(item.get(JobField.JOB_ID))),
    }


def _post_json(url: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
        response.read()
        return int(response.status)


# --- sinks ------------------------------------------------------------------------------
def send_sns(info: dict[str, Any]) -> None:
    topic = os.environ.get(Env.FAILURE_TOPIC_ARN)
    if not topic:
        return
    _aws.client("sns").publish(
        TopicArn=topic,
        Subject=f"Batch job {info['status']}: {info['worker']}"[:100],
        Message=json.dumps(info, default=str),
        MessageAttributes={
            "worker": {"DataType": "String", "StringValue": str(info["worker"])},
            "status": {"DataType": "String", "StringValue": str(info["status"])},
        },
    )


def send_slack(info: dict[str, Any]) -> None:
    arn = os.environ.get(Env.SLACK_WEBHOOK_SECRET_ARN)
    if not arn:
        return
    raw = _secret(arn).strip()
    url = str(json.loads(raw).get("url")) if raw.startswith("{") else raw
    error = info.get("error") or {}
    text = (
        f":x: Batch job `{info['job_id']}` ({info['worker']}) {info['status']} after "
        f"{info['attempts']} attempt(s): {error.get('type', '')} {error.get('message', '')}"
    ).strip()
    if info.get("link"):
        text += f"\n<{info['link']}|Open job>"
    _post_json(url, {"text": text})


def send_notion(info: dict[str, Any]) -> None:
    arn = os.environ.get(Env.NOTION_SECRET_ARN)
    if not arn:
        return
    secret = json.loads(_secret(arn))
    base = os.environ.get(NOTION_API_URL_ENV, "https://api.notion.com").rstrip("/")
    properties: dict[str, Any] = {
        "Name": {"title": [{"text": {"content": str(info["job_id"])}}]},
        "Worker": {"rich_text": [{"text": {"content": str(info["worker"])}}]},
        "Status": {"select": {"name": str(info["status"])}},
        "Duration (s)": {"number": info["duration_seconds"]},
    }
    if info.get("completed_at"):
        properties["Completed"] = {"date": {"start": info["completed_at"]}}
    _post_json(
        f"{base}/v1/pages",
        {"parent": {"database_id": secret["database_id"]}, "properties": properties},
        {"Authorization": f"Bearer {secret['token']}", "Notion-Version": NOTION_VERSION},
    )


def wanted(status: str) -> bool:
    """Whether a configured sink takes a job that ended in ``status``: SNS and Slack only
    FAILED jobs, Notion every finished job. The reconciler skips its once-only claim (and,
    for a clean success, its read) when nothing would be sent."""
    if os.environ.get(Env.NOTION_SECRET_ARN):
        return True
    if status != JobStatus.FAILED.value:
        return False
    return bool(
        os.environ.get(Env.FAILURE_TOPIC_ARN) or os.environ.get(Env.SLACK_WEBHOOK_SECRET_ARN)
    )


def job_finished(item: dict[str, Any]) -> dict[str, str]:
    """Send a finished job to its sinks; returns sink -> "ok" | "skipped" | error text.
    An array job's child is never sent: its parent is, once, when the last child ended."""
    if item.get(JobField.PARENT_ID):
        return {}
    info = summary(item)
    failed = info["status"] == JobStatus.FAILED.value
    sinks: list[tuple[str, Callable[[dict[str, Any]], None], bool]] = [
        ("sns", send_sns, failed),
        ("slack", send_slack, failed),
        ("notion", send_notion, True),
    ]
    results: dict[str, str] = {}
    for name, send, wanted in sinks:
        if not wanted:
            results[name] = "skipped"
            continue
        try:
            send(info)
            results[name] = "ok"
        except Exception as exc:  # a sink must never fail the job
            results[name] = f"{type(exc).__name__}: {exc}"
            _aws.log("WARNING", "notify_failed", job_id=info["job_id"], sink=name, error=str(exc))
    return results
