"""The stack config: defaults, the two reference stacks, and every invalid setting."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components import aws_rules
from components.aws_rules import AwsConstraintError
from components.config import ConfigError, StackConfig, load_config, parse_config
from components.offline import run_program, stack_config


def parse(values: dict[str, Any]) -> StackConfig:
    return parse_config(values, project="ai-batch", stack="test")


def load_under_pulumi(stack: str, config: dict[str, str]) -> StackConfig:
    """load_config() as a real program calls it: raw string config, structured values as JSON."""
    seen: list[StackConfig] = []
    run_program(lambda: seen.append(load_config()), stack=stack, config=config)
    return seen[0]


# (values, full key named in the error, a fragment of the "allowed" text)
INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"logRetentionDays": 8}, "ai-batch:logRetentionDays", "one of [1, 3"),
    ({"logRetentionDays": "two weeks"}, "ai-batch:logRetentionDays", "an integer"),
    ({"protect": "yes"}, "ai-batch:protect", "true or false"),
    ({"pointInTimeRecovery": 1}, "ai-batch:pointInTimeRecovery", "true or false"),
    ({"alarms": "on"}, "ai-batch:alarms", "true or false"),
    ({"containerInsights": "maybe"}, "ai-batch:containerInsights", "true or false"),
    ({"spotShare": 101}, "ai-batch:spotShare", "0..100"),
    ({"spotShare": -1}, "ai-batch:spotShare", "0..100"),
    ({"spotShare": True}, "ai-batch:spotShare", "an integer"),
    ({"spotFallback": "sometimes"}, "ai-batch:spotFallback", "true or false"),
    ({"logRetentionDay": 7}, "ai-batch:logRetentionDay", "known keys"),
    ({"network": "public"}, "ai-batch:network", "an object"),
    ({"network": {"mode": "hybrid"}}, "ai-batch:network.mode", "public or private"),
    ({"network": {"mode": "public", "vpcid": "vpc-0abc1234"}}, "ai-batch:network.vpcid", "known"),
    ({"network": {"mode": "private"}}, "ai-batch:network.vpcId", "required in private mode"),
    (
        {"network": {"mode": "private", "vpcId": "vpc-0abc1234", "subnetIds": ["subnet-0abc1234"]}},
        "ai-batch:network.subnetIds",
        "at least 2",
    ),
    (
        {
            "network": {
                "mode": "private",
                "vpcId": "vpc-0abc1234",
                "subnetIds": ["subnet-0abc1234", "subnet-0abc1235"],
            }
        },
        "ai-batch:network.routeTableIds",
        "route table",
    ),
    ({"network": {"vpcId": "vpc-0abc1234"}}, "ai-batch:network.subnetIds", "public subnet ids"),
    ({"network": {"vpcId": "vpc_123"}}, "ai-batch:network.vpcId", "a VPC id"),
    (
        {"network": {"subnetIds": ["subnet-0abc1234", "sn-1"]}},
        "ai-batch:network.subnetIds[1]",
        "a subnet id",
    ),
    (
        {"network": {"subnetIds": ["subnet-0abc1234", "subnet-0abc1234"]}},
        "ai-batch:network.subnetIds",
        "distinct",
    ),
    (
        {"network": {"subnetIds": ["subnet-0abc1234"], "routeTableIds": ["rtb-0abc1234"]}},
        "ai-batch:network.routeTableIds",
        "unset in public mode",
    ),
    (
        {
            "network": {
                "mode": "private",
                "vpcId": "vpc-0abc1234",
                "subnetIds": ["subnet-0abc1234", "subnet-0abc1235"],
                "routeTableIds": ["route-1"],
            }
        },
        "ai-batch:network.routeTableIds[0]",
        "route table id",
    ),
    ({"api": {"throttle": {"rateLimit": 0}}}, "ai-batch:api.throttle.rateLimit", "0 < rate"),
    ({"api": {"throttle": {"rateLimit": "fast"}}}, "ai-batch:api.throttle.rateLimit", "a number"),
    ({"api": {"throttle": {"burstLimit": 0}}}, "ai-batch:api.throttle.burstLimit", "1..5000"),
    (
        {"api": {"throttle": {"rateLimit": 50, "burstLimit": 10}}},
        "ai-batch:api.throttle.burstLimit",
        ">= rateLimit",
    ),
    ({"api": {"quota": {"limit": 0}}}, "ai-batch:api.quota.limit", "positive"),
    ({"api": {"quota": {"period": "YEAR"}}}, "ai-batch:api.quota.period", "DAY, WEEK, MONTH"),
    ({"api": {"allowedIps": ["10.0.0.1/8"]}}, "ai-batch:api.allowedIps[0]", "CIDR"),
    ({"api": {"allowedIps": "203.0.113.0/24,nope"}}, "ai-batch:api.allowedIps[1]", "CIDR"),
    ({"api": {"manageCloudWatchRole": "y"}}, "ai-batch:api.manageCloudWatchRole", "true or false"),
    ({"api": {"stageName": "v 1"}}, "ai-batch:api.stageName", "[A-Za-z0-9_-]"),
    ({"api": {"throttles": {}}}, "ai-batch:api.throttles", "known keys"),
    ({"functions": {"api": {"memory": 64}}}, "ai-batch:functions.api.memory", "128..10240"),
    ({"functions": {"api": {"timeout": 30}}}, "ai-batch:functions.api.timeout", "API Gateway"),
    (
        {"functions": {"api": {"provisionedConcurrency": -1}}},
        "ai-batch:functions.api.provisionedConcurrency",
        "0 (off)",
    ),
    (
        {"functions": {"launcher": {"provisionedConcurrency": 1}}},
        "ai-batch:functions.launcher.provisionedConcurrency",
        "known keys",
    ),
    ({"functions": {"launcher": {"timeout": 0}}}, "ai-batch:functions.launcher.timeout", "1..900"),
    (
        {"functions": {"reconciler": {"timeout": 901}}},
        "ai-batch:functions.reconciler.timeout",
        "1..900",
    ),
    ({"functions": {"sweep": {"memory": 10241}}}, "ai-batch:functions.sweep.memory", "128..10240"),
    ({"functions": {"worker": {}}}, "ai-batch:functions.worker", "known keys"),
    ({"results": {"expireDays": 0}}, "ai-batch:results.expireDays", "1..3650"),
    ({"results": {"inputsExpireDays": 4000}}, "ai-batch:results.inputsExpireDays", "1..3650"),
    ({"results": {"urlTtlSeconds": 86400}}, "ai-batch:results.urlTtlSeconds", "60..43200"),
    ({"jobTtlDays": 0}, "ai-batch:jobTtlDays", "1..3650"),
    ({"sweepRate": "every 5 minutes"}, "ai-batch:sweepRate", "rate("),
    ({"sweepRate": "rate(1 minutes)"}, "ai-batch:sweepRate", "singular"),
    ({"sweepRate": "at(2030-01-01T00:00:00)"}, "ai-batch:sweepRate", "EventBridge rule"),
    ({"heartbeatStaleSeconds": 30}, "ai-batch:heartbeatStaleSeconds", "120..86400"),
    ({"notifications": {"email": "not-an-address"}}, "ai-batch:notifications.email", "e-mail"),
    (
        {"notifications": {"slackWebhook": "https://example.com/hook"}},
        "ai-batch:notifications.slackWebhook",
        "hooks.slack.com",
    ),
    (
        {"notifications": {"notionToken": "secret_x"}},
        "ai-batch:notifications.notionDatabaseId",
        "both",
    ),
    (
        {"notifications": {"notionToken": "secret_x", "notionDatabaseId": "abc"}},
        "ai-batch:notifications.notionDatabaseId",
        "32 hex",
    ),
    ({"bedrockModelId": "claude"}, "ai-batch:bedrockModelId", "Bedrock foundation model id"),
    ({"ecr": {"keepImages": 0}}, "ai-batch:ecr.keepImages", "1..1000"),
    ({"logLevel": "LOUD"}, "ai-batch:logLevel", "DEBUG, INFO"),
    # The launch queue trigger: AWS's MaximumConcurrency is 2..1000.
    ({"launcherConcurrency": 1}, "ai-batch:launcherConcurrency", "2..1000"),
    ({"launcherConcurrency": 1001}, "ai-batch:launcherConcurrency", "2..1000"),
    ({"launcherConcurrency": "many"}, "ai-batch:launcherConcurrency", "an integer"),
    ({"launcherMaxConcurrency": 10}, "ai-batch:launcherMaxConcurrency", "launcherConcurrency"),
    # A vCPU budget below the smallest Fargate task could never start anything.
    ({"fargateVcpuLimit": 0.1}, "ai-batch:fargateVcpuLimit", "0 (no limit) or 0.25..4096"),
    ({"fargateVcpuLimit": -1}, "ai-batch:fargateVcpuLimit", "0 (no limit) or 0.25..4096"),
    ({"fargateVcpuLimit": 5000}, "ai-batch:fargateVcpuLimit", "0 (no limit) or 0.25..4096"),
    ({"fargateVcpuLimit": "six"}, "ai-batch:fargateVcpuLimit", "a number"),
    ({"taskReuse": "sometimes"}, "ai-batch:taskReuse", "true or false"),
]


@pytest.mark.parametrize(("values", "key", "allowed"), INVALID, ids=[c[1] for c in INVALID])
def test_every_invalid_setting_names_key_value_and_allowed(
    values: dict[str, Any], key: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(values)
    error = info.value
    assert isinstance(error, AwsConstraintError) and isinstance(error, ValueError)
    assert error.key == key
    assert allowed in error.allowed
    assert str(error).startswith(f"{key}: ")


def test_secret_values_never_appear_in_errors() -> None:
    webhook = "https://example.com/T000/B000/very-secret-token"
    with pytest.raises(ConfigError) as info:
        parse({"notifications": {"slackWebhook": webhook}})
    assert "very-secret-token" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse({"notificatons": {"slackWebhook": webhook}})  # misspelt key holding a secret
    assert "very-secret-token" not in str(info.value)


def test_defaults_are_the_cheap_safe_ones() -> None:
    cfg = parse({})
    assert cfg.network.mode == "public" and cfg.network.assign_public_ip
    assert cfg.log_retention_days == 14
    assert (cfg.protect, cfg.point_in_time_recovery, cfg.alarms) == (False, False, False)
    # Every stack deploys alone in a fresh account (BatchApi keeps the role on destroy).
    assert cfg.api.manage_cloudwatch_role is True
    assert cfg.functions.api.timeout <= 29
    assert cfg.functions.api.provisioned_concurrency == 0
    assert cfg.notifications.slack_webhook is None
    assert cfg.name_prefix == "ai-batch-test"
    # Dispatch: one launch queue trigger at AWS's minimum concurrency, a new account's Fargate
    # vCPU quota, warm reuse on, and few enough kept images that a worker idles at <= $0.02.
    assert cfg.launcher_concurrency == 2
    assert cfg.fargate_vcpu_limit == 6
    assert cfg.task_reuse is True
    assert cfg.keep_images == 3


def test_dispatch_settings_are_read() -> None:
    cfg = parse({"launcherConcurrency": "10", "fargateVcpuLimit": "0", "taskReuse": "false"})
    assert (cfg.launcher_concurrency, cfg.fargate_vcpu_limit, cfg.task_reuse) == (10, 0, False)
    assert parse({"fargateVcpuLimit": 0.25}).fargate_vcpu_limit == 0.25
    assert parse({"fargateVcpuLimit": "4096"}).fargate_vcpu_limit == 4096


@pytest.mark.parametrize(
    ("share", "expected"),
    [
        (100, [("FARGATE_SPOT", 1)]),
        (0, [("FARGATE", 1)]),
        (70, [("FARGATE_SPOT", 7), ("FARGATE", 3)]),
        (50, [("FARGATE_SPOT", 1), ("FARGATE", 1)]),
        (75, [("FARGATE_SPOT", 3), ("FARGATE", 1)]),
    ],
)
def test_capacity_strategy_from_spot_share(share: int, expected: list[tuple[str, int]]) -> None:
    strategy = parse({"spotShare": share}).capacity_strategy()
    assert [(s.capacity_provider, s.weight) for s in strategy] == expected
    assert all(s.base == 0 and s.weight > 0 for s in strategy)
    spot = sum(s.weight for s in strategy if s.capacity_provider == "FARGATE_SPOT")
    assert spot / sum(s.weight for s in strategy) == pytest.approx(share / 100)


def test_private_mode_with_vpc_subnets_and_route_tables() -> None:
    cfg = parse(
        {
            "network": {
                "mode": "private",
                "vpcId": "vpc-0abc1234",
                "subnetIds": ["subnet-0abc1234", "subnet-0abc1235"],
                "routeTableIds": ["rtb-0abc1234"],
            }
        }
    )
    assert cfg.network.mode == "private" and not cfg.network.assign_public_ip
    assert cfg.network.subnet_ids == ("subnet-0abc1234", "subnet-0abc1235")


def test_load_config_reads_structured_values_and_secrets_through_pulumi() -> None:
    cfg = load_under_pulumi(
        "test",
        {
            "ai-batch:logRetentionDays": "30",
            "ai-batch:alarms": "true",
            "ai-batch:api": json.dumps({"throttle": {"rateLimit": 7, "burstLimit": 9}}),
            "ai-batch:notifications": json.dumps(
                {"slackWebhook": "https://hooks.slack.com/services/T0/B0/x"}
            ),
            "aws:region": "eu-west-1",  # other namespaces are not ours to validate
        },
    )
    assert cfg.stack == "test" and cfg.log_retention_days == 30 and cfg.alarms
    assert cfg.api.throttle.rate_limit == 7 and cfg.api.throttle.burst_limit == 9
    assert isinstance(cfg.notifications.slack_webhook, pulumi.Output)


def test_load_config_rejects_broken_json() -> None:
    with pytest.raises(ConfigError) as info:
        load_under_pulumi("test", {"ai-batch:api": "{not json"})
    assert info.value.key == "ai-batch:api"


def test_dev_and_prod_differ_where_a_platform_engineer_expects() -> None:
    dev = load_under_pulumi("dev", stack_config("dev"))
    prod = load_under_pulumi("prod", stack_config("prod"))
    assert dev.log_retention_days <= 14 < 90 <= prod.log_retention_days
    assert (dev.point_in_time_recovery, prod.point_in_time_recovery) == (False, True)
    assert (dev.protect, prod.protect) == (False, True)
    assert (dev.alarms, prod.alarms) == (False, True)
    assert dev.spot_share == 100 and dev.spot_fallback
    assert 0 < prod.spot_share < dev.spot_share
    assert dev.network.mode == "public"
    assert prod.results.expire_days > dev.results.expire_days


@pytest.mark.parametrize("stack", ["my_stack", "Dev.EU", "a-very-long-stack-name-indeed", "x--y"])
def test_stack_names_that_cannot_prefix_aws_names_are_refused(stack: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({}, project="ai-batch", stack=stack)
    assert info.value.key == "pulumi stack name" and info.value.value == stack


def test_stack_names_are_lowercased_into_the_prefix() -> None:
    assert parse_config({}, project="ai-batch", stack="Staging").name_prefix == "ai-batch-staging"


# --- bedrockModelId: the default a fresh account can call, inference profile ids -------------
def test_default_model_is_an_active_in_region_amazon_model() -> None:
    """A new account can call it: Amazon models are not sold through AWS Marketplace (no
    subscription, no use-case form), Nova Lite is Active and In-Region in us-east-1, and it
    takes images (the alt-text worker sends them). Claude 3 Haiku, the old default, is past
    end of life in most Regions."""
    default = parse({}).bedrock_model_id
    assert default == "amazon.nova-lite-v1:0"
    model = aws_rules.bedrock_model(default)
    assert model.profile_prefix is None and model.foundation_model.startswith("amazon.")


@pytest.mark.parametrize(
    "value, prefix, foundation",
    [
        ("us.amazon.nova-lite-v1:0", "us", "amazon.nova-lite-v1:0"),
        ("eu.amazon.nova-micro-v1:0", "eu", "amazon.nova-micro-v1:0"),
        ("apac.amazon.nova-pro-v1:0", "apac", "amazon.nova-pro-v1:0"),
        (
            "jp.anthropic.claude-haiku-4-5-20251001-v1:0",
            "jp",
            "anthropic.claude-haiku-4-5-20251001-v1:0",
        ),
        ("global.amazon.nova-2-lite-v1:0", "global", "amazon.nova-2-lite-v1:0"),
        ("meta.llama3-1-8b-instruct-v1:0", None, "meta.llama3-1-8b-instruct-v1:0"),
    ],
)
def test_inference_profile_ids_are_accepted_and_understood(
    value: str, prefix: str | None, foundation: str
) -> None:
    assert parse({"bedrockModelId": value}).bedrock_model_id == value
    model = aws_rules.bedrock_model(value)
    assert (model.profile_prefix, model.foundation_model) == (prefix, foundation)


@pytest.mark.parametrize(
    "value",
    [
        "claude",
        "Amazon.Nova-Lite-v1:0",  # model ids are lowercase
        "ca.amazon.nova-lite-v1:0",  # not a documented profile geography
        "us.us.amazon.nova-lite-v1:0",
        "us.",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0",
        "amazon.nova-lite-v1:0 ",
    ],
)
def test_invalid_model_ids_name_key_value_and_allowed_forms(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse({"bedrockModelId": value})
    error = info.value
    assert isinstance(error, aws_rules.AwsConstraintError)
    assert error.key == "ai-batch:bedrockModelId" and error.value == value
    assert "foundation model id" in error.allowed and "inference profile id" in error.allowed
    assert "us.amazon.nova-lite-v1:0" in error.allowed and "global" in error.allowed


def test_inputs_must_outlive_the_longest_a_job_can_wait() -> None:
    """An input (large job input, POST /uploads file) deleted while a job can still run would
    fail that job days after it was accepted: the job's row lives jobTtlDays, the DLQ keeps a
    launch 14 days for `batchctl retry`. Unset, the expiry follows; set, it is checked."""
    assert parse({}).results.inputs_expire_days == 31
    assert parse({"jobTtlDays": 60}).results.inputs_expire_days == 61
    assert parse({"jobTtlDays": 3}).results.inputs_expire_days == 15  # the DLQ's 14 days
    ok = parse({"jobTtlDays": 90, "results": {"inputsExpireDays": 91}})
    assert ok.results.inputs_expire_days == 91
    for values, wait in (
        ({"results": {"inputsExpireDays": 7}}, 30),  # the former default
        ({"jobTtlDays": 90, "results": {"inputsExpireDays": 90}}, 90),
        ({"jobTtlDays": 1, "results": {"inputsExpireDays": 14}}, 14),
    ):
        with pytest.raises(ConfigError) as info:
            parse(values)
        assert info.value.key == "ai-batch:results.inputsExpireDays", values
        assert f"more than {wait} days" in info.value.allowed and "jobTtlDays" in info.value.allowed


def test_preview_stops_on_inputs_that_expire_before_their_jobs() -> None:
    config = {**stack_config("dev"), "ai-batch:results": '{"inputsExpireDays": 3}'}
    with pytest.raises(ConfigError, match=r"inputsExpireDays: 3 is not valid.*more than 14 days"):
        load_under_pulumi("dev", config)


@pytest.mark.parametrize(
    ("spot_share", "weights"),
    [(0, (0, 1)), (70, (7, 3)), (50, (1, 1)), (100, (1, 0)), (33, (33, 67))],
)
def test_one_rule_turns_a_spot_percentage_into_strategy_weights(
    spot_share: int, weights: tuple[int, int]
) -> None:
    """Fargate workers and Managed Instances workers split Spot by the same function: lowest
    terms, a zero weight leaves its provider out (both strategies follow it)."""
    from components.config_types import spot_weights
    from components.worker.instance_validation import launch_chain

    assert spot_weights(spot_share) == weights
    names = {("t", "spot"): "t-spot", ("t", "od"): "t-od"}
    (step,) = launch_chain(names, ["t"], spot_share, spot_fallback=False)
    assert [s["weight"] for s in step] == [w for w in weights if w > 0]
