"""The real ``__main__.py`` under mocks, for dev and prod: inventory, exports, stack differences
and the properties every resource of the program must have, whichever component made it."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from components import iam
from components.offline import StackGraph
from components.seed_workers import SEED_SCHEDULES, SEED_WORKERS
from tests.infra.policies import as_list, identity_policies

pytestmark = pytest.mark.xdist_group("pulumi")

WORKERS = sorted(w.name for w in SEED_WORKERS)
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
# What alarms=true adds on top of the same program: Observability (8 Lambda + 2 API alarms,
# one dashboard), the customer managed key CloudWatch needs to publish to the encrypted
# topic, and one alarm per dead-letter queue (the launch JobQueue, each ScheduledTask).
OBSERVABILITY_ALARMS = 10


def _ancestors(graph: StackGraph, name: str) -> list[str]:
    by_name = {r.name: r for r in graph.resources}
    chain, current = [], by_name[name].parent
    while current is not None:
        chain.append(current)
        current = by_name[current].parent
    return chain


def test_exports(dev_graph: StackGraph, prod_graph: StackGraph) -> None:
    for stack, graph in (("dev", dev_graph), ("prod", prod_graph)):
        e = graph.exports
        assert e["apiUrl"].startswith("https://") and e["apiUrl"].endswith("/v1")
        assert isinstance(e["apiKey"], str) and len(e["apiKey"]) >= 20
        assert e["apiKeyId"]
        assert e["jobsTable"] == f"ai-batch-{stack}-jobs"
        assert e["resultsBucket"].startswith(f"ai-batch-{stack}-results-")
        assert e["clusterArn"].endswith(f":cluster/ai-batch-{stack}")
        assert e["clusterName"] == f"ai-batch-{stack}"
        assert e["failureTopicArn"].endswith(f":ai-batch-{stack}-job-failures")
        assert sorted(e["queueUrls"]) == WORKERS == sorted(e["dlqUrls"])
        for urls in (e["queueUrls"], e["dlqUrls"]):
            assert all(u.endswith(".fifo") for u in urls.values())
        assert not set(e["queueUrls"].values()) & set(e["dlqUrls"].values())
        # Every worker's jobs go through the stack's one launch queue.
        assert e["launchQueueUrl"].endswith(f"/ai-batch-{stack}-launch.fifo")
        assert e["launchDlqUrl"].endswith(f"/ai-batch-{stack}-launch-dlq.fifo")
        assert set(e["queueUrls"].values()) == {e["launchQueueUrl"]}
        assert set(e["dlqUrls"].values()) == {e["launchDlqUrl"]}


def test_inventory_scales_with_the_seed_workers(dev_graph: StackGraph) -> None:
    counts = dev_graph.types()
    n = len(WORKERS)
    assert counts["aibatch:index:BatchPlatform"] == 1
    assert counts["aibatch:index:ControlPlane"] == 1
    assert counts["aibatch:index:BatchApi"] == 1
    assert counts["aibatch:index:FargateWorker"] == n
    assert counts["aibatch:index:JobQueue"] == 1  # the launch queue, whatever n is
    assert counts["aws:lambda/eventSourceMapping:EventSourceMapping"] == 1
    assert counts["aibatch:index:ScheduledTask"] == len(SEED_SCHEDULES) == 2
    assert counts["aws:lambda/function:Function"] == 4  # the control plane only
    assert counts["aws:ecs/cluster:Cluster"] == 1
    assert counts["aws:dynamodb/table:Table"] == 1
    assert counts["aws:s3/bucket:Bucket"] == 1
    assert counts["aws:sns/topic:Topic"] == 1
    assert counts["aws:ecr/repository:Repository"] == n
    assert counts["docker:index/image:Image"] == n
    assert counts["aws:ecs/taskDefinition:TaskDefinition"] == n
    # The launch queue and its DLQ, the reconciler's failed events, each schedule's DLQ.
    assert counts["aws:sqs/queue:Queue"] == 3 + counts.get("aibatch:index:ScheduledTask", 0) * (
        1 if _scheduler_dlq(dev_graph) else 0
    )
    # one registration per worker + the API endpoint item (notification links)
    assert counts["aws:dynamodb/tableItem:TableItem"] == n + 1
    assert counts["aws:scheduler/schedule:Schedule"] == len(SEED_SCHEDULES)
    assert counts["aws:apigateway/restApi:RestApi"] == 1
    assert "aibatch:index:Observability" not in counts
    assert ALARM not in counts and "aws:cloudwatch/dashboard:Dashboard" not in counts


def _scheduler_dlq(graph: StackGraph) -> bool:
    schedules = graph.of_type("aws:scheduler/schedule:Schedule")
    return all(bool(s.inputs["target"].get("deadLetterConfig")) for s in schedules)


def test_prod_differs_from_dev_exactly_by_observability(
    dev_graph: StackGraph, prod_graph: StackGraph
) -> None:
    dev, prod = Counter(dev_graph.types()), Counter(prod_graph.types())
    # Both stacks set API Gateway's account-wide CloudWatch role themselves (each deploys
    # alone in a fresh account), so dev has nothing prod lacks.
    assert dict(dev - prod) == {}
    added = dict(prod - dev)
    # One DLQ alarm per dead-letter queue: the launch queue's, the reconciler's failed
    # events, and each scheduled task's.
    dlq_alarms = 2 + dev["aibatch:index:ScheduledTask"]
    assert added == {
        "aibatch:index:Observability": 1,
        "aws:cloudwatch/dashboard:Dashboard": 1,
        "aws:kms/key:Key": 1,
        ALARM: OBSERVABILITY_ALARMS + dlq_alarms,
    }
    topic_arn = prod_graph.exports["failureTopicArn"]
    for alarm in prod_graph.of_type(ALARM):
        assert alarm.inputs["alarmActions"] == [topic_arn], alarm.name


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_each_stack_deploys_alone_with_access_logs(
    stack: str, dev_graph: StackGraph, prod_graph: StackGraph
) -> None:
    # A fresh account has no API Gateway CloudWatch role setting, and CreateStage with access
    # logs fails without it: the committed stack writes it, before the stage, to its own role.
    graph = {"dev": dev_graph, "prod": prod_graph}[stack]
    (stage,) = graph.of_type("aws:apigateway/stage:Stage")
    assert stage.inputs["accessLogSettings"]["destinationArn"]
    (account,) = graph.of_type("aws:apigateway/account:Account")
    role = graph.named("aws:iam/role:Role", "api-cloudwatch-role")
    assert account.inputs["cloudwatchRoleArn"] == role.outputs["arn"]
    assert role.inputs["namePrefix"].startswith(f"ai-batch-{stack}-")
    assert account.name in stage.depends_on
    assert account.retain_on_delete and role.retain_on_delete


def test_dev_and_prod_settings_differ_where_expected(
    dev_graph: StackGraph, prod_graph: StackGraph
) -> None:
    def table(g: StackGraph) -> dict[str, object]:
        return g.of_type("aws:dynamodb/table:Table")[0].inputs

    assert table(dev_graph)["pointInTimeRecovery"] == {"enabled": False}
    assert table(prod_graph)["pointInTimeRecovery"] == {"enabled": True}
    for graph, days in ((dev_graph, 7), (prod_graph, 90)):
        groups = graph.of_type("aws:cloudwatch/logGroup:LogGroup")
        assert len(groups) >= 4 + len(WORKERS)
        assert {g.name: g.inputs.get("retentionInDays") for g in groups} == {
            g.name: days for g in groups
        }
    protected = {(r.type, r.name) for r in prod_graph.resources if r.protect}
    assert ("aws:dynamodb/table:Table", "platform-jobs") in protected
    assert ("aws:s3/bucket:Bucket", "platform-results") in protected
    # dev is deletable, except API Gateway's account-wide CloudWatch role and setting, which
    # another stack's access logs may go through (components.api_logs).
    assert not [r.name for r in dev_graph.resources if r.protect]
    assert {r.name for r in dev_graph.resources if r.retain_on_delete} == {
        "api-cloudwatch-role",
        "api-cloudwatch-logs",
        "api-cloudwatch-account-setting",
    }
    spot = {
        g: [
            s["capacityProvider"]
            for s in graph.of_type("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")[
                0
            ].inputs["defaultCapacityProviderStrategies"]
        ]
        for g, graph in (("dev", dev_graph), ("prod", prod_graph))
    }
    assert spot == {"dev": ["FARGATE_SPOT"], "prod": ["FARGATE_SPOT", "FARGATE"]}


def test_every_identity_policy_is_action_level_and_scoped(
    dev_graph: StackGraph, prod_graph: StackGraph
) -> None:
    for graph in (dev_graph, prod_graph):
        count = 0
        for owner, stmts in identity_policies(graph):
            for s in stmts:
                if s["Effect"] != "Allow":
                    continue
                count += 1
                actions = as_list(s["Action"])
                assert all("*" not in a for a in actions), (owner.name, s)
                if "*" in as_list(s["Resource"]):
                    assert set(actions) <= iam.STAR_RESOURCE_ACTIONS, (owner.name, s)
        assert count > 30


def test_workers_may_invoke_only_the_configured_model(dev_graph: StackGraph) -> None:
    model = "amazon.nova-lite-v1:0"  # the default: Active, In-Region in us-east-1
    expected = [f"arn:aws:bedrock:us-east-1::foundation-model/{model}"]
    invoking = [
        s
        for _, stmts in identity_policies(dev_graph)
        for s in stmts
        if "bedrock:InvokeModel" in as_list(s["Action"])
    ]
    assert len(invoking) == len(WORKERS)
    assert all(s["Resource"] == expected for s in invoking)


def test_everything_belongs_to_a_component(dev_graph: StackGraph) -> None:
    top_level = {r.name for r in dev_graph.resources if r.parent is None}
    assert all(
        r.type.startswith("aibatch:index:") for r in dev_graph.resources if r.parent is None
    ), top_level
    seen = Counter((r.type, r.name) for r in dev_graph.resources)
    assert [k for k, v in seen.items() if v > 1] == []
    # The reconciler and launcher live inside the platform's control plane.
    assert _ancestors(dev_graph, "platform-control-reconciler-function")[-2:] == [
        "platform-control",
        "platform",
    ]


def test_prod_alarms_watch_every_function_and_the_api(prod_graph: StackGraph) -> None:
    import json

    alarms = {a.name: a.inputs for a in prod_graph.of_type(ALARM) if a.parent == "observability"}
    functions = {f.inputs["name"] for f in prod_graph.of_type("aws:lambda/function:Function")}
    watched = {
        (a["dimensions"]["FunctionName"], a["metricName"])
        for a in alarms.values()
        if a["namespace"] == "AWS/Lambda"
    }
    assert watched == {(f, m) for f in functions for m in ("Errors", "Throttles")}
    (api,) = prod_graph.of_type("aws:apigateway/restApi:RestApi")
    api_alarms = {a["metricName"]: a for a in alarms.values() if a["namespace"] == "AWS/ApiGateway"}
    assert set(api_alarms) == {"5XXError", "Latency"}
    assert api_alarms["5XXError"]["statistic"] == "Average"  # 0/1 per request: a rate
    assert 0 < api_alarms["5XXError"]["threshold"] < 1
    assert api_alarms["Latency"]["extendedStatistic"] == "p99"
    for alarm in api_alarms.values():
        assert alarm["dimensions"]["ApiName"] == api.outputs["name"]
        assert alarm["dimensions"]["Stage"] == "v1"
    (dashboard,) = prod_graph.of_type("aws:cloudwatch/dashboard:Dashboard")
    body = json.loads(dashboard.inputs["dashboardBody"])
    text = json.dumps(body)
    urls = [*prod_graph.exports["queueUrls"].values(), *prod_graph.exports["dlqUrls"].values()]
    queue_names = [url.rsplit("/", 1)[1] for url in urls]
    assert len(queue_names) == 2 * len(WORKERS)
    assert all(f'"{name}"' in text for name in queue_names)
    titles = {w["properties"]["title"] for w in body["widgets"]}
    assert {"API latency (ms)", "Running tasks", "Lambda errors and throttles"} <= titles


def test_offline_runs_are_isolated_and_resolve_every_output() -> None:
    import pulumi
    import pulumi_aws as aws

    from components.offline import run_program

    applied: list[str] = []

    def program() -> None:
        queue = aws.sqs.Queue("q", name="x.fifo", fifo_queue=True)
        secret = pulumi.Output.secret(pulumi.Config("ai-batch").require("token"))
        aws.secretsmanager.SecretVersion("v", secret_id="s", secret_string=secret)
        queue.arn.apply(applied.append)
        pulumi.export("url", queue.url)
        pulumi.export("token", secret)

    first = run_program(program, config={"ai-batch:token": "t0ken"})
    second = run_program(program, stack="prod", config={"ai-batch:token": "other"})
    assert len(first.resources) == len(second.resources) == 2
    assert applied == ["arn:aws:sqs:us-east-1:123456789012:x.fifo"] * 2
    assert first.exports == {
        "url": "https://sqs.us-east-1.amazonaws.com/123456789012/x.fifo",
        "token": "t0ken",
    }
    version = second.named("aws:secretsmanager/secretVersion:SecretVersion", "v")
    assert version.inputs["secretString"] == "other"  # secret envelope unwrapped
    with pytest.raises(KeyError, match="candidates: \\['q'\\]"):
        second.named("aws:sqs/queue:Queue", "missing")


def test_offline_refuses_unmocked_provider_calls() -> None:
    import pulumi_aws as aws

    from components.offline import run_program

    def program() -> None:
        aws.ec2.get_ami(most_recent=True, owners=["amazon"])

    with pytest.raises(Exception, match="no mocked answer for provider call aws:ec2/getAmi"):
        run_program(program)


def test_each_worker_registers_the_input_schema_of_its_folder(dev_graph: StackGraph) -> None:
    """The API validates inputs against the registered schema; it must be the file that sits
    beside the worker's code (``workers/<name>/input_schema.json``), not a copy."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    registered = {}
    for item in dev_graph.of_type("aws:dynamodb/tableItem:TableItem"):
        attrs = json.loads(item.inputs["item"])
        if attrs["kind"]["S"] != "worker":
            continue
        registered[attrs["name"]["S"]] = json.loads(attrs["input_schema"]["S"])
    assert set(registered) == {w.name for w in SEED_WORKERS}
    for name, schema in registered.items():
        assert schema == json.loads((root / "workers" / name / "input_schema.json").read_text())


