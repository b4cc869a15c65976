"""components/openapi.yaml: a valid OpenAPI 3.0 document that agrees with the job contract."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

import jobcontract
from components.api_document import (
    ANY_METHOD,
    INVOKE_ARN_PLACEHOLDER,
    check_document,
    load_openapi,
    operations,
    render_openapi,
)

FAKE_INVOKE_ARN = (
    "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
    "arn:aws:lambda:us-east-1:123456789012:function:ai-batch-dev-api/invocations"
)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load_openapi()


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _schema(doc: dict[str, Any], name: str) -> OAS30Validator:
    # A validator over the whole document so $refs inside resolve.
    return OAS30Validator({**doc["components"]["schemas"][name], "components": doc["components"]})


def test_document_is_valid_openapi_3_0(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.0.")
    validate(doc)
    validate(json.loads(render_openapi(FAKE_INVOKE_ARN)))


def test_routes(doc: dict[str, Any]) -> None:
    assert {(p, m) for p, m, _ in operations(doc)} == {
        ("/jobs", "POST"),
        ("/jobs", "GET"),
        ("/jobs/{id}", "GET"),
        ("/jobs/{id}/cancel", "POST"),
        ("/workers", "GET"),
        ("/uploads", "POST"),
    }


def test_routes_match_the_handler(doc: dict[str, Any]) -> None:
    api = pytest.importorskip("handlers.api")
    documented: dict[str, set[str]] = {}
    for path, method, _ in operations(doc):
        documented.setdefault(path, set()).add(method)
    assert api.route_table() == documented


def test_every_operation_requires_the_key_and_is_integrated(doc: dict[str, Any]) -> None:
    check_document(doc)
    for path, method, op in operations(doc):
        assert op["security"] == [{"api_key": []}], (path, method)
        assert op["x-amazon-apigateway-integration"]["uri"] == INVOKE_ARN_PLACEHOLDER
        assert op["operationId"]


def test_every_resource_sends_undeclared_methods_to_the_handler(doc: dict[str, Any]) -> None:
    """Each resource's catch-all ANY method (405 + Allow from the handler) requires the key and
    is integrated like the operations; preview refuses a resource without one."""
    for path, item in doc["paths"].items():
        catch_all = item[ANY_METHOD]
        assert catch_all["security"] == [{"api_key": []}], path
        assert catch_all["x-amazon-apigateway-integration"]["uri"] == INVOKE_ARN_PLACEHOLDER
        assert _resolve(doc, catch_all["responses"]["405"])["headers"]["Allow"], path
        if "{id}" in path:  # API Gateway maps the path parameter of every method
            assert catch_all["parameters"] == [{"$ref": "#/components/parameters/JobId"}]
    without = json.loads(json.dumps(doc))
    del without["paths"]["/workers"][ANY_METHOD]
    with pytest.raises(ValueError, match=f"/workers has no {ANY_METHOD}"):
        check_document(without)
    open_any = json.loads(json.dumps(doc))
    open_any["paths"]["/workers"][ANY_METHOD]["security"] = []
    with pytest.raises(ValueError, match="ANY /workers does not require the API key"):
        check_document(open_any)


def test_rendered_body_fills_every_integration() -> None:
    rendered = json.loads(render_openapi(FAKE_INVOKE_ARN))
    for path, method, op in operations(rendered):
        assert op["x-amazon-apigateway-integration"]["uri"] == FAKE_INVOKE_ARN, (path, method)
        assert op["x-amazon-apigateway-integration"]["timeoutInMillis"] <= 29_000


def test_error_responses_use_the_error_schema(doc: dict[str, Any]) -> None:
    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            if not status.startswith("4"):
                continue
            resolved = _resolve(doc, response)
            schema = resolved["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
    create_codes = set(doc["paths"]["/jobs"]["post"]["responses"])
    assert {"202", "400", "401", "403", "404", "409", "413", "422", "429"} <= create_codes


def test_gateway_responses_render_as_error_json(doc: dict[str, Any]) -> None:
    validator = _schema(doc, "Error")
    for name, response in doc["x-amazon-apigateway-gateway-responses"].items():
        template = response["responseTemplates"]["application/json"]
        # API Gateway substitutes $context.error.messageString with a quoted JSON string.
        body = json.loads(template.replace("$context.error.messageString", '"some message"'))
        validator.validate(body)
        assert "$" not in json.dumps(body), name
    statuses = {
        k: v.get("statusCode") for k, v in doc["x-amazon-apigateway-gateway-responses"].items()
    }
    assert statuses["THROTTLED"] == statuses["QUOTA_EXCEEDED"] == 429
    assert statuses["INVALID_API_KEY"] == 403


def test_job_request_schema(doc: dict[str, Any]) -> None:
    v = _schema(doc, "JobRequest")
    v.validate({"worker": "image-alt-generator", "input": {"url": "https://x"}})
    v.validate({"worker": "content-analyzer", "input": {}, "cpu": 2048, "memory": 4096})
    v.validate({"worker": "content-analyzer", "input": {}, "max_failed_item_share": 0.05})
    for bad in (
        {"input": {}},
        {"worker": "x"},
        {"worker": "Bad_Name", "input": {}},
        {"worker": "x", "input": []},
        {"worker": "x", "input": {}, "cpu": 3000},
        {"worker": "x", "input": {}, "extra": 1},
        {"worker": "x", "input": {}, "max_failed_item_share": 1.5},
        {"worker": "x", "input": {}, "max_failed_item_share": -1},
        {"worker": "x", "input": {}, "max_failed_item_share": "0.1"},
    ):
        assert not v.is_valid(bad), bad
    cpu_enum = doc["components"]["schemas"]["JobRequest"]["properties"]["cpu"]["enum"]
    assert sorted(cpu_enum) == sorted(jobcontract.FARGATE_CPU_MEMORY)


def test_schemas_agree_with_the_job_contract(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["JobStatus"]["enum"] == [s.value for s in jobcontract.JobStatus]
    assert schemas["WorkerName"]["pattern"] == jobcontract.WORKER_NAME_RE.pattern
    assert schemas["WorkerName"]["maxLength"] == jobcontract.WORKER_NAME_MAX
    job_id = doc["components"]["parameters"]["JobId"]["schema"]["pattern"]
    sample = jobcontract.new_job_id("meta-desc-generator")
    assert re.match(job_id, sample)
    assert jobcontract.JOB_ID_RE.match(sample)
    assert not re.match(job_id, "meta-desc-generator_XYZ")


def test_job_schema_accepts_a_full_job(doc: dict[str, Any]) -> None:
    job = {
        "job_id": jobcontract.new_job_id("content-analyzer"),
        "worker": "content-analyzer",
        "status": "FAILED",
        "attempts": 3,
        "max_attempts": 3,
        "cpu": 1024,
        "memory": 2048,
        "created_at": "2026-11-23T12:00:00.000000Z",
        "updated_at": "2026-11-23T12:05:00.000000Z",
        "timestamps": {"QUEUED": "2026-11-23T12:00:00.000000Z"},
        "progress": {"done": 3, "total": 10},
        "items": {"total": 10, "succeeded": 3, "failed": 7},
        "max_failed_item_share": 0.5,
        "error": {"type": "SpotInterruption", "message": "m", "exit_code": 143,
                  "stop_reason": "Your Spot Task was interrupted."},
        "task_arn": "arn:aws:ecs:us-east-1:123456789012:task/c/0123",
        "source": "schedule",
        "cancel_requested": False,
        "links": {"self": "/jobs/x", "cancel": "/jobs/x/cancel"},
    }  # fmt: skip
    v = _schema(doc, "Job")
    v.validate(job)
    assert not v.is_valid({**job, "status": "LOST"})
    assert not v.is_valid({k: val for k, val in job.items() if k != "job_id"})
    _schema(doc, "JobList").validate({"jobs": [job], "next_cursor": None})
    _schema(doc, "JobAccepted").validate(
        {"job_id": job["job_id"], "status": "QUEUED", "links": job["links"]}
    )


def test_list_limits(doc: dict[str, Any]) -> None:
    params = {p["name"]: p for p in doc["paths"]["/jobs"]["get"]["parameters"]}
    assert params["limit"]["schema"]["minimum"] == 1
    assert params["limit"]["schema"]["maximum"] == 100
    assert set(params) == {"worker", "status", "limit", "cursor", "parent"}
