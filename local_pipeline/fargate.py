"""A local stand-in for Fargate: every ECS task started in moto runs as a local process.

moto records ``RunTask`` calls but runs nothing. This watches the cluster for new tasks and
starts the real worker code for each with the environment ECS would give its container
(task definition environment + RunTask container overrides), captures its output to a
per-task log file, sends SIGTERM when the task is stopped through ``StopTask`` (cancel,
sweep) and, when the process is gone, marks the task STOPPED in moto and delivers the
``ECS Task State Change`` STOPPED event EventBridge would deliver to the reconciler.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from jobcontract import CONTAINER_NAME, ECS_EVENT_SOURCE, ECS_TASK_STATE_CHANGE, Env
from jobcontract.registration import WorkerRegistration

log = logging.getLogger("local_pipeline.fargate")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXITED_REASON = "Essential container in task exited"
DEFAULT_STOP_TIMEOUT = 30  # ECS default when the container definition sets none
# Environment a worker process inherits from this process; everything else comes from
# the task definition and the overrides, as in a container.
# AWS: the stoppedReason ECS gives a Spot-interrupted Fargate task.
SPOT_REASON = "Your Spot Task was interrupted."
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")

EventSink = Callable[[dict[str, Any]], None]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def container_exit_code(returncode: int) -> int:
    """A container's exit code for a process return code (signal N -> 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class LocalTask:
    arn: str
    cluster_arn: str
    task_definition_arn: str
    worker: str
    started_by: str
    group: str
    overrides: dict[str, Any]
    capacity_provider: str | None
    cpu: str | None
    memory: str | None
    env: dict[str, str]
    stop_timeout: int
    log_path: Path
    created_at: str = field(default_factory=_now_iso)
    started_at: str | None = None
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    stop_reason: str | None = None  # set when stopped through StopTask
    stop_code: str | None = None  # the STOPPED event's stopCode, when not the default
    kill_at: float | None = None
    # Epoch seconds, for benchmarks (``LocalFargate.task_timelines``): seen, process started,
    # STOPPED.
    seen_ts: float = field(default_factory=time.time)
    started_ts: float | None = None
    stopped_ts: float | None = None

    @property
    def task_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class TaskLogEntry:
    """One line of ``logs/index.jsonl``: how ``batchctl logs`` finds a job's process log."""

    task_id: str
    task_arn: str
    job_id: str | None
    attempt: str | None
    worker: str
    path: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


