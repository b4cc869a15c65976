"""Dispatch metrics (issue 10), computed from timelines only: no AWS, no pipeline.

The dispatch benchmarks (``bench/dispatch_drain.py``, ``dispatch_reuse.py``,
``dispatch_mixed.py``) run a burst through the local pipeline, then read two timelines:

- per job (``JobTimeline``): when it was submitted (the item's ``created_at``), when it
  was last DISPATCHED and RUNNING and when it ended (the item's ``timestamps`` map), the
  task that ran it;
- per task (``TaskTimeline``): when the task existed (RunTask seen -> STOPPED, from
  ``LocalFargate.task_timelines()``), its worker and vCPUs.

and compute, with the definitions spelled out here so a reader can check them:

- **makespan**: first submit -> last job end. **ideal**: the sum of the jobs' run times
  (DISPATCHED -> end) divided by the worker's cap. Their ratio is the drain target.
- **wait while free**: for each job, the seconds between its submit and its dispatch during
  which its worker had a free slot. A slot is *free* for worker ``w`` at ``t`` when

  * fewer than ``cap`` slots of ``w`` are held and the stack's vCPU cap (if any) leaves room
    for one more ``w`` task; a slot is held by every task of ``w`` that exists at ``t``
    (created, not yet stopped: what ECS ``ListTasks`` counts, so what any cap check sees)
    and by every job of ``w`` DISPATCHED but whose task does not exist yet; or
  * with reuse on, a task of ``w`` exists and is idle at ``t`` (runs no job): a warm task
    waiting while its worker's job waits.

- **tasks started per job**, **billed task-seconds per job-second**: each task is billed
  ``max(60, startup + lifetime)`` seconds (Fargate: per second from the image pull, one
  minute minimum; the local pipeline has no image pull, so a modelled start-up of 30 s is
  added to each task's lifetime), divided by the jobs' run seconds.
- **hand-off**: per task stop while a job of its worker waited, the seconds until the next
  task of that worker exists (``handoff``): the platform's cost per freed slot, which the
  makespan ratio weighs against the task length (about 1 s locally, 40 s and more on AWS).
- **mixed load**: each worker's vCPU-seconds while every worker still had a backlog,
  against its max-min fair share of the stack vCPU cap; and the most stack vCPUs held at
  once, from an exact sweep over task create/stop events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cost.billing import FARGATE_MINIMUM_SECONDS, MODELLED_STARTUP_SECONDS

_EPS = 1e-9
_INF = float("inf")


def parse_time(value: str | float | None) -> float | None:
    """Seconds since the epoch from an ISO-8601 time (``Z`` or offset) or a number."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class JobTimeline:
    job_id: str
    worker: str
    submitted: float  # created_at
    dispatched: float | None  # last DISPATCHED (None: never dispatched)
    running: float | None
    ended: float | None  # terminal time (None: unfinished)
    status: str = ""
    task_arn: str | None = None

    @property
    def run_seconds(self) -> float:
        """DISPATCHED -> end (0 while unfinished)."""
        if self.dispatched is None or self.ended is None:
            return 0.0
        return max(0.0, self.ended - self.dispatched)

    @classmethod
    def from_item(cls, item: Mapping[str, object]) -> JobTimeline:
        """From a job item as plain values (``timestamps`` a dict STATUS -> ISO time)."""
        stamps = item.get("timestamps") or {}
        assert isinstance(stamps, Mapping)
        ended = None
        for status in ("SUCCEEDED", "FAILED", "CANCELLED"):
            if stamps.get(status):
                ended = parse_time(str(stamps[status]))
        submitted = parse_time(str(item.get("created_at") or stamps.get("QUEUED") or ""))
        assert submitted is not None, f"job {item.get('job_id')} has no created_at"
        task = item.get("task_arn")
        return cls(
            job_id=str(item.get("job_id") or str(item.get("pk", "")).removeprefix("job#")),
            worker=str(item.get("worker") or ""),
            submitted=submitted,
            dispatched=parse_time(_opt(stamps.get("DISPATCHED"))),
            running=parse_time(_opt(stamps.get("RUNNING"))),
            ended=ended,
            status=str(item.get("status") or ""),
            task_arn=str(task) if task else None,
        )


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class TaskTimeline:
    arn: str
    worker: str
    vcpu: float
    created: float  # RunTask seen (ECS counts the task from here)
    stopped: float | None  # None: still running when the benchmark ended
    started: float | None = None  # the process started

    def lifetime(self, until: float) -> float:
        end = self.stopped if self.stopped is not None else until
        return max(0.0, end - self.created)


