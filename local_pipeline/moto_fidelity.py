"""Where the moto server is looser than AWS in a way this project depends on, made to behave
as AWS documents it. Applied by the local pipeline and by the tests' moto fixture.

- DynamoDB serializes writes to an item: a conditional ``UpdateItem`` or a
  ``TransactWriteItems`` either sees another write's result or commits before it, never both
  half-way ("isolation levels": transactions are serializable against other writes). moto's
  server handles requests on threads without a lock, so two claims of the last slot can both
  pass their condition, and a transaction's rollback copy can crash ("dictionary changed size
  during iteration") while another request writes. One lock around each DynamoDB request
  restores what AWS guarantees (moto answers in microseconds, so it costs nothing here).
- moto's ``TransactWriteItems`` deep-copies every table it touches to roll back a refused
  transaction: with thousands of job items one claim takes seconds. Under that lock the same
  all-or-nothing result comes from checking every condition first and snapshotting only the
  items it writes (``_transact_write_items``), as cheap as DynamoDB's own.

And where moto is only slower than it needs to be (same answers, measured in the fault test,
where one moto process serves every request and its interpreter is the bottleneck):

- moto's server finds a request's backend under one lock for all requests, listing its own
  package directory (``os.listdir`` + ~180 ``isdir``) and trying every URL pattern each
  time: about a quarter of the server's busy samples. A host always maps to the same
  backend, so the answer is remembered per host (``cache_backend_lookup``).
- moto's SQS ``ReceiveMessage`` checks each message's retention by computing all of the
  queue's attributes, three of which scan every message: O(n^2) per receive on a queue
  holding a burst. The check reads the queue's retention period directly
  (``cheap_sqs_retention_check``); same answer.
- ``python -m moto.server`` logs every request through ``logging``'s lock; the test servers
  discard that output, so ``main`` keeps only warnings.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

_DYNAMODB_LOCK = threading.RLock()
_PATCHED = "_aibatch_serialized"


def apply_fixes() -> None:
    """Everything this module changes, for a moto server in this process (idempotent)."""
    serialize_dynamodb()
    cache_backend_lookup()
    cheap_sqs_retention_check()


def cheap_sqs_retention_check() -> None:
    """A message is past retention when sent + MessageRetentionPeriod <= now (idempotent)."""
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend, _PATCHED, False):
        return

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        retention_seconds = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_seconds + message.sent_timestamp / 1000 > unix_time())

    is_message_valid_based_on_retention_period.__wrapped__ = (  # type: ignore[attr-defined]
        SQSBackend.is_message_valid_based_on_retention_period
    )
    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )
    setattr(SQSBackend, _PATCHED, True)


def original_of(patched: Any) -> Any:
    """moto's own function behind one of these fixes (the tests compare their answers)."""
    return patched.__wrapped__


def cache_backend_lookup() -> None:
    """Remember the backend found for each request host (idempotent)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if getattr(DomainDispatcherApplication, _PATCHED, False):
        return
    original = DomainDispatcherApplication.get_backend_for_host
    found: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host not in found:  # called under the application's own lock
            found[host] = original(self, host)
        return found[host]

    get_backend_for_host.__wrapped__ = original  # type: ignore[attr-defined]
    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]
    setattr(DomainDispatcherApplication, _PATCHED, True)


def serialize_dynamodb() -> None:
    """Run every DynamoDB request of this process's moto server under one lock (idempotent)."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler, _PATCHED, False):
        return
    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with _DYNAMODB_LOCK:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    setattr(DynamoHandler, _PATCHED, True)
    from moto.dynamodb.models import DynamoDBBackend

    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign,assignment]


def _transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto's semantics and error shapes (per-operation cancellation reasons, ALL_OLD items,
    one operation per item, at most 100), without copying whole tables: every condition is
    evaluated on the items as they are (nothing can change them meanwhile: the lock), and only
    if all hold are the writes applied; a write that still fails restores the touched items."""
    import copy

    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    targets: set[tuple[str, str]] = set()
    planned: list[tuple[str, dict[str, Any], str, dict[str, Any], Any]] = []
    errors: list[tuple[Any, Any, Any]] = []
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(entry.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise ValueError("Unsupported transaction operation")
        table_name = op["TableName"]
        if op_type == "Put":
            table = backend.get_table(table_name)
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        target = (str(table_name), str(dict(sorted(key.items()))))
        if target in targets:
            raise MultipleTransactionsException()
        targets.add(target)
        current = backend.get_item(table_name, key)
        condition = op.get("ConditionExpression")
        if condition is not None and not get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        ).expr(current):
            old = None
            if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                old = current.to_json()["Attributes"]
            errors.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            errors.append((None, None, None))
        planned.append((op_type, op, table_name, key, current))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    saved = [
        (t, k, copy.deepcopy(c.to_json()["Attributes"]) if c else None) for _, _, t, k, c in planned
    ]
    try:
        for op_type, op, table_name, key, _ in planned:
            names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            if op_type == "Put":
                backend.put_item(table_name, op["Item"])
            elif op_type == "Delete":
                backend.delete_item(table_name, key)
            elif op_type == "Update":
                backend.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
    except Exception:
        for table_name, key, attrs in saved:
            if attrs is None:
                backend.delete_item(table_name, key)
            else:
                backend.put_item(table_name, attrs)
        raise


@dataclass(frozen=True)
class ServerProcess:
    endpoint: str  # http://127.0.0.1:<port>
    pid: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server_process(log: Path | None = None) -> Iterator[ServerProcess]:
    """A moto server with these fixes in a process of its own (auth switched on for it
    alone, or a core of its own under load), stopped on exit; ``log`` keeps its stderr
    (warnings and the tracebacks of its 500s; no line per request)."""
    port = free_port()
    sink: IO[bytes] | int = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_pipeline.moto_fidelity", "-H", "127.0.0.1", "-p", str(port)],
        stdout=sink,
        stderr=sink,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1) as resp:
                    resp.read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield ServerProcess(endpoint, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not isinstance(sink, int):
            sink.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m local_pipeline.moto_fidelity [moto.server args]``: a moto server process
    with these fixes (the tests that need a server of their own run it so)."""
    import logging

    from moto.server import main as moto_main

    apply_fixes()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    moto_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
