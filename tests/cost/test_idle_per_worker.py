"""Idle cost does not grow with the worker count: each added worker costs at most $0.02/month
idle (ECR storage of its kept images included), as ``batchctl cost`` measures it on the real
program with 3 and with 60 workers (``bench.idle_cost``)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.idle_cost import PER_WORKER_MAX, idle_estimates
from components.offline import PROGRAM
from cost.estimator import Estimate, estimate
from cost.model import QueueSpec, StackCostModel, Usage, WorkerSpec

pytestmark = [
    pytest.mark.xdist_group("pulumi"),
    pytest.mark.skipif(not PROGRAM.exists(), reason="__main__.py has not landed yet"),
]
FEW, MANY = 3, 60


@pytest.fixture(scope="module")
def idle() -> dict[int, Estimate]:
    return idle_estimates("dev", (FEW, MANY))


def test_each_worker_idles_at_two_cents_or_less(idle: dict[int, Estimate]) -> None:
    for est in idle.values():
        per = est.idle_by_worker()
        assert per and max(per.values()) <= PER_WORKER_MAX, per
        assert all(cost > 0 for cost in per.values())  # ECR storage is counted, not ignored


def test_sixty_workers_cost_at_most_two_cents_more_each_than_three(
    idle: dict[int, Estimate],
) -> None:
    few, many = idle[FEW], idle[MANY]
    grown = many.fixed_total - few.fixed_total
    assert 0 < grown <= (MANY - FEW) * PER_WORKER_MAX
    # ... because the stack's shared idle lines (one polled launch queue) do not grow.
    polls = [[ln for ln in est.lines if ln.fixed and ln.service == "SQS"] for est in (few, many)]
    assert len(polls[0]) == len(polls[1]) == 1


def test_the_check_catches_per_worker_polling_or_alarms() -> None:
    """What the old graph cost: a polled queue and a DLQ alarm per worker fail the budget."""
    workers = tuple(WorkerSpec(f"w{i}", 1024, 2048, kept_images=3) for i in range(MANY))
    shared = StackCostModel("dev", workers, queues=(QueueSpec("launch.fifo", 2),))
    per_worker_queues = replace(
        shared, queues=tuple(QueueSpec(f"{w.name}.fifo", None) for w in workers)
    )
    per_worker_alarms = replace(shared, alarms=MANY)
    base = estimate(replace(shared, workers=workers[:FEW]), Usage()).fixed_total
    assert estimate(shared, Usage()).fixed_total - base <= (MANY - FEW) * PER_WORKER_MAX
    for model in (per_worker_queues, per_worker_alarms):
        assert estimate(model, Usage()).fixed_total - base > (MANY - FEW) * PER_WORKER_MAX