# --- makespan ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Makespan:
    makespan: float
    ideal: float
    jobs: int
    finished: int

    @property
    def ratio(self) -> float:
        return self.makespan / self.ideal if self.ideal > 0 else float("inf")


def makespan(
    jobs: Sequence[JobTimeline],
    cap: int,
    *,
    now: float | None = None,
    tasks: Sequence[TaskTimeline] | None = None,
    until_freed: bool = False,
) -> Makespan:
    """First submit -> last end (``now`` stands in for the end of unfinished jobs). The ideal
    is the issue's "sum of task time divided by the cap": the tasks' lifetimes when ``tasks``
    are given (what a scheduler that never leaves a slot free would take), else the jobs'
    run times. ``until_freed``: each task counted only until it freed its slot (its last
    job's end, ``freed_at``): a task exiting after that holds no slot, so the exit time
    beside its successor would otherwise lower the ratio."""
    if not jobs:
        return Makespan(0.0, 0.0, 0, 0)
    start = min(j.submitted for j in jobs)
    ends = [j.ended for j in jobs if j.ended is not None]
    finished = len(ends)
    if finished < len(jobs):
        assert now is not None, "unfinished jobs: pass now="
        end = now
    else:
        end = max(ends)
    if tasks:
        freed = freed_at(jobs, tasks) if until_freed else {}
        busy = sum(
            min(t.stopped if t.stopped is not None else end, freed.get(t.arn, _INF)) - t.created
            for t in tasks
        )
    else:
        busy = sum(j.run_seconds for j in jobs)
    return Makespan(end - start, busy / max(1, cap), len(jobs), finished)


@dataclass(frozen=True)
class Handoff:
    """Seconds from a freed slot to the next task of its worker, over the slots freed while
    a job of that worker waited: what the platform adds per freed slot, whatever the task
    length. A slot is freed when the task's last job ended (the task then gives its slot
    back itself, ``jobcontract.dispatch.Dispatch.free_slot``), or at its stop when no job
    of it ended; so the figure covers the whole chain: the task's exit, or the ECS task
    state event and the reconciler, then the drain request, the launcher and RunTask."""

    seconds: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.seconds) / len(self.seconds) if self.seconds else 0.0

    @property
    def p95(self) -> float:
        if not self.seconds:
            return 0.0
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def freed_at(jobs: Sequence[JobTimeline], tasks: Sequence[TaskTimeline]) -> dict[str, float]:
    """Per task ARN, when its last job ended: when the task frees its slot itself."""
    arns = {t.arn for t in tasks}
    last_end: dict[str, float] = {}
    for j in jobs:
        if j.task_arn in arns and j.ended is not None:
            last_end[j.task_arn] = max(last_end.get(j.task_arn, j.ended), j.ended)
    return last_end


def handoff(jobs: Sequence[JobTimeline], tasks: Sequence[TaskTimeline]) -> Handoff:
    """See ``Handoff``: a freed slot counts when a job of the worker was submitted before it
    was freed and dispatched after (it was waiting for that slot or another)."""
    last_end = freed_at(jobs, tasks)
    found: list[float] = []
    for stop in tasks:
        if stop.stopped is None:
            continue
        freed = min(stop.stopped, last_end.get(stop.arn, stop.stopped))
        waiting = any(
            j.worker == stop.worker
            and j.submitted <= freed
            and (j.dispatched is None or j.dispatched >= freed)
            for j in jobs
        )
        later = [
            t.created
            for t in tasks
            if t.worker == stop.worker and t.arn != stop.arn and t.created >= freed
        ]
        if waiting and later:
            found.append(min(later) - freed)
    return Handoff(tuple(found))


def peak_tasks(worker: str, tasks: Sequence[TaskTimeline], *, until: float) -> int:
    """The most tasks of ``worker`` alive at once (RunTask seen -> STOPPED). Above the cap
    when tasks that freed their slot at their last job's end were still exiting."""
    events = sorted(
        [(t.created, 1) for t in tasks if t.worker == worker]
        + [
            (t.stopped if t.stopped is not None else until, -1) for t in tasks if t.worker == worker
        ],
        key=lambda e: (e[0], e[1]),  # a stop before a start at the same instant
    )
    alive = peak = 0
    for _, step in events:
        alive += step
        peak = max(peak, alive)
    return peak


