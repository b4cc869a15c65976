"""The launcher against the real moto server (ECS RunTask, SQS, DynamoDB over HTTP)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from handlers import _aws, launch_ecs, launcher
from jobcontract import TAG_JOB_ID, Env, JobField
from jobcontract.dispatch import Dispatch, slot_key
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec, topic_tap
from tests.runtime.helpers import call, receive_all, sqs_event

SPOT_FIRST = (
    {"capacityProvider": "FARGATE_SPOT", "weight": 4, "base": 0},
    {"capacityProvider": "FARGATE", "weight": 1, "base": 0},
)


class LauncherCrashed(Exception):
    """The launcher Lambda died between RunTask and recording the task."""


CRASH_AFTER_LAUNCH = "crash after launch"


class FaultyEcs:
    """The real moto ECS client, with scripted RunTask faults (one per call, in order), and
    RunTask ``clientToken`` idempotency as ECS documents it (moto ignores the token): a
    repeated token gets the first call's answer for 24 hours, a task or a failure alike
    (error responses are not answers, so they are not replayed)."""

    def __init__(self, faults: list[Any]) -> None:
        self.real = boto3.client("ecs")
        self.faults = list(faults)
        self.run_calls: list[dict[str, Any]] = []
        self.by_token: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def run_task(self, **kwargs: Any) -> Any:
        self.run_calls.append(kwargs)
        token = kwargs.get("clientToken", "")
        if token in self.by_token:
            return self.by_token[token]
        fault = self.faults.pop(0) if self.faults else None
        if fault is None or fault == CRASH_AFTER_LAUNCH:
            self.by_token[token] = self.real.run_task(**kwargs)
            if fault == CRASH_AFTER_LAUNCH:
                raise LauncherCrashed("the response of a successful RunTask was lost")
            return self.by_token[token]
        if isinstance(fault, dict):
            self.by_token[token] = fault  # a RunTask response with failures: replayed too
            return fault
        code, message = fault
        raise ClientError({"Error": {"Code": code, "Message": message}}, "RunTask")


@pytest.fixture
def res(pipeline_resources):
    return pipeline_resources(
        [
            WorkerSpec("echo", capacity_strategy=SPOT_FIRST, max_concurrency=2),
            WorkerSpec("solo", spot_fallback=False),
        ]
    )


def submit(worker: str = "echo", **extra: Any) -> str:
    status, body, _ = call("POST", "/jobs", {"worker": worker, "input": _input(worker), **extra})
    assert status == 202, body
    return body["job_id"]


def _input(worker: str) -> dict[str, Any]:
    return {"items": ["a"]}


def deliver(res, worker: str = "echo") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    messages = receive_all(res.workers[worker].queue_url)
    event = sqs_event(res.workers[worker].queue_arn, messages)
    return launcher.handler(event, None), messages


def test_dispatch_runs_one_task_with_contract_shape(res) -> None:
    job_id = submit(cpu=512, memory=2048)
    out, messages = deliver(res)
    assert out == {"batchItemFailures": []} and len(messages) == 1
    job = JobStore(res.table_name).get(job_id)
    assert job is not None
    assert job[JobField.STATUS] == "DISPATCHED" and job[JobField.ATTEMPTS] == 1
    ecs = boto3.client("ecs")
    task = ecs.describe_tasks(
        cluster=res.cluster_arn, tasks=[job[JobField.TASK_ARN]], include=["TAGS"]
    )["tasks"][0]
    assert task["startedBy"] == job_id
    assert {"key": TAG_JOB_ID, "value": job_id} in task["tags"]
    assert task["taskDefinitionArn"] == res.workers["echo"].task_definition_arn
    assert task["overrides"]["cpu"] == "512" and task["overrides"]["memory"] == "2048"
    env = {e["name"]: e["value"] for e in task["overrides"]["containerOverrides"][0]["environment"]}
    assert env == {Env.JOB_ID: job_id, Env.JOB_ATTEMPT: "1"}


def test_duplicate_delivery_launches_once(res) -> None:
    fake = FaultyEcs([])
    _aws.set_client("ecs", fake)
    job_id = submit()
    messages = receive_all(res.workers["echo"].queue_url)
    event = sqs_event(res.workers["echo"].queue_arn, messages + messages)
    assert launcher.handler(event, None) == {"batchItemFailures": []}
    assert launcher.handler(event, None) == {"batchItemFailures": []}
    assert len(fake.run_calls) == 1
    tasks = boto3.client("ecs").list_tasks(cluster=res.cluster_arn, startedBy=job_id)["taskArns"]
    assert len(tasks) == 1


def test_cancelled_job_is_skipped(res) -> None:
    job_id = submit()
    assert call("POST", f"/jobs/{job_id}/cancel")[0] == 200
    out, _ = deliver(res)
    assert out == {"batchItemFailures": []}
    assert boto3.client("ecs").list_tasks(cluster=res.cluster_arn)["taskArns"] == []
    assert JobStore(res.table_name).get(job_id)[JobField.STATUS] == "CANCELLED"


def test_concurrency_cap_parks_the_job_and_a_freed_slot_starts_it(res) -> None:
    """At the cap the job parks (QUEUED + waiting_since, no claim) and its message is consumed:
    waiting spends no SQS receive. When a task's slot is released (the reconciler, on its
    STOPPED event) a drain message starts the parked job."""
    ids = [submit() for _ in range(3)]
    out, _ = deliver(res)
    assert out == {"batchItemFailures": []}  # max_concurrency 2: nothing handed back
    store = JobStore(res.table_name)
    jobs = {i: store.get(i) for i in ids}
    statuses = sorted(j[JobField.STATUS] for j in jobs.values())
    assert statuses == ["DISPATCHED", "DISPATCHED", "QUEUED"]
    parked = next(i for i, j in jobs.items() if j[JobField.STATUS] == "QUEUED")
    assert jobs[parked][JobField.ATTEMPTS] == 0 and jobs[parked][JobField.WAITING_SINCE]
    assert receive_all(res.workers["echo"].queue_url) == []  # consumed, not deferred
    running = next(i for i in ids if i != parked)
    dispatch = Dispatch(store)
    assert dispatch.release(slot_key(running, 1))
    again = launcher.handler(sqs_event(res.workers["echo"].queue_arn, [_drain()]), None)
    assert again == {"batchItemFailures": []}
    woken = store.get(parked)
    assert woken[JobField.STATUS] == "DISPATCHED" and woken[JobField.ATTEMPTS] == 1
    assert JobField.WAITING_SINCE not in woken and woken[JobField.TASK_ARN]
    counts, _ = dispatch.counts()
    assert counts["echo"]["tasks"] == 2 and counts["echo"]["waiting"] == 0


def test_a_fresh_job_never_overtakes_a_parked_one(res) -> None:
    """Oldest first within a worker: while a job is parked, a new job parks behind it even
    if a slot is free at that instant, and the drain starts the older one first."""
    first, second, third = submit(), submit(), submit()
    store = JobStore(res.table_name)
    dispatch = Dispatch(store)
    messages = receive_all(res.workers["echo"].queue_url)
    by_job = {json.loads(m["Body"])["job_id"]: m for m in messages}
    # Two launch and fill the cap; the third parks.
    assert launcher.handler(
        sqs_event(res.workers["echo"].queue_arn, [by_job[first], by_job[second]]), None
    ) == {"batchItemFailures": []}
    launcher.Launcher().process(by_job[third]["Body"])
    assert store.get(third)[JobField.WAITING_SINCE]
    late = submit()
    dispatch.release(slot_key(first, 1))  # a slot frees, but no drain ran yet
    late_message = receive_all(res.workers["echo"].queue_url)
    outcome = launcher.Launcher().process(late_message[0]["Body"])
    assert outcome.action == "waiting"  # it parks behind the third
    launcher.Launcher().drain()
    assert store.get(third)[JobField.STATUS] == "DISPATCHED"
    assert store.get(late)[JobField.STATUS] == "QUEUED"


def _drain() -> dict[str, Any]:
    return {
        "MessageId": "drain-1",
        "ReceiptHandle": "drain-1",
        "Body": '{"drain": true}',
        "Attributes": {"MessageGroupId": "dispatch-drain", "ApproximateReceiveCount": "1"},
    }


def test_throttling_keeps_claim_and_resumes_with_same_token(res) -> None:
    fake = FaultyEcs([("ThrottlingException", "Rate exceeded")])
    _aws.set_client("ecs", fake)
    job_id = submit()
    messages = receive_all(res.workers["echo"].queue_url)
    event = sqs_event(res.workers["echo"].queue_arn, messages)
    out = launcher.handler(event, None)
    assert out == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
    store = JobStore(res.table_name)
    job = store.get(job_id)
    assert job[JobField.STATUS] == "DISPATCHED" and JobField.TASK_ARN not in job
    # Redelivery resumes the same attempt: no second claim, same idempotency token.
    assert launcher.handler(event, None) == {"batchItemFailures": []}
    job = store.get(job_id)
    assert job[JobField.ATTEMPTS] == 1 and job[JobField.TASK_ARN]
    assert len(fake.run_calls) == 2
    assert fake.run_calls[0]["clientToken"] == fake.run_calls[1]["clientToken"]


def test_spot_capacity_falls_back_to_on_demand(res) -> None:
    capacity = {"tasks": [], "failures": [{"reason": "Capacity is unavailable at this time."}]}
    fake = FaultyEcs([capacity])
    _aws.set_client("ecs", fake)
    job_id = submit()
    out, _ = deliver(res)
    assert out == {"batchItemFailures": []}
    assert [c["capacityProviderStrategy"][0]["capacityProvider"] for c in fake.run_calls] == [
        "FARGATE_SPOT",
        "FARGATE",
    ]
    assert len(fake.run_calls[1]["capacityProviderStrategy"]) == 1
    assert JobStore(res.table_name).get(job_id)[JobField.TASK_ARN]


def test_resume_after_fallback_repeats_the_on_demand_launch(res) -> None:
    """Spot has no capacity, the on-demand fallback starts a task, the launcher dies before
    recording it. The redelivered message must resume the on-demand launch (same token),
    not try Spot again under the first token, which would run the attempt twice."""
    capacity = {"tasks": [], "failures": [{"reason": "Capacity is unavailable at this time."}]}
    fake = FaultyEcs([capacity, CRASH_AFTER_LAUNCH, capacity])
    _aws.set_client("ecs", fake)
    job_id = submit()
    messages = receive_all(res.workers["echo"].queue_url)
    event = sqs_event(res.workers["echo"].queue_arn, messages)
    with pytest.raises(LauncherCrashed):
        launcher.handler(event, None)
    assert launcher.handler(event, None) == {"batchItemFailures": []}
    tokens = [c["clientToken"] for c in fake.run_calls]
    assert len(tokens) == 3 and tokens[2] == tokens[1] != tokens[0], tokens
    assert fake.run_calls[2]["capacityProviderStrategy"][0]["capacityProvider"] == "FARGATE"
    tasks = boto3.client("ecs").list_tasks(cluster=res.cluster_arn, startedBy=job_id)["taskArns"]
    job = JobStore(res.table_name).get(job_id)
    assert tasks == [job[JobField.TASK_ARN]] and job[JobField.ATTEMPTS] == 1


CAPACITY = {"tasks": [], "failures": [{"reason": "Capacity is unavailable at this time."}]}


def _deliver_again(res, worker: str, messages: list[dict[str, Any]]) -> Any:
    return launcher.handler(sqs_event(res.workers[worker].queue_arn, messages), None)


def test_spot_only_capacity_shortage_retries_under_a_new_token(res) -> None:
    """ECS replays a token's answer for 24 h: retrying a "no capacity" answer under the same
    token would fail for a day. The retry is a new try with its own token, once."""
    fake = FaultyEcs([CAPACITY])
    _aws.set_client("ecs", fake)
    job_id = submit("solo")
    messages = receive_all(res.workers["solo"].queue_url)
    assert len(_deliver_again(res, "solo", messages)["batchItemFailures"]) == 1
    assert _deliver_again(res, "solo", messages) == {"batchItemFailures": []}
    tokens = [c["clientToken"] for c in fake.run_calls]
    assert len(tokens) == 2 and tokens[0] != tokens[1], tokens
    job = JobStore(res.table_name).get(job_id)
    assert job[JobField.TASK_ARN] and job[JobField.ATTEMPTS] == 1  # the same attempt
    assert job[JobField.LAUNCH] == {"attempt": 1, "tries": 1, "step": 0, "first": 0}


def test_no_capacity_anywhere_starts_over_with_spot_under_new_tokens(res) -> None:
    fake = FaultyEcs([CAPACITY, CAPACITY])  # Spot, then the on-demand fallback
    _aws.set_client("ecs", fake)
    job_id = submit()
    messages = receive_all(res.workers["echo"].queue_url)
    assert len(_deliver_again(res, "echo", messages)["batchItemFailures"]) == 1
    assert _deliver_again(res, "echo", messages) == {"batchItemFailures": []}
    calls = [
        (c["clientToken"], c["capacityProviderStrategy"][0]["capacityProvider"])
        for c in fake.run_calls
    ]
    assert [provider for _, provider in calls] == ["FARGATE_SPOT", "FARGATE", "FARGATE_SPOT"]
    assert len({token for token, _ in calls}) == 3, calls
    assert JobStore(res.table_name).get(job_id)[JobField.TASK_ARN]


def test_throttled_launch_keeps_its_token(res) -> None:
    """An error is not an answer: the outcome of a throttled call is known (nothing started),
    and ECS does not replay it, so the state is not written and the token is kept."""
    fake = FaultyEcs([("ThrottlingException", "Rate exceeded")])
    _aws.set_client("ecs", fake)
    job_id = submit("solo")
    messages = receive_all(res.workers["solo"].queue_url)
    _deliver_again(res, "solo", messages)
    assert JobField.LAUNCH not in JobStore(res.table_name).get(job_id)
    _deliver_again(res, "solo", messages)
    assert fake.run_calls[0]["clientToken"] == fake.run_calls[1]["clientToken"]


def test_capacity_failure_after_fallback_returns_message(res) -> None:
    err = ("ClientException", "Capacity is unavailable at this time. Please try again later")
    fake = FaultyEcs([err, err])
    _aws.set_client("ecs", fake)
    submit()
    out, messages = deliver(res)
    assert out["batchItemFailures"] == [{"itemIdentifier": messages[0]["MessageId"]}]
    assert len(fake.run_calls) == 2


def test_no_fallback_when_worker_disallows_it(res) -> None:
    err = ("ClientException", "Capacity is unavailable at this time.")
    fake = FaultyEcs([err])
    _aws.set_client("ecs", fake)
    submit("solo")
    out, _ = deliver(res, "solo")
    assert len(out["batchItemFailures"]) == 1 and len(fake.run_calls) == 1


def test_permanent_launch_error_fails_job(res) -> None:
    fake = FaultyEcs([("InvalidParameterException", "TaskDefinition is inactive")])
    _aws.set_client("ecs", fake)
    job_id = submit()
    out, _ = deliver(res)
    assert out == {"batchItemFailures": []}
    job = JobStore(res.table_name).get(job_id)
    assert job[JobField.STATUS] == "FAILED"
    assert job[JobField.ERROR]["type"] == "LaunchFailed"


def test_stale_and_malformed_messages(res) -> None:
    job_id = submit()
    receive_all(res.workers["echo"].queue_url)
    stale = {
        "MessageId": "m1",
        "ReceiptHandle": "r",
        "Body": json.dumps({"job_id": job_id, "attempt": 3}),
    }
    bad = {"MessageId": "m2", "ReceiptHandle": "r", "Body": "not json"}
    out = launcher.handler(sqs_event(res.workers["echo"].queue_arn, [stale, bad]), None)
    assert out == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert JobStore(res.table_name).get(job_id)[JobField.STATUS] == "QUEUED"


def test_fifo_group_order_is_kept_after_a_failure(res) -> None:
    fake = FaultyEcs([("ThrottlingException", "slow down")])
    _aws.set_client("ecs", fake)
    job_id = submit()
    messages = receive_all(res.workers["echo"].queue_url)
    dup = dict(messages[0], MessageId="dup")
    out = launcher.handler(sqs_event(res.workers["echo"].queue_arn, [messages[0], dup]), None)
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == [
        messages[0]["MessageId"],
        "dup",
    ]
    assert len(fake.run_calls) == 1 and job_id


def test_retry_visibility_backs_off_and_caps() -> None:
    assert [launcher.retry_visibility(n) for n in (1, 2, 3, 4, 5, 6, 20)] == [
        30,
        60,
        120,
        240,
        480,
        900,
        900,
    ]
    # 20 receives (the JobQueue default maxReceiveCount) cover hours of waiting for a slot.
    assert sum(launcher.retry_visibility(n) for n in range(1, 21)) >= 3 * 3600


class TableCalls:
    """Records every DynamoDB operation the handlers' client sends (botocore event hook)."""

    def __init__(self) -> None:
        self.client = _aws.client("dynamodb")
        self.calls: list[tuple[str, str]] = []
        self.client.meta.events.register("before-parameter-build.dynamodb", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        key = params.get("Key", {}).get("pk", {}).get("S", "")
        self.calls.append((model.name, key))

    def on_jobs(self) -> list[str]:
        return [op for op, key in self.calls if key.startswith("job#")]


def test_one_launch_costs_one_read_one_transaction_and_one_write(res) -> None:
    """Benchmark 1 budget: read the job, claim job + slot in one transaction, record the task
    ARN on the job (the lease reaches the task through its current job)."""
    job_id = submit()
    calls = TableCalls()
    out, _ = deliver(res)
    assert out == {"batchItemFailures": []}
    ops = [op for op, key in calls.calls if not key.startswith("worker#")]
    assert ops == ["GetItem", "TransactWriteItems", "UpdateItem"]
    job = JobStore(res.table_name).get(job_id)
    assert job[JobField.STATUS] == "DISPATCHED" and job[JobField.TASK_ARN]
    lease = Dispatch(JobStore(res.table_name)).get(slot_key(job_id, 1))
    assert lease is not None and lease["current_job"] == job_id


def test_queued_job_with_cancel_flag_is_cancelled_not_launched(res) -> None:
    """A retry can leave a QUEUED job carrying a cancel request: the claim refuses it."""
    job_id = submit()
    store = JobStore(res.table_name)
    store.update(job_id, status="QUEUED", set_fields={JobField.CANCEL_REQUESTED: True})
    out, _ = deliver(res)
    assert out == {"batchItemFailures": []}
    assert boto3.client("ecs").list_tasks(cluster=res.cluster_arn)["taskArns"] == []
    job = store.get(job_id)
    assert job[JobField.STATUS] == "CANCELLED" and job[JobField.ATTEMPTS] == 0


def test_stored_false_cancel_flag_still_launches(res) -> None:
    job_id = submit()
    store = JobStore(res.table_name)
    store.update(job_id, status="QUEUED", set_fields={JobField.CANCEL_REQUESTED: False})
    out, _ = deliver(res)
    assert out == {"batchItemFailures": []}
    assert store.get(job_id)[JobField.STATUS] == "DISPATCHED"


def test_stale_attempt_message_is_deleted_without_a_launch(res) -> None:
    job_id = submit()
    messages = receive_all(res.workers["echo"].queue_url)
    event = sqs_event(res.workers["echo"].queue_arn, messages)
    assert launcher.handler(event, None) == {"batchItemFailures": []}
    store = JobStore(res.table_name)
    store.transition(job_id, "DISPATCHED", "QUEUED", attempt=1, remove_fields=[JobField.TASK_ARN])
    # The attempt-0 message again (the job now waits for attempt 1's message): skipped.
    fake = FaultyEcs([])
    _aws.set_client("ecs", fake)
    assert launcher.handler(event, None) == {"batchItemFailures": []}
    assert fake.run_calls == []
    job = store.get(job_id)
    assert job[JobField.STATUS] == "QUEUED" and job[JobField.ATTEMPTS] == 1


@pytest.mark.parametrize(
    "fault",
    [
        # Real ECS: the account's concurrent Fargate vCPU quota, as a RunTask error and as a
        # failures[] reason; and the control plane's rate limit as a ClientException.
        (
            "ClientException",
            "You've reached the limit on the number of vCPUs you can run concurrently",
        ),
        {
            "tasks": [],
            "failures": [
                {
                    "reason": "You've reached the limit on the number of "
                    "tasks you can run concurrently"
                }
            ],
        },
        ("ClientException", "Rate exceeded"),
    ],
)
def test_quota_and_rate_limit_are_retried_not_failed(res, fault: Any) -> None:
    """These conditions pass as other tasks stop / the token bucket refills: the job must stay
    claimed and come back, not be FAILED as a permanent launch error."""
    fake = FaultyEcs([fault])
    _aws.set_client("ecs", fake)
    job_id = submit("solo")
    out, messages = deliver(res, "solo")
    assert out["batchItemFailures"] == [{"itemIdentifier": messages[0]["MessageId"]}]
    job = JobStore(res.table_name).get(job_id)
    assert job[JobField.STATUS] == "DISPATCHED" and JobField.TASK_ARN not in job


def test_permanent_failure_reason_still_fails() -> None:
    assert not launch_ecs.is_transient_reason("MISSING")
    assert not launch_ecs.is_transient_reason("InvalidParameterException: TaskDefinition inactive")
    assert launch_ecs.is_transient_reason("Capacity is unavailable at this time.")


@pytest.mark.parametrize(
    ("arn", "endpoint", "region", "url"),
    [
        (
            "arn:aws-cn:sqs:cn-north-1:123456789012:q.fifo",
            "https://sqs.cn-north-1.amazonaws.com.cn",
            "cn-north-1",
            "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q.fifo",
        ),
        (
            "arn:aws-iso:sqs:us-iso-east-1:123456789012:q.fifo",
            "https://sqs.us-iso-east-1.c2s.ic.gov",
            "us-iso-east-1",
            "https://sqs.us-iso-east-1.c2s.ic.gov/123456789012/q.fifo",
        ),
        (  # a client of another region: the public pattern of the queue's own region
            "arn:aws:sqs:eu-west-1:123456789012:q.fifo",
            "https://sqs.us-east-1.amazonaws.com",
            "us-east-1",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/q.fifo",
        ),
    ],
)
def test_queue_url_uses_the_partitions_own_endpoint(arn, endpoint, region, url) -> None:
    assert launcher._queue_url(arn, endpoint, region) == url


def test_queue_url_matches_botocores_endpoint_for_the_region(monkeypatch) -> None:
    """The host botocore itself resolves for SQS in a non-commercial partition."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS", raising=False)
    sqs = boto3.session.Session().client(
        "sqs", region_name="us-iso-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    arn = "arn:aws-iso:sqs:us-iso-east-1:123456789012:jobs.fifo"
    got = launcher._queue_url(arn, sqs.meta.endpoint_url, sqs.meta.region_name)
    assert got == "https://sqs.us-iso-east-1.c2s.ic.gov/123456789012/jobs.fifo"


def test_conflict_on_a_used_token_adopts_the_task_it_launched(res) -> None:
    """Real ECS answers a repeated clientToken with changed parameters (e.g. subnets after a
    redeploy) with ConflictException carrying ``resourceIds``: the tasks that token already
    launched. That task is this attempt's, so it is recorded, not the job failed."""
    from botocore.stub import Stubber

    ecs = boto3.client("ecs")
    existing = "arn:aws:ecs:us-east-1:123456789012:task/c/0123456789abcdef0123456789abcdef"
    stubber = Stubber(ecs)
    stubber.add_client_error(
        "run_task",
        service_error_code="ConflictException",
        service_message="The provided clientToken is already in use with a different request",
        http_status_code=400,
        modeled_fields={"resourceIds": [existing]},
    )
    stubber.activate()
    _aws.set_client("ecs", ecs)
    lau = launcher.Launcher()
    job_id = submit("solo")
    messages = receive_all(res.workers["solo"].queue_url)
    outcome = lau.process(messages[0]["Body"])
    assert outcome.action == "launched" and outcome.task_arn == existing
    job = JobStore(res.table_name).get(job_id)
    assert job[JobField.STATUS] == "DISPATCHED" and job[JobField.TASK_ARN] == existing
    stubber.assert_no_pending_responses()


class _DenyingDynamoDB:
    """The real moto DynamoDB client, except GetItem on worker registrations answers as AWS
    does for a role whose dynamodb:LeadingKeys does not cover them: AccessDeniedException."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def get_item(self, **kwargs: Any) -> Any:
        if kwargs["Key"]["pk"]["S"].startswith("worker#"):
            message = "User: arn:aws:sts::1:assumed-role/launcher/x is not authorized to perform: "
            message += "dynamodb:GetItem"
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": message}}, "GetItem"
            )
        return self._real.get_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_an_access_denied_launch_fails_the_job_once_instead_of_looping(res) -> None:
    """IAM answers every redelivery the same: the job ends FAILED (naming the call) and is
    reported, and the message is consumed, not handed back to loop into the DLQ."""
    topic_queue = topic_tap(res.topic_arn, "launcher-denied-notifications")
    job_id = submit()
    _aws.reset_clients()  # and the registration cache: the launcher must read it
    _aws.set_client("dynamodb", _DenyingDynamoDB(boto3.client("dynamodb")))
    try:
        out, _ = deliver(res)
    finally:
        _aws.reset_clients()
    assert out == {"batchItemFailures": []}
    job = JobStore(res.table_name).get(job_id)
    assert job is not None and job[JobField.STATUS] == "FAILED"
    assert job[JobField.ERROR]["type"] == "AccessDenied"
    assert (
        "GetItem" in job[JobField.ERROR]["message"]
        and "dynamodb:GetItem" in job[JobField.ERROR]["message"]
    )
    assert [json.loads(m["Body"])["job_id"] for m in receive_all(topic_queue)] == [job_id]
    assert receive_all(res.workers["echo"].queue_url) == []


def test_runtask_pacing_follows_ecs_launch_rate() -> None:
    """ECS: burst 100, 20 launches/s sustained, shared by the launcher's invocations."""
    now = [0.0]
    bucket = launch_ecs.TokenBucket(10.0, 50.0, clock=lambda: now[0])  # 2 invocations' share
    waits = [bucket.delay() for _ in range(50)]
    assert waits == [0.0] * 50  # the burst
    assert bucket.delay() == pytest.approx(0.1)  # then one per 1/10 s
    now[0] += 1.0
    assert bucket.delay() == pytest.approx(0.0) and bucket.tokens == pytest.approx(8.0)


def test_each_invocation_takes_its_share_of_the_rate(monkeypatch) -> None:
    monkeypatch.setenv(launch_ecs.LAUNCHER_CONCURRENCY_ENV, "4")
    bucket = launch_ecs._runtask_bucket()
    assert bucket.rate == 5.0 and bucket.burst == 25.0


def test_a_burst_past_the_cap_parks_each_job_with_one_transaction(res) -> None:
    """Once a fresh claim found the worker full, the batch's later jobs of that worker park
    without a claim that would be refused: 2 claims + 1 refused + 4 parks, not 2 + 4 x 2.
    Each is still parked (counted), and the oldest still starts first when a slot frees."""
    ids = [submit() for _ in range(6)]
    messages = receive_all(res.workers["echo"].queue_url)
    assert len(messages) == 6
    calls = TableCalls()
    out = launcher.handler(sqs_event(res.workers["echo"].queue_arn, messages), None)
    assert out == {"batchItemFailures": []}
    assert [op for op, _ in calls.calls].count("TransactWriteItems") == 7
    store = JobStore(res.table_name)
    jobs = [store.get(i) for i in ids]
    assert [j[JobField.STATUS] for j in jobs] == ["DISPATCHED"] * 2 + ["QUEUED"] * 4
    assert all(j.get(JobField.WAITING_SINCE) for j in jobs[2:])
    dispatch = Dispatch(store)
    counts, _ = dispatch.counts()
    assert counts["echo"]["tasks"] == 2 and counts["echo"]["waiting"] == 4
    assert dispatch.release(slot_key(ids[0], 1))
    launcher.Launcher().drain()
    assert store.get(ids[2])[JobField.STATUS] == "DISPATCHED"
    assert [store.get(i)[JobField.STATUS] for i in ids[3:]] == ["QUEUED"] * 3


def test_drain_requests_do_not_queue_behind_each_other(res) -> None:
    """Each drain request is its own FIFO message group (a shared group let only one drain
    run at a time), within SQS's MessageGroupId rule: 1-128 alphanumerics/punctuation."""
    import re
    import string

    from jobcontract.dispatch import drain_message

    groups = {drain_message()["MessageGroupId"] for _ in range(50)}
    assert len(groups) == 50
    allowed = re.compile(
        "^[" + re.escape(string.ascii_letters + string.digits + string.punctuation) + "]{1,128}$"
    )
    assert all(allowed.match(g) for g in groups)


def test_concurrent_drains_hand_one_free_slot_out_once(res) -> None:
    """Drains may now run side by side: with one slot free and three jobs parked, two drains
    at once start exactly one job, on exactly one task (the claim transaction decides)."""
    from concurrent.futures import ThreadPoolExecutor

    fake = FaultyEcs([])
    _aws.set_client("ecs", fake)
    ids = [submit() for _ in range(5)]
    messages = receive_all(res.workers["echo"].queue_url)
    launcher.handler(sqs_event(res.workers["echo"].queue_arn, messages), None)
    store = JobStore(res.table_name)
    dispatch = Dispatch(store)
    assert dispatch.release(slot_key(ids[0], 1))
    before = len(fake.run_calls)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: launcher.Launcher().drain(), range(2)))
    assert len(fake.run_calls) - before == 1
    statuses = [store.get(i)[JobField.STATUS] for i in ids[2:]]
    assert statuses == ["DISPATCHED", "QUEUED", "QUEUED"]
    counts, _ = dispatch.counts()
    assert counts["echo"]["tasks"] == 2 and counts["echo"]["waiting"] == 2


