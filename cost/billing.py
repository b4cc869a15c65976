"""Fargate's billing rule for one task, warm reuse included (issue 10).

AWS rule: a Fargate task is billed per second from the start of its image pull to its stop,
with a one-minute minimum; its public IPv4 address (public network mode) is billed while it
is attached, from the task's ENI to its stop: the same lifetime, with no minimum.

With warm reuse a task that finished a job takes its worker's next waiting job, and after
its last job waits ``idle_seconds`` for another before it exits. So a task that runs ``k``
jobs of ``d`` seconds lives ``startup + k*d + idle`` seconds (the jobs back to back: the
task takes the next one as soon as it is waiting), and each of its jobs pays a ``k``-th of
that. With reuse off (``idle_seconds = 0``) a task runs exactly one job.

The same function is the benchmark's rule (``bench.dispatch_metrics.billed_seconds``: the
measured lifetime plus a modelled 30-s start-up) and the estimator's (``cost.estimator``).
"""

from __future__ import annotations

import math

FARGATE_MINIMUM_SECONDS = 60.0
MODELLED_STARTUP_SECONDS = 30.0
SECONDS_PER_HOUR = 3600.0


def task_lifetime_seconds(
    jobs_per_task: float,
    job_seconds: float,
    idle_seconds: float = 0.0,
    startup_seconds: float = MODELLED_STARTUP_SECONDS,
) -> float:
    """Image pull -> stop for a task that runs ``jobs_per_task`` jobs back to back and then
    idles ``idle_seconds`` (0 with reuse off) before it exits."""
    jobs = _jobs(jobs_per_task, idle_seconds)
    return max(0.0, startup_seconds) + jobs * max(0.0, job_seconds) + max(0.0, idle_seconds)


def billed_task_seconds(
    jobs_per_task: float,
    job_seconds: float,
    idle_seconds: float = 0.0,
    startup_seconds: float = MODELLED_STARTUP_SECONDS,
    minimum_seconds: float = FARGATE_MINIMUM_SECONDS,
) -> float:
    """Seconds Fargate bills one such task: its lifetime, whole seconds, one minute at least."""
    life = task_lifetime_seconds(jobs_per_task, job_seconds, idle_seconds, startup_seconds)
    return float(max(minimum_seconds, math.ceil(life - 1e-9)))


def billed_seconds_per_job(
    jobs_per_task: float,
    job_seconds: float,
    idle_seconds: float = 0.0,
    startup_seconds: float = MODELLED_STARTUP_SECONDS,
    minimum_seconds: float = FARGATE_MINIMUM_SECONDS,
) -> float:
    """A job's share of its task's billed seconds."""
    jobs = _jobs(jobs_per_task, idle_seconds)
    billed = billed_task_seconds(jobs, job_seconds, idle_seconds, startup_seconds, minimum_seconds)
    return billed / jobs


def public_ipv4_hours_per_task(
    jobs_per_task: float,
    job_seconds: float,
    idle_seconds: float = 0.0,
    startup_seconds: float = MODELLED_STARTUP_SECONDS,
) -> float:
    """Hours a task's public IPv4 is attached: the task's lifetime (no minimum)."""
    life = task_lifetime_seconds(jobs_per_task, job_seconds, idle_seconds, startup_seconds)
    return life / SECONDS_PER_HOUR


def public_ipv4_hours_per_job(
    jobs_per_task: float,
    job_seconds: float,
    idle_seconds: float = 0.0,
    startup_seconds: float = MODELLED_STARTUP_SECONDS,
) -> float:
    jobs = _jobs(jobs_per_task, idle_seconds)
    return public_ipv4_hours_per_task(jobs, job_seconds, idle_seconds, startup_seconds) / jobs


def _jobs(jobs_per_task: float, idle_seconds: float) -> float:
    """Reuse off (no idle window): one job per task, whatever was asked."""
    if idle_seconds <= 0:
        return 1.0
    return max(1.0, float(jobs_per_task))
