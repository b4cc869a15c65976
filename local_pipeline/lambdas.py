"""Calling the stack's real Lambda handlers in-process, as the Lambda service would."""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local_pipeline.provision import LocalFunction

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The parts of the Lambda context object handlers use (request id, remaining time)."""

    function_name: str
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 128
    function_version: str = "$LATEST"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.invoked_function_arn = (
            f"arn:aws:lambda:local:000000000000:function:{self.function_name}"
        )
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def resolve_handler(spec: str) -> Handler:
    """``handlers.api.handler`` (or ``api.handler`` when the zip root is ``handlers/``)."""
    module_name, _, attr = spec.replace("/", ".").rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"not a Lambda handler spec: {spec!r}")
    candidates = [module_name]
    if not module_name.startswith("handlers."):
        candidates.append(f"handlers.{module_name}")
    error: ImportError | None = None
    for candidate in candidates:
        try:
            module = importlib.import_module(candidate)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not candidate.startswith(exc.name):
                raise  # the handler exists but one of ITS imports is missing: say so
            error = exc
            continue
        found: Handler = getattr(module, attr)
        return found
    raise ImportError(f"cannot import Lambda handler {spec!r}: {error}")


class LocalLambda:
    """One stack Lambda: its handler, resolved once, and a fresh context per invocation."""

    def __init__(self, function: LocalFunction) -> None:
        self.function = function
        self._handler: Handler | None = None

    @property
    def handler(self) -> Handler:
        if self._handler is None:
            self._handler = resolve_handler(self.function.handler)
        return self._handler

    def invoke(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(self.function.name, self.function.timeout_seconds)
        return self.handler(event, context)
