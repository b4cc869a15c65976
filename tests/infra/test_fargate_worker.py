"""FargateWorker under Pulumi mocks: image, task definition, roles, queue and registration.

The platform is a small stand-in built from real aws resources (``fake_platform``), so these
tests depend only on the attributes FargateWorker reads; other infra tests import it too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

import jobcontract
import jobcontract.store
from components import iam
from components.aws_rules import AwsConstraintError
from components.config import StackConfig, parse_config
from components.fargate_worker import FargateWorker, FargateWorkerArgs, looks_secret
from components.job_queue import JobQueue, JobQueueArgs
from components.offline import MockResource, StackGraph, run_program
from components.worker.validation import validate
from jobcontract import Env, WorkerField
from jobcontract.registration import DEFAULT_INPUT_SCHEMA, WorkerRegistration
from tests.fixtures.registrations import assert_fargate_fields

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
TASK_DEF = "aws:ecs/taskDefinition:TaskDefinition"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:notion-token-AbCdEf"
SSM_ARN = "arn:aws:ssm:us-east-1:123456789012:parameter/batch/model-key"


def fake_platform(config: StackConfig) -> Any:
    """A stand-in for BatchPlatform: the attributes components read, from real resources."""
    prefix = config.name_prefix

    def function(name: str, timeout: int) -> SimpleNamespace:
        role = aws.iam.Role(
            f"{name}-role",
            name=f"{prefix}-{name}",
            assume_role_policy=iam.assume_role_policy("lambda.amazonaws.com"),
        )
        fn = aws.lambda_.Function(
            name,
            name=f"{prefix}-{name}",
            role=role.arn,
            runtime="python3.13",
            handler=f"handlers.{name}.handler",
            timeout=timeout,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=iam.policy_document(iam.topic_publish("arn:aws:sns:us-east-1:1:t")),
        )
        return SimpleNamespace(
            function=fn, role=role, policy=policy, function_name=f"{prefix}-{name}"
        )

    fns = config.functions
    launcher = function("launcher", fns.launcher.timeout)
    launch_queue = JobQueue(
        "launch",
        JobQueueArgs(
            name_prefix=prefix,
            consumer_timeout_seconds=fns.launcher.timeout,
            max_concurrency=config.launcher_concurrency,
        ),
    )
    launch_queue.trigger(launcher.function, depends_on=[launcher.policy])
    functions = SimpleNamespace(
        api=function("api", fns.api.timeout),
        launcher=launcher,
        reconciler=function("reconciler", fns.reconciler.timeout),
        sweep=function("sweep", fns.sweep.timeout),
        iam_ledger=iam.InlinePolicyLedger(),
        launch_queue=launch_queue,
    )
    sg = aws.ec2.SecurityGroup("tasks", description="egress only")
    subnet_ids = pulumi.Output.from_input(["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"])
    security_group_ids = sg.id.apply(lambda i: [i])
    assign = config.network.assign_public_ip

    def network_configuration() -> pulumi.Output[dict[str, Any]]:
        return pulumi.Output.all(subnet_ids, security_group_ids).apply(
            lambda v: {
                "subnets": v[0],
                "securityGroups": v[1],
                "assignPublicIp": "ENABLED" if assign else "DISABLED",
            }
        )

    def capacity_provider_strategy() -> list[dict[str, Any]]:
        return [
            {"capacityProvider": s.capacity_provider, "weight": s.weight, "base": s.base}
            for s in config.capacity_strategy()
        ]

    cluster = aws.ecs.Cluster("cluster", name=prefix)
    return SimpleNamespace(
        config=config,
        name_prefix=prefix,
        cluster=cluster,
        capacity_providers=aws.ecs.ClusterCapacityProviders(
            "capacity", cluster_name=cluster.name, capacity_providers=["FARGATE", "FARGATE_SPOT"]
        ),
        jobs_table=aws.dynamodb.Table(
            "jobs",
            name=f"{prefix}-jobs",
            hash_key="pk",
            attributes=[{"name": "pk", "type": "S"}],
            billing_mode="PAY_PER_REQUEST",
        ),
        results_bucket=aws.s3.Bucket("results", bucket=f"{prefix}-results"),
        failure_topic=aws.sns.Topic("failures", name=f"{prefix}-failures"),
        subnet_ids=subnet_ids,
        security_group_ids=security_group_ids,
        assign_public_ip=assign,
        network_configuration=network_configuration,
        capacity_provider_strategy=capacity_provider_strategy,
        log_retention_days=config.log_retention_days,
        alarms_enabled=config.alarms,
        protect=config.protect,
        functions=functions,
    )


def stack_config(stack: str = "dev", **values: Any) -> StackConfig:
    return parse_config(values, project="ai-batch", stack=stack)


def worker_dir(root: Path, name: str = "summarize") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(
        "ARG BASE_IMAGE=python:3.13-slim\nFROM ${BASE_IMAGE}\nCOPY . /app\n"
    )
    return folder


def run_worker(
    config: StackConfig,
    source: Path,
    name: str = "summarize",
    **overrides: Any,
) -> StackGraph:
    def program() -> None:
        platform = fake_platform(config)
        FargateWorker(
            name, FargateWorkerArgs(platform=platform, source_dir=str(source), **overrides)
        )

    return run_program(program, stack=config.stack)


def policy(resource: MockResource) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = json.loads(resource.inputs["policy"])["Statement"]
    return statements


def by_sid(statements: list[dict[str, Any]], sid: str) -> dict[str, Any]:
    (match,) = [s for s in statements if s.get("Sid") == sid]
    return match


def container_of(graph: StackGraph, name: str = "summarize") -> dict[str, Any]:
    (container,) = json.loads(graph.named(TASK_DEF, f"{name}-task").inputs["containerDefinitions"])
    assert isinstance(container, dict)
    return container


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return worker_dir(tmp_path_factory.mktemp("workers"))


@pytest.fixture(scope="module")
def graph(source: Path) -> StackGraph:
    return run_worker(
        stack_config(logRetentionDays=30, spotShare=70),
        source,
        description="Summaries",
        cpu=1024,
        memory=2048,
        max_cpu=4096,
        max_memory=8192,
        environment={"SUMMARY_STYLE": "short"},
        secrets={"NOTION_TOKEN": SECRET_ARN + ":token::", "MODEL_KEY": SSM_ARN},
        policy_statements=[
            iam.Statement(
                ["bedrock:InvokeModel"],
                ["arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku"],
                sid="Bedrock",
            )
        ],
        max_concurrency=25,
    )


# --- image and task definition ------------------------------------------------------------


def test_image_platform_matches_task_architecture(graph: StackGraph) -> None:
    image = graph.named("docker:index/image:Image", "summarize-image").inputs
    task = graph.named(TASK_DEF, "summarize-task").inputs
    arch = task["runtimePlatform"]["cpuArchitecture"]
    assert arch == "ARM64"
    assert task["runtimePlatform"]["operatingSystemFamily"] == "LINUX"
    assert image["build"]["platform"] == {"ARM64": "linux/arm64"}[arch]
    assert image["build"]["dockerfile"].endswith("summarize/Dockerfile")


@pytest.mark.parametrize(("arch", "docker"), [("X86_64", "linux/amd64"), ("arm64", "linux/arm64")])
def test_architecture_choice_flows_to_image_and_task(source: Path, arch: str, docker: str) -> None:
    g = run_worker(stack_config(), source, architecture=arch)
    task = g.named(TASK_DEF, "summarize-task").inputs
    assert task["runtimePlatform"]["cpuArchitecture"] == arch.upper()
    assert g.named("docker:index/image:Image", "summarize-image").inputs["build"]["platform"] == (
        docker
    )


def test_image_pinned_by_digest(graph: StackGraph) -> None:
    image = graph.named("docker:index/image:Image", "summarize-image")
    container = container_of(graph)
    assert container["image"] == image.outputs["repoDigest"]
    assert "@sha256:" in container["image"]
    repo = graph.named("aws:ecr/repository:Repository", "summarize-repo").outputs
    assert container["image"].startswith(repo["repositoryUrl"] + "@sha256:")


def test_image_pushed_with_ecr_credentials(graph: StackGraph) -> None:
    image = graph.named("docker:index/image:Image", "summarize-image").inputs
    repo = graph.named("aws:ecr/repository:Repository", "summarize-repo").outputs
    assert image["registry"]["server"] == repo["repositoryUrl"]
    assert image["registry"]["username"] == "AWS"
    assert image["registry"]["password"] == "offline-token"
    assert image["imageName"].startswith(repo["repositoryUrl"] + ":")


def test_task_definition_shape(graph: StackGraph) -> None:
    task = graph.named(TASK_DEF, "summarize-task").inputs
    assert task["family"] == "ai-batch-dev-summarize"
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["networkMode"] == "awsvpc"
    assert (task["cpu"], task["memory"]) == ("1024", "2048")
    assert (
        task["executionRoleArn"]
        == graph.named("aws:iam/role:Role", "summarize-exec-role").outputs["arn"]
    )
    assert (
        task["taskRoleArn"]
        == graph.named("aws:iam/role:Role", "summarize-task-role").outputs["arn"]
    )
    container = container_of(graph)
    assert container["name"] == jobcontract.CONTAINER_NAME
    assert container["essential"] is True
    assert container["stopTimeout"] == 120
    assert container["readonlyRootFilesystem"] is True
    assert {"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False} in container[
        "mountPoints"
    ]
    assert task["volumes"] == [{"name": "tmp"}]


def test_awslogs_to_own_group_with_retention(graph: StackGraph) -> None:
    group = graph.named("aws:cloudwatch/logGroup:LogGroup", "summarize-logs")
    assert group.inputs["retentionInDays"] == 30
    logs = container_of(graph)["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert logs["options"]["awslogs-group"] == group.outputs["name"]
    assert logs["options"]["awslogs-region"] == "us-east-1"


def test_environment_and_secrets(graph: StackGraph) -> None:
    container = container_of(graph)
    env = {e["name"]: e["value"] for e in container["environment"]}
    table = graph.named("aws:dynamodb/table:Table", "jobs").outputs["name"]
    bucket = graph.named("aws:s3/bucket:Bucket", "results").outputs["bucket"]
    assert env[Env.JOBS_TABLE] == table
    assert env[Env.RESULTS_BUCKET] == bucket
    assert env[Env.WORKER_NAME] == "summarize"
    assert env[Env.WORKER_TIMEOUT_SECONDS] == "3600"
    assert env["SUMMARY_STYLE"] == "short"
    assert env[Env.MODEL_BACKEND] == "bedrock"
    assert env[Env.MODEL_ID] == "amazon.nova-lite-v1:0"  # stack default
    assert env["XDG_CACHE_HOME"].startswith("/tmp/")  # the only writable path
    assert Env.JOB_ID not in env
    assert container["secrets"] == [
        {"name": "MODEL_KEY", "valueFrom": SSM_ARN},
        {"name": "NOTION_TOKEN", "valueFrom": SECRET_ARN + ":token::"},
    ]
    assert not {s["name"] for s in container["secrets"]} & set(env)


@pytest.mark.parametrize(
    "name",
    ["OPENAI_API_KEY", "NOTION_TOKEN", "DB_PASSWORD", "CLIENT_SECRET", "AWS_SECRET_ACCESS_KEY"],
)
def test_secret_looking_plain_env_is_refused(source: Path, name: str) -> None:
    with pytest.raises(AwsConstraintError, match="secrets") as info:
        run_worker(stack_config(), source, environment={name: "sk-live-123"})
    assert info.value.value == name


def test_pointer_names_are_not_secrets() -> None:
    assert not looks_secret("BATCH_NOTION_SECRET_ARN")
    assert not looks_secret("MODEL_ID")
    assert not looks_secret("SUMMARY_STYLE")
    assert looks_secret("api_key")


@pytest.mark.parametrize(
    ("cpu", "memory", "ok"),
    [
        (256, 512, True),
        (512, 4096, True),
        (1024, 2048, True),
        (4096, 30720, True),
        (16384, 122880, True),
        (256, 4096, False),
        (1024, 1024, False),
        (3000, 8192, False),
        (8192, 18432, False),
    ],
)
def test_fargate_cpu_memory_pairs(source: Path, cpu: int, memory: int, ok: bool) -> None:
    if ok:
        g = run_worker(stack_config(), source, cpu=cpu, memory=memory)
        task = g.named(TASK_DEF, "summarize-task").inputs
        assert (task["cpu"], task["memory"]) == (str(cpu), str(memory))
        return
    with pytest.raises(AwsConstraintError, match="not valid; allowed") as info:
        run_worker(stack_config(), source, cpu=cpu, memory=memory)
    assert "cpu/memory" in info.value.key


@pytest.mark.parametrize(
    ("overrides", "key_part"),
    [
        ({"max_cpu": 512, "max_memory": 1024}, "max_cpu/max_memory"),
        ({"max_cpu": 2048, "max_memory": 1024}, "max_cpu/max_memory"),
        ({"architecture": "ppc64"}, "architecture"),
        ({"timeout_seconds": 30}, "timeout_seconds"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"spot_share": 101}, "spot_share"),
        ({"environment": {Env.JOBS_TABLE: "x"}}, "environment"),
        ({"environment": {"1BAD": "x"}}, "environment"),
        ({"secrets": {"NOTION_TOKEN": "plain-value"}}, "secrets"),
        ({"input_schema": {"type": "array"}}, "input_schema"),
        ({"input_schema": {"type": "object", "patternProperties": {}}}, "input_schema"),
    ],
)
def test_invalid_args_name_the_setting(
    source: Path, overrides: dict[str, Any], key_part: str
) -> None:
    with pytest.raises(AwsConstraintError) as info:
        run_worker(stack_config(), source, **overrides)
    assert key_part in info.value.key


def test_missing_dockerfile_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(AwsConstraintError, match="Dockerfile") as info:
        run_worker(stack_config(), tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_default_source_dir_is_workers_folder() -> None:
    def program() -> None:
        FargateWorker("no-such-worker", FargateWorkerArgs(platform=fake_platform(stack_config())))

    with pytest.raises(AwsConstraintError) as info:
        run_program(program)
    assert str(Path("workers") / "no-such-worker" / "Dockerfile") in str(info.value)


def test_invalid_worker_name(source: Path) -> None:
    with pytest.raises(AwsConstraintError) as info:
        run_worker(stack_config(), source, name="Bad_Name")
    assert info.value.key == "worker name"


# --- IAM ------------------------------------------------------------------------------------


def all_policies(graph: StackGraph) -> dict[str, list[dict[str, Any]]]:
    return {r.name: policy(r) for r in graph.of_type(ROLE_POLICY)}


def test_no_wildcard_actions_and_star_only_for_ecr_token(graph: StackGraph) -> None:
    policies = all_policies(graph)
    assert policies, "expected inline role policies"
    for name, statements in policies.items():
        for s in statements:
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            assert all("*" not in a for a in actions), (name, s)
            if "*" in resources:
                assert actions == ["ecr:GetAuthorizationToken"], (name, s)


def test_task_role_scoped_to_own_rows_and_prefixes(graph: StackGraph) -> None:
    statements = policy(graph.named(ROLE_POLICY, "summarize-task-policy"))
    table_arn = graph.named("aws:dynamodb/table:Table", "jobs").outputs["arn"]
    bucket_arn = graph.named("aws:s3/bucket:Bucket", "results").outputs["arn"]
    rows = by_sid(statements, "OwnJobRowsOnly")
    assert table_arn in rows["Resource"]
    assert set(rows["Action"]) == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert rows["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["job#summarize_*"]}
    }
    results = by_sid(statements, "OwnResults")
    assert results["Resource"] == [f"{bucket_arn}/results/summarize/*"]
    assert set(results["Action"]) == {"s3:PutObject", "s3:GetObject"}
    inputs = by_sid(statements, "OwnInputs")
    assert inputs["Resource"] == [f"{bucket_arn}/inputs/summarize/*"]
    assert inputs["Action"] == ["s3:GetObject"]
    declared = by_sid(statements, "Bedrock")
    assert declared["Action"] == ["bedrock:InvokeModel"]
    # S3 answers 404 (not 403) for a missing key only to a role that may list it.
    listing = by_sid(statements, "ListOwnPrefixes")
    assert listing["Action"] == ["s3:ListBucket"] and listing["Resource"] == [bucket_arn]
    assert listing["Condition"] == {
        "StringLike": {"s3:prefix": ["inputs/summarize/*", "results/summarize/*"]}
    }
    # Nothing else on the table or the bucket.
    for s in statements:
        for r in s["Resource"]:
            assert not r.startswith(bucket_arn) or "/summarize/" in r or s is listing


def test_execution_role_scoped(graph: StackGraph) -> None:
    statements = policy(graph.named(ROLE_POLICY, "summarize-exec-policy"))
    repo_arn = graph.named("aws:ecr/repository:Repository", "summarize-repo").outputs["arn"]
    group_arn = graph.named("aws:cloudwatch/logGroup:LogGroup", "summarize-logs").outputs["arn"]
    pulls = [s for s in statements if "ecr:BatchGetImage" in s["Action"]]
    assert [s["Resource"] for s in pulls] == [[repo_arn]]
    logs = by_sid(statements, "WriteOwnLogs")
    assert logs["Resource"] == [f"{group_arn}:log-stream:*"]
    assert by_sid(statements, "ReadOwnSecrets")["Resource"] == [SECRET_ARN]
    assert by_sid(statements, "ReadOwnSecrets")["Action"] == ["secretsmanager:GetSecretValue"]
    assert by_sid(statements, "ReadOwnParameters")["Resource"] == [SSM_ARN]


def test_roles_trust_ecs_tasks_with_conditions_only_where_documented(graph: StackGraph) -> None:
    def trust(role: str) -> dict[str, Any]:
        doc = json.loads(graph.named("aws:iam/role:Role", role).inputs["assumeRolePolicy"])
        (stmt,) = doc["Statement"]
        assert stmt["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        return dict(stmt)

    # Task role: the confused-deputy keys ECS documents for task roles.
    task = trust("summarize-task-role")
    assert task["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert task["Condition"]["ArnLike"]["aws:SourceArn"].endswith(":123456789012:*")
    # Execution role: documented without conditions; a key ECS does not send stops every task.
    assert "Condition" not in trust("summarize-exec-role")


def test_worker_adds_no_policy_to_the_control_plane_roles(graph: StackGraph) -> None:
    """The control plane grants once per stack (ControlPlane); a worker adds nothing to the
    api, launcher, reconciler or sweep roles (no per-worker queue, no consume policy)."""
    for fn in ("api", "launcher", "reconciler", "sweep"):
        role_id = graph.named("aws:iam/role:Role", f"{fn}-role").outputs["id"]
        on_role = {p.name for p in graph.of_type(ROLE_POLICY) if p.inputs["role"] == role_id}
        assert on_role == {f"{fn}-policy"}, fn


def test_worker_roles_live_under_the_stack_path(graph: StackGraph) -> None:
    """The launcher's PassRole grant names the path; both roles must be under it (and nothing
    else of the worker's)."""
    for role in ("summarize-task-role", "summarize-exec-role"):
        r = graph.named("aws:iam/role:Role", role)
        assert r.inputs["path"] == "/aibatch/ai-batch-dev/workers/"
        assert ":role/aibatch/ai-batch-dev/workers/ai-batch-dev-summarize-" in r.outputs["arn"]
    td = graph.named(TASK_DEF, "summarize-task").inputs
    assert "/aibatch/ai-batch-dev/workers/" in td["taskRoleArn"]
    assert "/aibatch/ai-batch-dev/workers/" in td["executionRoleArn"]


