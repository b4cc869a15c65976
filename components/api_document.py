"""The REST API's one OpenAPI document (``openapi.yaml``): load it, check it, render it as
API Gateway imports it (the handler's invoke ARN and the resource policy filled in), and the
hash that says when a new deployment is due. Pure functions, no Pulumi resources: ``BatchApi``
builds the API from them, and the tests read the document through them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.yaml"
INVOKE_ARN_PLACEHOLDER = "{{API_HANDLER_INVOKE_ARN}}"
# AWS rule: the REST API's resource policy travels in the imported body. PutRestApi in
# overwrite mode replaces the API definition *including its policy*, so a policy attached
# beside the body (aws.apigateway.RestApiPolicy) is silently wiped by the next body update
# (pulumi/pulumi-aws#4296, hashicorp/terraform-provider-aws#49672).
POLICY_EXTENSION = "x-amazon-apigateway-policy"
# API Gateway expands "execute-api:/*" to this API's arn:...:execute-api:<region>:<acct>:<id>/*
# on import (the API's own id is not known before the API exists).
THIS_API = "execute-api:"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# API Gateway's catch-all method of a resource: "will catch any HTTP method that wasn't
# explicitly declared" (API Gateway developer guide, x-amazon-apigateway-any-method object).
# Every resource has one, integrated with the handler, which answers 405 + Allow; without it
# API Gateway answers an undeclared method as an unknown route (MISSING_AUTHENTICATION_TOKEN).
ANY_METHOD = "x-amazon-apigateway-any-method"


def load_openapi(path: Path | str = OPENAPI_PATH) -> dict[str, Any]:
    """The OpenAPI document as data (placeholders intact): documentation and contract."""
    doc = yaml.safe_load(Path(path).read_text())
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3."):
        raise ValueError(f"{path}: not an OpenAPI 3 document")
    return doc


def render_openapi(
    invoke_arn: str,
    path: Path | str = OPENAPI_PATH,
    resource_policy: Mapping[str, Any] | None = None,
) -> str:
    """The document as API Gateway imports it: JSON, the handler's invoke ARN filled in, and
    the resource policy (if any) as ``x-amazon-apigateway-policy``."""
    doc = load_openapi(path)
    if resource_policy is not None:
        doc[POLICY_EXTENSION] = dict(resource_policy)
    placeholders = 0

    def fill(value: Any) -> Any:
        nonlocal placeholders
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if value == INVOKE_ARN_PLACEHOLDER:
            placeholders += 1
            return invoke_arn
        return value

    rendered = fill(doc)
    check_document(rendered)
    if placeholders == 0:
        raise ValueError(f"{path}: no {INVOKE_ARN_PLACEHOLDER} placeholder to fill")
    return json.dumps(rendered, sort_keys=True, separators=(",", ":"))


def operations(doc: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, METHOD, operation) for every operation of the document."""
    ops: list[tuple[str, str, dict[str, Any]]] = []
    for path, item in (doc.get("paths") or {}).items():
        for method in HTTP_METHODS:
            if method in item:
                ops.append((path, method.upper(), item[method]))
    return ops


def check_document(doc: Mapping[str, Any]) -> None:
    """Refuse a document that would deploy an open or unintegrated method, or a resource
    without its catch-all ``ANY`` method (``ANY_METHOD``)."""
    schemes = (doc.get("components") or {}).get("securitySchemes") or {}
    key_schemes = {
        name
        for name, s in schemes.items()
        if s.get("type") == "apiKey" and s.get("in") == "header" and s.get("name") == "x-api-key"
    }
    if not key_schemes:
        raise ValueError("OpenAPI document: no apiKey security scheme on header x-api-key")
    catch_alls = []
    for path, item in (doc.get("paths") or {}).items():
        if ANY_METHOD not in (item or {}):
            raise ValueError(
                f"OpenAPI document: {path} has no {ANY_METHOD}; its undeclared methods would be "
                "answered as an unknown route instead of 405"
            )
        catch_alls.append((path, "ANY", item[ANY_METHOD]))
    for path, method, op in [*operations(doc), *catch_alls]:
        security = op.get("security", doc.get("security")) or []
        if not any(set(req) & key_schemes for req in security):
            raise ValueError(f"OpenAPI document: {method} {path} does not require the API key")
        integration = op.get("x-amazon-apigateway-integration") or {}
        if integration.get("type") != "aws_proxy":
            raise ValueError(f"OpenAPI document: {method} {path} has no Lambda proxy integration")


def deployment_hash(body: str, policy: str) -> str:
    """What a deployment is a snapshot of: any change to it needs a new deployment."""
    return hashlib.sha256(f"{body}\n--policy--\n{policy}".encode()).hexdigest()


def ip_allow_policy(execution_arn: str, cidrs: tuple[str, ...]) -> str:
    """Resource policy: Invoke allowed, and denied from any source outside ``cidrs``.
    ``execution_arn`` is the API's execution ARN, or ``THIS_API`` inside the imported body."""
    resource = f"{execution_arn}/*"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AllowInvoke",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "execute-api:Invoke",
                    "Resource": resource,
                },
                {
                    "Sid": "DenyOutsideAllowList",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "execute-api:Invoke",
                    "Resource": resource,
                    "Condition": {"NotIpAddress": {"aws:SourceIp": list(cidrs)}},
                },
            ],
        },
        sort_keys=True,
    )
