"""A moto server in its own process (not the session fixture's thread): for IAM enforcement
(auth switched on for this server only) and for load (the server gets a core of its own)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from local_pipeline.moto_fidelity import server_process


@contextmanager
def moto_server_process() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a fresh moto server (``local_pipeline.moto_fidelity``:
    moto with the fixes that make it behave as AWS documents); stopped on exit."""
    with server_process() as server:
        yield server.endpoint


def post(url: str, body: bytes = b"", content_type: str = "text/plain") -> bytes:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return bytes(resp.read())
