"""Warm reuse and the task's signals: after a job ends cleanly, a task may take its worker's
next parked jobs (``jobcontract.dispatch.wait_for_next``); SIGTERM/SIGINT stop every job of
the task, a cancel only the job running now. When the task runs no further job, it gives
its worker's slot back before it exits and asks for a drain (``free_slot_at_exit``)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from jobcontract import Env
from jobcontract.dispatch import Claimed, Dispatch, drain_message, slot_key, wait_for_next
from jobcontract.store import JobStore
from workers.runtime import exit_codes
from workers.runtime.context import StopFlag
from workers.runtime.ecs_metadata import task_metadata
from workers.runtime.logs import JsonLogger
from workers.runtime.settings import Settings

# Exits after which a task may take its worker's next job (warm reuse): the job ended and was
# recorded. After a crash, an interruption or a timeout the task exits, and the reconciler
# settles the job from the exit code.
REUSABLE_EXITS = frozenset({exit_codes.OK, exit_codes.FAILED, exit_codes.NOT_RUNNABLE})
# A reused task runs at most this many jobs: it bounds the lease's record of finished jobs
# (read in one BatchGetItem when the task stops) and how long one task lives.
MAX_JOBS_PER_TASK = 100


class TaskSignals:
    """SIGTERM for the whole task, and the stop flag of the job running now: each reused job
    gets a fresh flag (a cancel stops that job only), a SIGTERM stops every job."""

    def __init__(self) -> None:
        self.terminating = threading.Event()
        self.current = StopFlag()

    def interrupt(self) -> bool:
        self.terminating.set()
        return self.current.set("interrupted")

    def next_job(self) -> StopFlag:
        self.current = StopFlag()
        if self.terminating.is_set():
            self.current.set("interrupted")
        return self.current


@dataclass
class ReuseEnd:
    """How the task's reuse ended: ``idle`` when its idle window closed with no job parked
    (its slot is then of no use to a waiting job: no early release, no drain)."""

    idle: bool = False


def reused_jobs(
    settings: Settings,
    store: JobStore,
    env: Mapping[str, str],
    logger: JsonLogger,
    signals: TaskSignals,
    codes: list[int],
    ended_array_child: Callable[[], bool] = lambda: False,
    end: ReuseEnd | None = None,
) -> Iterator[Claimed]:
    """The next jobs this task takes (``jobcontract.dispatch.wait_for_next``), while the last
    one ended cleanly, reuse is on and no SIGTERM came. Any AWS trouble ends the reuse: the
    task exits and its STOPPED event releases its slot.

    After an array job's child the task exits too: the reconciler counts a child on its
    parent when the child's task stops (``handlers.arrays.record_end``), so a task kept warm
    would hold the parent's end back by its idle window, or by every job it took next."""
    if settings.reuse_idle_seconds <= 0 or settings.job_id is None or settings.attempt is None:
        return
    lease = slot_key(settings.job_id, settings.attempt)
    meta = task_metadata(env)
    task_arn = settings.task_arn or (str(meta["TaskARN"]) if meta else None)
    dispatch = Dispatch(store)
    finished = settings.job_id
    for _ in range(MAX_JOBS_PER_TASK - 1):
        if codes[-1] not in REUSABLE_EXITS or signals.terminating.is_set():
            return
        if ended_array_child():
            logger.info("reuse_ends_after_array_child", job_id=finished)
            return
        try:
            claimed = wait_for_next(
                dispatch,
                settings.worker,
                lease,
                task_arn,
                idle_seconds=settings.reuse_idle_seconds,
                finished=finished,
                stopped=signals.terminating.is_set,
            )
        except Exception as exc:  # AWS trouble: end the task, nothing is lost
            logger.warning("reuse_ended", error=str(exc)[:500])
            return
        if claimed is None:
            logger.info("reuse_idle_exit", idle_seconds=settings.reuse_idle_seconds)
            if end is not None:
                end.idle = True
            return
        # No job id here: `batchctl logs JOB` shows exactly that job's lines (its own run
        # logs name this task: job_running carries the task ARN).
        logger.info("reuse_next_job", jobs_run=len(codes))
        yield claimed
        finished = claimed.job_id


def free_slot_at_exit(
    settings: Settings,
    store: JobStore,
    env: Mapping[str, str],
    logger: JsonLogger,
    last: tuple[str, int],
    code: int,
    sqs: Callable[[], Any] | None = None,
) -> bool:
    """The task runs no further job: give its worker's slot back now
    (``jobcontract.dispatch.Dispatch.free_slot``), and, while a job of its worker is parked,
    send the launcher a drain request, so the next task starts while this one exits instead
    of after its STOPPED event reached the reconciler. Only after an exit that means the last
    job's end is recorded (``REUSABLE_EXITS``; after a crash or a timeout the handler may
    still run); not for a job handed over from another worker (its lease is that worker's).
    Best effort: anything failing leaves the slot to the STOPPED event, as before. True when
    the slot was freed here."""
    url = env.get(Env.LAUNCH_QUEUE_URL, "").strip()
    if (
        not url
        or code not in REUSABLE_EXITS
        or settings.job_id is None
        or settings.attempt is None
        or env.get(Env.HANDED_FROM, "").strip()
    ):
        return False
    dispatch = Dispatch(store)
    try:
        worker = dispatch.free_slot(slot_key(settings.job_id, settings.attempt), *last)
        if worker is None:
            return False
        drain = dispatch.waiting(worker) > 0
        if drain:
            client = sqs() if sqs is not None else _sqs_client()
            client.send_message(QueueUrl=url, **drain_message())
    except Exception as exc:  # AWS trouble: the STOPPED event releases and drains
        logger.warning("slot_free_failed", error=str(exc)[:500])
        return False
    logger.info("slot_freed", drain=drain)
    return True


def _sqs_client() -> Any:
    import boto3  # only when a drain is sent: most exits send none

    return boto3.client("sqs")


def install_signal_handlers(signals: TaskSignals, logger: JsonLogger) -> Callable[[], None] | None:
    """SIGTERM/SIGINT set the stop flag instead of killing the process (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signals.interrupt():
            logger.warning("signal_received", signal=signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
