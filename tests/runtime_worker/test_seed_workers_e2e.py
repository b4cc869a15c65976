"""Each seed worker end to end through the runtime against moto: a DISPATCHED job with its
offline backend ends SUCCEEDED with a result document that satisfies the worker's limits;
with a Bedrock model that cannot be called, it ends FAILED saying so."""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from components.offline import ACCOUNT_ID, REGION, StackGraph, evaluate_stack
from jobcontract import Env, JobStatus, new_job_id, result_key
from jobcontract.store import JobStore
from tests.authz import recorder
from tests.authz.bindings import fixture_to_stack
from tests.authz.check import Principal, problems_in_stacks, rebind
from tests.fixtures.moto_server import PipelineResources, WorkerSpec
from workers.runtime import BedrockClient, exit_codes, run_worker
from workers.runtime.loader import load_worker
from workers.runtime.testing import stubbed_bedrock

REPO_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def dev_graph() -> StackGraph:
    return evaluate_stack("dev")


@functools.cache
def prod_graph() -> StackGraph:
    return evaluate_stack("prod")


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


@dataclass
class SeedRun:
    store: JobStore
    job_id: str
    env: dict[str, str]
    bucket: str


def dispatched_seed_job(name: str, res: PipelineResources, **env: str) -> SeedRun:
    """The seed worker's sample input as a DISPATCHED job, and the container environment."""
    boto3.client("s3").put_object(
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
            # The image sample has a missing image on purpose: one failed item of two.
            **({"max_failed_item_share": 0.5} if name == "image-alt-generator" else {}),
        }
    )
    container = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    container.update(
        {
            Env.JOBS_TABLE: res.table_name,
            Env.RESULTS_BUCKET: res.bucket,
            Env.WORKER_NAME: name,
            Env.JOB_ID: job_id,
            Env.JOB_ATTEMPT: "1",
            Env.WORKER_TIMEOUT_SECONDS: "60",
            **env,
        }
    )
    return SeedRun(store, job_id, container, res.bucket)


@pytest.mark.parametrize("name", SEEDS)
def test_seed_worker_offline_end_to_end(
    name: str, pipeline_resources: Callable[..., PipelineResources], tmp_path: Path
) -> None:
    res = pipeline_resources([WorkerSpec(name)])
    seed = dispatched_seed_job(name, res, **{Env.MODEL_BACKEND: "offline"})
    trace = recorder.Trace(tmp_path / "aws-calls.jsonl")
    recorder.install(trace.append)
    try:
        code = run_worker(
            load_worker(name), seed.env, stream=io.StringIO(), install_signal_handlers=False
        )
    finally:
        recorder.uninstall()
    # Every call the runtime and the seed worker made is allowed by the stacks' policies
    # (the image worker's missing image got a 404: its role must list its own prefix).
    calls = rebind(trace.calls(), fixture_to_stack(res, dev_graph()))
    assert {c.principal for c in calls} == {Principal("task", name)}
    stacks = {"dev": dev_graph(), "prod": prod_graph()}
    assert not problems_in_stacks(calls, dev_graph(), stacks, ACCOUNT_ID, REGION)
    assert code == exit_codes.OK
    job = seed.store.get(seed.job_id)
    assert job is not None and job["status"] == JobStatus.SUCCEEDED
    failed = 1 if name == "image-alt-generator" else 0
    assert job["items"]["failed"] == failed and job["items"]["total"] == len(
        next(iter(INPUTS[name].values()))
    )
    key = result_key(name, seed.job_id)
    body = boto3.client("s3").get_object(Bucket=seed.bucket, Key=key)["Body"].read()
    document = json.loads(body)
    assert document["output"]["backend"] == "offline"
    check_output(name, document["output"])


def test_seed_worker_without_a_model_or_offline_backend_does_not_start(
    pipeline_resources: Callable[..., PipelineResources],
) -> None:
    """Offline output is chosen, never implied: no model id and no BATCH_MODEL_BACKEND=offline
    is a configuration error (exit 2), not a job that quietly succeeds with offline output."""
    name = "content-analyzer"
    seed = dispatched_seed_job(name, pipeline_resources([WorkerSpec(name)]))
    stream = io.StringIO()
    code = run_worker(load_worker(name), seed.env, stream=stream, install_signal_handlers=False)
    assert code == exit_codes.CONFIG
    assert Env.MODEL_BACKEND in json.loads(stream.getvalue().splitlines()[-1])["message"]
    job = seed.store.get(seed.job_id)
    assert job is not None and job["status"] == JobStatus.DISPATCHED


def denied_bedrock(model_id: str) -> tuple[BedrockClient, Stubber]:
    """A Bedrock client whose one Converse call answers AccessDeniedException, as Bedrock does
    for a role without bedrock:InvokeModel or a model whose access was never granted."""
    client, stub = stubbed_bedrock()
    stub.add_client_error(
        "converse",
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
        http_status_code=403,
        expected_params={
            "modelId": model_id,
            "messages": ANY,
            "inferenceConfig": ANY,
            "system": ANY,
        },
    )
    return BedrockClient(model_id, client=client), stub


@pytest.mark.parametrize("name", SEEDS)
def test_seed_worker_fails_the_job_when_the_model_cannot_be_called(
    name: str, pipeline_resources: Callable[..., PipelineResources]
) -> None:
    """One AccessDeniedException fails the job (FAILED, exit 10, not retried) with a message
    naming the model and what to do: no offline output, no SUCCEEDED job of N failed items."""
    model_id = "amazon.nova-lite-v1:0"
    seed = dispatched_seed_job(
        name, pipeline_resources([WorkerSpec(name)]), **{Env.MODEL_ID: model_id}
    )
    model, stub = denied_bedrock(model_id)
    with stub:
        code = run_worker(
            load_worker(name),
            seed.env,
            model=model,
            stream=io.StringIO(),
            install_signal_handlers=False,
        )
    stub.assert_no_pending_responses()  # the one item that reached the model; nothing else
    assert code == exit_codes.FAILED
    job = seed.store.get(seed.job_id)
    assert job is not None and job["status"] == JobStatus.FAILED
    error = job["error"]
    assert error["type"] == "ModelUnavailableError"
    assert model_id in error["message"] and "AccessDeniedException" in error["message"]
    assert "bedrock:InvokeModel" in error["message"] and "model access" in error["message"]
    assert "result_key" not in job
