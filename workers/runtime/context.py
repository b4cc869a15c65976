"""What a worker handler sees: :class:`JobContext` (job, input, progress, ``map``, stop flag)
and the exceptions that tell the runtime how a job ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from workers.runtime.checkpoint import Checkpoint
from workers.runtime.errors import JobFatalError, PermanentError, StopReason, StopRequested
from workers.runtime.logs import JsonLogger
from workers.runtime.model import ModelClient

T = TypeVar("T")
R = TypeVar("R")

# The exceptions live in errors.py (the model client raises them too); they are re-exported
# here, where handlers have always imported them from.
__all__ = [
    "ItemResult",
    "JobContext",
    "JobFatalError",
    "PermanentError",
    "ProgressTracker",
    "StopFlag",
    "StopReason",
    "StopRequested",
    "error_summary",
]
MAX_ERROR_MESSAGE = 500


def error_summary(exc: BaseException) -> dict[str, str]:
    """The ``{"type", "message"}`` shape stored on items and per-item results."""
    return {"type": type(exc).__name__, "message": str(exc)[:MAX_ERROR_MESSAGE]}


class StopFlag:
    """A once-set, thread-safe flag that remembers why the job has to stop (first reason wins)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason: StopReason | None = None
        self._lock = threading.Lock()

    def set(self, reason: StopReason) -> bool:
        """Set the flag; True when this call was the first."""
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason
        self._event.set()
        return True

    @property
    def reason(self) -> StopReason | None:
        return self._reason

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


class ProgressTracker:
    """Holds the latest ``{"done", "total"}`` and writes it at most every ``min_interval``
    seconds (the heartbeat also carries it): a 10,000-item batch must not mean 10,000 writes."""

    def __init__(self, write: Callable[[dict[str, int]], None], min_interval: float = 5.0) -> None:
        self._write = write
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._current: dict[str, int] | None = None
        self._last_written: dict[str, int] | None = None
        self._last_write_at = float("-inf")

    def snapshot(self) -> dict[str, int] | None:
        with self._lock:
            return dict(self._current) if self._current is not None else None

    def update(self, done: int, total: int) -> None:
        with self._lock:
            self._current = {"done": max(0, int(done)), "total": max(0, int(total))}
            due = time.monotonic() - self._last_write_at >= self._min_interval
        if due:
            self.flush()

    def mark_written(self, progress: Mapping[str, int] | None) -> None:
        """Record that ``progress`` reached the table by another write (heartbeat, final)."""
        with self._lock:
            self._last_written = dict(progress) if progress is not None else None
            self._last_write_at = time.monotonic()

    def flush(self) -> None:
        """Write the current progress now unless it is already stored."""
        with self._lock:
            current = dict(self._current) if self._current is not None else None
            if current is None or current == self._last_written:
                return
            self._last_write_at = time.monotonic()
        self._write(current)
        self.mark_written(current)