def test_a_claim_that_only_conflicted_does_not_mark_the_worker_full(res, monkeypatch) -> None:
    """A TransactionConflict (another launcher writing the same counts) is no sign of a full
    worker: the claim answers CONFLICT and the invocation does not park the worker's next
    jobs unclaimed (a real refusal does)."""
    from jobcontract import dispatch as dispatch_module

    job_id = submit()
    body = receive_all(res.workers["echo"].queue_url)[0]["Body"]
    real = dispatch_module.Dispatch._transact

    def conflict(self: Any, ops: list[dict[str, Any]]) -> None:
        if len(ops) == 4:  # a claim
            reasons = ["None", "TransactionConflict", "None", "None"]
            raise dispatch_module.TransactionRefused(reasons, [None] * 4)
        real(self, ops)

    monkeypatch.setattr(dispatch_module.Dispatch, "_transact", conflict)
    d = Dispatch(JobStore(res.table_name))
    assert d.claim(job_id, 0, "echo", cap=2, cpu=256) == dispatch_module.Refusal.CONFLICT
    one = launcher.Launcher()
    assert one.process(body).action == "waiting" and one.full == set()
    monkeypatch.setattr(dispatch_module.Dispatch, "_transact", real)
    submit()  # a job is parked ahead of it: its claim is refused for real
    two = launcher.Launcher()
    assert two.process(receive_all(res.workers["echo"].queue_url)[0]["Body"]).action == "waiting"
    assert two.full == {"echo"}
