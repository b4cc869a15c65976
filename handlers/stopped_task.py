"""A stopped ECS task as the reconciler reads it (``StoppedTask``, from an ECS task state
change event or a ``DescribeTasks`` answer), and why its attempt ended (``classify``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from jobcontract import CONTAINER_NAME, Env, WorkerExit
from jobcontract.dispatch import F as DispatchField

OOM_EXIT_CODE = 137  # SIGKILL: what the OOM killer sends


@dataclass(frozen=True)
class StoppedTask:
    """What the reconciler needs from an ECS task state change event."""

    task_arn: str
    cluster_arn: str
    task_definition_arn: str
    started_by: str | None
    stop_code: str
    stopped_reason: str
    exit_code: int | None
    container_reason: str
    env: dict[str, str]
    tags: dict[str, str]
    # The exit code is the worker container's (found by name, or the task's only container).
    exit_code_is_worker: bool = False
    started: bool = False  # the task reached RUNNING (``startedAt`` is set)

    @property
    def clean_success(self) -> bool:
        """The worker exited 0 and nothing else stopped the task. Exit 0 means exactly "this
        attempt recorded SUCCEEDED" (``jobcontract.WorkerExit.OK``), so there is nothing to
        reconcile; a job that is somehow still active is caught by the sweep (heartbeat /
        dispatch staleness), which settles it through ``apply``."""
        return (
            self.exit_code_is_worker
            and self.exit_code == WorkerExit.OK
            and self.stop_code == "EssentialContainerExited"
        )

    def running(self, lease: dict[str, Any]) -> StoppedTask:
        """This event as seen by the job the task ran last (its lease's current job): a
        reused task was started for its first job, and its later jobs are its own attempts."""
        current, attempt = (
            lease.get(DispatchField.CURRENT_JOB),
            lease.get(DispatchField.CURRENT_ATTEMPT),
        )
        if not current or attempt is None:
            return self
        env = {**self.env, Env.JOB_ID: str(current), Env.JOB_ATTEMPT: str(attempt)}
        return dataclasses.replace(self, env=env)

    @classmethod
    def lost(cls, task_arn: str, cluster_arn: str, reason: str) -> StoppedTask:
        """A task ECS no longer knows (its STOPPED event never reached us)."""
        return cls(task_arn, cluster_arn, "", None, "TaskLost", reason, None, "", {}, {})

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> StoppedTask:
        """From an event's ``detail`` or a ``DescribeTasks`` task (same field names)."""
        containers = detail.get("containers") or []
        named = [c for c in containers if c.get("name") == CONTAINER_NAME]
        worker_container = (named or containers or [{}])[0]
        env: dict[str, str] = {}
        for override in (detail.get("overrides") or {}).get("containerOverrides") or []:
            if override.get("name") in (CONTAINER_NAME, None):
                for pair in override.get("environment") or []:
                    env[str(pair.get("name"))] = str(pair.get("value"))
        tags = {str(t.get("key")): str(t.get("value")) for t in detail.get("tags") or []}
        exit_code = worker_container.get("exitCode")
        return cls(
            task_arn=str(detail.get("taskArn", "")),
            cluster_arn=str(detail.get("clusterArn", "")),
            task_definition_arn=str(detail.get("taskDefinitionArn", "")),
            started_by=detail.get("startedBy"),
            stop_code=str(detail.get("stopCode", "")),
            stopped_reason=str(detail.get("stoppedReason", "")),
            exit_code=int(exit_code) if exit_code is not None else None,
            container_reason=str(worker_container.get("reason", "")),
            env=env,
            tags=tags,
            exit_code_is_worker=len(named) == 1 or len(containers) == 1,
            started=bool(detail.get("startedAt")),
        )


def classify(task: StoppedTask) -> dict[str, Any]:
    """Why an attempt ended, as the job's ``error`` (type, message, exit code, stop reason)."""
    reason = task.stopped_reason
    if task.stop_code in ("SpotInterruption", "TerminationNotice"):
        kind, message = "SpotInterruption", "Fargate Spot capacity was reclaimed"
    elif "outofmemory" in task.container_reason.replace(" ", "").lower():
        kind, message = "OutOfMemory", "the container ran out of memory"
    # The sweep's own stop reasons come before exit 137: a hung worker it stops is SIGKILLed
    # when stopTimeout runs out, which looks like an OOM kill by exit code alone.
    elif reason.startswith("Timeout"):
        kind, message = "Timeout", reason
    elif reason.startswith("Heartbeat"):
        kind, message = "HeartbeatLost", reason
    elif reason.startswith("TaskLost"):
        kind, message = "TaskLost", reason
    elif task.exit_code == OOM_EXIT_CODE and task.stop_code != "UserInitiated":
        # SIGKILL nobody asked for (after a StopTask it is just the grace period ending).
        kind, message = "OutOfMemory", "the container was killed (exit 137, likely out of memory)"
    elif task.stop_code == "TaskFailedToStart" or task.exit_code is None:
        kind, message = "TaskFailedToStart", task.container_reason or reason or "task never ran"
    elif task.exit_code == WorkerExit.INTERRUPTED:
        kind, message = "Interrupted", "the worker was stopped (SIGTERM) and saved its progress"
    elif task.exit_code == WorkerExit.ACCESS_DENIED:
        kind, message = "AccessDenied", "AWS denied a call the worker needs (its log names it)"
    elif task.exit_code == 0:
        kind, message = "WorkerExitedEarly", "the worker exited 0 without recording a result"
    else:
        kind, message = "WorkerError", f"the worker exited with code {task.exit_code}"
    return {
        "type": kind,
        "message": message[:1000],
        "exit_code": task.exit_code,
        "stop_reason": (reason or task.stop_code or None),
    }
