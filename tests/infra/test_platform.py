"""BatchPlatform under mocks: the properties that matter, dev vs prod, public vs private."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from components import iam
from components.offline import OFFLINE_SECRET, StackGraph
from jobcontract import Table
from tests.infra.policies import as_list, identity_policies, statements

TABLE = "aws:dynamodb/table:Table"
BUCKET = "aws:s3/bucket:Bucket"
PRIVATE_NETWORK = json.dumps(
    {
        "mode": "private",
        "vpcId": "vpc-0abc1234",
        "subnetIds": ["subnet-0abc1234", "subnet-0abc1235"],
        "routeTableIds": ["rtb-0abc1234", "rtb-0abc1235"],
    }
)
NOTIFICATIONS = json.dumps(
    {
        "email": "oncall@example.com",
        "slackWebhook": "https://hooks.slack.com/services/T0/B0/platform-test-webhook",
        "notionToken": "secret_platform_test_token",
        "notionDatabaseId": "0123456789abcdef0123456789abcdef",
    }
)


def _graphs(dev: StackGraph, prod: StackGraph) -> list[tuple[str, StackGraph]]:
    return [("dev", dev), ("prod", prod)]


def test_no_wildcard_actions_and_star_resources_only_where_aws_requires(
    dev_platform: StackGraph, prod_platform: StackGraph
) -> None:
    checked = 0
    for _, graph in _graphs(dev_platform, prod_platform):
        for owner, stmts in identity_policies(graph):
            for s in stmts:
                actions = as_list(s["Action"])
                assert all("*" not in a for a in actions), (owner.name, s)
                if "*" in as_list(s["Resource"]):
                    assert set(actions) <= iam.STAR_RESOURCE_ACTIONS, (owner.name, s)
                    assert "Condition" in s, (owner.name, s)  # still narrowed by a condition
                checked += 1
    assert checked >= 20
    # No AWS managed policy attachments (e.g. AWSLambdaBasicExecutionRole: every log group).
    assert not dev_platform.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")


def test_every_log_group_has_the_stack_retention(
    dev_platform: StackGraph, prod_platform: StackGraph
) -> None:
    for stack, graph, days in (("dev", dev_platform, 7), ("prod", prod_platform, 90)):
        groups = graph.of_type("aws:cloudwatch/logGroup:LogGroup")
        assert len(groups) == 4, stack
        assert {g.inputs.get("retentionInDays") for g in groups} == {days}, stack


def test_jobs_table(dev_platform: StackGraph, prod_platform: StackGraph) -> None:
    for stack, graph in _graphs(dev_platform, prod_platform):
        table = graph.named(TABLE, "platform-jobs").inputs
        assert table["billingMode"] == "PAY_PER_REQUEST"
        assert table["hashKey"] == Table.PK and "rangeKey" not in table
        assert table["name"] == f"ai-batch-{stack}-jobs"
        indexes = {
            gsi["name"]: (
                [k["attributeName"] for k in gsi["keySchemas"] if k["keyType"] == "HASH"],
                [k["attributeName"] for k in gsi["keySchemas"] if k["keyType"] == "RANGE"],
                gsi["projectionType"],
            )
            for gsi in table["globalSecondaryIndexes"]
        }
        assert indexes == {n: ([h], [r], "ALL") for n, h, r in Table.INDEXES}
        declared = {a["name"]: a["type"] for a in table["attributes"]}
        key_attrs = {Table.PK} | {k for _, h, r in Table.INDEXES for k in (h, r)}
        assert declared == dict.fromkeys(key_attrs, "S")  # DynamoDB: only key attributes
        assert table["ttl"] == {"attributeName": Table.TTL_ATTRIBUTE, "enabled": True}
        assert table["serverSideEncryption"]["enabled"] is True

    dev = dev_platform.named(TABLE, "platform-jobs")
    prod = prod_platform.named(TABLE, "platform-jobs")
    assert dev.inputs["pointInTimeRecovery"]["enabled"] is False
    assert prod.inputs["pointInTimeRecovery"]["enabled"] is True
    assert dev.inputs.get("deletionProtectionEnabled") is False
    assert prod.inputs["deletionProtectionEnabled"] is True
    assert (dev.protect, dev.retain_on_delete) == (False, False)
    assert (prod.protect, prod.retain_on_delete) == (True, True)


def test_results_bucket_is_private_encrypted_tls_only_and_expires(
    dev_platform: StackGraph, prod_platform: StackGraph
) -> None:
    for stack, graph, results_days, inputs_days in (
        ("dev", dev_platform, 7, 15),
        ("prod", prod_platform, 90, 91),
    ):
        bucket = graph.named(BUCKET, "platform-results")
        assert bucket.inputs["bucketPrefix"] == f"ai-batch-{stack}-results-"
        assert bucket.inputs["forceDestroy"] is (stack == "dev")
        assert (bucket.protect, bucket.retain_on_delete) == ((stack == "prod"),) * 2
        bucket_id = bucket.outputs["id"]

        block = graph.named(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "platform-results-public-access",
        ).inputs
        assert block["bucket"] == bucket_id
        for flag in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        ):
            assert block[flag] is True, flag

        ownership = graph.named(
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "platform-results-ownership"
        ).inputs
        assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"

        sse = graph.named(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "platform-results-encryption",
        ).inputs
        assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"

        lifecycle = graph.named(
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
            "platform-results-lifecycle",
        ).inputs
        expiry = {
            r["filter"]["prefix"]: r["expiration"]["days"]
            for r in lifecycle["rules"]
            if r.get("expiration") and r["status"] == "Enabled"
        }
        assert expiry == {"results/": results_days, "inputs/": inputs_days}

        policy = graph.named("aws:s3/bucketPolicy:BucketPolicy", "platform-results-tls-only")
        (deny,) = statements(policy.inputs["policy"])
        arn = bucket.outputs["arn"]
        assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert set(deny["Resource"]) == {arn, f"{arn}/*"}
        assert "platform-results-public-access" in policy.depends_on


def test_failure_topic_encrypted_tls_only_and_alarm_capable_in_prod(
    dev_platform: StackGraph, prod_platform: StackGraph
) -> None:
    dev_topic = dev_platform.named("aws:sns/topic:Topic", "platform-failures")
    assert dev_topic.inputs["kmsMasterKeyId"] == "alias/aws/sns"
    assert not dev_platform.of_type("aws:kms/key:Key")

    prod_topic = prod_platform.named("aws:sns/topic:Topic", "platform-failures")
    key = prod_platform.named("aws:kms/key:Key", "platform-topic-key")
    assert prod_topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    key_statements = statements(key.inputs["policy"])
    cloudwatch = [
        s for s in key_statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch and set(as_list(cloudwatch[0]["Action"])) == {
        "kms:Decrypt",
        "kms:GenerateDataKey*",
    }

    for _, graph in _graphs(dev_platform, prod_platform):
        topic_arn = graph.named("aws:sns/topic:Topic", "platform-failures").outputs["arn"]
        policy = statements(
            graph.named("aws:sns/topicPolicy:TopicPolicy", "platform-failures-policy").inputs[
                "policy"
            ]
        )
        deny = [s for s in policy if s["Effect"] == "Deny"]
        assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert deny[0]["Resource"] == [topic_arn]
        allows = [s for s in policy if s["Effect"] == "Allow"]
        assert all(s["Principal"] == {"Service": ["cloudwatch.amazonaws.com"]} for s in allows)
        assert all("aws:SourceAccount" in s["Condition"]["StringEquals"] for s in allows)
        assert not graph.of_type("aws:sns/topicSubscription:TopicSubscription")
        assert not graph.of_type("aws:secretsmanager/secret:Secret")


def test_notifications_email_and_secrets_from_secret_config(
    platform_graph: Callable[..., StackGraph],
) -> None:
    graph = platform_graph("dev", {"ai-batch:notifications": NOTIFICATIONS})
    sub = graph.named("aws:sns/topicSubscription:TopicSubscription", "platform-failures-email")
    assert sub.inputs["protocol"] == "email" and sub.inputs["endpoint"] == "oncall@example.com"

    slack = graph.named(
        "aws:secretsmanager/secretVersion:SecretVersion", "platform-slack-webhook-value"
    )
    assert slack.inputs["secretString"].endswith("platform-test-webhook")
    notion = graph.named("aws:secretsmanager/secretVersion:SecretVersion", "platform-notion-value")
    assert json.loads(notion.inputs["secretString"]) == {
        "token": "secret_platform_test_token",
        "database_id": "0123456789abcdef0123456789abcdef",
    }
    # The plain values live only in the secret versions: never in any function's environment.
    for fn in graph.of_type("aws:lambda/function:Function"):
        env = json.dumps(fn.inputs.get("environment", {}))
        assert "platform-test-webhook" not in env and "secret_platform_test_token" not in env
    assert OFFLINE_SECRET not in json.dumps([r.inputs for r in graph.resources], default=str)


def test_security_group_is_egress_only_https(
    dev_platform: StackGraph, prod_platform: StackGraph
) -> None:
    for _, graph in _graphs(dev_platform, prod_platform):
        (sg,) = graph.of_type("aws:ec2/securityGroup:SecurityGroup")
        assert sg.inputs["description"]
        assert not sg.inputs.get("ingress")
        egress = sg.inputs["egress"]
        assert {(e["protocol"], e["fromPort"], e["toPort"]) for e in egress} == {("tcp", 443, 443)}
        assert not graph.of_type("aws:ec2/securityGroupRule:SecurityGroupRule")
        assert not graph.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")


def test_cluster_capacity_providers_follow_spot_share(
    dev_platform: StackGraph, prod_platform: StackGraph
) -> None:
    expected = {
        "dev": [("FARGATE_SPOT", 1, 0)],
        "prod": [("FARGATE_SPOT", 7, 0), ("FARGATE", 3, 0)],
    }
    insights = {"dev": "disabled", "prod": "enabled"}
    for stack, graph in _graphs(dev_platform, prod_platform):
        cluster = graph.named("aws:ecs/cluster:Cluster", "platform-cluster")
        assert cluster.inputs["name"] == f"ai-batch-{stack}"
        assert cluster.inputs["settings"] == [
            {"name": "containerInsights", "value": insights[stack]}
        ]
        cps = graph.named(
            "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders", "platform-capacity"
        ).inputs
        assert cps["clusterName"] == cluster.outputs["name"]
        assert sorted(cps["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
        strategy = [
            (s["capacityProvider"], s["weight"], s["base"])
            for s in cps["defaultCapacityProviderStrategies"]
        ]
        assert strategy == expected[stack]


def test_public_mode_uses_default_vpc_and_public_ip(
    run_component: Callable[..., StackGraph],
) -> None:
    graph = _network_graph(run_component, None)
    assert graph.exports["network"] == {
        "subnets": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
        "securityGroups": [graph.of_type("aws:ec2/securityGroup:SecurityGroup")[0].outputs["id"]],
        "assignPublicIp": "ENABLED",
    }
    assert graph.exports["strategy"] == [
        {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}
    ]
    assert not graph.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")


def test_private_mode_no_public_ip_and_free_gateway_endpoints(
    run_component: Callable[..., StackGraph],
) -> None:
    graph = _network_graph(run_component, PRIVATE_NETWORK)
    assert graph.exports["network"]["subnets"] == ["subnet-0abc1234", "subnet-0abc1235"]
    assert graph.exports["network"]["assignPublicIp"] == "DISABLED"
    (sg,) = graph.of_type("aws:ec2/securityGroup:SecurityGroup")
    assert sg.inputs["vpcId"] == "vpc-0abc1234"
    endpoints = {
        e.inputs["serviceName"]: e.inputs for e in graph.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert set(endpoints) == {"com.amazonaws.us-east-1.s3", "com.amazonaws.us-east-1.dynamodb"}
    for endpoint in endpoints.values():
        assert endpoint["vpcEndpointType"] == "Gateway"  # free; interface endpoints bill hourly
        assert endpoint["routeTableIds"] == ["rtb-0abc1234", "rtb-0abc1235"]
        assert endpoint["vpcId"] == "vpc-0abc1234"
    # No NAT gateway, no interface endpoint, no public IP anywhere.
    assert not graph.of_type("aws:ec2/natGateway:NatGateway")
    assert not graph.of_type("aws:ec2/eip:Eip")
    for fn in graph.of_type("aws:lambda/function:Function"):
        assert fn.inputs["environment"]["variables"]["BATCH_ASSIGN_PUBLIC_IP"] == "DISABLED"


def _network_graph(run_component: Callable[..., StackGraph], network: str | None) -> StackGraph:
    import pulumi

    from components.config import load_config
    from components.offline import stack_config
    from components.platform import BatchPlatform, BatchPlatformArgs

    def program() -> None:
        platform = BatchPlatform("platform", BatchPlatformArgs(config=load_config()))
        pulumi.export("network", platform.network_configuration())
        pulumi.export("strategy", platform.capacity_provider_strategy())

    overrides = {"ai-batch:network": network} if network else None
    return run_component(program, stack="dev", config=stack_config("dev", overrides))


@pytest.mark.parametrize("share", [0, 30, 100])
def test_capacity_strategy_never_has_zero_weights(
    platform_graph: Callable[..., StackGraph], share: int
) -> None:
    graph = platform_graph("dev", {"ai-batch:spotShare": str(share)})
    cps = graph.named(
        "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders", "platform-capacity"
    )
    strategy = cps.inputs["defaultCapacityProviderStrategies"]
    assert strategy and all(s["weight"] > 0 for s in strategy)
    weights = {s["capacityProvider"]: s["weight"] for s in strategy}
    total = sum(weights.values())
    assert weights.get("FARGATE_SPOT", 0) / total == pytest.approx(share / 100)


def test_every_child_is_parented_under_the_platform(dev_platform: StackGraph) -> None:
    (platform,) = dev_platform.of_type("aibatch:index:BatchPlatform")
    assert platform.parent is None
    by_name = {r.name: r for r in dev_platform.resources}
    for r in dev_platform.resources:
        if r is platform:
            continue
        chain = r
        while chain.parent is not None and chain.parent != "platform":
            chain = by_name[chain.parent]
        assert chain.parent == "platform", r.name
