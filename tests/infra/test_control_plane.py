"""ControlPlane + PythonFunction under mocks: functions, least-privilege roles, triggers."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from components import iam
from components.offline import StackGraph
from components.python_function import code_archive
from jobcontract import Env
from tests.authz.engine import Policy, Request, evaluate
from tests.infra.policies import actions_of, as_list, grants, role_policy

FUNCTION = "aws:lambda/function:Function"
KEYS = ("api", "launcher", "reconciler", "sweep")
FUNCTIONS_OVERRIDE = json.dumps(
    {
        "api": {"memory": 384, "timeout": 12},
        "launcher": {"memory": 640, "timeout": 45},
        "reconciler": {"memory": 768, "timeout": 70},
        "sweep": {"memory": 896, "timeout": 200},
    }
)
SECRETS = json.dumps(
    {
        "slackWebhook": "https://hooks.slack.com/services/T0/B0/cp",
        "notionToken": "secret_cp",
        "notionDatabaseId": "0123456789abcdef0123456789abcdef",
    }
)


@pytest.fixture(scope="module")
def sized() -> StackGraph:
    from tests.fixtures.pulumi_mocks import build_platform_graph

    return build_platform_graph("dev", {"ai-batch:functions": FUNCTIONS_OVERRIDE})


def test_functions_are_arm64_python313_sized_from_config(sized: StackGraph) -> None:
    sizes = json.loads(FUNCTIONS_OVERRIDE)
    for key in KEYS:
        fn = sized.named(FUNCTION, f"platform-control-{key}-function").inputs
        assert fn["name"] == f"ai-batch-dev-{key}"
        assert fn["architectures"] == ["arm64"]
        assert fn["runtime"] == "python3.13"
        assert fn["handler"] == f"handlers.{key}.handler"
        assert int(fn["memorySize"]) == sizes[key]["memory"]
        assert int(fn["timeout"]) == sizes[key]["timeout"]
        # Reserved concurrency stays unset (see ControlPlane's docstring).
        assert "reservedConcurrentExecutions" not in fn or fn["reservedConcurrentExecutions"] in (
            None,
            -1,
        )


def test_each_function_logs_json_to_its_own_log_group(dev_platform: StackGraph) -> None:
    for key in KEYS:
        fn = dev_platform.named(FUNCTION, f"platform-control-{key}-function")
        group = dev_platform.named(
            "aws:cloudwatch/logGroup:LogGroup", f"platform-control-{key}-logs"
        )
        assert group.inputs["name"] == f"/aws/lambda/{fn.inputs['name']}"
        assert group.inputs["retentionInDays"] == 7
        assert fn.inputs["loggingConfig"]["logFormat"] == "JSON"
        assert fn.inputs["loggingConfig"]["logGroup"] == group.inputs["name"]
        assert (
            f"platform-control-{key}-logs" in fn.depends_on
            and f"platform-control-{key}-policy" in fn.depends_on
        )
        stmts = role_policy(dev_platform, f"platform-control-{key}-policy")
        (logs,) = grants(stmts, "logs:PutLogEvents")
        assert logs["Resource"] == [f"{group.outputs['arn']}:log-stream:*"]
        assert set(as_list(logs["Action"])) == {"logs:CreateLogStream", "logs:PutLogEvents"}
        role = dev_platform.named("aws:iam/role:Role", f"platform-control-{key}-role")
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        assert trust == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]


def test_environment_comes_from_the_job_contract(dev_platform: StackGraph) -> None:
    table = dev_platform.named("aws:dynamodb/table:Table", "platform-jobs").outputs
    bucket = dev_platform.named("aws:s3/bucket:Bucket", "platform-results").outputs
    cluster = dev_platform.named("aws:ecs/cluster:Cluster", "platform-cluster").outputs
    topic = dev_platform.named("aws:sns/topic:Topic", "platform-failures").outputs
    sg = dev_platform.of_type("aws:ec2/securityGroup:SecurityGroup")[0].outputs
    for key in KEYS:
        env = dev_platform.named(FUNCTION, f"platform-control-{key}-function").inputs[
            "environment"
        ]["variables"]
        assert env[Env.JOBS_TABLE] == table["name"]
        assert env[Env.RESULTS_BUCKET] == bucket["bucket"]
        assert env[Env.CLUSTER_ARN] == cluster["arn"]
        assert env[Env.FAILURE_TOPIC_ARN] == topic["arn"]
        assert env[Env.SECURITY_GROUPS] == sg["id"]
        assert env[Env.SUBNETS] == "subnet-0a1b2c3d4e5f60001,subnet-0a1b2c3d4e5f60002"
        assert env[Env.ASSIGN_PUBLIC_IP] == "ENABLED"
        assert env[Env.JOB_TTL_DAYS] == "14" and env[Env.STACK] == "dev"
        assert Env.SLACK_WEBHOOK_SECRET_ARN not in env and Env.NOTION_SECRET_ARN not in env
        # Dispatch settings: the one launch queue, its trigger's concurrency, the vCPU budget.
        launch = dev_platform.named("aws:sqs/queue:Queue", "platform-control-launch-queue").outputs
        assert env[Env.LAUNCH_QUEUE_URL] == launch["url"]
        assert env[Env.LAUNCHER_CONCURRENCY] == "2"
        assert env[Env.FARGATE_VCPU_LIMIT] == "6"


def test_one_launch_queue_trigger_with_the_stack_concurrency(
    platform_graph: Callable[..., StackGraph], dev_platform: StackGraph
) -> None:
    (esm,) = dev_platform.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    queue = dev_platform.named("aws:sqs/queue:Queue", "platform-control-launch-queue")
    launcher = dev_platform.named(
        "aws:lambda/function:Function", "platform-control-launcher-function"
    )
    assert esm.inputs["eventSourceArn"] == queue.outputs["arn"]
    assert esm.inputs["functionName"] == launcher.outputs["arn"]
    assert esm.inputs["scalingConfig"] == {"maximumConcurrency": 2}  # AWS minimum, default
    assert (
        "platform-control-launcher-policy" in esm.depends_on
    )  # Lambda checks the consume grant first
    assert queue.inputs["visibilityTimeoutSeconds"] == 6 * launcher.inputs["timeout"]
    graph = platform_graph("dev", {"launcherConcurrency": "8", "fargateVcpuLimit": "0"})
    (esm,) = graph.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert esm.inputs["scalingConfig"] == {"maximumConcurrency": 8}
    env = graph.named("aws:lambda/function:Function", "platform-control-launcher-function").inputs[
        "environment"
    ]
    assert env["variables"][Env.LAUNCHER_CONCURRENCY] == "8"
    assert env["variables"][Env.FARGATE_VCPU_LIMIT] == "0"


def _table_resources(graph: StackGraph) -> list[str]:
    arn = graph.named("aws:dynamodb/table:Table", "platform-jobs").outputs["arn"]
    return [arn, f"{arn}/index/*"]


def test_api_role(dev_platform: StackGraph) -> None:
    stmts = role_policy(dev_platform, "platform-control-api-policy")
    bucket = dev_platform.named("aws:s3/bucket:Bucket", "platform-results").outputs["arn"]
    assert actions_of(stmts) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",  # an array job's children
        "s3:GetObject",
        "s3:PutObject",
        "ecs:StopTask",
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
    }
    cluster = dev_platform.named("aws:ecs/cluster:Cluster", "platform-cluster").outputs["arn"]
    (stop,) = grants(stmts, "ecs:StopTask")
    assert stop["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
    # once per stack, not per worker: the one launch queue by its ARN, never its DLQ
    (send,) = grants(stmts, "sqs:SendMessage")
    (deny,) = [s for s in stmts if s["Effect"] == "Deny"]
    queue = dev_platform.named("aws:sqs/queue:Queue", "platform-control-launch-queue").outputs[
        "arn"
    ]
    dlq = dev_platform.named("aws:sqs/queue:Queue", "platform-control-launch-dlq").outputs["arn"]
    assert queue.endswith(":ai-batch-dev-launch.fifo")
    assert dlq.endswith(":ai-batch-dev-launch-dlq.fifo")
    assert send["Resource"] == [queue]
    assert (deny["Action"], deny["Resource"]) == (["sqs:SendMessage"], [dlq])
    for action in ("dynamodb:GetItem", "dynamodb:Query"):
        (s,) = grants(stmts, action)
        assert s["Resource"] == _table_resources(dev_platform)
    # Results (presigned GETs) and inputs (HeadObject of a manifest), nothing else.
    reads = {r for g in grants(stmts, "s3:GetObject") for r in as_list(g["Resource"])}
    assert reads == {f"{bucket}/results/*", f"{bucket}/inputs/*"}
    (head,) = [g for g in grants(stmts, "s3:GetObject") if g["Sid"] == "HeadManifests"]
    assert as_list(head["Action"]) == ["s3:GetObject"]
    assert grants(stmts, "s3:PutObject")[0]["Resource"] == [f"{bucket}/inputs/*"]


def test_launcher_role_reads_tasks_of_this_cluster_only(dev_platform: StackGraph) -> None:
    stmts = role_policy(dev_platform, "platform-control-launcher-policy")
    cluster = dev_platform.named("aws:ecs/cluster:Cluster", "platform-cluster").outputs["arn"]
    assert actions_of(stmts) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        # a task's lease: created with its claim, deleted when a launch fails for good
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "sqs:SendMessage",  # a woken job whose RunTask must be retried gets a message
        "ecs:DescribeTasks",
        "ecs:StopTask",  # a job cancelled while its launch was under way: stop its task
        "ecs:RunTask",
        "ecs:TagResource",
        "iam:PassRole",
        "sns:Publish",
        # the launch queue, consumed through its event source mapping
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        # an array job's fan-out step: which children exist, its manifest, shard inputs
        "dynamodb:BatchGetItem",
        "s3:GetObject",
        "s3:PutObject",
    }
    (consume,) = grants(stmts, "sqs:ReceiveMessage")
    queue = dev_platform.named("aws:sqs/queue:Queue", "platform-control-launch-queue").outputs[
        "arn"
    ]
    assert consume["Resource"] == [queue]
    (stop,) = grants(stmts, "ecs:StopTask")
    assert stop["Resource"] == ["arn:aws:ecs:us-east-1:123456789012:task/ai-batch-dev/*"]
    assert stop["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
    # Slots are counted in the dispatch state, not with ListTasks; leases only.
    (lease,) = grants(stmts, "dynamodb:DeleteItem")
    assert set(lease["Action"]) == {"dynamodb:PutItem", "dynamodb:DeleteItem"}
    assert lease["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["slot#*"]}}
    # PutItem otherwise only on job rows (an array job's children), never registrations.
    puts = grants(stmts, "dynamodb:PutItem")
    assert sorted(str(p["Condition"]) for p in puts) == sorted(
        str({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [keys]}})
        for keys in ("slot#*", "job#*")
    )
    bucket = dev_platform.named("aws:s3/bucket:Bucket", "platform-results").outputs["arn"]
    for action in ("s3:GetObject", "s3:PutObject"):
        assert [g["Resource"] for g in grants(stmts, action)] == [[f"{bucket}/inputs/*"]]
    (describe,) = grants(stmts, "ecs:DescribeTasks")
    assert describe["Resource"] == ["arn:aws:ecs:us-east-1:123456789012:task/ai-batch-dev/*"]
    assert describe["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
    # RunTask, TagResource and PassRole: once per stack, whatever the number of workers.
    (run,) = grants(stmts, "ecs:RunTask")
    assert run["Resource"] == [
        "arn:aws:ecs:us-east-1:123456789012:task-definition/ai-batch-dev-*:*"
    ]
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
    (tag,) = grants(stmts, "ecs:TagResource")
    assert tag["Resource"] == ["arn:aws:ecs:us-east-1:123456789012:task/ai-batch-dev/*"]
    assert tag["Condition"] == {"StringEquals": {"ecs:CreateAction": "RunTask"}}
    (passes,) = grants(stmts, "iam:PassRole")
    assert passes["Resource"] == ["arn:aws:iam::123456789012:role/aibatch/ai-batch-dev/workers/*"]
    assert passes["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


ACCOUNT = "123456789012"
OWN_CLUSTER = f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/ai-batch-dev"


def _launcher(graph: StackGraph, name: str = "platform-control-launcher-policy") -> list[Policy]:
    return [Policy.parse(name, graph.named("aws:iam/rolePolicy:RolePolicy", name).inputs["policy"])]


def _allowed(policies: list[Policy], action: str, resource: str, **context: object) -> bool:
    request = Request(
        "arn:aws:iam::123456789012:role/launcher", action, resource, dict(context), ACCOUNT
    )
    return evaluate(request, policies).allowed


@pytest.mark.parametrize("neighbour", ["dev2", "dev-x", "de"])
def test_stack_wide_grants_deny_a_neighbouring_stacks_resources(
    dev_platform: StackGraph, neighbour: str
) -> None:
    """The grants name this stack by prefix, path and cluster; a stack whose name extends or
    shortens this one's (dev2, dev-x, de) gets nothing: its cluster differs (ecs:cluster is
    exact), its worker roles live under another path (the path ends in '/'), its tasks under
    another cluster name."""
    launcher = _launcher(dev_platform)
    other = f"ai-batch-{neighbour}"
    own_td = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/ai-batch-dev-summarize:3"
    other_td = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/{other}-summarize:3"
    other_cluster = f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/{other}"
    # Own stack: allowed (so the denials below are about the neighbour, not a broken grant).
    assert _allowed(launcher, "ecs:RunTask", own_td, **{"ecs:cluster": OWN_CLUSTER})
    own_role = f"arn:aws:iam::{ACCOUNT}:role/aibatch/ai-batch-dev/workers/ai-batch-dev-x-task"
    ecs_tasks = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    assert _allowed(launcher, "iam:PassRole", own_role, **ecs_tasks)
    # Neighbour: its task definitions in its cluster, its roles, its tasks.
    assert not _allowed(launcher, "ecs:RunTask", other_td, **{"ecs:cluster": other_cluster})
    assert not _allowed(launcher, "ecs:RunTask", own_td, **{"ecs:cluster": other_cluster})
    other_role = f"arn:aws:iam::{ACCOUNT}:role/aibatch/{other}/workers/{other}-summarize-task"
    assert not _allowed(launcher, "iam:PassRole", other_role, **ecs_tasks)
    # Not under the workers path (a control-plane role of this very stack), or to another service.
    assert not _allowed(launcher, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/x", **ecs_tasks)
    assert not _allowed(
        launcher, "iam:PassRole", own_role, **{"iam:PassedToService": "lambda.amazonaws.com"}
    )
    other_task = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/{other}/0123"
    assert not _allowed(launcher, "ecs:TagResource", other_task, **{"ecs:CreateAction": "RunTask"})
    own_task = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/ai-batch-dev/0123"
    tag_later = {"ecs:CreateAction": "TagResource"}
    assert not _allowed(launcher, "ecs:TagResource", own_task, **tag_later)
    api = _launcher(dev_platform, "platform-control-api-policy")
    own_queue = f"arn:aws:sqs:us-east-1:{ACCOUNT}:ai-batch-dev-launch.fifo"
    assert _allowed(api, "sqs:SendMessage", own_queue)
    dlq = f"arn:aws:sqs:us-east-1:{ACCOUNT}:ai-batch-dev-launch-dlq.fifo"
    assert not _allowed(api, "sqs:SendMessage", dlq)  # never into the DLQ
    # The neighbour's launch queue (for dev-x its name even starts with ai-batch-dev-), and
    # any other queue of this stack: the grant names one queue ARN exactly.
    for queue in (
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:{other}-launch.fifo",
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:ai-batch-dev-summarize.fifo",
    ):
        assert not _allowed(api, "sqs:SendMessage", queue)


def test_sweep_role_stops_tasks_of_this_cluster_only(dev_platform: StackGraph) -> None:
    stmts = role_policy(dev_platform, "platform-control-sweep-policy")
    cluster = dev_platform.named("aws:ecs/cluster:Cluster", "platform-cluster").outputs["arn"]
    (stop,) = grants(stmts, "ecs:StopTask")
    assert stop["Resource"] == ["arn:aws:ecs:us-east-1:123456789012:task/ai-batch-dev/*"]
    assert stop["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
    assert set(as_list(grants(stmts, "dynamodb:UpdateItem")[0]["Action"])) == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
    }
    # It deletes only task leases (the slots of tasks whose STOPPED event was lost).
    (delete,) = grants(stmts, "dynamodb:DeleteItem")
    assert as_list(delete["Action"]) == ["dynamodb:DeleteItem"]
    assert delete["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["slot#*"]}}


def test_reconciler_reads_only_the_notification_secrets(
    platform_graph: Callable[..., StackGraph], dev_platform: StackGraph
) -> None:
    plain = role_policy(dev_platform, "platform-control-reconciler-policy")
    assert not grants(plain, "secretsmanager:GetSecretValue")
    topic = dev_platform.named("aws:sns/topic:Topic", "platform-failures").outputs["arn"]
    assert grants(plain, "sns:Publish")[0]["Resource"] == [topic]

    graph = platform_graph("dev", {"ai-batch:notifications": SECRETS})
    stmts = role_policy(graph, "platform-control-reconciler-policy")
    secrets = {s.outputs["arn"] for s in graph.of_type("aws:secretsmanager/secret:Secret")}
    assert len(secrets) == 2
    (read,) = grants(stmts, "secretsmanager:GetSecretValue")
    assert set(read["Resource"]) == secrets
    env = graph.named(FUNCTION, "platform-control-reconciler-function").inputs["environment"][
        "variables"
    ]
    assert {env[Env.SLACK_WEBHOOK_SECRET_ARN], env[Env.NOTION_SECRET_ARN]} == secrets
    # The API handler never reads notification secrets.
    assert not grants(
        role_policy(graph, "platform-control-api-policy"), "secretsmanager:GetSecretValue"
    )


def test_prod_publishers_may_use_the_topic_key(prod_platform: StackGraph) -> None:
    key = prod_platform.named("aws:kms/key:Key", "platform-topic-key").outputs["arn"]
    for key_name in ("launcher", "reconciler", "sweep"):
        (kms,) = grants(
            role_policy(prod_platform, f"platform-control-{key_name}-policy"), "kms:GenerateDataKey"
        )
        assert kms["Resource"] == [key]
    assert not grants(
        role_policy(prod_platform, "platform-control-api-policy"), "kms:GenerateDataKey"
    )


def test_reconciler_rule_matches_stopped_tasks_of_this_cluster_only(
    dev_platform: StackGraph,
) -> None:
    cluster = dev_platform.named("aws:ecs/cluster:Cluster", "platform-cluster").outputs["arn"]
    rule = dev_platform.named("aws:cloudwatch/eventRule:EventRule", "platform-control-task-stopped")
    assert json.loads(rule.inputs["eventPattern"]) == {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {"clusterArn": [cluster], "lastStatus": ["STOPPED"]},
    }
    reconciler = dev_platform.named(FUNCTION, "platform-control-reconciler-function").outputs
    target = dev_platform.named(
        "aws:cloudwatch/eventTarget:EventTarget", "platform-control-task-stopped-target"
    ).inputs
    assert target["arn"] == reconciler["arn"] and target["rule"] == rule.outputs["name"]
    permission = dev_platform.named(
        "aws:lambda/permission:Permission", "platform-control-task-stopped-invoke"
    ).inputs
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["sourceArn"] == rule.outputs["arn"]
    assert permission["function"] == reconciler["name"]
    assert permission["action"] == "lambda:InvokeFunction"


def test_sweep_runs_on_the_configured_schedule(
    dev_platform: StackGraph, prod_platform: StackGraph
) -> None:
    for graph, rate in ((dev_platform, "rate(10 minutes)"), (prod_platform, "rate(5 minutes)")):
        rule = graph.named("aws:cloudwatch/eventRule:EventRule", "platform-control-sweep-schedule")
        assert rule.inputs["scheduleExpression"] == rate
        sweep = graph.named(FUNCTION, "platform-control-sweep-function").outputs
        permission = graph.named(
            "aws:lambda/permission:Permission", "platform-control-sweep-schedule-invoke"
        ).inputs
        assert permission["sourceArn"] == rule.outputs["arn"]
        assert permission["function"] == sweep["name"]


def test_provisioned_concurrency_uses_a_live_alias(
    platform_graph: Callable[..., StackGraph],
) -> None:
    graph = platform_graph(
        "dev", {"ai-batch:functions": json.dumps({"api": {"provisionedConcurrency": 2}})}
    )
    api = graph.named(FUNCTION, "platform-control-api-function")
    assert api.inputs["publish"] is True
    alias = graph.named("aws:lambda/alias:Alias", "platform-control-api-alias")
    assert (
        alias.inputs["name"] == "live" and alias.inputs["functionVersion"] == api.outputs["version"]
    )
    config = graph.named(
        "aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig",
        "platform-control-api-provisioned",
    ).inputs
    assert config["qualifier"] == "live" and config["provisionedConcurrentExecutions"] == 2
    # Only the API handler gets warm instances.
    assert len(graph.of_type("aws:lambda/alias:Alias")) == 1


def test_code_zip_holds_only_handler_and_contract_sources() -> None:
    names = sorted(code_archive().assets)
    assert "jobcontract/__init__.py" in names
    assert any(n.startswith("handlers/") for n in names)
    for name in names:
        assert name.endswith(".py"), name
        assert name.split("/")[0] in ("handlers", "jobcontract"), name
        assert "__pycache__" not in name and "/tests/" not in name and "/test_" not in name


def test_reconciler_creates_only_job_rows_and_deletes_only_leases(
    dev_platform: StackGraph,
) -> None:
    stmts = role_policy(dev_platform, "platform-control-reconciler-policy")
    table = {a for a in actions_of(stmts) if a.startswith("dynamodb:")}
    assert table == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",  # the jobs a reused task ran before its last
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",  # a stopped task's lease, nothing else
    }
    (delete,) = grants(stmts, "dynamodb:DeleteItem")
    assert as_list(delete["Action"]) == ["dynamodb:DeleteItem"]
    assert delete["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["slot#*"]}}
    # PutItem records a scheduled run whose task stopped first: job rows only, never the
    # worker registrations or the API's config item.
    (put,) = grants(stmts, "dynamodb:PutItem")
    assert as_list(put["Action"]) == ["dynamodb:PutItem"]
    assert put["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["job#*"]}}


@pytest.mark.parametrize(
    ("actions", "resources", "effect", "problem"),
    [
        (["s3:*"], ["arn:aws:s3:::b/*"], "Allow", "no wildcards"),
        (["s3:Get*"], ["arn:aws:s3:::b/*"], "Allow", "no wildcards"),
        (["s3:GetObject"], ["*"], "Allow", 'Resource "*"'),
        (["GetObject"], ["arn:aws:s3:::b/*"], "Allow", "service:Action"),
        (["s3:GetObject"], [], "Allow", "at least one resource"),
        (["s3:GetObject"], ["arn:aws:s3:::b/*"], "Maybe", "Allow or Deny"),
    ],
)
def test_statements_refuse_wildcards_and_unscoped_resources(
    actions: list[str], resources: list[str], effect: str, problem: str
) -> None:

    with pytest.raises(ValueError, match=problem.replace("*", "\\*")):
        iam.Statement(actions, resources, effect=effect)


def test_star_resource_allowed_only_for_actions_aws_cannot_scope() -> None:

    assert iam.Statement(["ecr:GetAuthorizationToken"], ["*"]).resources == ["*"]
    assert iam.Statement(["s3:*"], ["*"], effect="Deny").effect == "Deny"  # deny may be broad


def test_bedrock_grants_name_the_model(run_component: Callable[..., StackGraph]) -> None:
    """AWS rules (Bedrock user guide, Geographic / Global cross-Region inference, IAM policy
    requirements): a foundation model is granted in this Region; a Geographic profile on the
    profile plus the model in every destination Region; a global profile on the profile, the
    model in the source Region and the Region-less model ARN."""

    got: dict[str, list[str]] = {}

    def program() -> None:
        import pulumi

        for model in (
            "amazon.nova-lite-v1:0",
            "us.amazon.nova-lite-v1:0",
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
        ):
            arns = iam.bedrock_model_arns(model, "us-east-1", "123456789012")
            pulumi.Output.all(*arns).apply(lambda a, m=model: got.setdefault(m, list(a)))

    run_component(program)
    assert got["amazon.nova-lite-v1:0"] == [
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0"
    ]
    assert got["us.amazon.nova-lite-v1:0"] == [
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0",
        "arn:aws:bedrock:*::foundation-model/amazon.nova-lite-v1:0",
    ]
    model = "anthropic.claude-haiku-4-5-20251001-v1:0"
    assert got[f"global.{model}"] == [
        f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.{model}",
        f"arn:aws:bedrock:us-east-1::foundation-model/{model}",
        f"arn:aws:bedrock:::foundation-model/{model}",
    ]


def test_api_role_puts_objects_under_inputs_only(dev_platform: StackGraph) -> None:
    """What a POST /uploads form (authorized as the API role's s3:PutObject on its key) can
    reach: any worker's inputs, nothing else in the bucket, nothing in another bucket."""
    policies = _launcher(dev_platform, "platform-control-api-policy")
    bucket = dev_platform.named("aws:s3/bucket:Bucket", "platform-results").outputs["arn"]
    upload = f"{bucket}/inputs/image-alt-generator/{'a' * 32}/a.png"
    assert _allowed(policies, "s3:PutObject", upload)
    assert _allowed(policies, "s3:PutObject", f"{bucket}/inputs/content-analyzer/x.json")
    for elsewhere in (
        f"{bucket}/results/image-alt-generator/job/result.json",
        f"{bucket}/a.png",
        f"{bucket}/inputsx/a.png",
        f"{bucket}/Inputs/a.png",
        "arn:aws:s3:::another-bucket/inputs/a.png",
    ):
        assert not _allowed(policies, "s3:PutObject", elsewhere), elsewhere
    (write,) = grants(role_policy(dev_platform, "platform-control-api-policy"), "s3:PutObject")
    assert write["Sid"] == "WriteInputs" and as_list(write["Action"]) == ["s3:PutObject"]


@pytest.mark.parametrize(
    "role", ["platform-control-reconciler-policy", "platform-control-sweep-policy"]
)
def test_array_merge_writes_only_merged_results(dev_platform: StackGraph, role: str) -> None:
    """The reconciler and the sweep merge array jobs: they read children's result.json and
    write a parent's results.jsonl and summary.json, and nothing else in the bucket (not a
    worker's own result, not an input); the API, which only counts ends, writes none."""
    bucket = dev_platform.named("aws:s3/bucket:Bucket", "platform-results").outputs["arn"]
    policies = _launcher(dev_platform, role)
    parent = f"{bucket}/results/docs/docs_{'a' * 32}"
    assert _allowed(policies, "s3:GetObject", f"{bucket}/results/docs/docs_{'b' * 32}/result.json")
    assert _allowed(policies, "s3:PutObject", f"{parent}/results.jsonl")
    assert _allowed(policies, "s3:PutObject", f"{parent}/summary.json")
    assert not _allowed(policies, "s3:PutObject", f"{parent}/result.json")
    assert not _allowed(policies, "s3:PutObject", f"{bucket}/inputs/docs/x.json")
    # Inputs are read by the reconciler only: the manifest of a scheduled array job (HeadObject).
    reads_inputs = role == "platform-control-reconciler-policy"
    assert _allowed(policies, "s3:GetObject", f"{bucket}/inputs/docs/x.json") == reads_inputs
    assert not _allowed(
        policies, "s3:PutObject", "arn:aws:s3:::other-bucket/results/a/results.jsonl"
    )
    api = _launcher(dev_platform, "platform-control-api-policy")
    assert not _allowed(api, "s3:PutObject", f"{parent}/results.jsonl")


def test_reconciler_may_head_manifests_of_scheduled_array_jobs(dev_platform: StackGraph) -> None:
    """A scheduled array job with a manifest is checked by the reconciler (HeadObject, as the
    API checks ``POST /jobs``): ``s3:GetObject`` on ``inputs/*``, read only."""
    stmts = role_policy(dev_platform, "platform-control-reconciler-policy")
    bucket = dev_platform.named("aws:s3/bucket:Bucket", "platform-results").outputs["arn"]
    (head,) = [g for g in stmts if g.get("Sid") == "HeadScheduledManifests"]
    assert as_list(head["Action"]) == ["s3:GetObject"]
    assert as_list(head["Resource"]) == [f"{bucket}/inputs/*"]
    writes = {r for g in grants(stmts, "s3:PutObject") for r in as_list(g["Resource"])}
    assert not any("/inputs/" in r for r in writes)
