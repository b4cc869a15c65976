"""The end-to-end tests' one way to run the local pipeline and to call its API gateway.

``running(local, state)`` starts a ``LocalPipeline`` as these tests need it and stops it;
``call(p, method, path, body, key)`` is an HTTP request to its gateway with the stack's API
key (or ``key``): the status and the JSON body, error answers included."""

from __future__ import annotations

import contextlib
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobcontract import logs
from local_pipeline.pipeline import LocalPipeline


@contextlib.contextmanager
def running(local: LocalPipeline, state: Path) -> Iterator[LocalPipeline]:
    """``local`` started, and stopped at the end. The real handlers run in this process:
    their log lines are kept off stdout (as Lambda's go to CloudWatch), so stdout holds the
    CLI's output, worker log lines included; the caller's API URL and key are not used, and
    ``batchctl`` finds this pipeline through ``BATCH_LOCAL_STATE``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(logs, "DEFAULT", logs.JsonLogger(io.StringIO()))
        for var in ("BATCH_API_URL", "BATCH_API_KEY"):
            mp.delenv(var, raising=False)
        mp.setenv("BATCH_LOCAL_STATE", str(state / "endpoint.json"))
        local.start()
        try:
            yield local
        finally:
            local.stop()


def call(
    p: LocalPipeline, method: str, path: str, body: Any = None, key: str | None = None
) -> tuple[int, Any]:
    req = urllib.request.Request(
        p.api_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
    )
    req.add_header("x-api-key", p.api_key if key is None else key)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
