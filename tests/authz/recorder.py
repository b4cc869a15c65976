"""Recording every AWS call the stack's code makes, with the principal it runs as on AWS.

``install(sink)`` wraps botocore's one entry point for API calls (``BaseClient._make_api_call``)
and its presigner, so every client the code creates is seen, whatever session made it. Each
call is attributed by the code that made it, from the Python stack:

- a frame in ``handlers/<module>.py``: the Lambda function whose entry module is the outermost
  such frame (``api``, ``launcher``, ``reconciler``, ``sweep``); a call reached only through a
  library module (``notify``, ``registry``) without an entry module is recorded as
  ``unattributed`` and fails the check;
- a frame in ``workers/``: the task role of the worker the job run on the stack belongs to
  (``JobRun.definition.name``, or ``JobObjects.definition.name``
  on an item's thread), else of the worker this process runs (``BATCH_WORKER_NAME``,
  set in every task's environment); threads the runtime starts (heartbeat, watchdog) carry
  the job run on their own stacks;
- anything else (the test harness, the local pipeline's emulation of AWS, the CLI acting as a
  person) is not a stack principal and is not recorded.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.client
import botocore.signers
from botocore.exceptions import ClientError

from tests.authz.check import FUNCTION_ENTRY_MODULES, Call, Principal

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = str(ROOT / "handlers") + os.sep
WORKERS = str(ROOT / "workers") + os.sep
_DROP = ("Body",)  # payloads: not needed to authorize, may be bytes

Sink = Callable[[dict[str, Any]], None]
_installed: dict[str, Any] = {}
_lock = threading.Lock()


def principal_of_stack() -> Principal | None:
    frame = sys._getframe(2)
    entry: str | None = None
    library: str | None = None
    in_worker = False
    worker_name: str | None = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(HANDLERS):
            module = Path(filename).stem
            if module in FUNCTION_ENTRY_MODULES:
                entry = module  # keeps the outermost
            else:
                library = module
        elif filename.startswith(WORKERS):
            in_worker = True
            # In-process runs (runtime and fault tests): the job run on the stack names it.
            run = frame.f_locals.get("self")
            definition = getattr(run, "definition", None)
            if worker_name is None and isinstance(getattr(definition, "name", None), str):
                worker_name = definition.name
        frame = frame.f_back  # type: ignore[assignment]
    if in_worker:
        worker = worker_name or os.environ.get("BATCH_WORKER_NAME", "")
        return Principal("task", worker) if worker else Principal("unattributed", "worker")
    if entry:
        return Principal("function", entry)
    if library:
        return Principal("unattributed", f"handlers.{library}")
    return None


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in _DROP}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _record(
    client: Any, operation: str, params: dict[str, Any], error: str | None, sink: Sink
) -> None:
    principal = principal_of_stack()
    if principal is None:
        return
    service = client.meta.service_model.endpoint_prefix
    if client.meta.service_model.service_name == "bedrock-runtime":
        service = "bedrock-runtime"
    sink(
        {
            "service": service,
            "operation": operation,
            "params": _clean(params),
            "region": client.meta.region_name,
            "principal": {"kind": principal.kind, "name": principal.name},
            "error": error,
        }
    )


def install(sink: Sink) -> None:
    """Start recording into ``sink`` (idempotent; ``uninstall`` restores botocore)."""
    with _lock:
        if _installed:
            _installed["sink"] = sink
            return
        original_call = botocore.client.BaseClient._make_api_call
        original_presign = botocore.signers.generate_presigned_url
        _installed.update(call=original_call, presign=original_presign, sink=sink)

    def _make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        error = None
        try:
            return original_call(self, operation_name, api_params)
        except ClientError as exc:
            error = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            raise
        finally:
            _record(self, operation_name, api_params, error, _installed["sink"])

    def generate_presigned_url(
        self: Any, ClientMethod: str, Params: Any = None, *a: Any, **kw: Any
    ) -> Any:
        operation = self.meta.method_to_api_mapping.get(ClientMethod, ClientMethod)
        _record(self, f"presign:{operation}", dict(Params or {}), None, _installed["sink"])
        return original_presign(self, ClientMethod, Params, *a, **kw)

    botocore.client.BaseClient._make_api_call = _make_api_call  # type: ignore[method-assign]
    botocore.signers.generate_presigned_url = generate_presigned_url


def uninstall() -> None:
    with _lock:
        if not _installed:
            return
        botocore.client.BaseClient._make_api_call = _installed["call"]  # type: ignore[method-assign]
        botocore.signers.generate_presigned_url = _installed["presign"]
        _installed.clear()


class Trace:
    """Calls recorded in this process, plus those worker processes appended to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str)
        with self._lock, self.path.open("a") as fh:
            fh.write(line + "\n")

    def calls(self) -> list[Call]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            service, operation = r["service"], r["operation"]
            out.append(
                Call(
                    service,
                    operation,
                    r["params"],
                    Principal(r["principal"]["kind"], r["principal"]["name"]),
                    r.get("region") or "us-east-1",
                    error=r.get("error"),
                )
            )
        return out