# --- waiting while a slot is free ----------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    start: float
    end: float


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for iv in sorted(intervals, key=lambda i: i.start):
        if iv.end <= iv.start:
            continue
        if out and iv.start <= out[-1].end:
            out[-1] = Interval(out[-1].start, max(out[-1].end, iv.end))
        else:
            out.append(iv)
    return out


def _overlap(a: Sequence[Interval], start: float, end: float) -> float:
    return sum(max(0.0, min(iv.end, end) - max(iv.start, start)) for iv in a)


@dataclass(frozen=True)
class Slots:
    """How a worker's slots are limited: its cap (tasks) and the stack's vCPU cap."""

    caps: Mapping[str, int]  # worker -> max tasks at once
    vcpu: Mapping[str, float]  # worker -> vCPUs of one task
    stack_vcpu_limit: float = 0.0  # 0 = none
    reuse: bool = False  # an idle task of the worker counts as a free slot


def free_intervals(
    worker: str,
    jobs: Sequence[JobTimeline],
    tasks: Sequence[TaskTimeline],
    slots: Slots,
    *,
    until: float,
) -> list[Interval]:
    """The times before ``until`` at which ``worker`` had a free slot (see the module doc)."""
    created = {t.arn: t.created for t in tasks}
    events: list[tuple[float, int, str, float]] = []  # (time, +1/-1, worker, vcpu)
    for t in tasks:
        events.append((t.created, 1, t.worker, t.vcpu))
        events.append((t.stopped if t.stopped is not None else until, -1, t.worker, t.vcpu))
    for j in jobs:
        if j.dispatched is None:
            continue
        # Dispatched, its task not seen yet: the job holds a slot (and its vCPUs).
        end = created.get(j.task_arn or "", j.ended if j.ended is not None else until)
        end = min(end, j.ended if j.ended is not None else until)
        if end > j.dispatched:
            v = slots.vcpu.get(j.worker, 0.0)
            events.append((j.dispatched, 1, j.worker, v))
            events.append((end, -1, j.worker, v))
    events.sort(key=lambda e: (e[0], e[1]))  # releases first at equal times
    cap = slots.caps[worker]
    need = slots.vcpu.get(worker, 0.0)
    held = 0
    stack = 0.0
    free: list[Interval] = []
    t0 = min((e[0] for e in events), default=until)
    prev = t0
    for time, sign, w, v in events:
        if time > prev and _is_free(held, stack, cap, need, slots.stack_vcpu_limit):
            free.append(Interval(prev, min(time, until)))
        prev = max(prev, time)
        stack += sign * v
        if w == worker:
            held += sign
    if until > prev and _is_free(held, stack, cap, need, slots.stack_vcpu_limit):
        free.append(Interval(prev, until))
    # Before the first event nothing is held: free.
    free.append(Interval(float("-inf"), t0))
    return _merge(free)


def free_slot_stretches(
    worker: str,
    jobs: Sequence[JobTimeline],
    tasks: Sequence[TaskTimeline],
    slots: Slots,
    *,
    until: float,
) -> list[list[Interval]]:
    """The free intervals per slot: the pool's (below the cap) as one list and, with reuse,
    each idle warm task's as its own. Two tasks' back-to-back gaps of a fraction of a
    second are not one slot left unused for their sum, so they are never merged."""
    pool = free_intervals(worker, jobs, tasks, slots, until=until)
    if not slots.reuse:
        return [pool]
    per_task: dict[str, list[Interval]] = {}
    for arn, iv in idle_task_intervals(worker, jobs, tasks, until=until, with_arn=True):
        per_task.setdefault(arn, []).append(iv)
    return [pool, *(_merge(ivs) for ivs in per_task.values())]


def _is_free(held: int, stack: float, cap: int, need: float, limit: float) -> bool:
    if held >= cap:
        return False
    return not (limit > 0 and stack + need > limit + _EPS)


