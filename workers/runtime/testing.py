"""Helpers for worker unit tests: a real :class:`JobContext` without AWS, and loading a
worker's ``main.py`` by folder name (hyphenated folders are not importable packages)."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from jobcontract import new_job_id
from workers.runtime.context import JobContext, ProgressTracker, StopFlag
from workers.runtime.loader import load_module
from workers.runtime.logs import JsonLogger
from workers.runtime.model import ImageInput, ModelClient


def load_worker_module(name: str) -> ModuleType:
    """``workers/<name>/main.py`` as a module."""
    return load_module(name)


def make_context(
    worker: str,
    job_input: Mapping[str, Any],
    *,
    model: ModelClient | None = None,
    read_object: Callable[[str], bytes] | None = None,
    stop: StopFlag | None = None,
    progress_log: list[dict[str, int]] | None = None,
) -> JobContext:
    """A context whose progress writes go to ``progress_log`` and whose logs are dropped."""
    writes = progress_log if progress_log is not None else []
    return JobContext(
        job={"job_id": new_job_id(worker), "worker": worker, "input": dict(job_input)},
        worker=worker,
        attempt=1,
        input=job_input,
        logger=JsonLogger(io.StringIO(), worker=worker),
        stop=stop or StopFlag(),
        progress=ProgressTracker(writes.append, min_interval=0.0),
        model=model,
        read_object=read_object,
    )


class FailingModel:
    """A :class:`ModelClient` whose every call raises ``error`` (counts the calls): what a
    worker does when Bedrock refuses, without Bedrock."""

    def __init__(self, error: Exception, model_id: str = "amazon.nova-lite-v1:0") -> None:
        self.error, self.model_id, self.calls = error, model_id, 0
        self._lock = threading.Lock()

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
        with self._lock:
            self.calls += 1
        raise self.error


def stubbed_bedrock() -> tuple[Any, Any]:
    """A real ``bedrock-runtime`` client that never reaches AWS, and the botocore ``Stubber``
    scripting its answers (``stub.add_response("converse", ...)``, ``add_client_error``).
    Wrap it in :class:`workers.runtime.BedrockClient` to test a worker's model calls."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client, Stubber(client)