@dataclass(frozen=True)
class ItemResult(Generic[R]):
    """One item's outcome from :meth:`JobContext.map`: a value or an error, never both."""

    index: int
    value: R | None = None
    error: dict[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class JobContext:
    """The job being run, as handed to a ``@worker`` handler."""

    def __init__(
        self,
        *,
        job: Mapping[str, Any],
        worker: str,
        attempt: int,
        input: Mapping[str, Any],
        logger: JsonLogger,
        stop: StopFlag,
        progress: ProgressTracker,
        model: ModelClient | None = None,
        read_object: Callable[[str], bytes] | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.job: Mapping[str, Any] = job
        self.job_id: str = str(job["job_id"])
        self.worker = worker
        self.attempt = attempt
        self.input: Mapping[str, Any] = input
        self.model = model
        self._logger = logger
        self._stop = stop
        self._progress = progress
        self._read_object = read_object
        self._checkpoint = checkpoint
        self._map_calls = 0
        self._items_lock = threading.Lock()
        self._items: dict[str, int] | None = None  # None until a map call finished

    # --- stop -------------------------------------------------------------------------
    @property
    def should_stop(self) -> bool:
        """True once SIGTERM, the timeout or a cancel arrived: take no new work."""
        return self._stop.is_set()

    @property
    def stop_reason(self) -> StopReason | None:
        return self._stop.reason

    def check_stop(self, done: int | None = None, total: int | None = None) -> None:
        """Raise :class:`StopRequested` when the job must stop (for handlers with own loops)."""
        reason = self._stop.reason
        if reason is not None:
            raise StopRequested(reason, done, total)

    # --- progress and logs ------------------------------------------------------------
    def progress(self, done: int, total: int) -> None:
        """Report progress; stored throttled (and with every heartbeat)."""
        self._progress.update(done, total)

    def log(self, event: str, **fields: Any) -> None:
        self._logger.info(event, **fields)

    def read_object(self, key: str) -> bytes:
        """Bytes of ``key`` in the results bucket (e.g. an uploaded image)."""
        if self._read_object is None:
            raise PermanentError("no object store configured")
        return self._read_object(key)

    # --- batches ----------------------------------------------------------------------
    def item_counts(self) -> dict[str, int] | None:
        """``{"total", "succeeded", "failed"}`` over every finished :meth:`map` call (items
        an earlier attempt finished included), or None when the handler mapped nothing. The
        runtime records it with the job's end and decides from it whether the job failed
        (``jobcontract.items_failed_error``)."""
        with self._items_lock:
            return dict(self._items) if self._items is not None else None

    def _count_items(self, results: list[ItemResult[Any]]) -> None:
        failed = sum(1 for r in results if not r.ok)
        with self._items_lock:
            counts = self._items or {"total": 0, "succeeded": 0, "failed": 0}
            counts["total"] += len(results)
            counts["succeeded"] += len(results) - failed
            counts["failed"] += failed
            self._items = counts

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, concurrency: int = 4
    ) -> list[ItemResult[R]]:
        """Apply ``fn`` to every item, at most ``concurrency`` at once, in input order.

        An exception in one item becomes that item's ``error``; the batch goes on, and the
        job's end counts it (:meth:`item_counts`): more failed items than the job's
        ``max_failed_item_share`` tolerates (default none) end the job FAILED. When the
        job must stop, no new item starts, the running ones finish, progress is stored and
        :class:`StopRequested` is raised (an item that itself raised ``StopRequested``, e.g.
        a model call abandoned during its backoff, is not done: a retry runs it again). A
        :class:`JobFatalError` from an item is not an item error: no new item starts, the
        running ones finish and it is raised, so the job fails once instead of per item.
        Items an interrupted earlier attempt finished (same map call, same items: see
        ``checkpoint.py``) are not run again.
        """
        seq = list(items)
        total = len(seq)
        limit = max(1, int(concurrency))
        call, self._map_calls = self._map_calls, self._map_calls + 1
        results: list[ItemResult[R] | None] = self._restored_results(call, seq)
        todo = [i for i in range(total) if results[i] is None]
        done = total - len(todo)
        if done:
            self._logger.info("map_resumed", call=call, restored=done, total=total)
        self.progress(done, total)
        done, fatal = self._run_items(fn, seq, todo, results, limit, done)
        if fatal is not None:
            self._logger.error("map_failed", done=done, total=total, **error_summary(fatal))
            raise fatal
        if self._checkpoint is not None:
            self._checkpoint.record(
                call, seq, ((r.index, r.value, r.error) for r in results if r is not None)
            )
        if done < total:
            self._progress.flush()
            reason = self._stop.reason or "interrupted"
            self._logger.warning("map_stopped", reason=reason, done=done, total=total)
            raise StopRequested(reason, done, total)
        outcomes = [r for r in results if r is not None]
        self._count_items(outcomes)
        return outcomes

    def _restored_results(self, call: int, seq: list[T]) -> list[ItemResult[R] | None]:
        """One slot per item: the outcome an interrupted earlier attempt checkpointed for
        this map call, or None (to run)."""
        total = len(seq)
        results: list[ItemResult[R] | None] = [None] * total
        if self._checkpoint is not None:
            for index, (value, error) in self._checkpoint.restored(call, seq).items():
                if 0 <= index < total:
                    results[index] = ItemResult(index=index, value=value, error=error)
        return results

    def _run_items(
        self,
        fn: Callable[[T], R],
        seq: list[T],
        todo: list[int],
        results: list[ItemResult[R] | None],
        limit: int,
        done: int,
    ) -> tuple[int, JobFatalError | None]:
        """Run the ``todo`` items, at most ``limit`` at once, into ``results``; no new item
        starts once the job must stop or an item raised ``JobFatalError``. The count done
        (progress is written as items end) and that error, if any."""
        total = len(seq)
        with ThreadPoolExecutor(max_workers=min(limit, max(len(todo), 1))) as pool:
            pending: dict[Future[ItemResult[R]], int] = {}
            queue = iter(todo)
            next_index = next(queue, None)
            fatal: JobFatalError | None = None
            while next_index is not None or pending:
                while (
                    next_index is not None
                    and len(pending) < limit
                    and not self.should_stop
                    and fatal is None
                ):
                    future = pool.submit(self._run_item, fn, seq[next_index], next_index)
                    pending[future] = next_index
                    next_index = next(queue, None)
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = pending.pop(future)
                    try:
                        results[index] = future.result()
                    except StopRequested:
                        continue  # not finished: left for the retry
                    except JobFatalError as exc:
                        fatal = fatal or exc
                        continue
                    done += 1
                self.progress(done, total)
        return done, fatal

    def _run_item(self, fn: Callable[[T], R], item: T, index: int) -> ItemResult[R]:
        try:
            return ItemResult(index=index, value=fn(item))
        except (StopRequested, JobFatalError):
            raise  # not this item's outcome: map() handles them for the whole batch
        except Exception as exc:  # one bad item must not fail the batch
            summary = error_summary(exc)
            self._logger.warning("item_failed", index=index, **summary)
            return ItemResult(index=index, error=summary)
