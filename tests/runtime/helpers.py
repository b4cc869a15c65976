"""Helpers shared by the runtime tests: API Gateway proxy events and SQS/ECS event shapes."""

from __future__ import annotations

import json
from typing import Any

import boto3


def api_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    raw_body: str | None = None,
) -> dict[str, Any]:
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers or {},
        "multiValueHeaders": {k: [v] for k, v in (headers or {}).items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "body": text,
        "isBase64Encoded": False,
        "requestContext": {"requestId": "test", "stage": "v1"},
    }


def call(
    method: str, path: str, body: Any = None, **kwargs: Any
) -> tuple[int, Any, dict[str, str]]:
    from handlers import api

    out = api.handler(api_event(method, path, body, **kwargs), None)
    assert out["headers"]["Content-Type"] == "application/json"
    return out["statusCode"], json.loads(out["body"]), out["headers"]


def queue_depth(queue_url: str) -> int:
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def receive_all(queue_url: str) -> list[dict[str, Any]]:
    """Every visible message (bodies parsed), received and deleted."""
    sqs = boto3.client("sqs")
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return out
        for m in got:
            out.append(m)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def sqs_event(queue_arn: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """An SQS event source batch as Lambda delivers it, from received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def table_items(table: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


def stopped_event(
    cluster_arn: str,
    task_arn: str,
    *,
    exit_code: int | None = 0,
    stop_code: str = "EssentialContainerExited",
    stopped_reason: str = "Essential container in task exited",
    container_reason: str | None = None,
) -> dict[str, Any]:
    """An EventBridge "ECS Task State Change" (STOPPED) event for a task known to moto."""
    task = boto3.client("ecs").describe_tasks(cluster=cluster_arn, tasks=[task_arn])["tasks"][0]
    container: dict[str, Any] = {"name": "worker", "lastStatus": "STOPPED"}
    if exit_code is not None:
        container["exitCode"] = exit_code
    if container_reason:
        container["reason"] = container_reason
    detail = {
        "clusterArn": cluster_arn,
        "taskArn": task_arn,
        "taskDefinitionArn": task["taskDefinitionArn"],
        "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED",
        "stopCode": stop_code,
        "stoppedReason": stopped_reason,
        "containers": [container],
        "overrides": task.get("overrides", {"containerOverrides": []}),
    }
    if task.get("startedBy"):
        detail["startedBy"] = task["startedBy"]
    return {
        "version": "0",
        "id": "e1",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "resources": [task_arn],
        "detail": detail,
    }


def job_messages(queue_url: str) -> list[dict[str, Any]]:
    """``receive_all`` without the launcher's drain requests (``jobcontract.dispatch``): the
    reconciler asks for one each time it frees a task's slot."""
    from jobcontract.dispatch import DRAIN_MESSAGE

    return [m for m in receive_all(queue_url) if m["Body"] != DRAIN_MESSAGE]
