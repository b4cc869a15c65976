"""The Bedrock model client's failure handling (Stubber, fake clock): throttling backoff in a
time budget, the stop flag cutting a wait short, "the model cannot be called" as one job
failure, the timeouts against the task's stop timeout, and backend selection."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest
from botocore.stub import ANY

import jobcontract
from jobcontract import Env
from workers.runtime import (
    BedrockClient,
    JobFatalError,
    ModelError,
    ModelUnavailableError,
    PermanentError,
    RetryPolicy,
    StopRequested,
    error_summary,
    model_client_from_env,
)
from workers.runtime import model as model_module
from workers.runtime.checkpoint import Checkpoint
from workers.runtime.context import JobContext, ProgressTracker, StopFlag
from workers.runtime.logs import JsonLogger
from workers.runtime.model import ModelConfigError
from workers.runtime.testing import make_context, stubbed_bedrock

EXPECTED = {"modelId": "m", "messages": ANY, "inferenceConfig": ANY}


def answer(text: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
        "metrics": {"latencyMs": 1},
    }


class FakeTime:
    """A clock that only moves when the client waits; records every wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def highest(low: float, high: float) -> float:
    """Deterministic "jitter": always the cap, so the exponential schedule is visible."""
    return high


# --- throttling: backoff in a budget ---------------------------------------------------------
def test_throttling_backs_off_exponentially_then_succeeds() -> None:
    client, stub = stubbed_bedrock()
    stub.add_client_error("converse", "ThrottlingException", http_status_code=429)
    stub.add_client_error("converse", "ServiceQuotaExceededException", http_status_code=400)
    stub.add_client_error("converse", "ModelNotReadyException", http_status_code=429)
    stub.add_response("converse", answer("ok"), EXPECTED)
    fake = FakeTime()
    model = BedrockClient(
        "m",
        client=client,
        retry=RetryPolicy(base_delay=1.0, max_delay=3.0, budget_seconds=60),
        clock=fake.clock,
        wait=fake.wait,
        jitter=highest,
    )
    with stub:
        assert model.generate("hi") == "ok"
    stub.assert_no_pending_responses()
    assert fake.waits == [1.0, 2.0, 3.0]  # doubling, capped at max_delay


def test_waits_are_full_jitter_below_the_cap() -> None:
    client, stub = stubbed_bedrock()
    for _ in range(6):
        stub.add_client_error("converse", "ThrottlingException", http_status_code=429)
    stub.add_response("converse", answer("ok"), EXPECTED)
    fake = FakeTime()
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, budget_seconds=600)
    model = BedrockClient("m", client=client, retry=policy, clock=fake.clock, wait=fake.wait)
    with stub:
        model.generate("hi")
    assert len(fake.waits) == 6
    assert all(0 <= w <= policy.cap(n) for n, w in enumerate(fake.waits, start=1))


def test_budget_exhausted_fails_the_item_with_the_last_error() -> None:
    client, stub = stubbed_bedrock()
    for _ in range(3):
        stub.add_client_error("converse", "ThrottlingException", http_status_code=429)
    fake = FakeTime()
    model = BedrockClient(
        "m",
        client=client,
        retry=RetryPolicy(base_delay=4.0, max_delay=30.0, budget_seconds=10),
        clock=fake.clock,
        wait=fake.wait,
        jitter=highest,
    )
    with stub, pytest.raises(ModelError, match="ThrottlingException") as info:
        model.generate("hi")
    stub.assert_no_pending_responses()
    assert fake.waits == [4.0, 6.0]  # the last wait is cut to what is left of the budget
    assert fake.now == 10
    assert "gave up after 3 attempts" in str(info.value)
    assert not isinstance(info.value, JobFatalError)  # one item fails, not the job


def test_default_budget_is_a_minute_or_two_not_a_few_seconds() -> None:
    policy = RetryPolicy()
    assert 60 <= policy.budget_seconds <= 180
    assert policy.cap(100) == policy.max_delay  # no overflow, capped