def test_nothing_can_run_a_task_before_the_capacity_providers_exist(dev_graph: StackGraph) -> None:
    """AWS rule: RunTask with a capacity provider strategy fails until the providers are attached
    (ClusterCapacityProviders); registrations (the API's door) and schedules wait for them."""
    starters = [
        *dev_graph.of_type("aws:dynamodb/tableItem:TableItem"),
        *dev_graph.of_type("aws:scheduler/schedule:Schedule"),
    ]
    registrations = [r for r in starters if r.name.endswith("-registration")]
    schedules = [r for r in starters if r.type.startswith("aws:scheduler")]
    assert registrations and schedules
    for resource in (*registrations, *schedules):
        assert "platform-capacity" in resource.depends_on, resource.name


# AWS rule (IAM quotas): the inline policies of one role total at most 10,240 characters,
# whitespace not counted. Every worker adds inline policies to the control-plane roles, so the
# launcher's total grows with each worker and `pulumi up` fails with LimitExceeded past it.
ROLE_INLINE_POLICY_MAX_CHARS = 10_240


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_inline_policies_per_role_fit_the_iam_quota(
    stack: str, dev_graph: StackGraph, prod_graph: StackGraph
) -> None:
    graph = dev_graph if stack == "dev" else prod_graph
    per_role: Counter[str] = Counter()
    for policy in graph.of_type("aws:iam/rolePolicy:RolePolicy"):
        text = policy.inputs["policy"]
        per_role[str(policy.inputs["role"])] += len("".join(text.split()))
    assert per_role, "no inline policies recorded"
    role, size = per_role.most_common(1)[0]
    # Headroom for at least as many workers again as the seed set.
    launcher = next(r for r in per_role if r.startswith("launcher-role"))
    per_worker = sum(
        len("".join(p.inputs["policy"].split()))
        for p in graph.of_type("aws:iam/rolePolicy:RolePolicy")
        if p.inputs["role"] == launcher and p.name.startswith(tuple(WORKERS))
    ) / len(WORKERS)
    assert size + per_worker * len(WORKERS) <= ROLE_INLINE_POLICY_MAX_CHARS, (role, size)