def idle_task_intervals(
    worker: str,
    jobs: Sequence[JobTimeline],
    tasks: Sequence[TaskTimeline],
    *,
    until: float,
    with_arn: bool = False,
) -> list[Any]:
    """When a task of ``worker`` existed and ran no job (idle-waiting, warm); with
    ``with_arn`` as ``(task arn, interval)`` pairs."""
    busy: dict[str, list[Interval]] = {}
    for j in jobs:
        if j.task_arn and j.dispatched is not None:
            end = j.ended if j.ended is not None else until
            busy.setdefault(j.task_arn, []).append(Interval(j.dispatched, end))
    idle: list[tuple[str, Interval]] = []
    for t in tasks:
        if t.worker != worker:
            continue
        end = t.stopped if t.stopped is not None else until
        cursor = t.created
        for iv in _merge(busy.get(t.arn, [])):
            if iv.start > cursor:
                idle.append((t.arn, Interval(cursor, min(iv.start, end))))
            cursor = max(cursor, iv.end)
        # A task that never ran a job is starting, not idle.
        if busy.get(t.arn) and end > cursor:
            idle.append((t.arn, Interval(cursor, end)))
    return idle if with_arn else [iv for _, iv in idle]


@dataclass(frozen=True)
class WaitWhileFree:
    """Per job: ``per_job`` sums every moment it waited while a slot was free (it grows with
    the job's place in a long queue: each slot handover adds its dispatch latency);
    ``stretch`` is the longest single such moment: how long a free slot stayed unused while
    this job waited ("starts within a few seconds of a slot freeing")."""

    per_job: Mapping[str, float]
    stretch: Mapping[str, float] = field(default_factory=dict)

    @property
    def max(self) -> float:
        return max(self.per_job.values(), default=0.0)

    @property
    def max_stretch(self) -> float:
        return max(self.stretch.values(), default=0.0)

    @property
    def worst(self) -> str | None:
        return max(self.per_job, key=lambda j: self.per_job[j]) if self.per_job else None


def wait_while_free(
    jobs: Sequence[JobTimeline],
    tasks: Sequence[TaskTimeline],
    slots: Slots,
    *,
    now: float | None = None,
) -> WaitWhileFree:
    """Per job, seconds between submit and dispatch (``now`` if never dispatched) during
    which its worker had a free slot."""
    until = now if now is not None else max(_last_time(jobs, tasks), 0.0)
    per_slot = {w: free_slot_stretches(w, jobs, tasks, slots, until=until) for w in slots.caps}
    free = {w: _merge([iv for ivs in lists for iv in ivs]) for w, lists in per_slot.items()}
    per_job: dict[str, float] = {}
    stretch: dict[str, float] = {}
    for j in jobs:
        end = j.dispatched if j.dispatched is not None else until
        per_job[j.job_id] = _overlap(free[j.worker], j.submitted, end)
        stretch[j.job_id] = max(
            (_overlap([iv], j.submitted, end) for ivs in per_slot[j.worker] for iv in ivs),
            default=0.0,
        )
    return WaitWhileFree(per_job, stretch)


def _last_time(jobs: Sequence[JobTimeline], tasks: Sequence[TaskTimeline]) -> float:
    times = [t for j in jobs for t in (j.submitted, j.dispatched, j.ended) if t is not None]
    times += [t for task in tasks for t in (task.created, task.stopped) if t is not None]
    return max(times, default=0.0)


# --- reuse: tasks per job, billed seconds --------------------------------------------------
def billed_seconds(
    lifetime: float,
    startup: float = MODELLED_STARTUP_SECONDS,
    minimum: float = FARGATE_MINIMUM_SECONDS,
) -> float:
    """Fargate's rule for one task: billed from the image pull (``startup`` before the
    process) to the stop, at least one minute."""
    return max(minimum, startup + max(0.0, lifetime))


@dataclass(frozen=True)
class Reuse:
    tasks: int
    jobs: int
    billed_task_seconds: float
    job_seconds: float

    @property
    def tasks_per_job(self) -> float:
        return self.tasks / self.jobs if self.jobs else float("inf")

    @property
    def billed_per_job_second(self) -> float:
        return self.billed_task_seconds / self.job_seconds if self.job_seconds else float("inf")


