"""Shared plumbing of the benchmark scripts: result lines, a moto server process, env.

Each benchmark is a script that prints its figures for people and, last, one machine line
``RESULT: {"name", "figure", "unit", "target", "ok", "detail"}`` that ``bench.run_all``
collects into the summary table and ``bench/RESULTS.md``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "RESULT: "
REGION = "us-east-1"


@dataclass(frozen=True)
class BenchResult:
    name: str
    figure: float | None  # None: the benchmark could not run (see detail)
    unit: str
    target: str
    ok: bool | None  # None: not measured
    detail: str = ""

    def line(self) -> str:
        return RESULT_PREFIX + json.dumps(asdict(self))


def emit(result: BenchResult) -> None:
    print(result.line(), flush=True)


def not_available(name: str, unit: str, target: str, why: str) -> BenchResult:
    return BenchResult(name=name, figure=None, unit=unit, target=target, ok=None, detail=why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; this process if None)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass(frozen=True)
class MotoProcess:
    endpoint: str
    pid: int


@contextmanager
def moto_server_process() -> Iterator[MotoProcess]:
    """A moto server in its own process (so the code measured has this process's core)."""
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen(
        [*cmd, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
        yield MotoProcess(endpoint, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def point_boto3_at(endpoint: str) -> None:
    """Send every boto3 client of this process to ``endpoint`` with fake credentials."""
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }
    )
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(var, None)
