"""Contract: the API handler implements exactly components/openapi.yaml.

- every documented (path, method) is routed by the handler and vice versa;
- every response the handler gives in a broad scenario has a documented status for that
  operation and a body that validates against the documented schema;
- the handler's own validation constants agree with the document's parameter schemas.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from handlers import api
from handlers.array_api import ARRAY_REQUEST_FIELDS as ARRAY_FIELDS
from jobcontract import (
    DEFAULT_MAX_FAILED_ITEM_SHARE,
    FARGATE_CPU_MEMORY,
    WORKER_NAME_RE,
    JobField,
    JobStatus,
)
from jobcontract.store import JobStore
from tests.fixtures.moto_server import WorkerSpec
from tests.runtime.helpers import api_event

DOC_PATH = Path(__file__).resolve().parents[2] / "components" / "openapi.yaml"
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
# The handler's 405 is documented on each resource's catch-all ANY method
# (x-amazon-apigateway-any-method), not on its operations.
HANDLER_ONLY_STATUSES = {405}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    if not DOC_PATH.exists():
        pytest.skip(f"{DOC_PATH} has not landed yet")
    return yaml.safe_load(DOC_PATH.read_text())


def resolve(node: Any, doc: dict[str, Any]) -> Any:
    """Inline every local $ref (the document has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return resolve(target, doc)
        return {k: resolve(v, doc) for k, v in node.items() if not k.startswith("x-amazon")}
    if isinstance(node, list):
        return [resolve(v, doc) for v in node]
    return node


def test_routes_match_the_document(doc) -> None:
    documented = {
        path: {m.upper() for m in ops if m in METHODS} for path, ops in doc["paths"].items()
    }
    assert api.route_table() == documented


def test_validation_constants_match_the_document(doc) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["JobStatus"]["enum"] == [s.value for s in JobStatus]
    assert schemas["WorkerName"]["pattern"] == WORKER_NAME_RE.pattern
    assert schemas["JobRequest"]["properties"]["cpu"]["enum"] == sorted(FARGATE_CPU_MEMORY)
    assert set(schemas["JobRequest"]["properties"]) == api.JOB_REQUEST_FIELDS | ARRAY_FIELDS
    share = schemas["MaxFailedItemShare"]
    assert (share["minimum"], share["maximum"]) == (0, 1)
    assert share["default"] == DEFAULT_MAX_FAILED_ITEM_SHARE
    idem = doc["components"]["parameters"]["IdempotencyKey"]["schema"]
    assert idem["pattern"] == api.IDEMPOTENCY_KEY_RE.pattern
    list_params = {p["name"]: p for p in doc["paths"]["/jobs"]["get"]["parameters"]}
    assert set(list_params) == api.LIST_PARAMS
    assert list_params["limit"]["schema"]["maximum"] == api.MAX_PAGE
    assert list_params["limit"]["schema"]["default"] == api.DEFAULT_PAGE
    job_id = doc["components"]["parameters"]["JobId"]["schema"]["pattern"]
    assert re.match(job_id, "echo_" + "a" * 32) and not re.match(job_id, "echo_x")


def _template(path: str) -> str:
    for template, pattern, _, _ in api.ROUTES:
        if pattern.match(path):
            return template
    raise AssertionError(f"no route for {path}")


def test_responses_match_the_document(doc, pipeline_resources) -> None:
    res = pipeline_resources([WorkerSpec("echo", max_cpu=1024, max_memory=4096)])
    seen: list[tuple[str, str, int]] = []

    def check(method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        out = api.handler(api_event(method, path, body, **kw), None)
        status, payload = out["statusCode"], json.loads(out["body"])
        template = _template(path.split("?")[0])
        operation = doc["paths"][template][method.lower()]
        responses = operation["responses"]
        assert str(status) in responses, (method, template, status, payload)
        schema = resolve(responses[str(status)], doc)["content"]["application/json"]["schema"]
        OAS30Validator(schema).validate(payload)
        seen.append((method, template, status))
        return payload

    good = {"worker": "echo", "input": {"items": ["a"]}}
    job_id = check("POST", "/jobs", good, headers={"Idempotency-Key": "k"})["job_id"]
    check("POST", "/jobs", good, headers={"Idempotency-Key": "k"})  # 200 replay
    check("POST", "/jobs", {**good, "input": {"items": ["b"]}}, headers={"Idempotency-Key": "k"})
    check("POST", "/jobs", raw_body="{")
    check("POST", "/jobs", {"worker": "nobody", "input": {}})
    check("POST", "/jobs", {**good, "cpu": 4096, "memory": 8192})
    check("POST", "/jobs", {**good, "max_failed_item_share": 1.5})
    check("POST", "/jobs", raw_body=json.dumps({**good, "pad": "x" * (1024 * 1024)}))
    check("GET", "/workers")
    check("GET", "/jobs", query={"limit": "1"})
    check("GET", "/jobs", query={"limit": "500"})
    check("GET", f"/jobs/{job_id}")
    check("GET", "/jobs/echo_" + "0" * 32)
    store = JobStore(res.table_name)
    store.transition(job_id, "QUEUED", "DISPATCHED", attempt=0, increment_attempts=True)
    store.update(job_id, status="DISPATCHED", set_fields={JobField.TASK_ARN: "arn:task/1"})
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=1)
    store.heartbeat(job_id, 1, {"done": 1, "total": 3})
    store.transition(
        job_id,
        "RUNNING",
        "QUEUED",
        attempt=1,
        set_fields={
            JobField.ERROR: {
                "type": "SpotInterruption",
                "message": "m",
                "exit_code": None,
                "stop_reason": "s",
            }
        },
    )
    store.transition(job_id, "QUEUED", "DISPATCHED", attempt=1, increment_attempts=True)
    store.transition(job_id, "DISPATCHED", "RUNNING", attempt=2)
    key = f"results/echo/{job_id}/result.json"
    boto3.client("s3").put_object(Bucket=res.bucket, Key=key, Body=b"{}")
    items = {"total": 3, "succeeded": 2, "failed": 1}
    store.transition(
        job_id,
        "RUNNING",
        "SUCCEEDED",
        attempt=2,
        set_fields={JobField.RESULT_KEY: key, JobField.ITEMS: items},
    )
    view = check("GET", f"/jobs/{job_id}")
    assert view["result"]["url"] and view["progress"] == {"done": 1, "total": 3}
    assert view["items"] == items and view["max_failed_item_share"] == 0
    check("GET", "/jobs", query={"worker": "echo", "status": "SUCCEEDED"})
    check("POST", f"/jobs/{job_id}/cancel")  # 409 terminal
    queued = check("POST", "/jobs", good)["job_id"]
    check("POST", f"/jobs/{queued}/cancel")  # 200
    running = check("POST", "/jobs", good)["job_id"]
    store.transition(running, "QUEUED", "DISPATCHED", attempt=0, increment_attempts=True)
    check("POST", f"/jobs/{running}/cancel")  # 202
    check("POST", "/jobs/echo_" + "1" * 32 + "/cancel")  # 404
    array = check("POST", "/jobs", {"worker": "echo", "items": ["a", "b", "c"], "shard_size": 2})
    check("POST", "/jobs", {"worker": "echo", "items": ["a", 1]})  # 400 invalid_items
    assert check("GET", f"/jobs/{array['job_id']}")["array"]["shards"] == 2
    children = check("GET", "/jobs", query={"parent": array["job_id"]})["jobs"]
    assert [c["shard"]["index"] for c in children] == [0, 1]
    assert check("POST", f"/jobs/{array['job_id']}/cancel")["cancel"]["cancelled"] == 2
    statuses = {(m, t): set() for m, t, _ in seen}
    for m, t, s in seen:
        statuses[(m, t)].add(s)
    assert statuses[("POST", "/jobs")] == {200, 202, 400, 404, 409, 413, 422}
    assert statuses[("POST", "/jobs/{id}/cancel")] == {200, 202, 404, 409}
    assert statuses[("GET", "/jobs")] == {200, 400}
    assert statuses[("GET", "/jobs/{id}")] == {200, 404}
