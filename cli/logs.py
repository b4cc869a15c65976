"""``batchctl logs``: a job's worker output, from the local process log or CloudWatch Logs.

Locally every task's output is a file under the pipeline's ``logs_dir``, listed in
``index.jsonl`` (task id, job id, attempt). In AWS a task logs through the awslogs driver to
the worker's log group, stream ``<awslogs-stream-prefix>/worker/<task id>``; the group and
prefix are read from the job's task definition, the task ids from ECS (tasks started by the
job id) or, once ECS has forgotten stopped tasks, from the streams that mention the job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from cli.api import CliError, Exit
from jobcontract import CONTAINER_NAME

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


def local_log_files(logs_dir: Path, job_id: str) -> list[Path]:
    """The process logs of every attempt of ``job_id``, oldest attempt first."""
    index = logs_dir / "index.jsonl"
    found: list[tuple[int, Path]] = []
    if index.exists():
        for line in index.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("job_id") == job_id:
                found.append((int(entry.get("attempt") or 0), Path(entry["path"])))
    return [p for _, p in sorted(found, key=lambda t: t[0])]


def print_local(
    logs_dir: Path,
    job_id: str,
    out: TextIO,
    *,
    follow: bool,
    job_status: Callable[[], str],
    poll: float = 0.5,
) -> int:
    files = local_log_files(logs_dir, job_id)
    if not files and not follow:
        raise CliError(Exit.NOT_FOUND, f"no local process log for job {job_id} (not started?)")
    offsets: dict[Path, int] = {}
    while True:
        for path in local_log_files(logs_dir, job_id):
            if path not in offsets:
                offsets[path] = 0
                out.write(f"==> {path.name} <==\n")
            try:
                with path.open("rb") as fh:
                    fh.seek(offsets[path])
                    chunk = fh.read()
            except FileNotFoundError:
                continue
            offsets[path] += len(chunk)
            out.write(chunk.decode("utf-8", "replace"))
        out.flush()
        if not follow or job_status() in TERMINAL:
            if follow:  # one last read after the job ended: the tail may have landed late
                follow = False
                continue
            return Exit.OK
        time.sleep(poll)


def _log_target(session: Any, task_definition: str) -> tuple[str, str]:
    td = session.client("ecs").describe_task_definition(taskDefinition=task_definition)
    containers = td["taskDefinition"]["containerDefinitions"]
    container = next((c for c in containers if c.get("name") == CONTAINER_NAME), containers[0])
    options = (container.get("logConfiguration") or {}).get("options") or {}
    group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
    if not group or not prefix:
        raise CliError(Exit.NOT_FOUND, f"task definition {task_definition} has no awslogs setup")
    return str(group), str(prefix)


def _task_ids(session: Any, cluster: str | None, job_id: str) -> list[str]:
    if not cluster:
        return []
    from botocore.exceptions import ClientError

    ecs = session.client("ecs")
    arns: list[str] = []
    for status in ("RUNNING", "STOPPED"):
        # The ListTasks reference says startedBy "must be the only filter": should ECS refuse
        # it next to desiredStatus, the job's recorded task and the log search still work.
        try:
            page = ecs.list_tasks(cluster=cluster, startedBy=job_id, desiredStatus=status)
        except ClientError:
            continue
        arns += page["taskArns"]
    return [a.rsplit("/", 1)[-1] for a in arns]


def _events(logs: Any, group: str, stream: str, token: str | None) -> tuple[list[Any], str | None]:
    kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
    if token:
        kwargs["nextToken"] = token
    try:
        page = logs.get_log_events(**kwargs)
    except logs.exceptions.ResourceNotFoundException:
        return [], token
    return list(page.get("events") or []), page.get("nextForwardToken")


def aws_streams(
    session: Any,
    group: str,
    prefix: str,
    job_id: str,
    cluster: str | None,
    task_arn: str | None = None,
) -> list[str]:
    task_ids = _task_ids(session, cluster, job_id)
    if task_arn and task_arn.rsplit("/", 1)[-1] not in task_ids:
        task_ids.append(task_arn.rsplit("/", 1)[-1])  # the job's latest task, from the API
    streams = [f"{prefix}/{CONTAINER_NAME}/{t}" for t in task_ids]
    if streams:
        return streams
    # ECS keeps stopped tasks about an hour; the worker's JSON logs carry the job id.
    logs = session.client("logs")
    found: list[str] = []
    for page in _pages(logs, group, job_id):
        for event in page.get("events") or []:
            if event["logStreamName"] not in found:
                found.append(event["logStreamName"])
    return found


def _pages(logs: Any, group: str, job_id: str) -> Iterator[dict[str, Any]]:
    paginator = logs.get_paginator("filter_log_events")
    yield from paginator.paginate(logGroupName=group, filterPattern=f'"{job_id}"')


def print_aws(
    session: Any,
    job: dict[str, Any],
    out: TextIO,
    *,
    cluster: str | None,
    follow: bool,
    job_status: Callable[[], str],
    poll: float = 2.0,
) -> int:
    task_definition = job.get("task_definition")
    if not task_definition:
        raise CliError(Exit.NOT_FOUND, f"job {job['job_id']} has no task definition recorded")
    group, prefix = _log_target(session, str(task_definition))
    logs = session.client("logs")
    tokens: dict[str, str | None] = {}
    while True:
        streams = aws_streams(
            session, group, prefix, str(job["job_id"]), cluster, job.get("task_arn")
        )
        for stream in streams:
            if stream not in tokens:
                tokens[stream] = None
                out.write(f"==> {group} {stream} <==\n")
            while True:
                events, token = _events(logs, group, stream, tokens[stream])
                for event in events:
                    out.write(str(event.get("message", "")).rstrip("\n") + "\n")
                if not events or token == tokens[stream]:
                    tokens[stream] = token
                    break
                tokens[stream] = token
        out.flush()
        if not follow or job_status() in TERMINAL:
            if not tokens:
                raise CliError(Exit.NOT_FOUND, f"no log stream found for job {job['job_id']}")
            return Exit.OK
        time.sleep(poll)
