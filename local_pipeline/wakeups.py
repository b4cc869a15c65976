"""Tell the local pollers the moment there is something to see, as AWS's own do.

Lambda long-polls an event source's queue and ECS starts a task as soon as RunTask returns;
the local stand-ins poll on an interval instead. So the in-process moto server announces
what they wait for: a message sent (or made visible again) on any queue, and a RunTask or
StopTask. Whoever sends it — a handler in this process or a worker process over HTTP — the
poller looks at once. Listeners run after moto has stored the change, on moto's thread:
they must only set a flag (``threading.Event.set``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Final

SQS: Final = "sqs"
ECS: Final = "ecs"

_listeners: dict[str, list[Callable[[], None]]] = {SQS: [], ECS: []}
_lock = threading.Lock()
_PATCHED = "_aibatch_wakeups"

# What each moto backend method announces.
_METHODS: Final = {
    ("moto.sqs.models", "SQSBackend"): (
        SQS,
        ("send_message", "send_message_batch", "change_message_visibility"),
    ),
    ("moto.ecs.models", "EC2ContainerServiceBackend"): (ECS, ("run_task", "stop_task")),
}


def subscribe(kind: str, listener: Callable[[], None]) -> None:
    """Call ``listener`` after every change of ``kind`` (``SQS`` or ``ECS``)."""
    install()
    with _lock:
        _listeners[kind].append(listener)


def unsubscribe(kind: str, listener: Callable[[], None]) -> None:
    with _lock:
        if listener in _listeners[kind]:
            _listeners[kind].remove(listener)


def _announce(kind: str) -> None:
    with _lock:
        listeners = list(_listeners[kind])
    for listener in listeners:
        listener()


def install() -> None:
    """Wrap the moto backend methods once per process (idempotent)."""
    import importlib

    for (module_name, class_name), (kind, methods) in _METHODS.items():
        cls = getattr(importlib.import_module(module_name), class_name)
        if getattr(cls, _PATCHED, False):
            continue
        for name in methods:
            setattr(cls, name, _announcing(getattr(cls, name), kind))
        setattr(cls, _PATCHED, True)


def _announcing(method: Callable[..., Any], kind: str) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        _announce(kind)
        return result

    return wrapper
