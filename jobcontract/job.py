"""``Job``: the typed view of a job row, with the one default of each field.

A job row is written by several actors (API, launcher, reconciler, sweep, worker runtime) and
read by more; a field a row lacks (an older row, a hand-written one, a row of another kind of
job) must mean the same to every reader. So every reader that decides on a defaulted field
reads it through ``Job.from_item``, never with its own ``item.get(..., default)``:

- ``attempts``: 0 (no run started yet);
- ``max_attempts``: ``DEFAULT_MAX_ATTEMPTS`` (3), the worker registration's and the
  component's default too (``jobcontract.registration``, ``FargateWorkerArgs.max_attempts``);
- ``source``: ``"api"``;
- ``cancel_requested``: False;
- ``max_failed_item_share``: ``DEFAULT_MAX_FAILED_ITEM_SHARE`` (0), through
  ``jobcontract.max_failed_item_share`` (an out-of-range value counts as absent too).

Standard library only (this module is in every Lambda zip and in the worker image).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobcontract import (
    DEFAULT_MAX_ATTEMPTS,
    JobField,
    JobStatus,
    max_failed_item_share,
)

DEFAULT_SOURCE = "api"


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool) or value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _optional_int(value: Any) -> int | None:
    return None if value is None or isinstance(value, bool) else _int(value, 0)


@dataclass(frozen=True, kw_only=True)
class Job:
    """What a job row says, each absent field at its one default."""

    job_id: str
    worker: str
    status: JobStatus
    attempts: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    source: str = DEFAULT_SOURCE
    cancel_requested: bool = False
    max_failed_item_share: float | int = 0
    task_arn: str | None = None
    cpu: int | None = None
    memory: int | None = None
    timeout_seconds: int | None = None
    parent_id: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Job:
        """The view of a job row (plain values, as ``JobStore`` returns them)."""
        max_attempts = _int(item.get(JobField.MAX_ATTEMPTS), DEFAULT_MAX_ATTEMPTS)
        task_arn, parent = item.get(JobField.TASK_ARN), item.get(JobField.PARENT_ID)
        return cls(
            job_id=str(item[JobField.JOB_ID]),
            worker=str(item[JobField.WORKER]),
            status=JobStatus(item[JobField.STATUS]),
            attempts=_int(item.get(JobField.ATTEMPTS), 0),
            max_attempts=max_attempts if max_attempts >= 1 else DEFAULT_MAX_ATTEMPTS,
            source=str(item.get(JobField.SOURCE) or DEFAULT_SOURCE),
            cancel_requested=bool(item.get(JobField.CANCEL_REQUESTED, False)),
            max_failed_item_share=max_failed_item_share(item.get(JobField.MAX_FAILED_ITEM_SHARE)),
            task_arn=str(task_arn) if task_arn else None,
            cpu=_optional_int(item.get(JobField.CPU)),
            memory=_optional_int(item.get(JobField.MEMORY)),
            timeout_seconds=_optional_int(item.get(JobField.TIMEOUT_SECONDS)),
            parent_id=str(parent) if parent else None,
        )

    @property
    def retries_left(self) -> bool:
        """Whether another run may start after the current one (``attempts`` runs started)."""
        return self.attempts < self.max_attempts