def reuse(
    jobs: Sequence[JobTimeline],
    tasks: Sequence[TaskTimeline],
    *,
    startup: float = MODELLED_STARTUP_SECONDS,
    now: float | None = None,
) -> Reuse:
    until = now if now is not None else _last_time(jobs, tasks)
    return Reuse(
        tasks=len(tasks),
        jobs=len(jobs),
        billed_task_seconds=sum(billed_seconds(t.lifetime(until), startup) for t in tasks),
        job_seconds=sum(j.run_seconds for j in jobs),
    )


# --- mixed load: shares and the stack cap --------------------------------------------------
def max_concurrent_vcpu(tasks: Sequence[TaskTimeline], *, until: float | None = None) -> float:
    """The most vCPUs held at once by ``tasks`` (exact: a sweep over create/stop events;
    a task stopping at the instant another is created does not overlap it)."""
    end_default = until if until is not None else _last_time((), tasks)
    events = [(t.created, t.vcpu) for t in tasks]
    events += [(t.stopped if t.stopped is not None else end_default, -t.vcpu) for t in tasks]
    events.sort(key=lambda e: (e[0], e[1]))
    level = peak = 0.0
    for _, dv in events:
        level += dv
        peak = max(peak, level)
    return round(peak, 6)


def fair_shares(demand: Mapping[str, float], capacity: float) -> dict[str, float]:
    """Max-min fair split of ``capacity`` among ``demand`` (water filling): each gets
    min(its demand, a common level), the level set so the total is the capacity."""
    remaining = dict(demand)
    share = dict.fromkeys(demand, 0.0)
    left = capacity if capacity > 0 else sum(demand.values())
    while remaining and left > _EPS:
        level = left / len(remaining)
        small = {w: d for w, d in remaining.items() if d <= level + _EPS}
        if not small:
            for w in remaining:
                share[w] = level
            break
        for w, d in small.items():
            share[w] = d
            left -= d
            del remaining[w]
    return share


@dataclass(frozen=True)
class Mixed:
    window: Interval  # every worker had a backlog
    vcpu_seconds: Mapping[str, float]  # per worker, inside the window
    fair_vcpu: Mapping[str, float]  # per worker, the max-min fair vCPUs
    peak_vcpu: float
    stack_vcpu_limit: float
    per_worker_peak: Mapping[str, float] = field(default_factory=dict)

    @property
    def share_of_fair(self) -> dict[str, float]:
        """Each worker's mean vCPUs in the window over its fair vCPUs (1.0 = its share)."""
        span = self.window.end - self.window.start
        if span <= 0:
            return dict.fromkeys(self.fair_vcpu, 0.0)
        return {
            w: (self.vcpu_seconds.get(w, 0.0) / span) / f if f > 0 else 0.0
            for w, f in self.fair_vcpu.items()
        }

    @property
    def min_share(self) -> float:
        return min(self.share_of_fair.values(), default=0.0)


def mixed(
    jobs: Sequence[JobTimeline],
    tasks: Sequence[TaskTimeline],
    slots: Slots,
    *,
    now: float | None = None,
) -> Mixed:
    """Shares over the window from the first submit to the moment the first worker's
    backlog ran dry (its last job dispatched): until then every worker wanted more."""
    until = now if now is not None else _last_time(jobs, tasks)
    workers = sorted(slots.caps)
    start = min(j.submitted for j in jobs)
    dry = []
    for w in workers:
        mine = [j for j in jobs if j.worker == w]
        times = [j.dispatched for j in mine]
        dry.append(until if not times or None in times else max(t for t in times if t is not None))
    window = Interval(start, min(dry))
    seconds = {w: 0.0 for w in workers}
    for t in tasks:
        end = t.stopped if t.stopped is not None else until
        seconds[t.worker] = seconds.get(t.worker, 0.0) + t.vcpu * max(
            0.0, min(end, window.end) - max(t.created, window.start)
        )
    demand = {w: slots.caps[w] * slots.vcpu[w] for w in workers}
    return Mixed(
        window=window,
        vcpu_seconds=seconds,
        fair_vcpu=fair_shares(demand, slots.stack_vcpu_limit),
        peak_vcpu=max_concurrent_vcpu(tasks, until=until),
        stack_vcpu_limit=slots.stack_vcpu_limit,
        per_worker_peak={
            w: max_concurrent_vcpu([t for t in tasks if t.worker == w], until=until)
            for w in workers
        },
    )
