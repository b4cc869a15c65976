"""Every job state change writes one log line carrying ``job_id`` and the new ``status``, from
the API, the launcher, the worker runtime and the reconciler alike, and the dashboard's
"Job transitions by status" query selects exactly those lines.

Jobs run through their states against the moto server with the real handlers and the real
worker runtime in this process; stdout is what CloudWatch Logs would receive."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

from components.observability import transitions_query
from handlers import launcher, reconciler
from jobcontract import Env, JobField
from jobcontract.logs import LogField
from jobcontract.store import JobStore
from tests.fixtures.moto_server import PipelineResources, WorkerSpec
from tests.runtime.helpers import call, job_messages, receive_all, sqs_event, stopped_event
from workers.runtime import JobContext, exit_codes, run_worker, worker

WORKER = "echo"


@worker(name=WORKER)
def echo(ctx: JobContext) -> dict[str, Any]:
    return {"items": ctx.input["items"]}


@pytest.fixture
def res(pipeline_resources: Any, monkeypatch: pytest.MonkeyPatch) -> PipelineResources:
    monkeypatch.delenv(Env.LOG_LEVEL, raising=False)  # INFO: transitions are INFO lines
    made: PipelineResources = pipeline_resources([WorkerSpec(WORKER, max_attempts=2)])
    return made


def submit() -> str:
    status, body, _ = call("POST", "/jobs", {"worker": WORKER, "input": {"items": ["a"]}})
    assert status == 202
    return str(body["job_id"])


def launch(res: PipelineResources, job_id: str) -> str:
    messages = job_messages(res.workers[WORKER].queue_url)
    assert [json.loads(m["Body"])["job_id"] for m in messages] == [job_id]
    out = launcher.handler(sqs_event(res.workers[WORKER].queue_arn, messages), None)
    assert out == {"batchItemFailures": []}
    job = JobStore(res.table_name).get(job_id)
    assert job is not None
    return str(job[JobField.TASK_ARN])


def run_task(res: PipelineResources, job_id: str, task_arn: str) -> int:
    """The worker container of ``task_arn``, in process, logging to stdout as in ECS."""
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    env.update(
        {
            Env.JOBS_TABLE: res.table_name,
            Env.RESULTS_BUCKET: res.bucket,
            Env.WORKER_NAME: WORKER,
            Env.MODEL_BACKEND: "offline",
            Env.JOB_ID: job_id,
            Env.JOB_ATTEMPT: "1",
            Env.TASK_ARN: task_arn,
        }
    )
    return run_worker(echo, env, install_signal_handlers=False)


def reconcile(res: PipelineResources, task_arn: str, exit_code: int) -> str:
    event = stopped_event(res.cluster_arn, task_arn, exit_code=exit_code)
    return str(reconciler.handler(event, None)["outcome"])


# --- the dashboard query, read back ----------------------------------------------------------
_TERM_PRESENT = re.compile(r"^ispresent\((\w+)\)$")
_TERM_EQUALS = re.compile(r'^(\w+) = "([^"]*)"$')


def query_selects(query: str) -> tuple[Any, str]:
    """(predicate over a log line, the field it groups by), parsed from the query text: the
    part a test can hold the logger to. Unknown syntax fails loudly."""
    filters = re.search(r"\| filter (.+?) \|", query)
    by = re.search(r"\| stats count\(\*\) as \w+ by (\w+)$", query)
    assert filters and by, query
    checks: list[tuple[str, str | None]] = []  # (field, value it must equal; None: present)
    for term in filters.group(1).split(" and "):
        present, equals = _TERM_PRESENT.match(term), _TERM_EQUALS.match(term)
        if present:
            checks.append((present.group(1), None))
        elif equals:
            checks.append((equals.group(1), equals.group(2)))
        else:
            raise AssertionError(f"query term not understood: {term!r}")

    def selects(line: dict[str, Any]) -> bool:
        return all(line.get(f) is not None if v is None else line.get(f) == v for f, v in checks)

    return selects, by.group(1)


def test_every_transition_logs_job_id_and_status_and_the_dashboard_counts_them(
    res: PipelineResources, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    # A: submitted, launched, run by the worker, its clean exit reconciled.
    ok = submit()
    ok_task = launch(res, ok)
    assert run_task(res, ok, ok_task) == exit_codes.OK
    assert reconcile(res, ok_task, 0).startswith(("skipped", "terminal"))  # nothing to change
    # B: the task crashes twice: retried by the reconciler, then failed (max_attempts 2).
    retried = submit()
    first = launch(res, retried)
    assert reconcile(res, first, 1) == "retry: WorkerError"
    second = launch(res, retried)
    assert reconcile(res, second, 1) == "final: FAILED"
    # C: cancelled while still queued.
    cancelled = submit()
    status, _, _ = call("POST", f"/jobs/{cancelled}/cancel")
    assert status == 200
    receive_all(res.workers[WORKER].queue_url)
    # D: cancelled once launched: flagged by the API (a line with its current status, not a
    # transition), stopped, and ended by the reconciler.
    stopped = submit()
    stopped_task = launch(res, stopped)
    status, _, _ = call("POST", f"/jobs/{stopped}/cancel")
    assert status == 202
    assert reconcile(res, stopped_task, 143) == "final: CANCELLED"

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    selects, by = query_selects(transitions_query(["/aws/lambda/x", "/ecs/echo"]))
    assert by == LogField.STATUS
    counted = [line for line in lines if selects(line)]
    for line in counted:
        assert line[LogField.JOB_ID] and line[LogField.STATUS], line

    def statuses(job_id: str) -> list[str]:
        return [line[by] for line in counted if line[LogField.JOB_ID] == job_id]

    assert statuses(ok) == ["QUEUED", "DISPATCHED", "RUNNING", "SUCCEEDED"]
    assert statuses(retried) == ["QUEUED", "DISPATCHED", "QUEUED", "DISPATCHED", "FAILED"]
    assert statuses(cancelled) == ["QUEUED", "CANCELLED"]
    assert statuses(stopped) == ["QUEUED", "DISPATCHED", "CANCELLED"]
    # Nothing else is counted as a transition: not the launch or the cancel request lines.
    assert len(counted) == 14
    # Each job's last counted status is the one the table holds.
    store = JobStore(res.table_name)
    for job_id in (ok, retried, cancelled, stopped):
        job = store.get(job_id)
        assert job is not None and statuses(job_id)[-1] == job[JobField.STATUS]
