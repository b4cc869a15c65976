"""The ECS task metadata endpoint (v4): which task this container is, without an API call or
an IAM permission. Absent outside ECS; failures return None (the ARN is informative only,
except for scheduled runs, whose job id derives from it: ``jobcontract.scheduled_job_id``)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from typing import Any

METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"


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