def test_stop_flag_set_mid_backoff_returns_promptly() -> None:
    client, stub = stubbed_bedrock()
    stub.add_client_error("converse", "ThrottlingException", http_status_code=429)
    stop = StopFlag()
    model = BedrockClient(
        "m",
        client=client,
        stop=stop,
        retry=RetryPolicy(base_delay=60.0, max_delay=60.0, budget_seconds=600),
        jitter=highest,  # a 60 s wait, unless the stop flag ends it
    )
    timer = threading.Timer(0.1, stop.set, args=("interrupted",))
    started = time.monotonic()
    timer.start()
    try:
        with stub, pytest.raises(StopRequested) as info:
            model.generate("hi")
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5
    assert info.value.reason == "interrupted"
    stub.assert_no_pending_responses()  # no second call after the stop


def test_no_call_once_the_job_must_stop() -> None:
    client, stub = stubbed_bedrock()
    stop = StopFlag()
    stop.set("cancelled")
    with stub, pytest.raises(StopRequested) as info:
        BedrockClient("m", client=client, stop=stop).generate("hi")
    assert info.value.reason == "cancelled"


# --- the model cannot be called ----------------------------------------------------------
@pytest.mark.parametrize(
    "code, status, message",
    [
        (
            "AccessDeniedException",
            403,
            "You don't have access to the model with the specified model ID.",
        ),
        ("ResourceNotFoundException", 404, "This model version has reached the end of its life."),
        (
            "ResourceNotFoundException",
            404,
            "Access denied. This Model is marked by provider as"
            " Legacy and you have not been actively using the model in the last 15 days.",
        ),
        ("ValidationException", 400, "The provided model identifier is invalid."),
        (
            "ValidationException",
            400,
            "Invocation of model ID amazon.nova-2-lite-v1:0 with"
            " on-demand throughput isn't supported. Retry your request with the ID or ARN of an"
            " inference profile that contains this model.",
        ),
        ("FTUFormNotFilled", 404, "Model use case details have not been submitted."),
    ],
)
def test_model_unavailable_is_one_clear_job_failure(code: str, status: int, message: str) -> None:
    client, stub = stubbed_bedrock()
    stub.add_client_error("converse", code, message, http_status_code=status)
    model = BedrockClient("anthropic.claude-3-haiku-20240307-v1:0", client=client)
    with stub, pytest.raises(ModelUnavailableError) as info:
        model.generate("hi")
    stub.assert_no_pending_responses()  # not retried
    error = info.value
    assert isinstance(error, PermanentError) and isinstance(error, JobFatalError)
    stored = error_summary(error)["message"]  # what the job item keeps (500 characters)
    assert "anthropic.claude-3-haiku-20240307-v1:0" in stored and code in stored
    assert "model access" in stored and "bedrock:InvokeModel" in stored
    assert "bedrockModelId" in stored


def test_guidance_survives_a_long_aws_message() -> None:
    error = ModelUnavailableError("amazon.nova-lite-v1:0", "AccessDeniedException", "x" * 5000)
    stored = error_summary(error)["message"]
    assert len(stored) <= 500 and "bedrock:InvokeModel" in stored


@pytest.mark.parametrize(
    "code, message",
    [
        ("ValidationException", "Input is too long for requested model."),
        ("ValidationException", "The image is malformed."),
        ("ModelErrorException", "The model failed to process the request."),
    ],
)
def test_errors_about_one_prompt_fail_only_that_item(code: str, message: str) -> None:
    client, stub = stubbed_bedrock()
    stub.add_client_error("converse", code, message, http_status_code=400)
    with stub, pytest.raises(ModelError, match=code) as info:
        BedrockClient("m", client=client).generate("hi")
    assert not isinstance(info.value, ModelUnavailableError)