def test_registration_fails_before_the_launcher_role_exceeds_the_inline_quota(
    source: Path,
) -> None:
    """A launcher role whose inline policies exceed IAM's quota (whatever declared them): the
    worker's registration fails the program naming the role, its size and the limit."""

    def program() -> None:
        platform = fake_platform(stack_config())
        filler = "x" * 10_300  # whitespace-free characters, as IAM counts them
        platform.functions.iam_ledger.add("of Lambda ai-batch-dev-launcher", filler)
        FargateWorker("summarize", FargateWorkerArgs(platform=platform, source_dir=str(source)))

    with pytest.raises(ValueError) as err:  # Pulumi re-raises it while registering the item
        run_program(program)
    # Pulumi keeps only the text of the AwsConstraintError raised in the check.
    message = str(err.value)
    assert "summarize-registration" in message  # what preview names with it
    found = re.search(
        r"IAM role of Lambda ai-batch-dev-launcher: inline policies: '(\d+) characters'"
        r" is not valid; allowed: at most 10240 characters",
        message,
    )
    assert found, message
    assert int(found.group(1)) > 10_240


# --- queue and registration ---------------------------------------------------------------


def test_worker_declares_no_queue_trigger_or_alarm(source: Path) -> None:
    """Idle cost per worker is ECR storage only: the stack's one launch queue is polled and
    alarmed once, whatever the number of workers."""
    g = run_worker(stack_config("prod", alarms=True), source)
    for typ in (
        "aws:sqs/queue:Queue",
        "aws:lambda/eventSourceMapping:EventSourceMapping",
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "aibatch:index:JobQueue",
    ):
        assert [r.name for r in g.of_type(typ) if r.name.startswith("summarize")] == [], typ


