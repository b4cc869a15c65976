"""Pluggable model client: :class:`BedrockClient` (Amazon Bedrock Converse API) in AWS, or
none at all, in which case each worker uses its own offline backend.

Selection (:func:`model_client_from_env`): ``BATCH_MODEL_BACKEND=offline`` -> offline (the
local pipeline sets it); ``BATCH_MODEL_ID`` (with ``BATCH_MODEL_BACKEND`` unset or
``bedrock``) -> Bedrock with that model id or cross-Region inference profile id. Neither is
a configuration error: a worker never falls back to offline output on its own.

Failures, by who can fix them:
- the model cannot be called at all (access denied, model not enabled, Legacy / end of life,
  unknown id, on-demand not offered) -> :class:`ModelUnavailableError`: the job FAILS once
  (it escapes ``ctx.map``), with a message naming the model, the AWS error and what to do;
- throttling / transient errors -> retried with capped exponential backoff and full jitter
  inside a time budget (:class:`RetryPolicy`), waiting on the job's stop flag, so a Spot
  SIGTERM or a cancel is not held up by a sleeping retry (``StopRequested`` instead);
- anything else about one prompt (bad image, input too long, budget used up) ->
  :class:`ModelError`, which fails that item only.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from jobcontract import TASK_STOP_TIMEOUT_SECONDS, Env
from workers.runtime.errors import JobFatalError, StopReason, StopRequested

ImageFormat = Literal["png", "jpeg", "gif", "webp"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("png", "jpeg", "gif", "webp")
# Converse rejects images over 3.75 MB; checking here gives a clear per-item error instead.
MAX_IMAGE_BYTES = 3_750_000

# After SIGTERM the items in flight finish, then the checkpoint is saved (an S3 put and a
# job update), all before the task's stopTimeout ends in SIGKILL. So one model call, connect
# plus read, must end well inside the stop timeout, leaving this much for the save.
CHECKPOINT_SAVE_RESERVE_SECONDS = 45
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = (
    TASK_STOP_TIMEOUT_SECONDS - CHECKPOINT_SAVE_RESERVE_SECONDS - CONNECT_TIMEOUT_SECONDS
)  # 70 s: ample for the few hundred tokens a seed worker asks for
DEFAULT_RETRY_BUDGET_SECONDS = 90.0  # on-demand quotas are per minute: outlast one window

# AWS rule: Bedrock Runtime errors that mean "slow down / try again" (botocore service model
# of bedrock-runtime: ThrottlingException 429, ServiceUnavailableException 503,
# ModelNotReadyException 429 "retry", ServiceQuotaExceededException "resubmit your request
# later", InternalServerException 500, ModelTimeoutException 408).
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "ServiceQuotaExceededException",
        "InternalServerException",
        "ModelTimeoutException",
    }
)
RETRYABLE_STATUS = frozenset({429, 500, 503})
# AWS rule: errors meaning the model cannot be called by this role in this account and
# region, whatever the prompt. Troubleshooting API error codes
# (https://docs.aws.amazon.com/bedrock/latest/userguide/troubleshooting-api-error-codes.html):
# AccessDeniedException 403 (IAM, or the automatic Marketplace subscription of a third-party
# model failed: https://docs.aws.amazon.com/bedrock/latest/userguide/model-access.html),
# FTUFormNotFilled (Anthropic use-case form not submitted), ResourceNotFoundException (e.g.
# "This model version has reached the end of its life", model card of Claude 3 Haiku).
UNAVAILABLE_CODES = frozenset(
    {"AccessDeniedException", "ResourceNotFoundException", "FTUFormNotFilled"}
)
# ValidationException is mostly about one request (input too long, bad image); only these
# messages are about the model id itself (AWS re:Post "Resolve Amazon Bedrock validation
# exception errors": "The provided model identifier is invalid", "Your AWS account is not
# authorized to invoke this API operation"; models served only through an inference profile
# answer "Invocation of model ID ... with on-demand throughput isn't supported").
UNAVAILABLE_VALIDATION = re.compile(
    r"model identifier is invalid|on-demand throughput isn.t supported|not authorized to invoke"
    r"|end of its life|marked by provider as legacy",
    re.IGNORECASE,
)


class ModelError(Exception):
    """The model call failed for this prompt (after retries) or returned no text: the item
    fails, the batch goes on."""


class ModelUnavailableError(JobFatalError):
    """The configured model cannot be called at all: the job is FAILED (not retried, not N
    failed items), with what to do in the message."""

    def __init__(self, model_id: str, code: str, aws_message: str) -> None:
        self.model_id, self.code, self.aws_message = model_id, code, aws_message
        # What to do comes before the AWS text: stored errors are cut at 500 characters.
        super().__init__(
            f"Bedrock model {model_id!r} cannot be called ({code}). Check in this account and"
            " region: model access (third-party models need their AWS Marketplace subscription,"
            " Anthropic its use-case form); an Active model (not Legacy or end-of-life) or an"
            " inference profile id (stack key bedrockModelId); the task role allows"
            f" bedrock:InvokeModel on it. AWS said: {aws_message[:160]}"
        )


class ModelConfigError(ValueError):
    """``BATCH_MODEL_BACKEND`` / ``BATCH_MODEL_ID`` do not select a usable backend."""


@dataclass(frozen=True)
class ImageInput:
    """An image for a multimodal prompt: raw bytes and their format."""

    data: bytes
    format: ImageFormat


class ModelClient(Protocol):
    """What a worker needs of a model: one prompt (optionally with images) in, text out."""

    model_id: str

    # Its implementations repeat this signature (duplicates lists them): a Protocol is
    # matched by signature, and mypy checks each copy against this one.
    def generate(
        self,
        prompt: str,
        *,
        system: str | None = None,
        images: Sequence[ImageInput] = (),
        max_tokens: int = 300,
        temperature: float = 0.2,
    ) -> str: ...


class StopSignal(Protocol):
    """What the model client needs of the job's stop flag (``context.StopFlag``)."""

    @property
    def reason(self) -> StopReason | None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter (each wait uniform in 0..cap) inside a
    total time budget: Bedrock's on-demand quotas are per minute, so a throttled batch has to
    wait out a window, spread out, instead of failing after a few seconds."""

    base_delay: float = 1.0
    max_delay: float = 20.0
    budget_seconds: float = DEFAULT_RETRY_BUDGET_SECONDS

    def __post_init__(self) -> None:
        if self.base_delay <= 0 or self.max_delay < self.base_delay or self.budget_seconds < 0:
            raise ModelConfigError(f"invalid retry policy {self}")

    def cap(self, retry: int) -> float:
        """Upper bound of the wait before retry number ``retry`` (1-based)."""
        return min(self.max_delay, self.base_delay * float(2 ** min(retry - 1, 30)))


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class BedrockClient:
    """``bedrock-runtime`` Converse with its own backoff on throttling/transient errors
    (botocore makes one attempt per call), stop-aware, and one clear error when the model
    cannot be called at all."""

    def __init__(
        self,
        model_id: str,
        *,
        client: Any = None,
        retry: RetryPolicy | None = None,
        stop: StopSignal | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        """``wait(seconds)`` sleeps and returns True when the job must stop; by default the
        stop flag's own wait (returns at once when it is set), else a plain sleep."""
        if not model_id:
            raise ModelConfigError("a Bedrock model id is required")
        self.model_id = model_id
        self.retry = retry or RetryPolicy()
        self._client = client
        self._stop = stop
        self._clock = clock
        self._wait = wait or (stop.wait if stop is not None else _sleep)
        self._jitter = jitter

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Retries are ours (generate), so botocore makes one attempt per call (its
            # "max_attempts" counts retries; "total_max_attempts" counts the first call too).
            # The timeouts keep one call inside the task's stop timeout (READ_TIMEOUT_SECONDS).
            config = Config(
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                read_timeout=READ_TIMEOUT_SECONDS,
                retries={"mode": "standard", "total_max_attempts": 1},
            )
            self._client = boto3.client("bedrock-runtime", config=config)
        return self._client

    # generate's parameters, which it turns into converse arguments (same signature).
    def request(
        self,
        prompt: str,
        *,
        system: str | None = None,
        images: Sequence[ImageInput] = (),
        max_tokens: int = 300,
        temperature: float = 0.2,
    ) -> dict[str, Any]:
        """The exact ``converse`` arguments for one prompt (images first, then the text)."""
        content: list[dict[str, Any]] = []
        for image in images:
            if image.format not in IMAGE_FORMATS:
                raise ModelError(f"unsupported image format {image.format!r}")
            if len(image.data) > MAX_IMAGE_BYTES:
                raise ModelError(f"image of {len(image.data)} bytes exceeds {MAX_IMAGE_BYTES}")
            content.append({"image": {"format": image.format, "source": {"bytes": image.data}}})
        content.append({"text": prompt})
        kwargs: dict[str, Any] = {
            "modelId": self.model_id,
            "messages": [{"role": "user", "content": content}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": temperature},
        }
        if system:
            kwargs["system"] = [{"text": system}]
        return kwargs

    # ModelClient.generate's signature, as the Protocol requires (mypy checks they agree).
    def generate(
        self,
        prompt: str,
        *,
        system: str | None = None,
        images: Sequence[ImageInput] = (),
        max_tokens: int = 300,
        temperature: float = 0.2,
    ) -> str:
        from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

        kwargs = self.request(
            prompt, system=system, images=images, max_tokens=max_tokens, temperature=temperature
        )
        started = self._clock()
        retry = 0
        while True:
            self._check_stop()
            try:
                return output_text(self.client.converse(**kwargs))
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", "")) or "error"
                message = str(error.get("Message", "")) or str(exc)
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code in UNAVAILABLE_CODES or (
                    code == "ValidationException" and UNAVAILABLE_VALIDATION.search(message)
                ):
                    raise ModelUnavailableError(self.model_id, code, message) from exc
                if code not in RETRYABLE_CODES and status not in RETRYABLE_STATUS:
                    raise ModelError(f"Bedrock {code}: {message}") from exc
                last = f"Bedrock {code}: {message}"
                cause: Exception = exc
            except (ConnectionError, ReadTimeoutError) as exc:
                last, cause = f"Bedrock unreachable: {exc}", exc
            retry += 1
            remaining = self.retry.budget_seconds - (self._clock() - started)
            if remaining <= 0:
                raise ModelError(
                    f"{last} (gave up after {retry} attempts in"
                    f" {self.retry.budget_seconds:g}s, {Env.MODEL_RETRY_BUDGET_SECONDS})"
                ) from cause
            delay = min(self._jitter(0.0, self.retry.cap(retry)), remaining)
            if self._wait(delay):
                raise StopRequested(self._stop_reason())

    def _check_stop(self) -> None:
        """Raise StopRequested once the job must stop: no new call after SIGTERM / cancel."""
        if self._stop is not None and self._stop.is_set():
            raise StopRequested(self._stop_reason())

    def _stop_reason(self) -> StopReason:
        return (self._stop.reason if self._stop is not None else None) or "interrupted"


def output_text(response: Mapping[str, Any]) -> str:
    """The text blocks of a Converse response, joined; ModelError when there are none."""
    content = response.get("output", {}).get("message", {}).get("content", [])
    text = "".join(block["text"] for block in content if isinstance(block.get("text"), str))
    if not text.strip():
        raise ModelError(f"model returned no text (stopReason {response.get('stopReason')})")
    return text.strip()


def retry_policy_from_env(env: Mapping[str, str]) -> RetryPolicy:
    """The default policy, with ``BATCH_MODEL_RETRY_BUDGET_SECONDS`` if set (0 = no retry)."""
    raw = env.get(Env.MODEL_RETRY_BUDGET_SECONDS, "").strip()
    if not raw:
        return RetryPolicy()
    try:
        budget = float(raw)
    except ValueError:
        budget = -1.0
    if not 0 <= budget <= 3600:
        raise ModelConfigError(
            f"{Env.MODEL_RETRY_BUDGET_SECONDS}={raw!r}: seconds, 0..3600"
            f" (default {DEFAULT_RETRY_BUDGET_SECONDS:g})"
        )
    return RetryPolicy(budget_seconds=budget)


def model_client_from_env(
    env: Mapping[str, str], stop: StopSignal | None = None
) -> ModelClient | None:
    """Bedrock when a model id is configured, None (the worker's offline backend) only when
    ``BATCH_MODEL_BACKEND=offline`` says so; ``stop`` is the job's stop flag."""
    backend = env.get(Env.MODEL_BACKEND, "").strip().lower()
    model_id = env.get(Env.MODEL_ID, "").strip()
    if backend not in ("", "bedrock", "offline"):
        raise ModelConfigError(f"{Env.MODEL_BACKEND}={backend!r}: use 'bedrock' or 'offline'")
    if backend == "offline":
        return None
    if not model_id:
        raise ModelConfigError(
            f"{Env.MODEL_ID} is not set: set it to a Bedrock model id, or set"
            f" {Env.MODEL_BACKEND}=offline for the worker's offline backend"
        )
    return BedrockClient(model_id, retry=retry_policy_from_env(env), stop=stop)
