"""What a ``JobStore`` call raises (``jobcontract.store`` re-exports them all)."""

from __future__ import annotations

from jobcontract.dynamo import Item
from jobcontract.table import JobField


class StoreError(Exception):
    """Base class of the store's own errors."""


class TransitionConflict(StoreError):
    """The conditional write failed: ``current`` is the item as it is now (None if absent)."""

    def __init__(self, job_id: str, current: Item | None, wanted: str) -> None:
        self.job_id, self.current, self.wanted = job_id, current, wanted
        now = current.get(JobField.STATUS) if current else "absent"
        attempts = current.get(JobField.ATTEMPTS) if current else None
        super().__init__(f"{job_id}: cannot {wanted} (status {now}, attempts {attempts})")


class InvalidTransition(StoreError, ValueError):
    """The requested transition is not in ``jobcontract.TRANSITIONS``."""


class JobExists(StoreError):
    """``create`` found an item with that job id already: ``existing`` is that item."""

    def __init__(self, job_id: str, existing: Item | None) -> None:
        self.job_id, self.existing = job_id, existing
        super().__init__(f"job {job_id} already exists")


class InvalidCursor(StoreError, ValueError):
    """A list cursor that this store did not issue (tampered, truncated or for another query)."""
