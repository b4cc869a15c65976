"""bench.dispatch_metrics on hand-made timelines: each metric catches a bad schedule."""

from __future__ import annotations

import pytest

from bench.dispatch_metrics import (
    JobTimeline,
    Slots,
    TaskTimeline,
    billed_seconds,
    fair_shares,
    handoff,
    makespan,
    max_concurrent_vcpu,
    mixed,
    parse_time,
    peak_tasks,
    reuse,
    wait_while_free,
)

W = "w"


def one_job_per_task(
    n: int, cap: int, *, run: float = 1.0, gap_after: int | None = None, gap: float = 0.0
) -> tuple[list[JobTimeline], list[TaskTimeline]]:
    """``n`` jobs submitted at 0, run ``cap`` at a time back to back (each its own task that
    exists exactly while it runs); after job ``gap_after`` every later job starts ``gap``
    seconds late (a schedule that leaves every slot idle)."""
    jobs, tasks = [], []
    for i in range(n):
        start = (i // cap) * run
        if gap_after is not None and i >= gap_after:
            start += gap
        arn = f"task-{i}"
        jobs.append(JobTimeline(f"j{i}", W, 0.0, start, start, start + run, "SUCCEEDED", arn))
        tasks.append(TaskTimeline(arn, W, 0.5, start, start + run))
    return jobs, tasks


def test_parse_time_reads_item_times() -> None:
    assert parse_time("1970-01-01T00:01:00Z") == 60.0
    assert parse_time("1970-01-01T00:01:00.500000+00:00") == 60.5
    assert parse_time(None) is None and parse_time(3) == 3.0


def test_job_timeline_from_item() -> None:
    item = {
        "pk": "job#w_1",
        "worker": W,
        "status": "SUCCEEDED",
        "created_at": "1970-01-01T00:00:10Z",
        "task_arn": "arn:t",
        "timestamps": {
            "QUEUED": "1970-01-01T00:00:10Z",
            "DISPATCHED": "1970-01-01T00:00:12Z",
            "RUNNING": "1970-01-01T00:00:13Z",
            "SUCCEEDED": "1970-01-01T00:00:14.5Z",
        },
    }
    job = JobTimeline.from_item(item)
    assert (job.job_id, job.submitted, job.dispatched, job.ended) == ("w_1", 10.0, 12.0, 14.5)
    assert job.run_seconds == 2.5 and job.task_arn == "arn:t"


def test_perfect_drain_meets_the_targets() -> None:
    jobs, tasks = one_job_per_task(300, 5)
    m = makespan(jobs, 5)
    assert m.makespan == 60.0 and m.ideal == 60.0 and m.ratio == 1.0
    slots = Slots(caps={W: 5}, vcpu={W: 0.5})
    assert wait_while_free(jobs, tasks, slots).max == 0.0


def test_a_four_minute_idle_gap_is_caught() -> None:
    jobs, tasks = one_job_per_task(300, 5, gap_after=165, gap=240.0)
    slots = Slots(caps={W: 5}, vcpu={W: 0.5})
    waited = wait_while_free(jobs, tasks, slots)
    assert waited.max == pytest.approx(240.0)
    assert waited.per_job["j0"] == 0.0
    assert makespan(jobs, 5).ratio == pytest.approx(300 / 60)


def test_a_job_waiting_behind_a_busy_worker_is_not_counted() -> None:
    # Cap 1: the second job waits 10 s, all of it while the slot is held.
    jobs = [
        JobTimeline("a", W, 0.0, 0.0, 0.1, 10.0, "SUCCEEDED", "t1"),
        JobTimeline("b", W, 0.0, 10.0, 10.1, 20.0, "SUCCEEDED", "t2"),
    ]
    tasks = [TaskTimeline("t1", W, 1, 0.2, 10.0), TaskTimeline("t2", W, 1, 10.2, 20.0)]
    assert wait_while_free(jobs, tasks, Slots({W: 1}, {W: 1})).max == 0.0
    # The exit tail of a task still holds the slot (ECS still lists it) ...
    late = [jobs[0], JobTimeline("b", W, 0.0, 12.0, 12.1, 22.0, "SUCCEEDED", "t2")]
    tasks2 = [TaskTimeline("t1", W, 1, 0.2, 11.0), TaskTimeline("t2", W, 1, 12.2, 22.0)]
    # ... so b waited only from t1's stop (11) to its dispatch (12).
    assert wait_while_free(late, tasks2, Slots({W: 1}, {W: 1})).max == pytest.approx(1.0)


def test_the_stack_vcpu_cap_makes_a_slot_unavailable() -> None:
    # Worker cap 2, but the stack cap (1 vCPU) is held by another worker's task.
    jobs = [
        JobTimeline("o", "other", 0.0, 0.0, 0.0, 30.0, "SUCCEEDED", "to"),
        JobTimeline("x", W, 0.0, 30.0, 30.0, 31.0, "SUCCEEDED", "tx"),
    ]
    tasks = [TaskTimeline("to", "other", 1, 0.0, 30.0), TaskTimeline("tx", W, 1, 30.0, 31.0)]
    capped = Slots({W: 2, "other": 2}, {W: 1, "other": 1}, stack_vcpu_limit=1)
    assert wait_while_free(jobs, tasks, capped).per_job["x"] == 0.0
    uncapped = Slots({W: 2, "other": 2}, {W: 1, "other": 1})
    assert wait_while_free(jobs, tasks, uncapped).per_job["x"] == pytest.approx(30.0)


def test_with_reuse_an_idle_warm_task_is_a_free_slot() -> None:
    # One task of a cap-1 worker runs a (0-1 s), idles 10 s, then runs b; b was waiting.
    jobs = [
        JobTimeline("a", W, 0.0, 0.0, 0.5, 1.0, "SUCCEEDED", "t"),
        JobTimeline("b", W, 0.0, 11.0, 11.1, 12.0, "SUCCEEDED", "t"),
    ]
    tasks = [TaskTimeline("t", W, 0.5, 0.2, 40.0)]
    assert wait_while_free(jobs, tasks, Slots({W: 1}, {W: 0.5}, reuse=True)).max == (
        pytest.approx(10.0)
    )
    # Without the reuse flag the task holds the slot throughout: nothing counted.
    assert wait_while_free(jobs, tasks, Slots({W: 1}, {W: 0.5})).max == 0.0


def test_tasks_per_job_and_billing() -> None:
    jobs, tasks = one_job_per_task(300, 5)
    r = reuse(jobs, tasks)
    assert r.tasks_per_job == 1.0
    # Each 1-s task is billed the one-minute minimum: 60 billed s per job-second.
    assert r.billed_per_job_second == pytest.approx(60.0)
    # Five warm tasks running 60 jobs each back to back (60 s) then idling 30 s.
    warm = [TaskTimeline(f"t{i}", W, 0.5, 0.0, 90.0) for i in range(5)]
    r2 = reuse(jobs, warm)
    assert r2.tasks_per_job == pytest.approx(5 / 300)
    assert r2.billed_per_job_second == pytest.approx(5 * (30 + 90) / 300)


def test_billed_seconds_rule() -> None:
    assert billed_seconds(1.0) == 60.0  # 30 + 1 < one minute
    assert billed_seconds(45.0) == 75.0
    assert billed_seconds(45.0, startup=0) == 60.0
    assert billed_seconds(100.0, startup=0) == 100.0


def test_max_concurrent_vcpu_sweeps_exactly() -> None:
    tasks = [
        TaskTimeline("a", W, 1.0, 0.0, 10.0),
        TaskTimeline("b", W, 0.5, 5.0, 15.0),
        TaskTimeline("c", W, 2.0, 10.0, 12.0),  # starts as a stops: no overlap with a
    ]
    assert max_concurrent_vcpu(tasks) == 2.5
    assert max_concurrent_vcpu(tasks[:2]) == 1.5


def test_fair_shares_water_fill() -> None:
    demand = {"small": 1.0, "mid": 2.0, "big": 4.0}
    assert fair_shares(demand, 3.0) == {"small": 1.0, "mid": 1.0, "big": 1.0}
    assert fair_shares(demand, 5.0) == {"small": 1.0, "mid": 2.0, "big": 2.0}
    assert fair_shares(demand, 0) == demand  # no cap: everyone gets its demand


def _burst(
    worker: str, vcpu: float, starts: list[float], n_jobs: int
) -> tuple[list[JobTimeline], list[TaskTimeline]]:
    jobs, tasks = [], []
    for i in range(n_jobs):
        s = starts[i] if i < len(starts) else starts[-1]
        arn = f"{worker}-{i}"
        jobs.append(JobTimeline(arn, worker, 0.0, s, s, s + 1, "SUCCEEDED", arn))
        tasks.append(TaskTimeline(arn, worker, vcpu, s, s + 1))
    return jobs, tasks


def test_mixed_catches_a_starved_worker_and_a_broken_cap() -> None:
    slots = Slots({"a": 4, "b": 4}, {"a": 0.5, "b": 0.5}, stack_vcpu_limit=2)
    # Fair: both run 2 tasks at a time (1 vCPU each) for 10 s.
    a_jobs, a_tasks = _burst("a", 0.5, [float(i // 2) for i in range(20)], 20)
    b_jobs, b_tasks = _burst("b", 0.5, [float(i // 2) for i in range(20)], 20)
    fair = mixed(a_jobs + b_jobs, a_tasks + b_tasks, slots)
    assert fair.min_share == pytest.approx(1.0, rel=0.1)
    assert fair.peak_vcpu == 2.0
    # Starved: a takes all 4 slots first, b waits until a is done.
    a_jobs, a_tasks = _burst("a", 0.5, [float(i // 4) for i in range(20)], 20)
    b_jobs, b_tasks = _burst("b", 0.5, [5.0 + i // 4 for i in range(20)], 20)
    starved = mixed(a_jobs + b_jobs, a_tasks + b_tasks, slots)
    assert starved.share_of_fair["b"] == 0.0
    assert starved.peak_vcpu == 2.0
    # Over the cap: both at 4 tasks.
    a_jobs, a_tasks = _burst("a", 0.5, [float(i // 4) for i in range(20)], 20)
    b_jobs, b_tasks = _burst("b", 0.5, [float(i // 4) for i in range(20)], 20)
    assert mixed(a_jobs + b_jobs, a_tasks + b_tasks, slots).peak_vcpu == 4.0


def test_unfinished_jobs_count_until_now() -> None:
    jobs = [JobTimeline("a", W, 0.0, None, None, None)]
    assert makespan(jobs, 1, now=100.0).makespan == 100.0
    assert wait_while_free(jobs, [], Slots({W: 1}, {W: 1}), now=100.0).max == 100.0


def test_run_all_keeps_the_dispatch_section() -> None:
    from bench.run_all import BENCHMARKS, kept_sections

    text = (
        "# Benchmark results\n| table |\n## Dispatch (issue 10)\nbefore: 11x\n\n## Estimator\nx\n"
    )
    assert kept_sections(text) == "## Dispatch (issue 10)\nbefore: 11x\n"
    assert kept_sections("# nothing kept\n") == ""
    modules = {b.module for b in BENCHMARKS}
    assert {"dispatch_drain", "dispatch_reuse", "dispatch_mixed"} <= modules


def test_handoff_is_the_gap_from_a_stop_to_the_next_task_while_jobs_wait() -> None:
    back_to_back, tasks = one_job_per_task(10, 5)
    assert handoff(back_to_back, tasks).seconds == (0.0,) * 5  # 5 stops with jobs waiting
    late, late_tasks = one_job_per_task(10, 5, gap_after=5, gap=0.4)
    slow = handoff(late, late_tasks)
    assert len(slow.seconds) == 5 and slow.mean == pytest.approx(0.4)
    assert slow.p95 == pytest.approx(0.4)
    # The last stops, with nothing left waiting, are no hand-off.
    assert handoff(late[:5], late_tasks[:5]).seconds == ()


def test_handoff_starts_when_the_last_job_of_a_task_ended_not_at_its_stop() -> None:
    """A task frees its slot when its job ends and exits afterwards: the next task, started
    0.1 s after that end and before the stop, is a 0.1-s hand-off; and the exit time before
    a stop is part of the hand-off when the slot waits for the stop."""
    jobs = [
        JobTimeline("a", W, 0.0, 0.0, 0.0, 1.0, "SUCCEEDED", "t1"),
        JobTimeline("b", W, 0.0, 1.1, 1.1, 2.0, "SUCCEEDED", "t2"),
        JobTimeline("c", W, 0.0, 3.0, 3.0, 4.0, "SUCCEEDED", "t3"),
    ]
    tasks = [
        TaskTimeline("t1", W, 0.5, 0.0, 1.5),  # exits 0.5 s after its job's end
        TaskTimeline("t2", W, 0.5, 1.1, 2.5),
        TaskTimeline("t3", W, 0.5, 3.0, 4.5),
    ]
    assert handoff(jobs, tasks).seconds == pytest.approx((0.1, 1.0))


def test_with_reuse_gaps_of_different_tasks_are_not_one_long_free_slot() -> None:
    # Two warm tasks of a cap-2 worker alternate 1-s jobs with 1.2-s gaps that overlap in
    # time: from 1 s on, one of them is always between jobs, but no slot is ever unused for
    # more than 1.2 s. Job "late" waits 0-20 s meanwhile.
    jobs: list[JobTimeline] = []
    for task, offset in (("t1", 0.0), ("t2", 1.1)):
        start = offset
        n = 0
        while start < 20.0:
            jobs.append(
                JobTimeline(f"{task}-{n}", W, 0.0, start, start, start + 1.0, "SUCCEEDED", task)
            )
            start += 2.2
            n += 1
    jobs.append(JobTimeline("late", W, 0.0, 20.0, 20.0, 21.0, "SUCCEEDED", "t1"))
    tasks = [TaskTimeline("t1", W, 0.5, 0.0, 22.0), TaskTimeline("t2", W, 0.5, 0.0, 22.0)]
    waited = wait_while_free(jobs, tasks, Slots({W: 2}, {W: 0.5}, reuse=True))
    assert waited.stretch["late"] == pytest.approx(1.2)
    assert waited.per_job["late"] > 10.0  # the union of the gaps still counts in the sum


def test_peak_tasks_counts_exiting_tasks_alive_beside_their_successors() -> None:
    _, tasks = one_job_per_task(10, 5)
    assert peak_tasks(W, tasks, until=10.0) == 5  # a stop and a start at one instant: 5
    overlapping = [*tasks, TaskTimeline("extra", W, 0.5, 0.5, 0.9)]
    assert peak_tasks(W, overlapping, until=10.0) == 6


def test_until_freed_counts_a_task_only_while_it_held_its_slot() -> None:
    """Tasks that exit 0.5 s after their job's end, beside their successors: counted until
    the stop the ideal grows by the exit time and the ratio looks better than the schedule
    is; counted until the slot was freed, a schedule with 0.5-s gaps shows them."""
    jobs = [JobTimeline(f"j{i}", W, 0.0, 1.5 * i, 1.5 * i, 1.5 * i + 1.0, "SUCCEEDED", f"t{i}")
            for i in range(4)]
    tasks = [TaskTimeline(f"t{i}", W, 0.5, 1.5 * i, 1.5 * i + 1.5) for i in range(4)]
    loose = makespan(jobs, 1, tasks=tasks)
    strict = makespan(jobs, 1, tasks=tasks, until_freed=True)
    assert loose.ideal == pytest.approx(6.0) and strict.ideal == pytest.approx(4.0)
    assert strict.ratio == pytest.approx(5.5 / 4.0)
