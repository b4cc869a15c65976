"""Count every AWS API call a process makes, and say which actor made it.

One wrapper around ``botocore.client.BaseClient._make_api_call`` (every boto3 client call
goes through it, whatever session or client cache created the client), installed:

- in the benchmark's own process, where the local pipeline runs the Lambda handlers
  in-process: the actor is read off the call stack (the outermost ``handlers.<name>`` frame;
  else the local SQS poller = the event source mapping; else the pipeline's emulation of AWS
  itself, e.g. its ECS task watcher, which AWS does not bill and is left out);
- in every worker process, through a ``sitecustomize`` module the benchmark puts first on
  the worker's ``PYTHONPATH`` (:func:`write_sitecustomize`): the worker runtime needs no
  benchmark code, and each call is appended as one JSON line to ``$BENCH_AWS_CALLS_FILE``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CALLS_FILE_ENV = "BENCH_AWS_CALLS_FILE"
ESM = "esm"  # the event source mapping (the pipeline's SQS poller)
EMULATOR = "emulator"  # the local pipeline standing in for AWS (not billed by AWS)
OBSERVER = "observer"  # the benchmark itself watching the table (client polling)
# A warm task's reads while it waits for its next job (``jobcontract.dispatch.take_next`` with
# ``idle=True``, one counts read per poll): a cost of each idle window, not of any one job.
WARM_IDLE = "worker-idle"
_SKIP_HANDLER_MODULES = {"handlers._aws", "handlers.registry"}


@dataclass(frozen=True)
class ApiCall:
    actor: str
    service: str
    operation: str
    empty: bool  # a ReceiveMessage that returned no message
    job_id: str | None = None
    what: str = ""  # for UpdateItem: the attribute names it touches (tells writes apart)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def _what(operation: str, params: Any) -> str:
    if operation != "UpdateItem" or not isinstance(params, dict):
        return ""
    names = sorted(set((params.get("ExpressionAttributeNames") or {}).values()))
    return ",".join(n for n in names if n not in ("pk",))[:70]


def actor_of_stack(operation: str = "") -> str:
    """Who is calling: the outermost handler module on this thread's stack, or a fallback."""
    frame = sys._getframe(2)
    handler: str | None = None
    fallback = "other"
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith("handlers.") and module not in _SKIP_HANDLER_MODULES:
            handler = module.removeprefix("handlers.")  # keep walking: outermost wins
        elif module == "local_pipeline.event_sources" and fallback == "other":
            fallback = ESM
        elif module.startswith("local_pipeline") and fallback == "other":
            fallback = EMULATOR
        elif fallback == "other" and (
            module.startswith("bench.") or "/bench/" in frame.f_code.co_filename
        ):
            fallback = OBSERVER
        frame = frame.f_back  # type: ignore[assignment]
    return handler or fallback


class CallRecorder:
    """Keeps the calls of this process; ``install`` / ``uninstall`` the botocore wrapper."""

    def __init__(
        self,
        actor: Callable[[str], str] = actor_of_stack,
        sink: Callable[[ApiCall], None] | None = None,
    ) -> None:
        self.calls: list[ApiCall] = []
        self._actor = actor
        self._sink = sink
        self._lock = threading.Lock()
        self._original: Any = None

    def install(self) -> CallRecorder:
        from botocore.client import BaseClient

        if self._original is not None:
            return self
        original = BaseClient._make_api_call
        recorder = self

        def counted(client: Any, operation_name: str, api_params: Any) -> Any:
            actor = recorder._actor(operation_name)
            result = original(client, operation_name, api_params)
            empty = operation_name == "ReceiveMessage" and not (result or {}).get("Messages")
            call = ApiCall(
                actor,
                client.meta.service_model.service_name,
                operation_name,
                empty,
                os.environ.get("BATCH_JOB_ID"),
                _what(operation_name, api_params),
            )
            recorder.record(call)
            return result

        BaseClient._make_api_call = counted  # type: ignore[method-assign]
        self._original = original
        return self

    def uninstall(self) -> None:
        from botocore.client import BaseClient

        if self._original is not None:
            BaseClient._make_api_call = self._original  # type: ignore[method-assign]
            self._original = None

    def record(self, call: ApiCall) -> None:
        with self._lock:
            self.calls.append(call)
        if self._sink is not None:
            self._sink(call)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()


def install_file_recorder(path: str, actor: str = "worker") -> CallRecorder:
    """For worker processes: append each call as a JSON line to ``path``."""
    lock = threading.Lock()

    def sink(call: ApiCall) -> None:
        with lock, open(path, "a", encoding="utf-8") as fh:
            fh.write(call.to_json() + "\n")

    def worker_actor(operation: str) -> str:
        return WARM_IDLE if operation == "GetItem" and _in_idle_poll() else actor

    return CallRecorder(actor=worker_actor, sink=sink).install()


def _in_idle_poll() -> bool:
    """Is this call a warm task's poll while idle (inside ``take_next(idle=True)``)?"""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "take_next" and frame.f_locals.get("idle") is True:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def read_calls_file(path: Path) -> list[ApiCall]:
    if not path.exists():
        return []
    return [ApiCall(**json.loads(line)) for line in path.read_text().splitlines() if line]


SITECUSTOMIZE = '''\
"""Injected by bench.requests_per_job: count this worker's AWS calls (bench.count_hook)."""
import os

if os.environ.get("{env}"):
    try:
        from bench.count_hook import install_file_recorder

        install_file_recorder(os.environ["{env}"], actor="worker")
    except Exception as exc:  # never break the worker because of the benchmark
        import sys

        print(f"bench sitecustomize: not counting: {{exc!r}}", file=sys.stderr)
'''


def write_sitecustomize(folder: Path) -> Path:
    """A folder holding the counting ``sitecustomize.py`` (put it first on PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(env=CALLS_FILE_ENV))
    return folder
