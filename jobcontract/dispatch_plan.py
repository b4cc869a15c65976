"""The dispatch plan (pure, ``jobcontract.dispatch``): which waiting workers get the free
slots, max-min fair in cpu, within each worker's cap and the stack's vCPU budget, and which
workers should yield a contended budget."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobcontract.dispatch_keys import (
    F,
)


@dataclass
class WorkerLoad:
    """One worker's counts (``dispatch#<worker>``) and the limits the plan needs."""

    name: str
    cap: int
    task_cpu: int
    tasks: int = 0
    cpu: int = 0
    waiting: int = 0
    idle: int = 0
    yielding: bool = False

    @classmethod
    def of(cls, name: str, cap: int, task_cpu: int, item: Mapping[str, Any] | None) -> WorkerLoad:
        item = item or {}
        return cls(
            name,
            cap,
            task_cpu,
            tasks=max(0, int(item.get(F.TASKS, 0) or 0)),
            cpu=max(0, int(item.get(F.CPU, 0) or 0)),
            waiting=max(0, int(item.get(F.WAITING, 0) or 0)),
            idle=max(0, int(item.get(F.IDLE, 0) or 0)),
            yielding=bool(item.get(F.YIELD)),
        )


def fits(used: int, cpu: int, budget: int | None) -> bool:
    """Whether a task of ``cpu`` units may start with ``used`` held. A task bigger than the
    whole budget still runs, alone (else it could never run)."""
    return budget is None or used + cpu <= budget or used == 0


@dataclass
class Plan:
    """Which workers get a slot, in order (one entry per slot), and which should yield."""

    wake: list[str] = field(default_factory=list)
    yielding: set[str] = field(default_factory=set)


def plan(loads: Iterable[WorkerLoad], used: int, budget: int | None) -> Plan:
    """Hand the free slots to waiting workers, least cpu in use first (ties: fewer tasks,
    then name), each within its cap and the stack budget. A worker with an idle task gets
    nothing here: that task takes its jobs. Then mark the workers that hold more than a
    budget-starved worker would after one more task, so their tasks stop taking new jobs
    and the budget flows to the starved one (reuse must not keep a share forever)."""
    table = {w.name: WorkerLoad(**vars(w)) for w in loads}
    result = Plan()
    starved: dict[str, WorkerLoad] = {}
    while True:
        ready = [
            w
            for w in table.values()
            if w.waiting > 0 and w.idle == 0 and w.tasks < w.cap and w.name not in starved
        ]
        if not ready:
            break
        pick = min(ready, key=lambda w: (w.cpu, w.tasks, w.name))
        if not fits(used, pick.task_cpu, budget):
            starved[pick.name] = pick  # its next task does not fit: a smaller one may
            continue
        result.wake.append(pick.name)
        pick.waiting -= 1
        pick.tasks += 1
        pick.cpu += pick.task_cpu
        used += pick.task_cpu
    for hungry in starved.values():
        for w in table.values():
            if w.name != hungry.name and w.cpu > hungry.cpu + hungry.task_cpu:
                result.yielding.add(w.name)
    return result