def test_registration_waits_for_cluster_capacity_providers(graph: StackGraph) -> None:
    # AWS rule: RunTask with a capacity provider strategy fails until FARGATE/FARGATE_SPOT are
    # attached to the cluster; the registration is what lets the API accept jobs.
    reg = graph.named("aws:dynamodb/tableItem:TableItem", "summarize-registration")
    assert "capacity" in reg.depends_on
    # ... and for the control-plane grants that let the API enqueue and the launcher run it.
    assert {"launcher-policy", "api-policy", "reconciler-policy", "sweep-policy"} <= set(
        reg.depends_on
    )


def test_registration_item(graph: StackGraph) -> None:
    reg = graph.named("aws:dynamodb/tableItem:TableItem", "summarize-registration").inputs
    assert reg["hashKey"] == jobcontract.Table.PK
    assert reg["tableName"] == graph.named("aws:dynamodb/table:Table", "jobs").outputs["name"]
    item = json.loads(reg["item"])
    task = graph.named(TASK_DEF, "summarize-task").outputs
    # The stack's launch queue (shared by every worker), not one of the worker's own.
    queue = graph.named("aws:sqs/queue:Queue", "launch-queue").outputs
    dlq = graph.named("aws:sqs/queue:Queue", "launch-dlq").outputs
    assert item[jobcontract.Table.PK] == {"S": "worker#summarize"}
    assert item["kind"] == {"S": "worker"}
    assert item[WorkerField.TASK_DEFINITION] == {"S": task["arn"]}
    assert item[WorkerField.CONTAINER_NAME] == {"S": jobcontract.CONTAINER_NAME}
    assert item[WorkerField.QUEUE_URL] == {"S": queue["url"]}
    assert item[WorkerField.DLQ_URL] == {"S": dlq["url"]}
    assert item[WorkerField.CPU] == {"N": "1024"}
    assert item[WorkerField.MAX_MEMORY] == {"N": "8192"}
    assert item[WorkerField.MAX_ATTEMPTS] == {"N": "3"}
    assert item[WorkerField.MAX_CONCURRENCY] == {"N": "25"}
    assert item[WorkerField.SPOT_FALLBACK] == {"BOOL": True}
    assert item[WorkerField.ARCHITECTURE] == {"S": "ARM64"}
    reuse = str(jobcontract.DEFAULT_REUSE_IDLE_SECONDS)
    assert item[WorkerField.REUSE_IDLE_SECONDS] == {"N": reuse}
    assert json.loads(item[WorkerField.INPUT_SCHEMA]["S"]) == {"type": "object"}
    strategy = json.loads(item[WorkerField.CAPACITY_STRATEGY]["S"])
    assert strategy == [
        {"capacityProvider": "FARGATE_SPOT", "weight": 7, "base": 0},
        {"capacityProvider": "FARGATE", "weight": 3, "base": 0},
    ]
    assert_fargate_fields(item)
    # What the handlers read back (the record that wrote it) is the worker as declared.
    record = WorkerRegistration.from_item(jobcontract.store.from_item(item))
    assert record.to_dynamodb() == item
    assert (record.name, record.task_definition, record.queue_url) == (
        "summarize",
        task["arn"],
        queue["url"],
    )
    assert record.limits()["max_memory"] == 8192 and record.launch_steps()[-1] == [
        {"capacityProvider": "FARGATE", "weight": 1, "base": 0}
    ]


