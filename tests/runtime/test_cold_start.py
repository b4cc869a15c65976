"""Cold start: a handler imports nothing beyond boto3 except our own small modules, and
importing it creates no client and needs no environment (no side effects at import)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = [
    "handlers.api",
    "handlers.launcher",
    "handlers.reconciler",
    "handlers.sweep",
    "handlers.notify",
    "handlers.registry",
]
PROBE = """
import json, os, sys
for k in list(os.environ):
    if k.startswith(("BATCH_", "AWS_")):
        del os.environ[k]
import boto3
before = set(sys.modules)
import {module}
extra = sorted(set(sys.modules) - before)
from handlers import _aws
print(json.dumps({{"extra": extra, "clients": len(_aws._clients)}}))
"""


@pytest.mark.parametrize("module", HANDLERS)
def test_handler_imports_only_own_modules_beyond_boto3(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    foreign = [m for m in data["extra"] if not m.startswith(("handlers", "jobcontract"))]
    assert foreign == [], f"{module} pulls in {foreign} at import time"
    assert data["clients"] == 0


def test_bench_script_reports_every_handler() -> None:
    out = subprocess.run(
        [sys.executable, "bench/handler_imports.py", "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for module in (
        "boto3",
        "handlers.api",
        "handlers.launcher",
        "handlers.reconciler",
        "handlers.sweep",
    ):
        assert module in out.stdout
    assert "x bare boto3" in out.stdout


def test_every_client_shares_one_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """One botocore session for all clients: a session per client parsed the endpoint data
    and service models again for each (about 21 MB and 0.3 s for the launcher's four)."""
    from handlers import _aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    _aws.reset_clients()
    try:
        s3, sqs, ddb = (_aws.client(name) for name in ("s3", "sqs", "dynamodb"))
        assert s3._loader is sqs._loader is ddb._loader  # one session's data loader
        assert s3._endpoint.host and s3 is _aws.client("s3")  # cached
        _aws.reset_clients()  # a new environment: a new session
        assert _aws.client("s3")._loader is not s3._loader
    finally:
        _aws.reset_clients()
