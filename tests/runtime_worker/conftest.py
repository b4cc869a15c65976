"""Fixtures for worker runtime tests: the pipeline in moto plus helpers to seed jobs."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from jobcontract import Env, JobStatus, new_job_id
from jobcontract.store import JobStore
from tests.fixtures.moto_server import PipelineResources, WorkerSpec

WORKER = "echo"


@dataclass
class RuntimeEnv:
    resources: PipelineResources
    store: JobStore

    def env(self, **extra: str) -> dict[str, str]:
        """The worker container environment (what the task definition + RunTask set)."""
        base = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        base.update(
            {
                Env.JOBS_TABLE: self.resources.table_name,
                Env.RESULTS_BUCKET: self.resources.bucket,
                Env.WORKER_NAME: WORKER,
                Env.HEARTBEAT_INTERVAL_SECONDS: "0.05",
                Env.MODEL_BACKEND: "offline",
            }
        )
        base.update(extra)
        return base

    def dispatched_job(self, job_input: dict[str, Any], attempts: int = 1, **fields: Any) -> str:
        """A job as the launcher leaves it: DISPATCHED to attempt ``attempts``."""
        job_id = new_job_id(WORKER)
        self.store.create(
            {
                "job_id": job_id,
                "worker": WORKER,
                "status": JobStatus.DISPATCHED.value,
                "attempts": attempts,
                "max_attempts": 3,
                "input": job_input,
                "source": "api",
                **fields,
            }
        )
        return job_id

    def job_env(self, job_id: str, attempt: int = 1, **extra: str) -> dict[str, str]:
        return self.env(**{Env.JOB_ID: job_id, Env.JOB_ATTEMPT: str(attempt), **extra})


@pytest.fixture
def runtime_env(pipeline_resources: Callable[..., PipelineResources]) -> RuntimeEnv:
    resources = pipeline_resources([WorkerSpec(WORKER, max_attempts=4)])
    return RuntimeEnv(resources, JobStore(resources.table_name))