def test_argument_defaults_are_the_registration_defaults() -> None:
    """A worker declared with defaults registers what a registration without the field reads
    as (one home for each default: ``jobcontract.registration``)."""
    args = FargateWorkerArgs(platform=None)  # type: ignore[arg-type]
    read = WorkerRegistration.from_item(
        {"name": "w", "task_definition": "fam:1", "queue_url": "q", "cpu": 1, "memory": 2}
    )
    assert args.max_attempts == read.max_attempts
    assert args.timeout_seconds == read.timeout_seconds
    assert args.max_concurrency == read.max_concurrency
    assert args.architecture == read.architecture
    assert args.description == read.description
    assert dict(DEFAULT_INPUT_SCHEMA) == read.input_schema


# Names the component's `environment` refuses exactly when the policy pack flags them.
SECRET_NAMES = {
    "OPENAI_KEY": True,  # the pack missed it before the rules were one
    "DB_PASSWORD": True,
    "DBPASSWORD": True,
    "GITHUBTOKEN": True,
    "SLACK_WEBHOOK_URL": True,
    "PWD": True,
    "TOKENIZER": False,  # the component passed it and the pack failed it before
    "AUTHOR": False,
    "KEYWORDS": False,
    "BATCH_NOTION_SECRET_ARN": False,
    "API_KEY_ID": False,
    "MODEL_PATH": False,
}


