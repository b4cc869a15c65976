"""The ``@worker`` decorator: turns a handler into a :class:`WorkerDefinition` that the runner
(``python -m workers.runtime.run --worker NAME``) finds in ``workers/<NAME>/main.py``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jobcontract import WORKER_NAME_MAX, WORKER_NAME_RE
from workers.runtime.context import JobContext

Handler = Callable[[JobContext], Mapping[str, Any]]


@dataclass(frozen=True)
class WorkerDefinition:
    """A named handler. Calling it runs the handler (handy in unit tests)."""

    name: str
    handler: Handler
    description: str = ""

    def __call__(self, ctx: JobContext) -> Mapping[str, Any]:
        return self.handler(ctx)


def worker(name: str, *, description: str = "") -> Callable[[Handler], WorkerDefinition]:
    """Declare the worker ``name`` (the folder name, as in ``jobcontract.WORKER_NAME_RE``)."""
    if not WORKER_NAME_RE.match(name) or len(name) > WORKER_NAME_MAX:
        raise ValueError(f"invalid worker name {name!r}")

    def wrap(handler: Handler) -> WorkerDefinition:
        doc = description or (handler.__doc__ or "").strip().split("\n")[0]
        return WorkerDefinition(name=name, handler=handler, description=doc)

    return wrap
