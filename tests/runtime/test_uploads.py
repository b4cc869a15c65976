"""POST /uploads against the real moto server: presigned POST forms whose signed policy pins
the key, the Content-Type and the size; every rejection is a 4xx naming the limit and creates
nothing (no object, no table row)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from cli.uploads import post_form
from components.api_document import OPENAPI_PATH
from jobcontract import (
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_FILES,
    UPLOAD_NAME_MAX,
    UPLOAD_NAME_RE,
    UPLOAD_URL_TTL_SECONDS,
)
from tests.fixtures.moto_server import WorkerSpec
from tests.runtime.helpers import call, table_items

ALT = WorkerSpec("image-alt-generator")


@pytest.fixture
def res(pipeline_resources: Any) -> Any:
    return pipeline_resources([ALT])


def _request(files: list[dict[str, Any]], worker: str = "image-alt-generator") -> Any:
    return call("POST", "/uploads", {"worker": worker, "files": files})


def _objects(bucket: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


def _policy(form: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(form["fields"]["policy"]))
    return decoded


def test_forms_pin_key_type_and_size_and_create_nothing(res: Any) -> None:
    status, body, _ = _request(
        [
            {"name": "a.png", "size": 10, "content_type": "image/png"},
            {"name": "my photo (1).jpg", "size": 20},
        ]
    )
    assert status == 200, body
    upload_id = body["upload_id"]
    assert body["expires_in"] == UPLOAD_URL_TTL_SECONDS and body["max_bytes"] == MAX_UPLOAD_BYTES
    a, b = body["uploads"]
    assert a["key"] == f"inputs/image-alt-generator/{upload_id}/a.png"
    assert b["key"] == f"inputs/image-alt-generator/{upload_id}/my_photo__1_.jpg"
    assert b["content_type"] == "application/octet-stream"
    conditions = _policy(a)["conditions"]
    assert ["content-length-range", 1, 10] in conditions
    assert {"key": a["key"]} in conditions and {"Content-Type": "image/png"} in conditions
    assert {"bucket": res.bucket} in conditions
    assert _objects(res.bucket) == []  # presigning writes nothing


def test_a_form_uploads_the_file_to_its_key(res: Any, tmp_path: Path) -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"x" * 100
    path = tmp_path / "a.png"
    path.write_bytes(data)
    _, body, _ = _request([{"name": "a.png", "size": len(data), "content_type": "image/png"}])
    (form,) = body["uploads"]
    post_form(form["url"], form["fields"], path, form["content_type"])
    got = boto3.client("s3").get_object(Bucket=res.bucket, Key=form["key"])
    assert got["Body"].read() == data and got["ContentType"] == "image/png"


def test_the_answer_matches_the_document(res: Any) -> None:
    doc = yaml.safe_load(OPENAPI_PATH.read_text())
    schemas = doc["components"]["schemas"]
    _, body, _ = _request([{"name": "a.png", "size": 1}])
    OAS30Validator({**schemas["UploadForms"], "components": doc["components"]}).validate(body)
    files = schemas["UploadRequest"]["properties"]["files"]
    assert f"At most {MAX_UPLOAD_FILES} files" in files["description"]
    upload_file = schemas["UploadFile"]["properties"]
    assert f"at most {MAX_UPLOAD_BYTES} " in upload_file["size"]["description"]
    assert f"at most {UPLOAD_NAME_MAX} characters" in upload_file["name"]["description"]


REJECTED = [
    ([{"name": "a.png", "size": MAX_UPLOAD_BYTES + 1}], 400, "file_too_large", "104857600"),
    ([{"name": "a.png", "size": 1}] * 0, 400, "invalid_request", "'files' is required"),
    (
        [{"name": f"{i}.png", "size": 1} for i in range(MAX_UPLOAD_FILES + 1)],
        400,
        "too_many_files",
        "at most 100",
    ),
    ([{"name": "../a.png", "size": 1}], 400, "invalid_name", "plain file name"),
    ([{"name": "dir/a.png", "size": 1}], 400, "invalid_name", "plain file name"),
    ([{"name": ".env", "size": 1}], 400, "invalid_name", "plain file name"),
    ([{"name": "a\x00.png", "size": 1}], 400, "invalid_name", "control"),
    ([{"name": "x" * 129, "size": 1}], 400, "invalid_name", "128"),
    ([{"name": "", "size": 1}], 400, "invalid_name", "required"),
    ([{"name": "a.png", "size": 0}], 400, "invalid_size", "at least 1"),
    ([{"name": "a.png", "size": "5"}], 400, "invalid_size", "size"),
    ([{"name": "a.png", "size": 1, "content_type": "png"}], 400, "invalid_content_type", "media"),
    ([{"name": "a.png", "size": 1, "acl": "public-read"}], 400, "invalid_request", "acl"),
    ([{"name": "a\x85.png", "size": 1}], 400, "invalid_name", "control"),  # C1 control
    ([{"name": " \t ", "size": 1}], 400, "invalid_name", "required"),
]


def test_files_whose_safe_names_collide_get_distinct_keys(res: Any) -> None:
    """'a b.png' and 'a_b.png' (and a second 'a_b.png') would share a key: each gets its own,
    so a schema-valid request is never refused for it (schemathesis' positive checks)."""
    files = [{"name": n, "size": 1} for n in ("a b.png", "a_b.png", "a_b.png", "README", "README")]
    status, body, _ = _request(files)
    assert status == 200, body
    names = [u["key"].rsplit("/", 1)[1] for u in body["uploads"]]
    assert names == ["a_b.png", "a_b-2.png", "a_b-3.png", "README", "README-2"]
    assert [u["name"] for u in body["uploads"]] == [f["name"] for f in files]


def test_the_contract_states_the_name_rule_the_handler_applies() -> None:
    doc = yaml.safe_load(OPENAPI_PATH.read_text())
    name = doc["components"]["schemas"]["UploadFile"]["properties"]["name"]
    assert name["pattern"] == UPLOAD_NAME_RE.pattern
    assert name["maxLength"] == UPLOAD_NAME_MAX


@pytest.mark.parametrize(("files", "status", "code", "says"), REJECTED)
def test_rejections_name_the_rule_and_create_nothing(
    res: Any, files: list[dict[str, Any]], status: int, code: str, says: str
) -> None:
    before = table_items(res.table_name)
    got, body, _ = _request(files)
    assert (got, body["error"]["code"]) == (status, code), body
    assert says in body["error"]["message"]
    assert _objects(res.bucket) == [] and table_items(res.table_name) == before


def test_unknown_worker_and_bad_bodies(res: Any) -> None:
    status, body, _ = _request([{"name": "a.png", "size": 1}], worker="nope")
    assert (status, body["error"]["code"]) == (404, "unknown_worker")
    status, body, _ = call("POST", "/uploads", {"files": [{"name": "a.png", "size": 1}]})
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    status, body, _ = call("POST", "/uploads", None, raw_body="{nope")
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    status, _, headers = call("GET", "/uploads")
    assert status == 405 and headers["Allow"] == "POST"
    assert _objects(res.bucket) == []