class LocalFargate:
    """Polls the moto cluster(s) and runs, watches and stops worker processes."""

    def __init__(
        self,
        *,
        ecs: Any,
        cluster_arns: Sequence[str],
        base_env: Mapping[str, str],
        logs_dir: Path,
        deliver: EventSink,
        workers: Mapping[str, WorkerRegistration],
        max_tasks: int = 4,
        docker: bool = False,
        docker_image: Callable[[str], str] | None = None,
        command: Callable[[str], list[str]] | None = None,
        poll_interval: float = 0.2,
        max_stop_timeout: int = DEFAULT_STOP_TIMEOUT,
        gpus: bool | None = None,
        startup_seconds: float = 0.0,
    ) -> None:
        self.ecs = ecs
        self.gpus = gpus  # --docker: pass the GPUs through (None: when the engine has them)
        self.cluster_arns = list(cluster_arns)
        self.base_env = dict(base_env)
        self.logs_dir = logs_dir
        self.deliver = deliver
        self.workers = workers
        self.max_tasks = max(1, max_tasks)
        self.docker = docker
        self.docker_image = docker_image or default_docker_image
        self.command = command or (
            lambda w: [sys.executable, "-m", "workers.runtime.run", "--worker", w]
        )
        self.poll_interval = poll_interval
        self.max_stop_timeout = max_stop_timeout
        # Modelled PROVISIONING/PENDING time (Fargate: ENI, image pull; tens of seconds on
        # AWS): a task seen waits this long before its process starts. 0 = start at once.
        self.startup_seconds = max(0.0, startup_seconds)
        self.tasks: dict[str, LocalTask] = {}  # every task seen, by ARN
        self.pending: list[str] = []  # seen, not started (waiting for a free slot)
        self.running: list[str] = []
        self.finished = 0
        self._task_defs: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.errors: list[str] = []

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="local-fargate", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run a pass now rather than after the interval: a RunTask or StopTask was probably
        made, or a worker process exited."""
        self._wake.set()

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop polling, SIGTERM every running process, SIGKILL what outlives the grace."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            live = [self.tasks[a] for a in self.running]
        for task in live:
            if task.process is not None and task.process.poll() is None:
                task.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for task in live:
            if task.process is None:
                continue
            try:
                task.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill(task)
                task.process.wait(timeout=10)
            if task.log_file is not None:
                task.log_file.close()

    def task_timelines(self) -> list[dict[str, Any]]:
        """Every task seen: ARN, worker, vCPUs, and when it was seen (RunTask), its process
        started and it was marked STOPPED (epoch seconds; None when not yet)."""
        with self._lock:
            tasks = list(self.tasks.values())
        return [
            {
                "arn": t.arn,
                "worker": t.worker,
                "vcpu": int(t.cpu) / 1024 if t.cpu else 0.0,
                "created": t.seen_ts,
                "started": t.started_ts,
                "stopped": t.stopped_ts,
            }
            for t in tasks
        ]

    def idle(self) -> bool:
        with self._lock:
            return not self.pending and not self.running

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # keep the emulation alive; the error is visible
                log.exception("local fargate tick failed")
                self.errors.append(repr(exc))
            self._wake.wait(self._next_wait())
            self._wake.clear()

    def _next_wait(self) -> float:
        """The poll interval, or less when a modelled start-up ends sooner."""
        if not self.startup_seconds:
            return self.poll_interval
        with self._lock:
            due = [self.tasks[a].seen_ts + self.startup_seconds for a in self.pending]
        if not due:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, min(due) - time.time()))

    # --- one pass --------------------------------------------------------------------------
    def tick(self) -> None:
        self._discover()
        self._check_stop_requests()
        self._reap()
        self._launch()

    def _discover(self) -> None:
        for cluster in self.cluster_arns:
            arns = self.ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
            new = [a for a in arns if a not in self.tasks]
            for chunk in _chunks(new, 100):
                for desc in self.ecs.describe_tasks(cluster=cluster, tasks=chunk)["tasks"]:
                    task = self._task_from(desc)
                    with self._lock:
                        self.tasks[task.arn] = task
                        self.pending.append(task.arn)

    def _task_from(self, desc: Mapping[str, Any]) -> LocalTask:
        td_arn = str(desc["taskDefinitionArn"])
        td = self._task_definition(td_arn)
        container = next(
            (c for c in td["containerDefinitions"] if c.get("name") == CONTAINER_NAME),
            td["containerDefinitions"][0],
        )
        env = {e["name"]: e["value"] for e in container.get("environment") or []}
        overrides = dict(desc.get("overrides") or {})
        for co in overrides.get("containerOverrides") or []:
            if co.get("name") == container.get("name"):
                env.update({e["name"]: e["value"] for e in co.get("environment") or []})
        if container.get("secrets"):
            names = [s.get("name") for s in container["secrets"]]
            log.warning("task %s: secrets %s are not resolved locally", desc["taskArn"], names)
        worker = env.get(Env.WORKER_NAME) or self._worker_of(td_arn) or str(td["family"])
        task_id = str(desc["taskArn"]).rsplit("/", 1)[-1]
        return LocalTask(
            arn=str(desc["taskArn"]),
            cluster_arn=str(desc["clusterArn"]),
            task_definition_arn=td_arn,
            worker=worker,
            started_by=str(desc.get("startedBy") or ""),
            group=str(desc.get("group") or ""),
            overrides=overrides,
            capacity_provider=desc.get("capacityProviderName"),
            cpu=overrides.get("cpu") or td.get("cpu"),
            memory=overrides.get("memory") or td.get("memory"),
            env=env,
            stop_timeout=min(
                int(container.get("stopTimeout") or DEFAULT_STOP_TIMEOUT), self.max_stop_timeout
            ),
            log_path=self.logs_dir / f"{task_id}.log",
        )

    def _task_definition(self, arn: str) -> dict[str, Any]:
        if arn not in self._task_defs:
            td: dict[str, Any] = self.ecs.describe_task_definition(taskDefinition=arn)[
                "taskDefinition"
            ]
            self._task_defs[arn] = td
        return self._task_defs[arn]

    def _worker_of(self, td_arn: str) -> str | None:
        for name, worker in self.workers.items():
            if worker.task_definition == td_arn:
                return name
        return None

    def interrupt_spot(self, task_arn: str) -> None:
        """Emulate a Fargate Spot interruption of a running task: ECS stops it (reason and
        ``stopCode: SpotInterruption`` as AWS sends them), the container gets SIGTERM and
        ``stopTimeout`` seconds before SIGKILL."""
        with self._lock:
            task = self.tasks[task_arn]
        task.stop_code = "SpotInterruption"
        self.ecs.stop_task(cluster=task.cluster_arn, task=task_arn, reason=SPOT_REASON)

    def _check_stop_requests(self) -> None:
        """Tasks stopped through StopTask (cancel, sweep): SIGTERM, then SIGKILL at timeout."""
        with self._lock:
            watched = [self.tasks[a] for a in self.running + self.pending]
        by_cluster: dict[str, list[LocalTask]] = {}
        for task in watched:
            if task.stop_reason is None:
                by_cluster.setdefault(task.cluster_arn, []).append(task)
        for cluster, tasks in by_cluster.items():
            for chunk in _chunks(tasks, 100):
                described = self.ecs.describe_tasks(cluster=cluster, tasks=[t.arn for t in chunk])[
                    "tasks"
                ]
                for desc in described:
                    if desc.get("desiredStatus") != "STOPPED":
                        continue
                    task = self.tasks[desc["taskArn"]]
                    task.stop_reason = str(desc.get("stoppedReason") or "Task stopped by user")
                    if task.process is None:  # never started: nothing to signal
                        with self._lock:
                            self.pending.remove(task.arn)
                        self._finish(task, exit_code=None)
                    elif task.process.poll() is None:
                        log.info("task %s stopped (%s): SIGTERM", task.task_id, task.stop_reason)
                        task.process.send_signal(signal.SIGTERM)
                        task.kill_at = time.monotonic() + task.stop_timeout
        now = time.monotonic()
        for task in watched:
            if task.kill_at is not None and task.process is not None and now > task.kill_at:
                if task.process.poll() is None:
                    log.warning("task %s outlived its stop timeout: SIGKILL", task.task_id)
                    self._kill(task)
                task.kill_at = None

    def _reap(self) -> None:
        with self._lock:
            running = [self.tasks[a] for a in self.running]
        for task in running:
            assert task.process is not None
            code = task.process.poll()
            if code is None:
                continue
            with self._lock:
                self.running.remove(task.arn)
            if task.log_file is not None:
                task.log_file.close()
            self._finish(task, exit_code=container_exit_code(code))

    def _launch(self) -> None:
        while True:
            with self._lock:
                if not self.pending or len(self.running) >= self.max_tasks:
                    return
                if self.tasks[self.pending[0]].seen_ts + self.startup_seconds > time.time():
                    return  # still in its modelled start-up (tasks are seen in order)
                arn = self.pending.pop(0)
                self.running.append(arn)
            task = self.tasks[arn]
            try:
                self._spawn(task)
            except Exception as exc:
                log.exception("task %s could not start", task.task_id)
                with self._lock:
                    self.running.remove(arn)
                task.stop_reason = f"CannotStartContainerError: {exc}"
                self._finish(task, exit_code=None, stop_code="TaskFailedToStart")

    # --- processes -------------------------------------------------------------------------
    def container_name(self, task: LocalTask) -> str:
        return f"batch-local-{task.task_id}"

    def _kill(self, task: LocalTask) -> None:
        """SIGKILL the process; with --docker also the container (killing the ``docker run``
        client alone would leave the container running)."""
        if self.docker:
            subprocess.run(
                ["docker", "rm", "-f", self.container_name(task)],
                capture_output=True,
                timeout=60,
                check=False,
            )
        if task.process is not None and task.process.poll() is None:
            task.process.kill()

    def process_env(self, task: LocalTask) -> dict[str, str]:
        env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        pythonpath = [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.base_env)
        env.update(task.env)
        env[Env.MODEL_BACKEND] = "offline"  # no Bedrock locally: the workers' own backend
        env[Env.TASK_ARN] = task.arn
        env.setdefault(Env.WORKER_NAME, task.worker)
        return env

    def _spawn(self, task: LocalTask) -> None:
        env = self.process_env(task)
        if self.docker:
            args = [
                "docker", "run", "--rm", "--name", self.container_name(task),
                "--network", "host", "--stop-timeout", str(task.stop_timeout),
            ]  # fmt: skip
            if self.gpus is None:
                self.gpus = docker_has_gpu()
            if self.gpus:
                args += ["--gpus", "all"]  # GPU workers see the host's GPUs, as on ECS
            for key, value in env.items():
                if key not in _INHERITED and key != "PYTHONPATH":
                    args += ["-e", f"{key}={value}"]
            args.append(self.docker_image(task.worker))
        else:
            args = self.command(task.worker)
        task.log_file = task.log_path.open("ab")
        header = f"# task {task.arn} worker {task.worker} started {_now_iso()}\n"
        task.log_file.write(header.encode())
        task.log_file.flush()
        task.process = subprocess.Popen(
            args,
            env=env,
            cwd=str(PROJECT_ROOT),
            stdin=subprocess.DEVNULL,
            stdout=task.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, not the workers
        )
        task.started_at = _now_iso()
        task.started_ts = time.time()
        self._watch_exit(task.process)
        self._index(task, env)
        log.info("task %s: worker %s started (pid %d)", task.task_id, task.worker, task.process.pid)

    def _watch_exit(self, process: Any) -> None:
        """Wake the loop when ``process`` exits, so a stop reaches the reconciler (and the
        freed slot the next job) at once instead of at the next poll."""

        def watch() -> None:
            with contextlib.suppress(Exception):  # a test double may have no wait()
                process.wait()
            self.wake()

        threading.Thread(target=watch, name="local-task-exit", daemon=True).start()

    def _index(self, task: LocalTask, env: Mapping[str, str]) -> None:
        entry = TaskLogEntry(
            task_id=task.task_id,
            task_arn=task.arn,
            job_id=env.get(Env.JOB_ID),
            attempt=env.get(Env.JOB_ATTEMPT),
            worker=task.worker,
            path=str(task.log_path),
        )
        with (self.logs_dir / "index.jsonl").open("a") as fh:
            fh.write(entry.to_json() + "\n")

    def _finish(
        self, task: LocalTask, *, exit_code: int | None, stop_code: str | None = None
    ) -> None:
        """Mark the task STOPPED in moto and deliver the STOPPED event."""
        task.stopped_ts = time.time()
        if task.stop_reason is None:
            reason = EXITED_REASON
            self.ecs.stop_task(cluster=task.cluster_arn, task=task.arn, reason=reason)
            code = stop_code or "EssentialContainerExited"
        else:
            reason = task.stop_reason
            code = stop_code or task.stop_code or "UserInitiated"
        self.finished += 1
        self.deliver(self.stopped_event(task, exit_code=exit_code, stop_code=code, reason=reason))

    def stopped_event(
        self, task: LocalTask, *, exit_code: int | None, stop_code: str, reason: str
    ) -> dict[str, Any]:
        """The EventBridge ``ECS Task State Change`` event for a STOPPED task."""
        arn_parts = task.arn.split(":")
        region, account = arn_parts[3], arn_parts[4]
        now = _now_iso()
        container: dict[str, Any] = {
            "containerArn": f"{task.arn.replace(':task/', ':container/')}/{uuid.uuid4()}",
            "name": CONTAINER_NAME,
            "lastStatus": "STOPPED",
            "taskArn": task.arn,
            "cpu": "0",
        }
        if exit_code is not None:
            container["exitCode"] = exit_code
        detail: dict[str, Any] = {
            "clusterArn": task.cluster_arn,
            "taskArn": task.arn,
            "taskDefinitionArn": task.task_definition_arn,
            "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED",
            "stopCode": stop_code,
            "stoppedReason": reason,
            "startedBy": task.started_by,
            "group": task.group,
            "launchType": "FARGATE",
            "capacityProviderName": task.capacity_provider or "FARGATE",
            "cpu": task.cpu,
            "memory": task.memory,
            "containers": [container],
            "overrides": task.overrides,
            "createdAt": task.created_at,
            "startedAt": task.started_at,
            "stoppingAt": now,
            "stoppedAt": now,
            "updatedAt": now,
            "version": 5,
            "attachments": [],
        }
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": ECS_TASK_STATE_CHANGE,
            "source": ECS_EVENT_SOURCE,
            "account": account,
            "time": now,
            "region": region,
            "resources": [task.arn],
            "detail": detail,
        }


def default_docker_image(worker: str) -> str:
    """The local tag ``--docker`` runs for a worker (build it from workers/<name>/Dockerfile)."""
    return f"ai-batch-local/{worker}:latest"


def missing_images(images: list[str]) -> list[str]:
    """The images of ``images`` the local Docker engine does not have."""
    return [
        image
        for image in images
        if subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, timeout=60, check=False
        ).returncode
        != 0
    ]


def docker_available() -> bool:
    """True when a Docker engine answers (``docker info``), not merely when the CLI exists."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def docker_has_gpu(dev: Path = Path("/dev/nvidia0")) -> bool:
    """True when ``docker run --gpus all`` can work here: an NVIDIA device on the host and
    the engine has the NVIDIA runtime (the NVIDIA Container Toolkit registers it; without it
    ``--gpus`` fails with "could not select device driver")."""
    if not dev.exists() or shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{json .Runtimes}}"],
            capture_output=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and engine_has_nvidia_runtime(done.stdout.decode())


def engine_has_nvidia_runtime(runtimes_json: str) -> bool:
    """Whether ``docker info --format '{{json .Runtimes}}'`` lists the NVIDIA runtime."""
    try:
        runtimes = json.loads(runtimes_json or "{}")
    except ValueError:
        return False
    return isinstance(runtimes, dict) and any("nvidia" in str(k).lower() for k in runtimes)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
