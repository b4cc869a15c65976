"""The exceptions that tell the runtime how a job ended, in a module of their own so the
model client (``model.py``) and the job context (``context.py``) can both raise them."""

from __future__ import annotations

from typing import Literal

StopReason = Literal["interrupted", "timeout", "cancelled", "lost"]


class PermanentError(Exception):
    """A failure no retry can fix (bad input): the job is marked FAILED with this message.
    Raised inside a ``map`` item function it only fails that item."""


class JobFatalError(PermanentError):
    """A permanent failure of the whole job, even when raised inside a ``map`` item: one
    item hitting it means every item would (e.g. the model cannot be called at all), so
    ``map`` stops and the job ends FAILED instead of reporting N failed items."""


class StopRequested(Exception):
    """The job must stop before finishing (SIGTERM, timeout, cancel): raised by
    :meth:`JobContext.map` / :meth:`JobContext.check_stop` (and by the model client when the
    stop flag is set while it waits); the runtime handles it."""

    def __init__(self, reason: StopReason, done: int | None = None, total: int | None = None):
        self.reason, self.done, self.total = reason, done, total
        super().__init__(f"stop requested: {reason}")
