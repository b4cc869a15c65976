"""Shared plumbing of the benchmark scripts: result lines, a moto server process, env.

Each benchmark is a script that prints its figures for people and, last, one machine line
``RESULT: {"name", "figure", "unit", "target", "ok", "detail"}`` that ``bench.run_all``
collects into the summary table and ``bench/RESULTS.md``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from local_pipeline.moto_fidelity import ServerProcess, server_process

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


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; this process if None)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# A moto server in its own process (so the code measured has this process's core), with the
# fixes that make it behave as AWS documents (local_pipeline.moto_fidelity: serialized
# DynamoDB writes, transactions that copy only the items they write). Plain moto deep-copies
# every table a TransactWriteItems touches, so a fan-out of 1,000 children slowed step by
# step and a copy racing another request ended in an HTTP 500 ("dictionary changed size
# during iteration").
MotoProcess = ServerProcess
moto_server_process = server_process


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
