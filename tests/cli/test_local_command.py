"""``batchctl local`` as a user runs it: a process that prints the endpoint, serves the API,
writes ./local-state/endpoint.json, and stops cleanly on Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cli.main import main
from local_pipeline import pipeline as pipeline_module

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("e2e-local-command")


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def test_local_prints_endpoint_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    # PYTHONFAULTHANDLER: if the child ever dies of a signal (a clean-clone run once saw
    # SIGABRT, not reproduced in 8 parallel runs), its thread tracebacks are in the output.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env["PYTHONFAULTHANDLER"] = "1"
    for var in ("BATCH_API_URL", "BATCH_API_KEY", "BATCH_LOCAL_STATE"):
        env.pop(var, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "local", "--port", "0", "--api-key", "k" * 32],
        cwd=tmp_path,
        # As from `batchctl local &` in a script: SIGINT starts ignored; Ctrl-C must still stop.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while not any(line.startswith("Ctrl-C") for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        printed = "".join(lines)
        url = printed.split("API URL: ", 1)[1].split()[0]
        assert f"export BATCH_API_URL={url} BATCH_API_KEY={'k' * 32}" in printed
        state = json.loads((tmp_path / "local-state" / "endpoint.json").read_text())
        assert state["api_url"] == url and state["api_key"] == "k" * 32
        req = urllib.request.Request(url + "/workers", headers={"x-api-key": "k" * 32})
        with urllib.request.urlopen(req, timeout=30) as resp:
            names = {w["name"] for w in json.loads(resp.read())["workers"]}
        assert names == {"image-alt-generator", "meta-desc-generator", "content-analyzer"}

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, printed + rest
    assert "stopped; nothing left running." in rest
    assert not _port_open(url) and not _port_open(state["moto_endpoint"])
    assert not (tmp_path / "local-state" / "endpoint.json").exists()


def test_docker_without_an_engine_is_a_clear_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pipeline_module, "docker_available", lambda: False)
    assert main(["local", "--docker", "--port", "0"]) == 2
    assert "needs a running Docker engine" in capsys.readouterr().err
