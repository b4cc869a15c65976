"""Pluggable model client: :class:`BedrockClient` (Amazon Bedrock Converse API) in AWS, or
none at all, in which case each worker uses its own offline backend.

Selection (:func:`model_client_from_env`): ``BATCH_MODEL_BACKEND=offline`` or no
``BATCH_MODEL_ID`` -> offline; otherwise Bedrock with that model id.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from jobcontract import Env

ImageFormat = Literal["png", "jpeg", "gif", "webp"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("png", "jpeg", "gif", "webp")
# Converse rejects images over 3.75 MB; checking here gives a clear per-item error instead.
MAX_IMAGE_BYTES = 3_750_000


class ModelError(Exception):
    """The model call failed for good (after retries) or returned no text."""


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

    def generate(
        self,
        prompt: str,
        *,
        system: str | None = None,
        images: Sequence[ImageInput] = (),
        max_tokens: int = 300,
        temperature: float = 0.2,
    ) -> str: ...


class BedrockClient:
    """``bedrock-runtime`` Converse with its own jittered backoff on throttling/transient
    errors (Bedrock throttles per model and account; a batch must slow down, not fail)."""

    RETRYABLE_CODES = frozenset(
        {
            "ThrottlingException",
            "ServiceUnavailableException",
            "ModelNotReadyException",
            "InternalServerException",
            "ModelTimeoutException",
        }
    )

    def __init__(
        self,
        model_id: str,
        *,
        client: Any = None,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not model_id:
            raise ModelConfigError("a Bedrock model id is required")
        self.model_id = model_id
        self._client = client
        self._max_attempts = max(1, max_attempts)
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Retries are ours (below), so botocore makes one attempt per call.
            config = Config(read_timeout=120, retries={"mode": "standard", "max_attempts": 1})
            self._client = boto3.client("bedrock-runtime", config=config)
        return self._client

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
        for attempt in range(1, self._max_attempts + 1):
            try:
                response = self.client.converse(**kwargs)
                return output_text(response)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code not in self.RETRYABLE_CODES or attempt == self._max_attempts:
                    raise ModelError(f"Bedrock {code or 'error'}: {exc}") from exc
            except (ConnectionError, ReadTimeoutError) as exc:
                if attempt == self._max_attempts:
                    raise ModelError(f"Bedrock unreachable: {exc}") from exc
            cap = min(self._max_delay, self._base_delay * 2 ** (attempt - 1))
            self._sleep(random.uniform(cap / 2, cap))  # full-ish jitter spreads retries
        raise ModelError("unreachable")  # pragma: no cover - the loop always returns/raises


def output_text(response: Mapping[str, Any]) -> str:
    """The text blocks of a Converse response, joined; ModelError when there are none."""
    content = response.get("output", {}).get("message", {}).get("content", [])
    text = "".join(block["text"] for block in content if isinstance(block.get("text"), str))
    if not text.strip():
        raise ModelError(f"model returned no text (stopReason {response.get('stopReason')})")
    return text.strip()


def model_client_from_env(env: Mapping[str, str]) -> ModelClient | None:
    """Bedrock when a model id is configured (and the backend is not forced offline), else
    None: the worker then uses its offline backend."""
    backend = env.get(Env.MODEL_BACKEND, "").strip().lower()
    model_id = env.get(Env.MODEL_ID, "").strip()
    if backend not in ("", "bedrock", "offline"):
        raise ModelConfigError(f"{Env.MODEL_BACKEND}={backend!r}: use 'bedrock' or 'offline'")
    if backend == "offline":
        return None
    if not model_id:
        if backend == "bedrock":
            raise ModelConfigError(f"{Env.MODEL_BACKEND}=bedrock needs {Env.MODEL_ID}")
        return None
    return BedrockClient(model_id)
