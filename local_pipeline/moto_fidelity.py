"""Where the moto server is looser than AWS in a way this project depends on, made to behave
as AWS documents it. Applied by the local pipeline and by the tests' moto fixture.

- DynamoDB serializes writes to an item: a conditional ``UpdateItem`` or a
  ``TransactWriteItems`` either sees another write's result or commits before it, never both
  half-way ("isolation levels": transactions are serializable against other writes). moto's
  server handles requests on threads without a lock, so two claims of the last slot can both
  pass their condition, and a transaction's rollback copy can crash ("dictionary changed size
  during iteration") while another request writes. One lock around each DynamoDB request
  restores what AWS guarantees (moto answers in microseconds, so it costs nothing here).
"""

from __future__ import annotations

import threading
from typing import Any

_DYNAMODB_LOCK = threading.RLock()
_PATCHED = "_aibatch_serialized"


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