# --- ctx.map: a job-fatal error escapes, an abandoned item is not done ---------------------
def test_map_lets_model_unavailable_fail_the_batch_once() -> None:
    calls: list[int] = []

    def one(i: int) -> int:
        calls.append(i)
        raise ModelUnavailableError("m", "AccessDeniedException", "denied")

    ctx = make_context("echo", {})
    with pytest.raises(ModelUnavailableError):
        ctx.map(one, range(50), concurrency=2)
    assert len(calls) <= 2  # no new item started after the first fatal error


def test_map_item_stopped_mid_call_is_neither_done_nor_failed() -> None:
    """An item whose model call was abandoned (StopRequested) is not recorded as an item
    error: the checkpoint keeps only finished items, so the retry runs it again."""
    stop = StopFlag()
    checkpoint = Checkpoint()

    def one(i: int) -> int:
        if i == 2:
            stop.set("interrupted")
            raise StopRequested("interrupted")
        return i

    ctx = JobContext(
        job={"job_id": "echo_" + "0" * 32},
        worker="echo",
        attempt=1,
        input={},
        logger=JsonLogger(io.StringIO(), worker="echo"),
        stop=stop,
        progress=ProgressTracker(lambda _: None, min_interval=0.0),
        checkpoint=checkpoint,
    )
    with pytest.raises(StopRequested) as info:
        ctx.map(one, range(10), concurrency=1)
    assert (info.value.done, info.value.total) == (2, 10)
    restored = Checkpoint.from_bytes(checkpoint.to_bytes() or b"").restored(0, list(range(10)))
    assert restored == {0: (0, None), 1: (1, None)}


# --- timeouts against the task's stop timeout -------------------------------------------------
def test_one_model_call_ends_well_inside_the_stop_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """After SIGTERM the in-flight item finishes, then the checkpoint is saved before SIGKILL:
    connect + read timeout must leave at least 30 s of the task's stopTimeout for that."""
    from components import fargate_worker

    assert fargate_worker.STOP_TIMEOUT_SECONDS == jobcontract.TASK_STOP_TIMEOUT_SECONDS
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config = BedrockClient("m").client.meta.config
    assert config.read_timeout + config.connect_timeout <= fargate_worker.STOP_TIMEOUT_SECONDS - 30
    assert config.retries["total_max_attempts"] == 1  # our backoff, not botocore's
    assert config.read_timeout == model_module.READ_TIMEOUT_SECONDS


# --- backend selection --------------------------------------------------------------------------
def test_offline_only_when_asked_for() -> None:
    assert model_client_from_env({Env.MODEL_BACKEND: "offline", Env.MODEL_ID: "m"}) is None
    for env in ({}, {Env.MODEL_BACKEND: "bedrock"}):
        with pytest.raises(ModelConfigError, match=Env.MODEL_BACKEND):
            model_client_from_env(env)
    with pytest.raises(ModelConfigError):
        model_client_from_env({Env.MODEL_BACKEND: "openai", Env.MODEL_ID: "m"})


def test_bedrock_client_from_env_gets_the_stop_flag_and_the_budget() -> None:
    stop = StopFlag()
    chosen = model_client_from_env(
        {Env.MODEL_ID: "us.amazon.nova-lite-v1:0", Env.MODEL_RETRY_BUDGET_SECONDS: "120"}, stop
    )
    assert isinstance(chosen, BedrockClient)
    assert chosen.model_id == "us.amazon.nova-lite-v1:0"
    assert chosen.retry.budget_seconds == 120
    stop.set("interrupted")
    with pytest.raises(StopRequested):
        chosen.generate("hi")  # stop-aware: no call is even attempted
    default = model_client_from_env({Env.MODEL_BACKEND: "bedrock", Env.MODEL_ID: "m"})
    assert isinstance(default, BedrockClient) and default.retry == RetryPolicy()
    for bad in ("-1", "soon", "99999"):
        with pytest.raises(ModelConfigError, match=Env.MODEL_RETRY_BUDGET_SECONDS):
            model_client_from_env({Env.MODEL_ID: "m", Env.MODEL_RETRY_BUDGET_SECONDS: bad})
