"""Least privilege, enforced: the real handler and worker code runs against a moto server with
IAM enforcement on, each holding EXACTLY the policy documents its component generates
(taken from the mocked dev program; only the results bucket name is rewritten, every other
ARN already matches because the moto resources get the program's physical names and moto's
account id is the mocks' account id).

What it needs succeeds; a call outside its scope (another worker's results prefix or inputs,
a queue it only consumes, the DLQ) is denied with HTTP 403.

moto scopes SQS and S3 by resource but checks only the ACTION for DynamoDB and ECS
(/work/shared/OFFLINE-AWS-NOTES.md): the ``dynamodb:LeadingKeys`` row scoping and the
RunTask-on-one-family scoping cannot be enforced here. Those sub-cases are skipped with that
reason; tests/security/test_iam_policies.py proves them on the policy documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from components.offline import StackGraph
from jobcontract import Env, JobField, JobStatus, input_key, result_key
from policy import rules
from tests.fixtures.moto_server import WorkerSpec, create_pipeline_resources
from tests.security.moto_process import moto_server_process, post

REGION = "us-east-1"
PREFIX = "ai-batch-dev"  # the dev stack's name prefix: table/queue names match the program's
WORKERS = ("image-alt-generator", "meta-desc-generator", "content-analyzer")
MOTO_SCOPES_ONLY_ACTIONS = (
    "moto checks only the action for {service} (no resource/condition scoping), so this "
    "cannot be denied here; test_iam_policies.py proves the scoping on the document"
)


@dataclass(frozen=True)
class Principal:
    name: str  # the role's physical name in the mocked program
    access_key: str
    secret_key: str

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
        )


@dataclass
class World:
    endpoint: str
    res: Any
    principals: dict[str, Principal]  # key: "api", "launcher", "<worker>-task", ...
    documents: dict[str, list[dict[str, Any]]]
    failed_events_url: str = ""  # the reconciler's on-failure queue, named as the program's

    def client(self, who: str, service: str) -> Any:
        return self.principals[who].session().client(service, endpoint_url=self.endpoint)


ACTION_ONLY_SERVICES = ("dynamodb:", "ecs:")


TRANSACTION_ITEM_ACTIONS = frozenset(
    {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
    }
)


def for_moto(doc: dict[str, Any]) -> dict[str, Any]:
    """moto authorizes DynamoDB and ECS requests against Resource "*" (a statement scoped to
    a table or task definition ARN never matches there), so for those two services only the
    statement's resources become "*" and its conditions are dropped. Its ACTIONS stay
    exactly as generated, so action-level least privilege is still enforced."""
    out = dict(doc)
    statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    out["Statement"] = []
    for stmt in statements:
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        if all(a.lower().startswith(ACTION_ONLY_SERVICES) for a in actions):
            stmt = {k: v for k, v in stmt.items() if k != "Condition"} | {"Resource": "*"}
            # moto authorizes TransactWriteItems as an action of that name; AWS has no such
            # action and authorizes each item's Put/Update/Delete/ConditionCheck as
            # PutItem/UpdateItem/DeleteItem/ConditionCheckItem ("Using IAM with DynamoDB
            # transactions"; tests/authz evaluates it so, per item). Give moto its name for
            # the same grant.
            if set(actions) & TRANSACTION_ITEM_ACTIONS and stmt.get("Effect") == "Allow":
                stmt = stmt | {"Action": [*actions, "dynamodb:TransactWriteItems"]}
        out["Statement"].append(stmt)
    return out


def role_documents(graph: StackGraph, role_name: str, bucket_from: str, bucket_to: str
                   ) -> list[dict[str, Any]]:
    """Every identity policy the program attaches to ``role_name``, ARNs made moto's."""
    docs = []
    for r in graph.of_type(rules.T_ROLE_POLICY):
        if r.inputs.get("role") == role_name:
            text = str(r.inputs["policy"]).replace(bucket_from, bucket_to)
            docs.append(for_moto(json.loads(text)))
    role = next(r for r in graph.of_type(rules.T_ROLE) if r.outputs.get("name") == role_name)
    for inline in role.inputs.get("inlinePolicies") or []:
        text = str(inline["policy"]).replace(bucket_from, bucket_to)
        docs.append(for_moto(json.loads(text)))
    return docs


