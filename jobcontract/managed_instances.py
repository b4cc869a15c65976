"""What the launcher and the reconciler need to know about workers on ECS Managed Instances.

Pure functions and names only (stdlib): the Lambda zip carries ``jobcontract/``, so the
handlers can call these without new dependencies. Written by ``components.instance_worker``
(registration fields) and read by ``handlers/launcher.py`` / ``handlers/reconciler.py``.

Launch chain
    An ``InstanceWorker`` registers an ordered list of capacity provider strategies
    (``WorkerField.LAUNCH_CHAIN``): per accepted GPU name in order of preference, its Spot
    provider (weighted by the worker's Spot share) and its on-demand provider; then, when Spot
    may fall back, the on-demand providers alone; optionally a CPU Fargate worker last
    (``WorkerField.FALLBACK_WORKER``). ``WorkerField.CAPACITY_STRATEGY`` holds the first
    strategy, so a launcher that knows nothing of the chain still starts the first preference,
    and ``WorkerField.SPOT_FALLBACK`` is false (the Fargate fallback would be wrong here).

Stop reasons
    Managed Instances adds ways for an attempt to end that are not the job's fault: no EC2
    capacity for any accepted type (the task never leaves PROVISIONING), the instance reclaimed
    by Spot or terminated/replaced by ECS. ``classify_stop`` names them; all are retried as
    infrastructure failures, and a capacity failure moves the job to the next strategy.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from jobcontract import WorkerField

COMPUTE_MANAGED_INSTANCES: Final = "managed_instances"
COMPUTE_FARGATE: Final = "fargate"

# --- ECS stop codes (ECS API reference, Task.stopCode; botocore ecs 2014-11-13 TaskStopCode
# enum: TaskFailedToStart, EssentialContainerExited, UserInitiated, ServiceSchedulerInitiated,
# SpotInterruption, TerminationNotice, InfrastructureHealth).
STOP_SPOT_INTERRUPTION: Final = "SpotInterruption"
STOP_TERMINATION_NOTICE: Final = "TerminationNotice"
STOP_INFRASTRUCTURE_HEALTH: Final = "InfrastructureHealth"
STOP_FAILED_TO_START: Final = "TaskFailedToStart"

# Words of ``stoppedReason`` / RunTask ``failures[].reason`` for the same conditions. These are
# free text, not an enum: the markers are lowercase substrings, matched case-insensitively.
# - EC2 has no capacity for the accepted types: RunTask failure reasons and stopped reasons
#   contain "capacity" (e.g. "Capacity is unavailable at this time", EC2's
#   InsufficientInstanceCapacity) or the placement reasons "RESOURCE:GPU" / "RESOURCE:MEMORY"
#   (ECS "API failure reasons": no instance with enough of that resource).
CAPACITY_MARKERS: Final = (
    "capacity",
    "insufficientinstancecapacity",
    "resource:gpu",
    "resource:memory",
    "resource:cpu",
    "no container instances",
)
# - The instance went away under the task: ECS's classic EC2 reason is
#   "Host EC2 (instance i-...) stopped/terminated"; Managed Instances also drains and replaces
#   instances it patches ("instance ... is being drained/replaced"), and Spot reclaims them.
INSTANCE_LOST_MARKERS: Final = (
    "host ec2",
    "instance terminated",
    "instance was terminated",
    "terminated",
    "reclaimed",
    "drain",
    "instance retirement",
)


class StopKind:
    """Error types (``error.type`` in the job) for Managed Instances stops."""

    CAPACITY_UNAVAILABLE: Final = "CapacityUnavailable"  # retry on the next strategy
    INSTANCE_RECLAIMED: Final = "InstanceReclaimed"  # Spot reclaim: retry, same chain
    INSTANCE_TERMINATED: Final = "InstanceTerminated"  # ECS/EC2 took the host away: retry
    STARTUP_TIMEOUT: Final = "StartupTimeout"  # no instance in time: next strategy


RETRYABLE_INFRASTRUCTURE: Final = frozenset(
    {
        StopKind.CAPACITY_UNAVAILABLE,
        StopKind.INSTANCE_RECLAIMED,
        StopKind.INSTANCE_TERMINATED,
        StopKind.STARTUP_TIMEOUT,
    }
)
# The sweep's StopTask reason for a task still waiting for an instance past the worker's
# start-up timeout (the sweep's other reasons start "Timeout" / "Heartbeat" / "TaskLost").
STARTUP_TIMEOUT_PREFIX: Final = "StartupTimeout"


def startup_timeout_reason(waited_seconds: float, limit_seconds: int) -> str:
    """The StopTask reason the sweep gives (``classify_stop`` reads it back)."""
    return (
        f"{STARTUP_TIMEOUT_PREFIX}: no instance after {int(waited_seconds)} s "
        f"(limit {limit_seconds} s)"
    )


# Kinds after which the next launch should use the next strategy of the chain.
ADVANCE_CHAIN: Final = frozenset({StopKind.CAPACITY_UNAVAILABLE, StopKind.STARTUP_TIMEOUT})


@dataclass(frozen=True)
class StopClass:
    kind: str
    message: str
    retryable: bool
    advance_chain: bool


def _has(text: str, markers: Sequence[str]) -> bool:
    low = text.lower()
    return any(m in low for m in markers)


def classify_stop(
    stop_code: str, stopped_reason: str, *, started: bool, exit_code: int | None = None
) -> StopClass | None:
    """The Managed Instances reason an attempt ended, or ``None`` when it is not one
    (the reconciler's own ``classify`` then decides, as for Fargate).

    ``started``: the task reached RUNNING (the event has ``startedAt`` / the job was RUNNING).
    A stop before that with a capacity marker is a capacity failure (try the next strategy);
    a stop after it because the instance went away is an infrastructure failure (same chain).
    """
    reason = stopped_reason or ""
    if reason.startswith(STARTUP_TIMEOUT_PREFIX):  # the sweep's StopTask of a waiting task
        return StopClass(StopKind.STARTUP_TIMEOUT, reason[:1000], True, True)
    if stop_code == STOP_SPOT_INTERRUPTION:
        return StopClass(
            StopKind.INSTANCE_RECLAIMED, "the Spot instance was reclaimed", True, False
        )
    if stop_code in (STOP_TERMINATION_NOTICE, STOP_INFRASTRUCTURE_HEALTH):
        return StopClass(
            StopKind.INSTANCE_TERMINATED,
            f"the instance was terminated or replaced ({stop_code}: {reason})"[:1000],
            True,
            False,
        )
    never_ran = not started and (stop_code == STOP_FAILED_TO_START or exit_code is None)
    if never_ran and _has(reason, CAPACITY_MARKERS):
        return StopClass(
            StopKind.CAPACITY_UNAVAILABLE,
            f"no instance capacity for the accepted types: {reason}"[:1000],
            True,
            True,
        )
    if _has(reason, INSTANCE_LOST_MARKERS) and exit_code is None:
        return StopClass(
            StopKind.INSTANCE_TERMINATED,
            f"the instance went away under the task: {reason}"[:1000],
            True,
            False,
        )
    return None


def is_capacity_failure(message: str) -> bool:
    """RunTask ``failures[].reason`` or error message: no capacity (next strategy)."""
    return _has(message, CAPACITY_MARKERS)


def launch_chain(item: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    """The ordered strategies of a registration item (plain or DynamoDB-typed values),
    falling back to ``[capacity_strategy]`` for a Fargate worker."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("S", "N"):
            return next(iter(value.values()))
        return value

    raw = plain(item.get(WorkerField.LAUNCH_CHAIN))
    if raw:
        chain = json.loads(raw) if isinstance(raw, str) else list(raw)
        return [[dict(s) for s in step] for step in chain]
    single = plain(item.get(WorkerField.CAPACITY_STRATEGY)) or "[]"
    strategy = json.loads(single) if isinstance(single, str) else list(single)
    return [[dict(s) for s in strategy]] if strategy else []


def next_step(chain: Sequence[Sequence[Mapping[str, Any]]], step: int) -> int | None:
    """Index of the strategy after ``step``, or ``None`` when the chain is exhausted (then
    the fallback worker, if any, takes the job)."""
    nxt = step + 1
    return nxt if nxt < len(chain) else None


def startup_deadline_exceeded(
    dispatched_at_epoch: float, now_epoch: float, startup_timeout_seconds: int
) -> bool:
    """True when a DISPATCHED (not yet RUNNING) attempt has waited longer for an instance
    than the worker's start-up timeout. The job's run timeout starts at RUNNING only, so
    waiting for an instance never eats into the job's own time budget."""
    return now_epoch - dispatched_at_epoch > startup_timeout_seconds


# --- backoff of a retry after the whole chain found no capacity ------------------------------
# Retried at once, a job whose every step found no capacity would walk the chain again within
# seconds, and spend its attempts in a burst while the shortage lasts. So the retry waits:
# exponential in the attempt (30 s, 60 s, 120 s, ...), capped at 900 s, with "equal jitter"
# (a uniform draw from the upper half of the step), so jobs that failed together do not come
# back together, and never less than half the step (no spin).
# AWS rules relied on: the launch queue is FIFO, which has no per-message DelaySeconds ("FIFO
# queues don't support per-message delays, only per-queue delays", SQS Developer Guide,
# "Amazon SQS message timers"), so the launcher holds the message back with its visibility
# timeout (ChangeMessageVisibility: 0..43,200 s); 900 s is SQS's documented maximum delay
# (DelaySeconds 0..900), kept as our cap so one back-off costs at most one extra receive.
BACKOFF_BASE_SECONDS: Final = 30
BACKOFF_MAX_SECONDS: Final = 900


def capacity_backoff(attempt: int, draw: Callable[[float, float], float] = random.uniform) -> int:
    """Seconds the retry after ``attempt`` (the run that found no capacity, 1-based) waits:
    ``step = min(900, 30 x 2^(attempt - 1))``, drawn from ``[step / 2, step]``."""
    step = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, min(attempt - 1, 10)))
    return max(1, min(BACKOFF_MAX_SECONDS, round(draw(step / 2, step))))


def retry_wait(not_before: Any, now_epoch: float) -> int:
    """Seconds still to wait before launching (0: go), from the job's ``retry_not_before``;
    never more than ``BACKOFF_MAX_SECONDS`` (a bad or far value cannot hold a job longer)."""
    try:
        left = float(not_before) - now_epoch
    except (TypeError, ValueError):
        return 0
    return int(min(BACKOFF_MAX_SECONDS, max(0.0, left)) + 0.999)
