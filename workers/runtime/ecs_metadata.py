"""The ECS task metadata endpoint (v4): which task this container is, without an API call or
an IAM permission. Absent outside ECS; failures return None (the ARN is informative only,
except for scheduled runs, which then fall back to a random job id)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Mapping
from typing import Any

METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"
TASK_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def task_metadata(env: Mapping[str, str], timeout: float = 2.0) -> dict[str, Any] | None:
    """``GET $ECS_CONTAINER_METADATA_URI_V4/task`` (TaskARN, Family, Revision, Cluster...)."""
    base = env.get(METADATA_ENV, "").strip()
    if not base:
        return None
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/task", timeout=timeout) as resp:
            data = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def task_id(task_arn: str) -> str | None:
    """The 32-hex id at the end of a Fargate task ARN (None for anything else)."""
    tail = task_arn.rsplit("/", 1)[-1]
    return tail if TASK_ID_RE.match(tail) else None