@pytest.mark.parametrize(("env_name", "secret"), sorted(SECRET_NAMES.items()))
def test_component_and_policy_pack_share_one_secret_name_rule(
    source: Path, env_name: str, secret: bool
) -> None:
    from policy import rules

    assert rules.looks_secret is looks_secret
    flagged = bool(rules.secret_env_findings({env_name: "plain-value"}))
    # Pure validation: no Pulumi program runs for this.
    args = FargateWorkerArgs(
        platform=None,  # type: ignore[arg-type]
        source_dir=str(source),
        environment={env_name: "plain-value"},
    )
    if secret:
        with pytest.raises(AwsConstraintError, match="secrets"):
            validate("summarize", args, "ai-batch-dev")
    else:
        validate("summarize", args, "ai-batch-dev")
    assert flagged is secret


def test_policy_rules_import_no_pulumi() -> None:
    """The pack's own virtualenv has pulumi-policy and PyYAML only: the shared rule must
    come without Pulumi, the AWS provider or boto3."""
    third_party = "('pulumi', 'boto3', 'botocore')"
    probe = (
        "import sys, policy.rules; "
        f"print(sorted(m for m in sys.modules if m.startswith({third_party})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_worker_spot_share_overrides_platform(source: Path) -> None:
    g = run_worker(stack_config(spotShare=100), source, spot_share=0, spot_fallback=False)
    item = json.loads(
        g.named("aws:dynamodb/tableItem:TableItem", "summarize-registration").inputs["item"]
    )
    assert json.loads(item[WorkerField.CAPACITY_STRATEGY]["S"]) == [
        {"capacityProvider": "FARGATE", "weight": 1, "base": 0}
    ]
    assert item[WorkerField.SPOT_FALLBACK] == {"BOOL": False}


def test_ecr_repository(graph: StackGraph) -> None:
    repo = graph.named("aws:ecr/repository:Repository", "summarize-repo").inputs
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
    assert repo["forceDelete"] is True  # dev: protect off
    lifecycle = json.loads(
        graph.named("aws:ecr/lifecyclePolicy:LifecyclePolicy", "summarize-repo-lifecycle").inputs[
            "policy"
        ]
    )
    untagged, kept = lifecycle["rules"]
    # AWS rule: the "any" rule must have the highest rulePriority (evaluated last).
    assert untagged["rulePriority"] < kept["rulePriority"]
    assert untagged["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 1,
    }
    assert kept["selection"]["tagStatus"] == "any"
    assert kept["selection"]["countType"] == "imageCountMoreThan"
    assert kept["selection"]["countNumber"] == 3  # StackConfig default keep_images


def test_children_are_parented(graph: StackGraph) -> None:
    worker = graph.named("aibatch:index:FargateWorker", "summarize")
    assert worker.parent is None and not worker.custom
    for r in graph.resources:
        if r.name.startswith("summarize-"):
            assert r.parent == "summarize", r.name  # the worker or its JobQueue


def checklist_violations(graph: StackGraph, prefix: str, stack: str = "dev") -> list[str]:
    """The project's security checklist (policy/rules.py) over one component's resources."""
    rules = pytest.importorskip("policy.rules")
    context = rules.RuleContext(stack, stack == "prod")
    return [
        str(v)
        for v in rules.check_graph(graph.resources, context)
        if v.resource.split(" ", 1)[-1].startswith(prefix)
    ]


def test_security_checklist_passes(graph: StackGraph, source: Path) -> None:
    assert checklist_violations(graph, "summarize") == []
    prod = run_worker(stack_config("prod", protect=True, alarms=True), source)
    assert checklist_violations(prod, "summarize", "prod") == []


def test_reuse_idle_seconds_reaches_registration_and_task(source: Path) -> None:
    def reuse(graph: StackGraph) -> tuple[str, str]:
        item = json.loads(
            graph.named("aws:dynamodb/tableItem:TableItem", "summarize-registration").inputs["item"]
        )
        (container,) = json.loads(
            graph.named(TASK_DEF, "summarize-task").inputs["containerDefinitions"]
        )
        env = {e["name"]: e["value"] for e in container["environment"]}
        return item[WorkerField.REUSE_IDLE_SECONDS]["N"], env[Env.REUSE_IDLE_SECONDS]

    assert reuse(run_worker(stack_config(), source, reuse_idle_seconds=120)) == ("120", "120")
    assert reuse(run_worker(stack_config(), source, reuse_idle_seconds=0)) == ("0", "0")
    # The stack setting turns reuse off for every worker, whatever the worker asks.
    off = run_worker(stack_config(taskReuse=False), source, reuse_idle_seconds=120)
    assert reuse(off) == ("0", "0")


@pytest.mark.parametrize("bad", [-1, 3601, 1.5, True])
def test_reuse_idle_seconds_is_validated(source: Path, bad: Any) -> None:
    with pytest.raises(AwsConstraintError) as info:
        run_worker(stack_config(), source, reuse_idle_seconds=bad)
    assert info.value.key == "summarize: reuse_idle_seconds"
    assert "0..3600" in info.value.allowed


def test_reuse_env_is_reserved(source: Path) -> None:
    with pytest.raises(AwsConstraintError) as info:
        run_worker(stack_config(), source, environment={Env.REUSE_IDLE_SECONDS: "5"})
    assert info.value.value == Env.REUSE_IDLE_SECONDS


def test_registration_fails_before_a_worker_role_exceeds_an_iam_quota(source: Path) -> None:
    """A task role whose declared statements exceed IAM's inline quota: the registration
    fails the program naming the role, before IAM would refuse the policy."""
    many = [
        iam.Statement(
            ("s3:GetObject",),
            [f"arn:aws:s3:::bucket-{i:04d}-with-a-rather-long-name/prefix/*" for i in range(200)],
            sid="ManyBuckets",
        )
    ]
    with pytest.raises(ValueError) as err:
        run_worker(stack_config(), source, policy_statements=many)
    assert re.search(
        r"IAM role ai-batch-dev-summarize-task: inline policies: '\d+ characters' is not valid",
        str(err.value),
    ), err.value


# --- the IAM quota guard: each quota, caught before IAM would refuse the role -------------
def test_guard_refuses_an_oversized_trust_policy_at_declaration() -> None:
    ledger = iam.InlinePolicyLedger()
    ledger.trust("of Lambda x", iam.assume_role_policy("lambda.amazonaws.com"))  # fits
    oversized = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "x" * 2100}]})
    with pytest.raises(AwsConstraintError) as info:
        ledger.trust("of Lambda x", oversized)
    assert info.value.key == "IAM role of Lambda x: trust policy"
    assert "at most 2048 characters" in info.value.allowed


