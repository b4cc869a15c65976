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


def local_log_files(logs_dir: Path, job_id: str, *, own_only: bool = False) -> list[Path]:
    """The process logs that may hold ``job_id``'s lines: the tasks started for it (oldest
    attempt first), then, unless ``own_only``, every other task's (a warm task runs several
    jobs in one process)."""
    index = logs_dir / "index.jsonl"
    own: list[tuple[int, Path]] = []
    others: list[Path] = []
    if index.exists():
        for line in index.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("job_id") == job_id:
                own.append((int(entry.get("attempt") or 0), Path(entry["path"])))
            elif entry.get("path"):
                others.append(Path(entry["path"]))
    first = [p for _, p in sorted(own, key=lambda t: t[0])]
    return first if own_only else first + [p for p in others if p not in first]


class JobLines:
    """Keeps one job's lines of a process log: its JSON lines (``job_id``), and the plain
    lines (a traceback, a print) written while it was the job running in that process."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.current: dict[Path, str | None] = {}
        self.pending: dict[Path, str] = {}

    def feed(self, path: Path, text: str, *, started_for_job: bool) -> str:
        """The kept lines of ``text``, the next chunk of ``path``. A process started for the
        job owns its lines until another job's line appears."""
        self.current.setdefault(path, self.job_id if started_for_job else None)
        data = self.pending.pop(path, "") + text
        lines = data.split("\n")
        if lines and lines[-1] != "":
            self.pending[path] = lines.pop()  # an unfinished line: wait for its end
        elif lines:
            lines.pop()
        kept: list[str] = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                owner = record.get("job_id")
                self.current[path] = str(owner) if owner else None
            if self.current.get(path) == self.job_id:
                kept.append(line + "\n")
        return "".join(kept)


def print_local(
    logs_dir: Path,
    job_id: str,
    out: TextIO,
    *,
    follow: bool,
    job_status: Callable[[], str],
    poll: float = 0.5,
) -> int:
    if not local_log_files(logs_dir, job_id) and not follow:
        raise CliError(Exit.NOT_FOUND, f"no local process log for job {job_id} (not started?)")
    offsets: dict[Path, int] = {}
    announced: set[Path] = set()
    lines = JobLines(job_id)
    printed = False
    while True:
        own = set(local_log_files(logs_dir, job_id, own_only=True))
        for path in local_log_files(logs_dir, job_id):
            offsets.setdefault(path, 0)
            try:
                with path.open("rb") as fh:
                    fh.seek(offsets[path])
                    chunk = fh.read()
            except FileNotFoundError:
                continue
            offsets[path] += len(chunk)
            kept = lines.feed(path, chunk.decode("utf-8", "replace"), started_for_job=path in own)
            if kept:
                if path not in announced:
                    announced.add(path)
                    out.write(f"==> {path.name} <==\n")
                out.write(kept)
                printed = True
        out.flush()
        if not follow or job_status() in TERMINAL:
            if follow:  # one last read after the job ended: the tail may have landed late
                follow = False
                continue
            if not printed:
                raise CliError(Exit.NOT_FOUND, f"no local log line of job {job_id} (not started?)")
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
