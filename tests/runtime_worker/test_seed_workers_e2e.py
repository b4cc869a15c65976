"""Each seed worker end to end through the runtime against moto: a DISPATCHED job with its
offline backend ends SUCCEEDED with a result document that satisfies the worker's limits."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobcontract import Env, JobStatus, new_job_id, result_key
from jobcontract.store import JobStore
from tests.fixtures.moto_server import PipelineResources, WorkerSpec
from workers.runtime import exit_codes, run_worker
from workers.runtime.loader import load_worker

REPO_ROOT = Path(__file__).resolve().parents[2]
SEEDS = ("image-alt-generator", "meta-desc-generator", "content-analyzer")


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


INPUTS: dict[str, dict[str, Any]] = {
    "image-alt-generator": {
        "images": [
            {"s3_key": "inputs/image-alt-generator/uploads/green-field.png", "context": ""},
            {"s3_key": "inputs/image-alt-generator/uploads/missing.png"},
        ]
    },
    "meta-desc-generator": {
        "pages": [
            {
                "url": "https://example.com/tea",
                "html": "<html><head><title>Green tea brewing guide</title></head><body>"
                "<nav>Home | Shop | Blog</nav><h1>Brewing green tea</h1>"
                "<p>Green tea tastes sweet when it is brewed with water below boiling. "
                "Heat the water to about 80 degrees and steep the green tea leaves for two "
                "minutes. Longer steeping makes green tea bitter and astringent.</p>"
                "<footer>Copyright Tea Shop</footer></body></html>",
            }
        ]
    },
    "content-analyzer": {
        "documents": [
            {
                "id": "doc-1",
                "text": "Bees pollinate flowering plants. Honey bees live in colonies with "
                "one queen. Honey bees make honey from nectar. Wild bees also pollinate "
                "crops and flowering plants.",
            }
        ]
    },
}


def check_output(name: str, output: dict[str, Any]) -> None:
    if name == "image-alt-generator":
        first, second = output["images"]
        assert first["alt"] == "Green field: landscape graphic, 120\u00d780, mostly green"
        assert second["error"]["type"] == "PermanentError"
        assert output["summary"] == {"images": 2, "succeeded": 1, "failed": 1}
    elif name == "meta-desc-generator":
        (page,) = output["pages"]
        assert 0 < page["length"] <= 160 and "green tea" in page["description"].lower()
        assert "Copyright" not in page["description"]
    else:
        (doc,) = output["documents"]
        analysis = doc["analysis"]
        assert doc["id"] == "doc-1" and analysis["sentence_count"] == 4
        keywords = [k["keyword"] for k in analysis["keywords"]]
        assert "honey bees" in keywords[:3] and "flowering plants" in keywords
        assert 0 <= analysis["flesch_kincaid_grade"] <= 12


@pytest.mark.parametrize("name", SEEDS)
def test_seed_worker_offline_end_to_end(
    name: str, pipeline_resources: Callable[..., PipelineResources]
) -> None:
    res = pipeline_resources([WorkerSpec(name)])
    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=res.bucket,
        Key="inputs/image-alt-generator/uploads/green-field.png",
        Body=png(120, 80, (40, 160, 60)),
    )
    store = JobStore(res.table_name)
    job_id = new_job_id(name)
    store.create(
        {
            "job_id": job_id,
            "worker": name,
            "status": JobStatus.DISPATCHED.value,
            "attempts": 1,
            "input": INPUTS[name],
        }
    )
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    env.update(
        {
            Env.JOBS_TABLE: res.table_name,
            Env.RESULTS_BUCKET: res.bucket,
            Env.WORKER_NAME: name,
            Env.JOB_ID: job_id,
            Env.JOB_ATTEMPT: "1",
            Env.WORKER_TIMEOUT_SECONDS: "60",
        }
    )
    code = run_worker(load_worker(name), env, stream=io.StringIO(), install_signal_handlers=False)
    assert code == exit_codes.OK
    job = store.get(job_id)
    assert job is not None and job["status"] == JobStatus.SUCCEEDED
    body = s3.get_object(Bucket=res.bucket, Key=result_key(name, job_id))["Body"].read()
    document = json.loads(body)
    assert document["output"]["backend"] == "offline"
    check_output(name, document["output"])