def test_guard_refuses_an_eleventh_managed_policy() -> None:
    ledger = iam.InlinePolicyLedger()
    arns = [f"arn:aws:iam::aws:policy/P{i}" for i in range(10)]
    ledger.managed("of Lambda x", arns)  # 10: IAM's default quota, still allowed
    with pytest.raises(AwsConstraintError) as info:
        ledger.managed("of Lambda x", ["arn:aws:iam::aws:policy/One-too-many"])
    assert info.value.key == "IAM role of Lambda x: managed policies"
    assert info.value.value == 11 and "at most 10" in info.value.allowed


def test_registration_fails_before_a_trust_policy_output_exceeds_the_quota(source: Path) -> None:
    """A trust policy only known once Outputs resolve (the task role's, say) is checked by
    the guard the registration waits for."""

    def program() -> None:
        platform = fake_platform(stack_config())
        huge = pulumi.Output.from_input("y" * 3000).apply(
            lambda pad: json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": pad}]})
        )
        platform.functions.iam_ledger.trust("of Lambda ai-batch-dev-launcher", huge)
        FargateWorker("summarize", FargateWorkerArgs(platform=platform, source_dir=str(source)))

    with pytest.raises(ValueError) as err:
        run_program(program)
    assert re.search(
        r"IAM role of Lambda ai-batch-dev-launcher: trust policy: '\d+ characters' is not "
        r"valid; allowed: at most 2048 characters",
        str(err.value),
    ), err.value


