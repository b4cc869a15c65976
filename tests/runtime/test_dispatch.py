"""The dispatch state (jobcontract/dispatch.py): the fair plan, and the slot transactions
against the real moto server (conditions, counts, leases, idle reuse tasks)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from jobcontract import JobField
from jobcontract.dispatch import (
    STACK_PK,
    Claimed,
    Dispatch,
    Refusal,
    WorkerLoad,
    fits,
    plan,
    slot_key,
    vcpu_budget_units,
    wait_for_next,
)
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec
from tests.runtime.helpers import call


# --- the plan (pure) -----------------------------------------------------------------------
def load(name: str, cap: int = 5, task_cpu: int = 1024, **counts: Any) -> WorkerLoad:
    return WorkerLoad(name, cap, task_cpu, **counts)


def test_free_slots_go_to_the_least_served_worker_first() -> None:
    loads = [load("a", tasks=3, cpu=3072, waiting=9), load("b", waiting=9)]
    decided = plan(loads, used=3072, budget=6 * 1024)
    # b holds nothing: it gets slots until it holds as much as a, then they alternate.
    assert decided.wake == ["b", "b", "b"]
    assert decided.yielding == set()


def test_caps_and_the_budget_bound_the_plan() -> None:
    loads = [load("a", cap=2, waiting=5), load("b", cap=10, waiting=5)]
    decided = plan(loads, used=0, budget=4 * 1024)
    assert sorted(decided.wake) == ["a", "a", "b", "b"]  # budget 4 vCPU, a capped at 2
    assert plan(loads, used=0, budget=None).wake.count("b") == 5


def test_a_worker_with_an_idle_task_gets_no_new_task() -> None:
    decided = plan([load("a", tasks=1, cpu=1024, idle=1, waiting=3)], used=1024, budget=None)
    assert decided.wake == []


def test_a_worker_over_its_share_of_a_full_budget_yields() -> None:
    """Reuse must not keep a share forever: a holds the whole budget, b waits."""
    loads = [load("a", tasks=4, cpu=4 * 1024, waiting=50), load("b", waiting=10)]
    decided = plan(loads, used=4 * 1024, budget=4 * 1024)
    assert decided.wake == [] and decided.yielding == {"a"}
    # At its share (a: 2, b: 2 vCPU) nobody yields.
    even = [load("a", tasks=2, cpu=2048, waiting=5), load("b", tasks=2, cpu=2048, waiting=5)]
    assert plan(even, used=4096, budget=4096).yielding == set()


def test_a_task_bigger_than_the_budget_runs_alone() -> None:
    assert fits(0, 8192, 4096) and not fits(1024, 8192, 4096)
    assert vcpu_budget_units(0) is None and vcpu_budget_units(6) == 6144
    assert vcpu_budget_units(0.25) == 256


# --- the transactions (moto) ---------------------------------------------------------------
@pytest.fixture
def res(pipeline_resources):
    return pipeline_resources([WorkerSpec("echo", max_concurrency=2), WorkerSpec("solo")])


def submit(worker: str = "echo") -> str:
    status, body, _ = call("POST", "/jobs", {"worker": worker, "input": {"items": ["a"]}})
    assert status == 202, body
    return str(body["job_id"])


def counts(d: Dispatch) -> tuple[dict[str, dict[str, Any]], int]:
    return d.counts()


def test_the_cap_refuses_and_a_release_frees_exactly_one_slot(res) -> None:
    store = JobStore(res.table_name)
    d = Dispatch(store)
    a, b, c = submit(), submit(), submit()
    first = d.claim(a, 0, "echo", cap=2, cpu=256)
    second = d.claim(b, 0, "echo", cap=2, cpu=256)
    assert isinstance(first, Claimed) and isinstance(second, Claimed)
    assert d.claim(c, 0, "echo", cap=2, cpu=256) == Refusal.WORKER
    assert d.claim(a, 0, "echo", cap=2, cpu=256) == Refusal.JOB  # claimed already
    assert store.get(c)[JobField.STATUS] == "QUEUED"  # a refused claim changes nothing
    workers, used = counts(d)
    assert workers["echo"]["tasks"] == 2 and used == 512
    assert d.release(first.lease) and not d.release(first.lease)  # idempotent
    workers, used = counts(d)
    assert workers["echo"]["tasks"] == 1 and workers["echo"]["cpu"] == 256 and used == 256


def test_the_stack_budget_is_shared_across_workers(res) -> None:
    d = Dispatch(JobStore(res.table_name), budget=vcpu_budget_units(0.5))
    one, two = submit("echo"), submit("solo")
    assert isinstance(d.claim(one, 0, "echo", cap=5, cpu=512), Claimed)
    assert d.claim(two, 0, "solo", cap=5, cpu=256) == Refusal.BUDGET


def test_concurrent_claims_never_exceed_the_cap(res) -> None:
    """Eight launchers race for two slots: exactly two claims commit."""
    d = Dispatch(JobStore(res.table_name))
    jobs = [submit() for _ in range(8)]
    results: list[Any] = []

    def claim(job_id: str) -> None:
        results.append(Dispatch(JobStore(res.table_name)).claim(job_id, 0, "echo", cap=2, cpu=256))

    threads = [threading.Thread(target=claim, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, Claimed) for r in results) == 2
    workers, _ = counts(d)
    assert workers["echo"]["tasks"] == 2


def test_a_parked_job_blocks_fresh_claims_until_it_is_woken(res) -> None:
    store = JobStore(res.table_name)
    d = Dispatch(store)
    old, new = submit(), submit()
    assert d.park(old, 0, "echo") and not d.park(old, 0, "echo")  # parked once
    assert d.claim(new, 0, "echo", cap=2, cpu=256) == Refusal.WORKER  # behind the parked one
    assert [j[JobField.JOB_ID] for j in d.parked("echo", 5)] == [old]
    woken = d.claim(old, 0, "echo", cap=2, cpu=256, woken=True)
    assert isinstance(woken, Claimed) and woken.attempt == 1
    job = store.get(old)
    assert job[JobField.STATUS] == "DISPATCHED" and JobField.WAITING_SINCE not in job
    assert isinstance(d.claim(new, 0, "echo", cap=2, cpu=256), Claimed)


def test_a_cancelled_parked_job_is_healed_out_of_the_count(res) -> None:
    d = Dispatch(JobStore(res.table_name))
    job = submit()
    assert d.park(job, 0, "echo")
    assert call("POST", f"/jobs/{job}/cancel")[0] == 200
    assert d.parked("echo", 5) == []
    d.heal_waiting("echo", 1)
    workers, _ = counts(d)
    assert workers["echo"]["waiting"] == 0
    assert isinstance(d.claim(submit(), 0, "echo", cap=2, cpu=256), Claimed)


def test_reuse_takes_the_oldest_parked_job_on_the_same_lease(res) -> None:
    store = JobStore(res.table_name)
    d = Dispatch(store)
    running = d.claim(submit(), 0, "echo", cap=2, cpu=256)
    assert isinstance(running, Claimed)
    older, newer = submit(), submit()
    d.park(older, 0, "echo")
    d.park(newer, 0, "echo")
    taken = d.take_next("echo", running.lease, "arn:task/1", idle=False, finished=running.job_id)
    assert taken is not None and taken.job_id == older and taken.lease == running.lease
    job = store.get(older)
    assert job[JobField.STATUS] == "DISPATCHED" and job[JobField.TASK_ARN] == "arn:task/1"
    lease = d.get(running.lease)
    assert lease["current_job"] == older and lease["ran"] == {running.job_id}
    workers, used = counts(d)
    assert workers["echo"]["tasks"] == 1 and workers["echo"]["waiting"] == 1 and used == 256


def test_an_idle_task_gets_new_jobs_instead_of_a_new_task(res) -> None:
    """While a task idles, a fresh job parks for it (no second task) and the idle task takes
    it; when the window closes with nothing parked the task leaves idle and may exit."""
    store = JobStore(res.table_name)
    d = Dispatch(store)
    running = d.claim(submit(), 0, "echo", cap=2, cpu=256)
    assert isinstance(running, Claimed)
    fresh = submit()
    refused: list[Any] = []

    def job_arrives(_seconds: float) -> None:  # while the task idles
        if not refused:
            refused.append(d.claim(fresh, 0, "echo", cap=2, cpu=256))
            assert d.park(fresh, 0, "echo")

    ticks = iter(range(100))
    got = wait_for_next(
        d,
        "echo",
        running.lease,
        "arn:task/1",
        idle_seconds=5,
        sleep=job_arrives,
        clock=lambda: float(next(ticks)),
    )
    assert refused == [Refusal.WORKER]  # a slot was free, but the idle task gets the job
    assert got is not None and got.job_id == fresh
    workers, _ = counts(d)
    assert workers["echo"].get("idle", 0) == 0 and workers["echo"]["waiting"] == 0
    # Nothing parked: the window passes and the task leaves idle.
    ticks = iter(range(100))
    assert (
        wait_for_next(
            d,
            "echo",
            running.lease,
            None,
            idle_seconds=3,
            sleep=lambda _: None,
            clock=lambda: float(next(ticks)),
        )
        is None
    )
    workers, _ = counts(d)
    assert workers["echo"]["idle"] == 0 and "idle" not in d.get(running.lease)


def test_releasing_an_idle_tasks_lease_gives_back_its_idle_count(res) -> None:
    d = Dispatch(JobStore(res.table_name))
    running = d.claim(submit(), 0, "echo", cap=2, cpu=256)
    assert isinstance(running, Claimed) and d.enter_idle("echo", running.lease)
    assert d.release(running.lease)  # the task was killed while it idled
    workers, used = counts(d)
    assert workers["echo"] == {**workers["echo"], "tasks": 0, "idle": 0, "cpu": 0} and used == 0


def test_a_yielding_worker_takes_no_next_job(res) -> None:
    d = Dispatch(JobStore(res.table_name))
    running = d.claim(submit(), 0, "echo", cap=2, cpu=256)
    assert isinstance(running, Claimed)
    d.park(submit(), 0, "echo")
    d.set_yield("echo", True)
    assert d.take_next("echo", running.lease, None, idle=False) is None
    d.set_yield("echo", False)
    assert d.take_next("echo", running.lease, None, idle=False) is not None


def test_lease_names_the_launch_the_task_was_started_for() -> None:
    assert slot_key("echo_" + "0" * 32, 2) == "slot#echo_" + "0" * 32 + "-2"


def _stack_waiting(d: Dispatch) -> int:
    return int((d.get(STACK_PK) or {}).get("waiting", 0) or 0)


def test_the_stack_counts_every_parked_job_and_never_under_counts(res) -> None:
    """``anyone_waiting`` (what a release asks before it drains) follows every park, across
    workers, and a woken claim takes its job off; a warm task's take_next cannot write the
    stack row, so it leaves the count high, and only the snapshot heal lowers it, to the
    workers' own counts (never below them)."""
    store = JobStore(res.table_name)
    d = Dispatch(store)
    assert not d.anyone_waiting()
    running = d.claim(submit(), 0, "echo", cap=2, cpu=256)
    assert isinstance(running, Claimed)
    a, b, c = submit(), submit(), submit("solo")
    assert d.park(a, 0, "echo") and d.park(b, 0, "echo") and d.park(c, 0, "solo")
    assert _stack_waiting(d) == 3 and d.anyone_waiting()
    assert isinstance(d.claim(a, 0, "echo", cap=2, cpu=256, woken=True), Claimed)
    assert _stack_waiting(d) == 2
    taken = d.take_next("echo", running.lease, "arn:task/1", idle=False)
    assert taken is not None and taken.job_id == b
    workers, _ = counts(d)
    assert workers["echo"]["waiting"] == 0 and workers["solo"]["waiting"] == 1
    assert _stack_waiting(d) == 2  # over-counted: the task role did not write it
    assert d.heal_stack_waiting(["echo", "solo"]) and _stack_waiting(d) == 1
    assert not d.heal_stack_waiting(["echo", "solo"])  # matches the workers: left alone
    assert d.anyone_waiting()
    assert isinstance(d.claim(c, 0, "solo", cap=2, cpu=256, woken=True), Claimed)
    assert not d.anyone_waiting()


