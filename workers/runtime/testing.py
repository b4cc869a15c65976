"""Helpers for worker unit tests: a real :class:`JobContext` without AWS, and loading a
worker's ``main.py`` by folder name (hyphenated folders are not importable packages)."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from jobcontract import new_job_id
from workers.runtime.context import JobContext, ProgressTracker, StopFlag
from workers.runtime.loader import load_module
from workers.runtime.logs import JsonLogger
from workers.runtime.model import ModelClient


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
