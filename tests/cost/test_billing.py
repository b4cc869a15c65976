"""cost.billing: Fargate's rule with warm reuse, and the estimator lines that use it."""

from __future__ import annotations

import pytest

from cost.billing import (
    billed_seconds_per_job,
    billed_task_seconds,
    public_ipv4_hours_per_job,
    public_ipv4_hours_per_task,
    task_lifetime_seconds,
)
from cost.estimator import estimate
from cost.model import LambdaSpec, StackCostModel, Usage, WorkerSpec, WorkerUsage


def test_one_job_per_task_without_reuse() -> None:
    # 20-s job: 30 + 20 = 50 s of lifetime, billed the one-minute minimum.
    assert task_lifetime_seconds(1, 20) == 50
    assert billed_task_seconds(1, 20) == 60
    assert billed_seconds_per_job(1, 20) == 60
    # Reuse off ignores jobs_per_task: a task runs one job.
    assert billed_seconds_per_job(10, 20, idle_seconds=0) == 60
    # Above the minimum: whole seconds, rounded up.
    assert billed_task_seconds(1, 45.2) == 76


def test_reuse_shares_start_up_and_idle_window_between_jobs() -> None:
    # 10 jobs of 20 s back to back, then 30 s idle: 30 + 200 + 30 = 260 s, 26 s a job.
    assert task_lifetime_seconds(10, 20, idle_seconds=30) == 260
    assert billed_task_seconds(10, 20, idle_seconds=30) == 260
    assert billed_seconds_per_job(10, 20, idle_seconds=30) == 26
    # A lone job on a reuse-on worker pays the idle window it waited through.
    assert billed_seconds_per_job(1, 20, idle_seconds=30) == 80
    # A 1-s job: 300 such jobs on 5 tasks (60 each): (30 + 60 + 30) / 60 = 2 s a job.
    assert billed_seconds_per_job(60, 1, idle_seconds=30) == 2
    # Without the start-up (an already-measured lifetime) and with a 0 minimum.
    assert billed_task_seconds(1, 5, startup_seconds=0, minimum_seconds=0) == 5


def test_public_ipv4_follows_the_lifetime_without_minimum() -> None:
    assert public_ipv4_hours_per_task(1, 20) == pytest.approx(50 / 3600)
    assert public_ipv4_hours_per_task(10, 20, idle_seconds=30) == pytest.approx(260 / 3600)
    assert public_ipv4_hours_per_job(10, 20, idle_seconds=30) == pytest.approx(26 / 3600)


def _model(reuse: float) -> StackCostModel:
    return StackCostModel(
        stack="t",
        workers=(
            WorkerSpec("a", 1024, 2048, "arm64", 0.0, kept_images=0, reuse_idle_seconds=reuse),
        ),
        lambdas=tuple(LambdaSpec(r, r, 256) for r in ("api", "launcher", "reconciler", "sweep")),
    )


def _cost(est: object, service: str, part: str) -> float:
    return sum(
        ln.cost
        for ln in est.lines  # type: ignore[attr-defined]
        if ln.service == service and part in ln.item and not ln.fixed
    )


def test_estimator_fargate_and_ipv4_lines_model_reuse() -> None:
    usage_one = Usage(workers={"a": WorkerUsage(1000, duration_seconds=20)}, image_gb=0.0)
    usage_ten = Usage(
        workers={"a": WorkerUsage(1000, duration_seconds=20, jobs_per_task=10)}, image_gb=0.0
    )
    off = estimate(_model(0), usage_ten)  # reuse off: jobs_per_task is moot
    # 60 billed s x 1,000 = 16.67 task-hours x 1 vCPU x $0.03238 (arm64 on-demand)
    assert _cost(off, "Fargate", "vCPU") == pytest.approx(1000 * 60 / 3600 * 0.03238)
    assert off.workers[0].billed_seconds == 60
    # Without reuse the IPv4 is attached 50 s a job (no minimum).
    assert _cost(off, "VPC", "public IPv4") == pytest.approx(1000 * 50 / 3600 * 0.005)
    warm = estimate(_model(30), usage_ten)
    assert warm.workers[0].billed_seconds == 26
    assert _cost(warm, "Fargate", "vCPU") == pytest.approx(_cost(off, "Fargate", "vCPU") * 26 / 60)
    assert _cost(warm, "VPC", "public IPv4") == pytest.approx(1000 * 26 / 3600 * 0.005)
    # Sparse jobs on a reuse-on worker: each pays its own idle window.
    lone = estimate(_model(30), usage_one)
    assert lone.workers[0].billed_seconds == 80
