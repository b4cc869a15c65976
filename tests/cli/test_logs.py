"""batchctl logs: the CloudWatch Logs path (against moto) and the local index."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cli.api import CliError, Exit
from cli.logs import local_log_files, print_aws, print_local

JOB = "echo_" + "b" * 32
NOW = int(time.time() * 1000)  # CloudWatch drops events older than 14 days


class Session:
    def __init__(self, endpoint: str) -> None:
        import boto3

        self._s = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        self.endpoint = endpoint

    def client(self, service: str) -> Any:
        return self._s.client(service, endpoint_url=self.endpoint)


def test_aws_logs_come_from_the_task_definition_log_stream(moto_reset: str) -> None:
    session = Session(moto_reset)
    td = session.client("ecs").register_task_definition(
        family="echo",
        containerDefinitions=[{
            "name": "worker", "image": "x", "memory": 512,
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/w/echo", "awslogs-stream-prefix": "job",
                "awslogs-region": "us-east-1"}},
        }],
    )["taskDefinition"]["taskDefinitionArn"]  # fmt: skip
    logs = session.client("logs")
    logs.create_log_group(logGroupName="/w/echo")
    logs.create_log_stream(logGroupName="/w/echo", logStreamName="job/worker/task123")
    logs.create_log_stream(logGroupName="/w/echo", logStreamName="job/worker/other")
    logs.put_log_events(logGroupName="/w/echo", logStreamName="job/worker/task123", logEvents=[
        {"timestamp": NOW + i, "message": f"line {i}"} for i in range(3)
    ])  # fmt: skip
    logs.put_log_events(
        logGroupName="/w/echo",
        logStreamName="job/worker/other",
        logEvents=[{"timestamp": NOW, "message": "not mine"}],
    )
    job = {
        "job_id": JOB,
        "task_definition": td,
        "task_arn": "arn:aws:ecs:us-east-1:123456789012:task/c/task123",
    }
    out = io.StringIO()
    code = print_aws(session, job, out, cluster=None, follow=False, job_status=lambda: "RUNNING")
    text = out.getvalue()
    assert code == 0 and "line 0\nline 1\nline 2\n" in text and "not mine" not in text
    assert "/w/echo job/worker/task123" in text


def test_local_logs_follow_every_attempt_in_order(tmp_path: Path) -> None:
    for attempt, task in ((2, "t2"), (1, "t1")):
        (tmp_path / f"{task}.log").write_text(f"attempt {attempt}\n")
        with (tmp_path / "index.jsonl").open("a") as fh:
            fh.write(
                json.dumps(
                    {
                        "task_id": task,
                        "job_id": JOB,
                        "attempt": str(attempt),
                        "path": str(tmp_path / f"{task}.log"),
                    }
                )
                + "\n"
            )
    assert [p.name for p in local_log_files(tmp_path, JOB)] == ["t1.log", "t2.log"]
    out = io.StringIO()
    assert print_local(tmp_path, JOB, out, follow=True, job_status=lambda: "FAILED") == 0
    assert out.getvalue().index("attempt 1") < out.getvalue().index("attempt 2")
    with pytest.raises(CliError) as info:
        print_local(
            tmp_path, "other_" + "c" * 32, io.StringIO(), follow=False, job_status=lambda: "QUEUED"
        )
    assert info.value.code == Exit.NOT_FOUND


def test_task_ids_survive_ecs_refusing_started_by_with_a_status_filter() -> None:
    """The ListTasks reference says startedBy must be the only filter: if real ECS refuses
    it next to desiredStatus, the logs command must fall back (not crash)."""
    from botocore.exceptions import ClientError

    from cli.logs import _task_ids

    class Ecs:
        def list_tasks(self, **kwargs: Any) -> dict[str, Any]:
            if kwargs.get("desiredStatus") == "STOPPED":
                raise ClientError(
                    {"Error": {"Code": "InvalidParameterException", "Message": "filters"}},
                    "ListTasks",
                )
            return {"taskArns": ["arn:aws:ecs:us-east-1:123456789012:task/c/abc"]}

    class OneSession:
        def client(self, service: str) -> Any:
            assert service == "ecs"
            return Ecs()

    assert _task_ids(OneSession(), "c", JOB) == ["abc"]


def test_local_logs_of_a_warm_task_show_only_that_jobs_lines(tmp_path: Path) -> None:
    """A reused task's process log holds several jobs: each job sees its own lines only,
    including the plain lines (a traceback) written while it ran."""
    second = "echo_" + "d" * 32
    log = tmp_path / "t1.log"
    log.write_text(
        "starting\n"
        + json.dumps({"event": "job_running", "job_id": JOB})
        + "\n"
        + json.dumps({"event": "job_exit", "job_id": JOB})
        + "\n"
        + json.dumps({"event": "reuse_next_job", "jobs_run": 1})
        + "\n"
        + json.dumps({"event": "job_running", "job_id": second})
        + "\n"
        + "Traceback (most recent call last): boom\n"
        + json.dumps({"event": "job_exit", "job_id": second})
        + "\n"
    )
    (tmp_path / "index.jsonl").write_text(
        json.dumps({"task_id": "t1", "job_id": JOB, "attempt": "1", "path": str(log)}) + "\n"
    )
    first_out, second_out = io.StringIO(), io.StringIO()
    print_local(tmp_path, JOB, first_out, follow=False, job_status=lambda: "SUCCEEDED")
    print_local(tmp_path, second, second_out, follow=False, job_status=lambda: "SUCCEEDED")
    assert "starting" in first_out.getvalue() and second not in first_out.getvalue()
    assert "reuse_next_job" not in first_out.getvalue() + second_out.getvalue()
    assert JOB not in second_out.getvalue() and "Traceback" in second_out.getvalue()
    assert second_out.getvalue().count(second) == 2  # its two JSON lines, nothing else named
