"""The moto fixture creates a usable pipeline: ECS RunTask works with the recorded network."""

from __future__ import annotations

import json

import boto3

from jobcontract import Env, Table, WorkerField, worker_pk
from tests.fixtures.moto_server import WorkerSpec


def test_pipeline_resources_are_usable(pipeline_resources, monkeypatch) -> None:
    res = pipeline_resources([WorkerSpec("echo"), WorkerSpec("other", max_attempts=5)])
    import os

    assert os.environ[Env.JOBS_TABLE] == res.table_name
    ddb = boto3.client("dynamodb")
    item = ddb.get_item(TableName=res.table_name, Key={Table.PK: {"S": worker_pk("other")}})["Item"]
    assert item[WorkerField.MAX_ATTEMPTS]["N"] == "5"
    assert json.loads(item[WorkerField.INPUT_SCHEMA]["S"])["type"] == "object"
    ecs = boto3.client("ecs")
    out = ecs.run_task(
        cluster=res.cluster_arn,
        taskDefinition=res.workers["echo"].task_definition_arn,
        capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": list(res.subnet_ids),
                "securityGroups": list(res.security_group_ids),
            }
        },
        startedBy="echo_x",
    )
    assert len(out["tasks"]) == 1
    sqs = boto3.client("sqs")
    sqs.send_message(
        QueueUrl=res.workers["echo"].queue_url,
        MessageBody="x",
        MessageGroupId="g",
        MessageDeduplicationId="d",
    )
    got = sqs.receive_message(QueueUrl=res.workers["echo"].queue_url)["Messages"]
    assert got[0]["Body"] == "x"


def test_reset_wipes_state(pipeline_resources) -> None:
    res = pipeline_resources([])
    names = boto3.client("dynamodb").list_tables()["TableNames"]
    assert names == [res.table_name]