def test_the_heal_keeps_a_job_parked_since_its_snapshot(res, monkeypatch) -> None:
    """A park landing between the heal's snapshot and its write changes the stack's count,
    so the conditional write is refused and the count is not lowered below the truth."""
    d = Dispatch(JobStore(res.table_name))
    stale = submit()
    assert d.park(stale, 0, "echo")
    d.heal_waiting("echo", 1)  # as if cancelled: the worker's count is 0, the stack's 1
    late = submit()
    real = d.client.transact_get_items

    def snapshot_then_park(**kwargs: Any) -> Any:
        seen = real(**kwargs)
        assert d.park(late, 0, "echo")  # lands after the snapshot
        return seen

    monkeypatch.setattr(d.client, "transact_get_items", snapshot_then_park)
    assert not d.heal_stack_waiting(["echo", "solo"])
    assert _stack_waiting(d) == 2 and d.anyone_waiting()


def test_a_task_frees_its_worker_slot_once_and_its_vcpus_only_at_its_stop(res) -> None:
    """A task that ended its last job gives its worker's slot back (another task of the
    worker may start), not its vCPUs: the account counts the task until it has stopped, so
    the stack budget keeps it until the lease's release, which then moves only the budget."""
    store = JobStore(res.table_name)
    d = Dispatch(store, budget=vcpu_budget_units(0.5))
    a, b, c = submit(), submit(), submit()
    first = d.claim(a, 0, "echo", cap=2, cpu=256)
    second = d.claim(b, 0, "echo", cap=2, cpu=256)
    assert isinstance(first, Claimed) and isinstance(second, Claimed)
    assert d.free_slot(first.lease, b, 1) is None  # not the job that task runs
    assert d.free_slot(first.lease, a, 1) == "echo"
    assert d.free_slot(first.lease, a, 1) is None  # once
    workers, used = counts(d)
    assert workers["echo"]["tasks"] == 1 and workers["echo"]["cpu"] == 256 and used == 512
    assert d.claim(c, 0, "echo", cap=2, cpu=256) == Refusal.BUDGET  # the exiting task's vCPUs
    assert d.park(c, 0, "echo")
    assert d.take_next("echo", first.lease, None, idle=False) is None  # a freed lease runs none
    assert store.get(c)[JobField.STATUS] == "QUEUED"
    assert d.release(first.lease) and not d.release(first.lease)
    workers, used = counts(d)
    assert workers["echo"]["tasks"] == 1 and workers["echo"]["cpu"] == 256 and used == 256
    assert isinstance(d.claim(c, 0, "echo", cap=2, cpu=256, woken=True), Claimed)
    assert d.release(second.lease)  # not freed: the worker's slot and the vCPUs
    workers, used = counts(d)
    assert workers["echo"]["tasks"] == 1 and used == 256