def test_task_role_reaches_its_own_dispatch_rows_and_no_neighbours(graph: StackGraph) -> None:
    """Warm reuse lets a task read and write dispatch state: evaluated as IAM does (the
    authorization engine, LeadingKeys included), only its own worker's counts, leases and
    QUEUED jobs are reachable; a neighbour's (even one whose name extends ours), the stack's
    budget row and other workers' jobs are not."""
    from tests.authz.engine import Policy, Request, evaluate

    role = "arn:aws:iam::123456789012:role/summarize-task"
    identity = [
        Policy("task", {"Statement": policy(graph.named(ROLE_POLICY, "summarize-task-policy"))})
    ]
    table = str(graph.named("aws:dynamodb/table:Table", "jobs").outputs["arn"])
    index = f"{table}/index/{jobcontract.Table.BY_WORKER_STATUS}"

    def allowed(action: str, resource: str, key: str) -> bool:
        context = {"dynamodb:LeadingKeys": [key]}
        return evaluate(Request(role, action, resource, context), identity).allowed

    own = ["dispatch#summarize", "slot#summarize_0123abcd-1"]
    for key in own:
        for action in ("dynamodb:GetItem", "dynamodb:UpdateItem"):
            assert allowed(action, table, key), (action, key)
    assert allowed("dynamodb:Query", index, "summarize#QUEUED")
    neighbours = [
        "dispatch#translate",
        "dispatch#summarize-2",
        "slot#translate_0123abcd-1",
        "slot#summarize-2_0123abcd-1",
        "dispatch@stack",
    ]
    for key in neighbours:
        for action in ("dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"):
            assert not allowed(action, table, key), (action, key)
    for key in ("translate#QUEUED", "summarize#RUNNING", "summarize-2#QUEUED"):
        assert not allowed("dynamodb:Query", index, key), key
