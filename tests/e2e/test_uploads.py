"""Uploads end to end through the local pipeline: POST /uploads over the local gateway, the
presigned POST form sent to moto over HTTP, the object under ``inputs/<worker>/``; and
``batchctl submit image-alt-generator --file a.png --file b.png --wait`` from upload to result.

moto (5.x) accepts a presigned POST but does not check the policy's ``content-length-range``:
an oversize body is stored, where S3 refuses it with ``EntityTooLarge``. So the size limit is
asserted on the signed policy, and the moto gap is pinned (if moto starts enforcing, the test
says so and the assertion can become S3's error)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.main import main as batchctl
from cli.uploads import post_form, s3_error
from local_pipeline.pipeline import LocalPipeline
from tests.e2e.local_gateway import call, running

pytestmark = pytest.mark.xdist_group("e2e-uploads")

WORKER = "image-alt-generator"
# A 2x1 PNG (red, blue): the image worker decodes headers and colours itself, offline.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAIAAAB7QOjdAAAAEElEQVR4nGP4z8DAwMDAAAAP/AH/"
    "u8ZcVQAAAABJRU5ErkJggg=="
)
ENTITY_TOO_LARGE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>EntityTooLarge</Code>'
    b"<Message>Your proposed upload exceeds the maximum allowed size</Message></Error>"
)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    state = tmp_path_factory.mktemp("local-state")
    local = LocalPipeline(
        stack="dev", port=0, state_dir=state, max_tasks=2, sweep_interval=3600, poll_interval=0.1
    )
    with running(local, state):
        yield local


def _presign(
    p: LocalPipeline, files: list[dict[str, Any]], key: str | None = None
) -> tuple[int, Any]:
    return call(p, "POST", "/uploads", {"worker": WORKER, "files": files}, key)


def _bucket(p: LocalPipeline) -> str:
    (name,) = [b["Name"] for b in p.client("s3").list_buckets()["Buckets"]]
    return str(name)


def test_presign_through_the_gateway_then_post_the_form_to_moto(
    pipeline: LocalPipeline, tmp_path: Path
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    status, body = _presign(
        pipeline, [{"name": "a.png", "size": len(PNG), "content_type": "image/png"}]
    )
    assert status == 200, body
    assert _presign(pipeline, [{"name": "a.png", "size": 1}], key="wrong-key-" * 3)[0] == 403
    (form,) = body["uploads"]
    assert form["url"].startswith(pipeline.moto_endpoint)  # signed for moto, not for AWS
    post_form(form["url"], form["fields"], path, form["content_type"])
    got = pipeline.client("s3").get_object(Bucket=_bucket(pipeline), Key=form["key"])
    assert got["Body"].read() == PNG


def test_the_size_limit_is_in_the_signed_policy_which_moto_does_not_enforce(
    pipeline: LocalPipeline, tmp_path: Path
) -> None:
    status, body = _presign(pipeline, [{"name": "big.bin", "size": 4}])
    assert status == 200, body
    (form,) = body["uploads"]
    policy = json.loads(base64.b64decode(form["fields"]["policy"]))
    assert ["content-length-range", 1, 4] in policy["conditions"]  # what S3 enforces
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 64)
    # moto's gap, pinned: S3 answers 400 EntityTooLarge here.
    post_form(form["url"], form["fields"], big, form["content_type"])
    stored = pipeline.client("s3").head_object(Bucket=_bucket(pipeline), Key=form["key"])
    assert stored["ContentLength"] == 64, "moto now enforces content-length-range: assert it"
    # What batchctl reports when S3 refuses an oversize upload.
    err = s3_error(400, ENTITY_TOO_LARGE, "big.bin")
    assert err.code == 2 and "EntityTooLarge" in err.message and "maximum allowed" in err.message
    status, body = _presign(pipeline, [{"name": "huge.bin", "size": 200 * 1024 * 1024}])
    assert status == 400 and "104857600" in body["error"]["message"]


def test_batchctl_submit_with_files_uploads_then_runs_the_job(
    pipeline: LocalPipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(PNG)
    capsys.readouterr()
    code = batchctl(
        ["submit", WORKER, "--file", str(tmp_path / "a.png"), "-f", str(tmp_path / "b.png"),
         "--wait", "--poll", "0.2", "--timeout", "120"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "uploaded a.png: " in err and "uploaded b.png: " in err  # the progress lines
    images = json.loads(out)["output"]["images"]
    assert len(images) == 2 and all("error" not in i for i in images), images
    assert all(i["source"].startswith(f"inputs/{WORKER}/") for i in images), images


def test_batchctl_refuses_files_for_a_worker_without_s3_inputs(
    pipeline: LocalPipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.txt").write_text("hello")
    code = batchctl(["submit", "content-analyzer", "--file", str(tmp_path / "a.txt")])
    assert code == 2 and "takes no uploaded files" in capsys.readouterr().err
