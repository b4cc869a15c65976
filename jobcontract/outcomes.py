"""How an attempt ends, as the runtime and the reconciler both read it: the worker's exit codes
(``WorkerExit``), the job ``error`` of a call IAM denied, and the item-failure rule (how many
of a job's ``ctx.map`` items may fail with the job still SUCCEEDED)."""

from __future__ import annotations

from typing import Final


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
