"""jobcontract.managed_instances: the stop reasons Managed Instances adds, classified as
retryable infrastructure failures (and which ones move the job along its launch chain), the
launch chain read back from a registration item, and the start-up deadline."""

from __future__ import annotations

import json

import pytest

from jobcontract import WorkerField
from jobcontract import managed_instances as mi
from jobcontract.managed_instances import StopKind

CASES = [
    # stop code, stopped reason, started, exit code -> kind (None: not a Managed Instances stop)
    ("SpotInterruption", "Your Spot Task was interrupted.", True, 143, StopKind.INSTANCE_RECLAIMED),
    ("TerminationNotice", "Instance scheduled for retirement", True, None,
     StopKind.INSTANCE_TERMINATED),
    ("InfrastructureHealth", "Container instance is unhealthy", True, None,
     StopKind.INSTANCE_TERMINATED),
    ("TaskFailedToStart", "Capacity is unavailable at this time. Please try again later.", False,
     None, StopKind.CAPACITY_UNAVAILABLE),
    ("TaskFailedToStart", "InsufficientInstanceCapacity: no g6.xlarge in us-east-1a", False,
     None, StopKind.CAPACITY_UNAVAILABLE),
    ("UserInitiated", "Host EC2 (instance i-0123456789abcdef0) stopped/terminated", True, None,
     StopKind.INSTANCE_TERMINATED),
    ("ServiceSchedulerInitiated", "Instance i-0abc is being drained for replacement", True, None,
     StopKind.INSTANCE_TERMINATED),
    # Not ours: the reconciler's own classify decides (worker exit codes, sweep, user stops).
    ("EssentialContainerExited", "Essential container in task exited", True, 1, None),
    ("UserInitiated", "Timeout: job ran 3600 s", True, 137, None),
    ("TaskFailedToStart", "CannotPullContainerError: pull access denied", False, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("code", "reason", "started", "exit_code", "kind"), CASES)
def test_stop_classification(
    code: str, reason: str, started: bool, exit_code: int | None, kind: str | None
) -> None:
    got = mi.classify_stop(code, reason, started=started, exit_code=exit_code)
    if kind is None:
        assert got is None
        return
    assert got is not None and got.kind == kind
    assert got.retryable and kind in mi.RETRYABLE_INFRASTRUCTURE
    assert got.advance_chain == (kind in mi.ADVANCE_CHAIN)
    assert len(got.message) <= 1000


def test_capacity_after_start_is_not_a_capacity_failure() -> None:
    # A task that ran cannot have failed for lack of an instance; its own reason stands.
    assert (
        mi.classify_stop("EssentialContainerExited", "capacity", started=True, exit_code=1) is None
    )


@pytest.mark.parametrize(
    ("message", "capacity"),
    [
        ("RESOURCE:GPU", True),
        ("Capacity is unavailable at this time", True),
        ("RESOURCE:MEMORY", True),
        ("MISSING", False),
        ("AccessDeniedException: not authorized to perform iam:PassRole", False),
    ],
)
def test_run_task_failure_reasons(message: str, capacity: bool) -> None:
    assert mi.is_capacity_failure(message) is capacity


def test_launch_chain_from_typed_and_plain_items_and_fargate_fallback() -> None:
    chain = [[{"capacityProvider": "p-l4-spot", "weight": 1, "base": 0}],
             [{"capacityProvider": "p-l4-od", "weight": 1, "base": 0}]]  # fmt: skip
    typed = {WorkerField.LAUNCH_CHAIN: {"S": json.dumps(chain)}}
    assert mi.launch_chain(typed) == chain
    assert mi.launch_chain({WorkerField.LAUNCH_CHAIN: json.dumps(chain)}) == chain
    fargate = {"capacity_strategy": json.dumps([{"capacityProvider": "FARGATE_SPOT", "weight": 1}])}
    assert mi.launch_chain(fargate) == [[{"capacityProvider": "FARGATE_SPOT", "weight": 1}]]
    assert mi.launch_chain({}) == []
    assert mi.next_step(chain, 0) == 1 and mi.next_step(chain, 1) is None


def test_the_sweeps_startup_timeout_stop_moves_along_the_chain() -> None:
    reason = mi.startup_timeout_reason(930.4, 900)
    assert reason == "StartupTimeout: no instance after 930 s (limit 900 s)"
    got = mi.classify_stop("UserInitiated", reason, started=False)
    assert got is not None and got.kind == StopKind.STARTUP_TIMEOUT and got.advance_chain


def test_startup_deadline_counts_only_the_wait_for_an_instance() -> None:
    assert not mi.startup_deadline_exceeded(1000.0, 1899.0, 900)
    assert mi.startup_deadline_exceeded(1000.0, 1901.0, 900)


def test_capacity_backoff_is_exponential_jittered_and_bounded_by_sqs_900_s() -> None:
    from jobcontract.managed_instances import BACKOFF_MAX_SECONDS, capacity_backoff, retry_wait

    low = [capacity_backoff(n, lambda a, b: a) for n in range(1, 12)]
    high = [capacity_backoff(n, lambda a, b: b) for n in range(1, 12)]
    assert high[:6] == [30, 60, 120, 240, 480, 900] and set(high[5:]) == {900}
    assert low[:6] == [15, 30, 60, 120, 240, 450]  # never under half the step: no spin
    assert BACKOFF_MAX_SECONDS == 900
    draws = {capacity_backoff(3) for _ in range(200)}
    assert min(draws) >= 60 and max(draws) <= 120 and len(draws) > 10  # jittered
    assert retry_wait(1000.0, 990.0) == 10 and retry_wait(1000.0, 1001.0) == 0
    assert retry_wait(10**9, 0) == 900 and retry_wait(None, 5) == 0 and retry_wait("x", 5) == 0
