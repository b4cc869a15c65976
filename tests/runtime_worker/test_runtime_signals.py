"""SIGTERM as ECS sends it on a Spot interruption: the worker runs as a real process
(``python -m workers.runtime.run``) against the moto server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from jobcontract import Env, JobStatus
from workers.runtime import exit_codes
from workers.runtime.run import main

from .conftest import WORKER, RuntimeEnv

REPO_ROOT = Path(__file__).resolve().parents[2]
TOTAL = 40

SLOW_WORKER = textwrap.dedent(
    f"""
    import os
    import time

    from workers.runtime import JobContext, worker

    @worker(name="{WORKER}")
    def handle(ctx: JobContext) -> dict:
        def one(i: int) -> int:
            with open(os.environ["TEST_MARK_FILE"], "a") as marks:
                marks.write(f"{{i}}\\n")
            time.sleep(0.15)
            return i

        return {{"n": len(ctx.map(one, range({TOTAL}), concurrency=2))}}
    """
)


def started(marks: Path) -> int:
    return len(marks.read_text().splitlines()) if marks.exists() else 0


def test_sigterm_stops_taking_items_saves_progress_and_exits_143(
    runtime_env: RuntimeEnv, tmp_path: Path
) -> None:
    (tmp_path / WORKER).mkdir()
    (tmp_path / WORKER / "main.py").write_text(SLOW_WORKER)
    marks = tmp_path / "marks.txt"
    job_id = runtime_env.dispatched_job({})
    env = runtime_env.job_env(job_id, TEST_MARK_FILE=str(marks))
    env[Env.HEARTBEAT_INTERVAL_SECONDS] = "0.1"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workers.runtime.run",
            "--worker",
            WORKER,
            "--workers-dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while started(marks) < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        at_signal = started(marks)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == exit_codes.INTERRUPTED, stderr
    final = started(marks)
    # Only the (at most 2) items in flight around the signal may have started after it.
    assert at_signal <= final <= at_signal + 2 < TOTAL
    job = runtime_env.store.get(job_id)
    assert job is not None
    assert job["status"] == JobStatus.RUNNING  # the reconciler retries it
    assert job["progress"] == {"done": final, "total": TOTAL}  # in-flight items finished
    assert job["error"]["type"] == "Interrupted"
    events = [json.loads(line)["event"] for line in stdout.splitlines()]
    assert "signal_received" in events and "job_interrupted" in events
    assert "job_succeeded" not in events


def test_runner_reports_unknown_worker_as_config_error(tmp_path: Path) -> None:
    assert main(["--worker", "no-such-worker", "--workers-dir", str(tmp_path)]) == (
        exit_codes.CONFIG
    )
