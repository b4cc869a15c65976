"""``--docker``: a task runs the worker's real image (skipped without a Docker engine and the
locally built images; see local_pipeline/README-SECTION.md for the build command)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from local_pipeline.fargate import default_docker_image, docker_available, missing_images
from local_pipeline.pipeline import LocalPipeline

pytestmark = pytest.mark.xdist_group("e2e-local-docker")
WORKER = "content-analyzer"


@pytest.fixture(scope="module")
def docker_ready() -> None:
    if not docker_available():
        pytest.skip("no Docker engine")
    if missing_images([default_docker_image(WORKER)]):
        pytest.skip(f"image {default_docker_image(WORKER)} not built")


def test_a_job_runs_in_the_worker_image(docker_ready: None, tmp_path: Path) -> None:
    with LocalPipeline(port=0, state_dir=tmp_path, docker=True, poll_interval=0.1) as p:
        body = {"worker": WORKER, "input": {"documents": [{"id": "d", "text": "In a box."}]}}
        req = urllib.request.Request(
            p.api_url + "/jobs", data=json.dumps(body).encode(), method="POST",
            headers={"x-api-key": p.api_key, "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as resp:
            job_id = json.loads(resp.read())["job_id"]
        deadline = time.monotonic() + 120
        while True:
            req = urllib.request.Request(
                f"{p.api_url}/jobs/{job_id}", headers={"x-api-key": p.api_key}
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                job = json.loads(resp.read())
            if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.3)
        assert job["status"] == "SUCCEEDED", job
        log = next(p.logs_dir.glob("*.log")).read_text()
        assert '"event": "job_succeeded"' in log  # written inside the container
