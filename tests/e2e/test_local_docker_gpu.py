"""``batchctl local --docker`` passes the GPUs through (``--gpus all``) when the engine has
them: detection, and the ``docker run`` command line (no Docker engine needed)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from local_pipeline import fargate
from local_pipeline.fargate import LocalFargate, LocalTask


@pytest.mark.parametrize(
    ("runtimes", "expected"),
    [
        ('{"io.containerd.runc.v2":{},"nvidia":{"path":"nvidia-container-runtime"}}', True),
        ('{"io.containerd.runc.v2":{},"runc":{}}', False),
        ("", False),
        ("not json", False),
    ],
)
def test_engine_nvidia_runtime(runtimes: str, expected: bool) -> None:
    assert fargate.engine_has_nvidia_runtime(runtimes) is expected


def test_no_gpu_device_means_no_gpus(tmp_path: Path) -> None:
    assert fargate.docker_has_gpu(tmp_path / "nvidia0") is False


def _task(tmp_path: Path) -> LocalTask:
    return LocalTask(
        arn="arn:aws:ecs:us-east-1:123456789012:task/c/0123456789abcdef",
        cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/c",
        task_definition_arn="arn:aws:ecs:us-east-1:123456789012:task-definition/w:1",
        worker="image-embedder",
        started_by="job",
        group="",
        overrides={},
        capacity_provider=None,
        cpu=None,
        memory=None,
        env={},
        stop_timeout=30,
        log_path=tmp_path / "task.log",
    )


@pytest.mark.parametrize(("gpus", "detected", "expected"), [
    (None, True, True), (None, False, False), (True, False, True), (False, True, False),
])  # fmt: skip
def test_docker_run_gets_gpus_all_only_with_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpus: bool | None, detected: bool,
    expected: bool,
) -> None:  # fmt: skip
    seen: list[list[str]] = []

    class FakePopen:
        pid = 4242

        def __init__(self, args: list[str], **_: Any) -> None:
            seen.append(list(args))

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    monkeypatch.setattr(fargate, "docker_has_gpu", lambda: detected)
    runner = LocalFargate(
        ecs=None, cluster_arns=[], base_env={}, logs_dir=tmp_path, deliver=lambda e: None,
        workers={}, docker=True, gpus=gpus,
    )  # fmt: skip
    monkeypatch.setattr(runner, "_index", lambda task, env: None)
    runner._spawn(_task(tmp_path))
    (args,) = seen
    assert args[:2] == ["docker", "run"]
    if expected:
        at = args.index("--gpus")
        assert args[at : at + 2] == ["--gpus", "all"]
        assert at < args.index(runner.docker_image("image-embedder"))  # an option, not an arg
    else:
        assert "--gpus" not in args


def test_a_modelled_start_up_holds_a_seen_task_before_its_process_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``startup_seconds`` stands in for Fargate's PROVISIONING/PENDING: the task exists
    (it holds its slot) but its process starts only once the start-up has passed."""
    runner = LocalFargate(
        ecs=None, cluster_arns=[], base_env={}, logs_dir=tmp_path, deliver=lambda e: None,
        workers={}, startup_seconds=0.3,
    )  # fmt: skip
    started: list[str] = []
    monkeypatch.setattr(runner, "_spawn", lambda task: started.append(task.arn))
    task = _task(tmp_path)
    runner.tasks[task.arn] = task
    runner.pending.append(task.arn)
    runner._launch()
    assert started == [] and runner.pending == [task.arn]
    assert 0.0 < runner._next_wait() <= 0.3  # the loop wakes when the start-up ends
    time.sleep(0.35)
    runner._launch()
    assert started == [task.arn] and runner.running == [task.arn]
