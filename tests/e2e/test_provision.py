"""local_pipeline.provision: graph resources -> moto, with every mocked value substituted.

The graph here comes from a small Pulumi program run under the project's shared mocks
(``components.offline.run_program``), so the inputs and mocked outputs have exactly the
shape the real stack produces."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.offline import StackGraph, run_program
from jobcontract import Env, Table, WorkerField, worker_pk
from jobcontract.registration import WorkerRegistration
from local_pipeline.provision import Provisioned, ProvisionError, Substitutions, provision


def _program() -> None:
    import pulumi
    import pulumi_aws as aws

    table = aws.dynamodb.Table(
        "jobs",
        name="t-jobs",
        billing_mode="PAY_PER_REQUEST",
        hash_key=Table.PK,
        attributes=[
            aws.dynamodb.TableAttributeArgs(name=Table.PK, type="S"),
            aws.dynamodb.TableAttributeArgs(name="kind", type="S"),
            aws.dynamodb.TableAttributeArgs(name="created_at", type="S"),
        ],
        global_secondary_indexes=[
            aws.dynamodb.TableGlobalSecondaryIndexArgs(
                name=Table.BY_KIND,
                hash_key="kind",
                range_key="created_at",
                projection_type="ALL",
            )
        ],
        ttl=aws.dynamodb.TableTtlArgs(attribute_name=Table.TTL_ATTRIBUTE, enabled=True),
    )
    bucket = aws.s3.Bucket("results", bucket="t-results")
    topic = aws.sns.Topic("failures", name="t-failures")
    cluster = aws.ecs.Cluster("cluster", name="t-cluster")
    sg = aws.ec2.SecurityGroup("tasks", name="t-tasks", description="egress only")
    dlq = aws.sqs.Queue("echo-dlq", name="t-echo-dlq.fifo", fifo_queue=True)
    queue = aws.sqs.Queue(
        "echo",
        name="t-echo.fifo",
        fifo_queue=True,
        visibility_timeout_seconds=360,
        redrive_policy=dlq.arn.apply(
            lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 2})
        ),
    )
    td = aws.ecs.TaskDefinition(
        "echo",
        family="t-echo",
        cpu="256",
        memory="512",
        network_mode="awsvpc",
        requires_compatibilities=["FARGATE"],
        container_definitions=json.dumps(
            [
                {
                    "name": "worker",
                    "image": "example.invalid/echo",
                    "essential": True,
                    "environment": [{"name": Env.WORKER_NAME, "value": "echo"}],
                }
            ]
        ),
    )
    item = pulumi.Output.all(queue.url, dlq.url, td.arn).apply(
        lambda a: json.dumps(
            WorkerRegistration(
                name="echo", task_definition=a[2], queue_url=a[0], dlq_url=a[1],
                cpu=256, memory=512, max_cpu=256, max_memory=512,
            ).to_dynamodb()
        )
    )  # fmt: skip
    aws.dynamodb.TableItem("echo-registration", table_name=table.name, hash_key=Table.PK, item=item)
    env = pulumi.Output.all(table.name, bucket.bucket, topic.arn, cluster.arn, sg.id).apply(
        lambda a: {
            Env.JOBS_TABLE: a[0],
            Env.RESULTS_BUCKET: a[1],
            Env.FAILURE_TOPIC_ARN: a[2],
            Env.CLUSTER_ARN: a[3],
            Env.SECURITY_GROUPS: a[4],
            Env.SUBNETS: "subnet-0a1b2c3d4e5f60001,subnet-0a1b2c3d4e5f60002",
        }
    )
    launcher = aws.lambda_.Function(
        "launcher",
        name="t-launcher",
        handler="handlers.launcher.handler",
        runtime="python3.12",
        role="arn:aws:iam::123456789012:role/x",
        timeout=60,
        environment=aws.lambda_.FunctionEnvironmentArgs(variables=env),
    )
    aws.lambda_.EventSourceMapping(
        "echo-trigger",
        event_source_arn=queue.arn,
        function_name=launcher.arn,
        batch_size=10,
        function_response_types=["ReportBatchItemFailures"],
    )


@pytest.fixture
def graph() -> StackGraph:
    return run_program(_program, stack="t")


@pytest.fixture
def provisioned(graph: StackGraph, moto_reset: str) -> Provisioned:
    return provision(graph, moto_reset)


def _client(endpoint: str, service: str) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client(service, endpoint_url=endpoint)


def test_table_matches_declared_key_indexes_and_ttl(provisioned: Provisioned) -> None:
    ddb = _client(provisioned.endpoint, "dynamodb")
    desc = ddb.describe_table(TableName="t-jobs")["Table"]
    assert desc["KeySchema"] == [{"AttributeName": Table.PK, "KeyType": "HASH"}]
    gsis = {g["IndexName"]: g["KeySchema"] for g in desc["GlobalSecondaryIndexes"]}
    assert gsis == {
        Table.BY_KIND: [
            {"AttributeName": "kind", "KeyType": "HASH"},
            {"AttributeName": "created_at", "KeyType": "RANGE"},
        ]
    }
    ttl = ddb.describe_time_to_live(TableName="t-jobs")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == Table.TTL_ATTRIBUTE
    assert provisioned.jobs_table == "t-jobs"


def test_queue_redrive_points_at_the_moto_dlq(provisioned: Provisioned) -> None:
    sqs = _client(provisioned.endpoint, "sqs")
    url = provisioned.queues["echo"]
    assert url.startswith(provisioned.endpoint)  # a moto URL, not the mocked AWS one
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true" and attrs["VisibilityTimeout"] == "360"
    policy = json.loads(attrs["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == provisioned.queue_arns[provisioned.queues["echo-dlq"]]
    assert int(policy["maxReceiveCount"]) == 2


def test_registration_item_carries_moto_urls_and_arns(provisioned: Provisioned) -> None:
    ddb = _client(provisioned.endpoint, "dynamodb")
    item = ddb.get_item(TableName="t-jobs", Key={Table.PK: {"S": worker_pk("echo")}})["Item"]
    assert item[WorkerField.QUEUE_URL]["S"] == provisioned.queues["echo"]
    assert item[WorkerField.DLQ_URL]["S"] == provisioned.queues["echo-dlq"]
    ecs = _client(provisioned.endpoint, "ecs")
    td = ecs.describe_task_definition(taskDefinition=item[WorkerField.TASK_DEFINITION]["S"])
    container = td["taskDefinition"]["containerDefinitions"][0]
    assert container["memory"] == 512  # the moto run_task workaround was applied
    assert provisioned.workers["echo"].queue_url == provisioned.queues["echo"]


def test_lambda_env_and_event_source_use_moto_values(
    provisioned: Provisioned, graph: StackGraph
) -> None:
    fn = provisioned.function_by_role("launcher")
    assert fn.env[Env.JOBS_TABLE] == "t-jobs"
    assert fn.env[Env.CLUSTER_ARN] == provisioned.cluster_arns["cluster"]
    assert fn.env[Env.SECURITY_GROUPS] in provisioned.security_groups
    assert fn.env[Env.SUBNETS].split(",") == provisioned.subnets
    mocked = {
        str(v)
        for r in graph.resources
        for k, v in r.outputs.items()
        if k in ("url", "id") and str(v).startswith("https://sqs.")
    }
    assert not any(m in json.dumps(fn.env) for m in mocked)
    (source,) = provisioned.event_sources
    assert source.queue_url == provisioned.queues["echo"]
    assert source.function == "launcher" and source.report_batch_item_failures


def test_subnets_and_groups_exist_in_moto(provisioned: Provisioned) -> None:
    ec2 = _client(provisioned.endpoint, "ec2")
    subnets = ec2.describe_subnets(SubnetIds=provisioned.subnets)["Subnets"]
    assert len(subnets) == 2
    groups = ec2.describe_security_groups(GroupIds=provisioned.security_groups)
    assert [g["GroupName"] for g in groups["SecurityGroups"]] == ["t-tasks"]


def test_substitutions_replace_longest_first() -> None:
    subs = Substitutions()
    subs.add("https://sqs.x/1/q", "http://moto/1/q")
    subs.add("q", "never-this")  # a bare name is not distinctive: ignored
    subs.add("sg-0123456789abcdef0", "sg-1111111111111111")
    subs.add("same", "same")  # identity pairs are ignored
    assert subs.apply({"a": ["https://sqs.x/1/q"], "b": 3}) == {"a": ["http://moto/1/q"], "b": 3}
    assert subs.apply("q sg-0123456789abcdef0") == "q sg-1111111111111111"
    assert set(subs.mapping()) == {"https://sqs.x/1/q", "sg-0123456789abcdef0"}


def test_a_stack_without_a_jobs_table_is_refused(moto_reset: str) -> None:
    def program() -> None:
        import pulumi_aws as aws

        aws.sns.Topic("only", name="only")

    with pytest.raises(ProvisionError, match="jobs table"):
        provision(run_program(program, stack="t"), moto_reset)
