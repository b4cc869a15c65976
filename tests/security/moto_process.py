"""A moto server in its own process (not the session fixture's thread): for IAM enforcement
(auth switched on for this server only) and for load (the server gets a core of its own)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server_process() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a fresh ``python -m moto.server``; stopped on exit."""
    port = free_port()
    proc = subprocess.Popen(
        # moto with the fixes that make it behave as AWS documents (DynamoDB write isolation).
        [sys.executable, "-m", "local_pipeline.moto_fidelity", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def post(url: str, body: bytes = b"", content_type: str = "text/plain") -> bytes:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return bytes(resp.read())