def _role_name(graph: StackGraph, logical: str) -> str:
    return str(graph.named(rules.T_ROLE, logical).outputs["name"])


@pytest.fixture(scope="module")
def world(security_graphs: dict[str, StackGraph]) -> Iterator[World]:
    graph = security_graphs["dev"]
    graph_bucket = str(graph.of_type("aws:s3/bucket:Bucket")[0].outputs["bucket"])
    with moto_server_process() as endpoint:
        res = create_pipeline_resources(
            endpoint,
            [WorkerSpec(w, input_schema={"type": "object"}) for w in WORKERS],
            prefix=PREFIX,
        )
        assert res.table_name == str(graph.of_type(rules.T_TABLE)[0].outputs["name"])
        roles = {
            "api": _role_name(graph, "platform-control-api-role"),
            "launcher": _role_name(graph, "platform-control-launcher-role"),
            "reconciler": _role_name(graph, "platform-control-reconciler-role"),
            "sweep": _role_name(graph, "platform-control-sweep-role"),
            **{f"{w}-task": _role_name(graph, f"{w}-task-role") for w in WORKERS},
        }
        admin = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                             aws_access_key_id="testing", aws_secret_access_key="testing")
        principals, documents = {}, {}
        for key, role_name in roles.items():
            docs = role_documents(graph, role_name, graph_bucket, res.bucket)
            assert docs, f"no policy for {role_name}"
            admin.create_user(UserName=role_name)
            for i, doc in enumerate(docs):
                admin.put_user_policy(UserName=role_name, PolicyName=f"p{i}",
                                      PolicyDocument=json.dumps(doc))
            k = admin.create_access_key(UserName=role_name)["AccessKey"]
            principals[key] = Principal(role_name, k["AccessKeyId"], k["SecretAccessKey"])
            documents[key] = docs
        failed_events_url = boto3.client(
            "sqs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_queue(QueueName=f"{PREFIX}-reconciler-failed")["QueueUrl"]
        # From here on every request is authenticated and authorized.
        post(f"{endpoint}/moto-api/reset-auth", b"0")
        yield World(endpoint, res, principals, documents, failed_events_url)


@pytest.fixture
def as_principal(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Switch the handlers' boto3 clients to one principal's credentials."""
    from handlers import _aws

    monkeypatch.setenv("AWS_ENDPOINT_URL", world.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for key, value in world.res.env().items():
        monkeypatch.setenv(key, value)

    def use(who: str) -> None:
        p = world.principals[who]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", p.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", p.secret_key)
        _aws.reset_clients()

    yield use
    _aws.reset_clients()


def assert_denied(call: Any, **kwargs: Any) -> None:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, err.value.response


def _api_event(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "resource": "/jobs", "path": "/jobs", "httpMethod": "POST", "headers": {},
        "queryStringParameters": None, "body": json.dumps(body), "isBase64Encoded": False,
        "requestContext": {"requestId": "iam", "stage": "v1"},
    }


def test_enforcement_is_on(world: World) -> None:
    """Unknown credentials are refused: the denials below are IAM's, not an accident."""
    stranger = boto3.client("sqs", endpoint_url=world.endpoint, region_name=REGION,
                            aws_access_key_id="AKIAUNKNOWN000000000",
                            aws_secret_access_key="nope")
    with pytest.raises(ClientError) as err:
        stranger.list_queues()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_api_submits_but_cannot_touch_dlq_or_results(world: World, as_principal: Any) -> None:
    from handlers import api

    as_principal("api")
    out = api.handler(_api_event({"worker": "content-analyzer", "input": {"text": "hello"}}))
    assert out["statusCode"] == 202, out
    job_id = json.loads(out["body"])["job_id"]
    sqs = world.client("api", "sqs")
    queue = world.res.workers["content-analyzer"]
    attrs = sqs.get_queue_attributes(QueueUrl=queue.queue_url,
                                     AttributeNames=["ApproximateNumberOfMessages"])
    assert int(attrs["Attributes"]["ApproximateNumberOfMessages"]) >= 1
    assert_denied(sqs.send_message, QueueUrl=queue.dlq_url, MessageBody="{}",
                  MessageGroupId="g", MessageDeduplicationId="d")
    assert_denied(sqs.receive_message, QueueUrl=queue.queue_url)
    s3 = world.client("api", "s3")
    assert_denied(s3.put_object, Bucket=world.res.bucket,
                  Key=result_key("content-analyzer", job_id), Body=b"forged")


def test_api_puts_objects_under_inputs_and_nowhere_else(world: World) -> None:
    """A POST /uploads form is authorized as the API role's s3:PutObject on its key, so this
    is what any form it signs can write. (moto's authenticated mode answers a browser POST
    form with a 500, so the forms themselves are exercised in tests/e2e/test_uploads.py,
    and their IAM decision by tests/infra/test_control_plane.py's policy evaluation.)"""
    s3 = world.client("api", "s3")
    bucket = world.res.bucket
    s3.put_object(Bucket=bucket, Key=f"inputs/image-alt-generator/{'a' * 32}/a.png", Body=b"x")
    for key in ("results/image-alt-generator/j/result.json", "a.png", "inputsx/a.png"):
        assert_denied(s3.put_object, Bucket=bucket, Key=key, Body=b"x")


def test_launcher_consumes_and_launches_but_cannot_reach_the_dlq_or_results(
    world: World, as_principal: Any
) -> None:
    from handlers import api, launcher

    as_principal("api")
    out = api.handler(_api_event({"worker": "meta-desc-generator", "input": {"url": "x"}}))
    assert out["statusCode"] == 202, out
    job_id = json.loads(out["body"])["job_id"]
    as_principal("launcher")
    sqs = world.client("launcher", "sqs")
    queue = world.res.workers["meta-desc-generator"]
    got = sqs.receive_message(QueueUrl=queue.queue_url, MaxNumberOfMessages=10,
                              AttributeNames=["All"])["Messages"]
    records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"], "attributes": m["Attributes"]} for m in got]
    result = launcher.handler({"Records": records})
    assert result["batchItemFailures"] == [], result
    job = boto3.client("dynamodb", endpoint_url=world.endpoint, region_name=REGION,
                       aws_access_key_id=world.principals["launcher"].access_key,
                       aws_secret_access_key=world.principals["launcher"].secret_key
                       ).get_item(TableName=world.res.table_name,
                                  Key={"pk": {"S": f"job#{job_id}"}})["Item"]
    assert job[JobField.STATUS]["S"] == JobStatus.DISPATCHED.value
    assert job.get(JobField.TASK_ARN, {}).get("S", "").startswith("arn:aws:ecs:")
    # It may send to the launch queue (a woken job's resume message), never to its DLQ.
    assert_denied(sqs.send_message, QueueUrl=queue.dlq_url, MessageBody="{}",
                  MessageGroupId="g", MessageDeduplicationId="d2")
    assert_denied(world.client("launcher", "s3").get_object, Bucket=world.res.bucket,
                  Key=result_key("meta-desc-generator", job_id))


def test_worker_runs_its_job_and_is_fenced_from_other_workers(
    world: World, as_principal: Any
) -> None:
    """The content-analyzer task role runs the real worker runtime end to end; it cannot
    write another worker's results, read another worker's inputs, or use any queue."""
    from handlers import api, launcher
    from jobcontract.store import JobStore
    from workers.runtime.definition import WorkerDefinition
    from workers.runtime.lifecycle import run_worker

    worker = "content-analyzer"
    as_principal("api")
    out = api.handler(_api_event({"worker": worker, "input": {"text": "a b c"}}))
    job_id = json.loads(out["body"])["job_id"]
    as_principal("launcher")
    sqs = world.client("launcher", "sqs")
    got = sqs.receive_message(QueueUrl=world.res.workers[worker].queue_url,
                              MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    launcher.handler({"Records": [{"messageId": m["MessageId"], "body": m["Body"],
                                   "receiptHandle": m["ReceiptHandle"],
                                   "attributes": m["Attributes"]} for m in got]})

    task = f"{worker}-task"
    ddb, s3 = world.client(task, "dynamodb"), world.client(task, "s3")
    definition = WorkerDefinition(name=worker, handler=lambda ctx: {"words": 3})
    code = run_worker(
        definition,
        {Env.JOBS_TABLE: world.res.table_name, Env.RESULTS_BUCKET: world.res.bucket,
         Env.WORKER_NAME: worker, Env.JOB_ID: job_id, Env.JOB_ATTEMPT: "1",
         Env.TASK_ARN: "arn:aws:ecs:us-east-1:123456789012:task/c/0", Env.MODEL_BACKEND:
         "offline"},
        store=JobStore(world.res.table_name, ddb), s3=s3, install_signal_handlers=False,
    )
    assert code == 0
    item = ddb.get_item(TableName=world.res.table_name, Key={"pk": {"S": f"job#{job_id}"}})
    assert item["Item"][JobField.STATUS]["S"] == JobStatus.SUCCEEDED.value
    body = json.loads(s3.get_object(Bucket=world.res.bucket,
                                    Key=result_key(worker, job_id))["Body"].read())
    assert body["output"] == {"words": 3}
    other_job = job_id.replace(worker, "image-alt-generator")
    assert_denied(s3.put_object, Bucket=world.res.bucket,
                  Key=result_key("image-alt-generator", other_job), Body=b"x")
    assert_denied(s3.get_object, Bucket=world.res.bucket,
                  Key=input_key("meta-desc-generator", other_job))
    assert_denied(s3.put_object, Bucket=world.res.bucket, Key="inputs/x.json", Body=b"x")
    # A task that freed its slot may ask the launcher for a drain (SendMessage on the launch
    # queue, ``JobQueue.grant_drain_request``), and nothing else on SQS: not into the DLQ,
    # not reading, deleting or inspecting the queue.
    task_sqs = world.client(task, "sqs")
    queue = world.res.workers[worker]
    task_sqs.send_message(QueueUrl=queue.queue_url, MessageBody=json.dumps({"drain": True}),
                          MessageGroupId="g", MessageDeduplicationId="d3")
    assert_denied(task_sqs.send_message, QueueUrl=queue.dlq_url, MessageBody="{}",
                  MessageGroupId="g", MessageDeduplicationId="d4")
    assert_denied(task_sqs.receive_message, QueueUrl=queue.queue_url)
    assert_denied(task_sqs.get_queue_attributes, QueueUrl=queue.queue_url,
                  AttributeNames=["ApproximateNumberOfMessages"])


def test_reconciler_retries_a_crashed_run_but_cannot_consume_or_write_results(
    world: World, as_principal: Any
) -> None:
    from handlers import api, launcher, reconciler

    worker = "image-alt-generator"
    queue = world.res.workers[worker]
    as_principal("api")
    out = api.handler(_api_event({"worker": worker, "input": {"images": []}}))
    job_id = json.loads(out["body"])["job_id"]
    as_principal("launcher")
    got = world.client("launcher", "sqs").receive_message(
        QueueUrl=queue.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    launcher.handler({"Records": [{"messageId": m["MessageId"], "body": m["Body"],
                                   "receiptHandle": m["ReceiptHandle"],
                                   "attributes": m["Attributes"]} for m in got]})
    ddb = world.client("reconciler", "dynamodb")
    item = ddb.get_item(TableName=world.res.table_name, Key={"pk": {"S": f"job#{job_id}"}})
    task_arn = item["Item"][JobField.TASK_ARN]["S"]
    as_principal("reconciler")
    event = {"detail-type": "ECS Task State Change", "source": "aws.ecs", "detail": {
        "taskArn": task_arn, "clusterArn": world.res.cluster_arn,
        "taskDefinitionArn": queue.task_definition_arn, "startedBy": job_id,
        "lastStatus": "STOPPED", "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "containers": [{"name": "worker", "exitCode": 1}],
        "overrides": {"containerOverrides": [{"name": "worker", "environment": [
            {"name": Env.JOB_ID, "value": job_id}, {"name": Env.JOB_ATTEMPT, "value": "1"}]}]},
    }}
    def visible() -> int:
        attrs = world.client("api", "sqs").get_queue_attributes(
            QueueUrl=queue.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

    before = visible()
    reconciler.handler(event)
    # The retry's message, sent with the reconciler's rights (no drain request: no job is
    # parked, and the reconciler asks for a drain only while one is).
    assert visible() == before + 1
    item = ddb.get_item(TableName=world.res.table_name, Key={"pk": {"S": f"job#{job_id}"}})
    assert item["Item"][JobField.STATUS]["S"] == JobStatus.QUEUED.value  # retried
    sqs = world.client("reconciler", "sqs")
    assert_denied(sqs.receive_message, QueueUrl=queue.queue_url)
    assert_denied(sqs.send_message, QueueUrl=queue.dlq_url, MessageBody="{}",
                  MessageGroupId="g", MessageDeduplicationId="d4")
    assert_denied(world.client("reconciler", "s3").put_object, Bucket=world.res.bucket,
                  Key=result_key(worker, job_id), Body=b"x")


def test_failed_events_queue_reconciler_records_sweep_takes_back_no_one_else(
    world: World,
) -> None:
    """The reconciler's on-failure queue (``components.failed_events``): Lambda sends with the
    reconciler's role, the sweep receives and deletes; neither does the other's part, and a
    worker task or the API reaches it not at all."""
    url = world.failed_events_url
    record = json.dumps({"requestPayload": {"source": "aws.ecs"}})
    world.client("reconciler", "sqs").send_message(QueueUrl=url, MessageBody=record)
    assert_denied(world.client("reconciler", "sqs").receive_message, QueueUrl=url)
    sweep = world.client("sweep", "sqs")
    (message,) = sweep.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    sweep.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert_denied(sweep.send_message, QueueUrl=url, MessageBody=record)
    for who in ("api", "content-analyzer-task"):
        assert_denied(world.client(who, "sqs").send_message, QueueUrl=url, MessageBody=record)
        assert_denied(world.client(who, "sqs").receive_message, QueueUrl=url)


def test_action_level_limits_hold_for_dynamodb_and_ecs(world: World) -> None:
    """Where moto checks only actions, the generated ACTION lists are still enforced."""
    table = world.res.table_name
    ddb = world.client("content-analyzer-task", "dynamodb")
    assert_denied(ddb.scan, TableName=table)
    assert_denied(ddb.delete_item, TableName=table, Key={"pk": {"S": "worker#content-analyzer"}})
    assert_denied(world.client("api", "dynamodb").scan, TableName=table)
    task_def = world.res.workers["content-analyzer"].task_definition_arn
    assert_denied(world.client("api", "ecs").run_task, cluster=world.res.cluster_arn,
                  taskDefinition=task_def)
    assert_denied(world.client("content-analyzer-task", "ecs").run_task,
                  cluster=world.res.cluster_arn, taskDefinition=task_def)


def test_dynamodb_row_scoping_is_not_enforceable_in_moto() -> None:
    pytest.skip(MOTO_SCOPES_ONLY_ACTIONS.format(service="DynamoDB (dynamodb:LeadingKeys)"))


def test_run_task_family_scoping_is_not_enforceable_in_moto() -> None:
    pytest.skip(MOTO_SCOPES_ONLY_ACTIONS.format(service="ECS (RunTask on one task family)"))
