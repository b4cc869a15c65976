"""Each ``ai-batch:*`` config object read and checked on its own (network, api, functions,
results, notifications, ecr) plus the project's own value rules; ``components.config``
assembles them into a ``StackConfig``. AWS limits come from ``components.aws_rules``."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import pulumi

from components import aws_rules
from components.aws_rules import AwsConstraintError
from components.config_reader import ConfigReader, config_errors
from components.config_types import (
    ApiConfig,
    ConfigError,
    FunctionConfig,
    FunctionsConfig,
    NetworkConfig,
    NotificationsConfig,
    QuotaConfig,
    ResultsConfig,
    StackConfig,
    ThrottleConfig,
)
from components.job_queue import DEFAULT_RETENTION_SECONDS, SQS_MAX_RETENTION_SECONDS
from jobcontract import logs

# Lambda's level names (jobcontract.logs); WARNING is still accepted and read as WARN.
LOG_LEVELS = logs.LEVELS


def network(top: ConfigReader) -> NetworkConfig:
    net = top.obj("network", ("mode", "vpcId", "subnetIds", "routeTableIds"))
    mode = net.string("mode") or "public"
    if mode not in ("public", "private"):
        raise ConfigError(net.key("mode"), mode, "public or private")
    vpc = net.string("vpcId")
    if vpc is not None:
        vpc = net.checked("vpcId", vpc, aws_rules.vpc_id)
    subnets = tuple(
        net.checked(f"subnetIds[{i}]", s, aws_rules.subnet_id)
        for i, s in enumerate(net.strings("subnetIds"))
    )
    if len(set(subnets)) != len(subnets):
        raise ConfigError(net.key("subnetIds"), list(subnets), "distinct subnet ids")
    route_tables = tuple(
        net.checked(f"routeTableIds[{i}]", r, aws_rules.route_table_id)
        for i, r in enumerate(net.strings("routeTableIds"))
    )
    if mode == "private":
        # Our rule: without a public IP, tasks need a VPC whose private subnets span at least
        # two AZs (one AZ outage must not stop the pipeline) and route tables for the
        # S3/DynamoDB gateway endpoints.
        if vpc is None:
            raise ConfigError(net.key("vpcId"), None, "a VPC id (required in private mode)")
        if len(subnets) < 2:
            raise ConfigError(
                net.key("subnetIds"), list(subnets), "at least 2 private subnets in private mode"
            )
        if not route_tables:
            raise ConfigError(
                net.key("routeTableIds"),
                [],
                "the private subnets' route table ids (private mode adds gateway endpoints)",
            )
    else:
        if vpc is not None and not subnets:
            raise ConfigError(
                net.key("subnetIds"), [], "public subnet ids of that VPC when vpcId is given"
            )
        if route_tables:
            raise ConfigError(net.key("routeTableIds"), list(route_tables), "unset in public mode")
    return NetworkConfig(
        mode="private" if mode == "private" else "public",
        vpc_id=vpc,
        subnet_ids=subnets,
        route_table_ids=route_tables,
    )


def api(top: ConfigReader) -> ApiConfig:
    api = top.obj("api", ("throttle", "quota", "allowedIps", "manageCloudWatchRole", "stageName"))
    thr = api.obj("throttle", ("rateLimit", "burstLimit"))
    rate, burst = thr.number("rateLimit", 10.0), thr.integer("burstLimit", 20)
    with config_errors():
        aws_rules.throttle(rate, burst, api.key("throttle"))
    quo = api.obj("quota", ("limit", "period"))
    limit, period = quo.integer("limit", 10_000), (quo.string("period") or "DAY").upper()
    with config_errors():
        aws_rules.quota(limit, period, api.key("quota"))
    if burst < rate:
        # AWS rule (API Gateway): a burst below the rate cannot sustain that rate.
        raise ConfigError(thr.key("burstLimit"), burst, f">= rateLimit ({rate})")
    allowed_ips = api.checked("allowedIps", api.strings("allowedIps"), aws_rules.cidrs)
    stage = api.string("stageName") or "v1"
    # AWS rule: API Gateway stage names are 1-128 chars of [A-Za-z0-9_-].
    if not (1 <= len(stage) <= 128 and stage.replace("-", "").replace("_", "").isalnum()):
        raise ConfigError(api.key("stageName"), stage, "1-128 of [A-Za-z0-9_-]")
    return ApiConfig(
        throttle=ThrottleConfig(rate, burst),
        quota=QuotaConfig(limit, period),
        allowed_ips=allowed_ips,
        manage_cloudwatch_role=api.boolean("manageCloudWatchRole", True),
        stage_name=stage,
    )


def functions(top: ConfigReader) -> FunctionsConfig:
    fns = top.obj("functions", ("api", "launcher", "reconciler", "sweep"))
    defaults = FunctionsConfig()

    def one(
        name: str, default: FunctionConfig, timeout_rule: Callable[[int, str], int]
    ) -> FunctionConfig:
        allowed = (
            ("memory", "timeout", "provisionedConcurrency")
            if name == "api"
            else ("memory", "timeout")
        )
        fn = fns.obj(name, allowed)
        memory = fn.checked("memory", fn.integer("memory", default.memory), aws_rules.lambda_memory)
        timeout = fn.checked("timeout", fn.integer("timeout", default.timeout), timeout_rule)
        provisioned = fn.checked(
            "provisionedConcurrency",
            fn.integer("provisionedConcurrency", 0),
            aws_rules.provisioned_concurrency,
        )
        return FunctionConfig(memory, timeout, provisioned)

    launcher = one("launcher", defaults.launcher, aws_rules.lambda_timeout)
    # AWS rule: the launcher's queues need visibility >= 6 x its timeout, max 12 h.
    try:
        aws_rules.visibility_timeout_for(launcher.timeout)
    except AwsConstraintError as exc:
        raise ConfigError(fns.key("launcher.timeout"), exc.value, exc.allowed) from None
    return FunctionsConfig(
        api=one("api", defaults.api, aws_rules.api_handler_timeout),
        launcher=launcher,
        reconciler=one("reconciler", defaults.reconciler, aws_rules.lambda_timeout),
        sweep=one("sweep", defaults.sweep, aws_rules.lambda_timeout),
    )


_RESULTS_KEYS = ("expireDays", "inputsExpireDays", "urlTtlSeconds")


def results(top: ConfigReader) -> ResultsConfig:
    res = top.obj("results", _RESULTS_KEYS)
    return ResultsConfig(
        expire_days=res.checked(
            "expireDays", res.integer("expireDays", 30), aws_rules.positive_days
        ),
        inputs_expire_days=res.checked(
            "inputsExpireDays",
            res.integer("inputsExpireDays", ResultsConfig.inputs_expire_days),
            aws_rules.positive_days,
        ),
        url_ttl_seconds=res.checked(
            "urlTtlSeconds", res.integer("urlTtlSeconds", 3600), url_ttl_seconds
        ),
    )


def longest_job_wait_days(job_ttl_days: int) -> int:
    """Days after its submission a job may still read its input: its row lives jobTtlDays
    (DynamoDB TTL, set at submit; until then a QUEUED, parked or retried job still runs, and
    TTL deletes late), and its launch message can sit in the dead-letter queue for
    ``batchctl retry`` as long as the DLQ keeps it (14 days; the launch queue keeps 4)."""
    queue_seconds = max(DEFAULT_RETENTION_SECONDS, SQS_MAX_RETENTION_SECONDS)
    return max(job_ttl_days, math.ceil(queue_seconds / 86_400))


def inputs_outlive_jobs(top: ConfigReader, config: StackConfig) -> StackConfig:
    """Our rule: an input (a large job input, a POST /uploads file) must outlive every job that
    can still read it, or the job fails for a missing object days after it was accepted. The
    extra day covers the time between an upload and its job's submission."""
    res = top.obj("results", _RESULTS_KEYS)
    wait = longest_job_wait_days(config.job_ttl_days)
    if res.raw("inputsExpireDays") is None:
        results = replace(config.results, inputs_expire_days=wait + 1)
        return replace(config, results=results)
    days = config.results.inputs_expire_days
    if days <= wait:
        raise ConfigError(
            res.key("inputsExpireDays"),
            days,
            f"more than {wait} days, the longest a job can wait for its input "
            f"(jobTtlDays {config.job_ttl_days}: a job runs until its row expires; the "
            "dead-letter queue keeps a launch 14 days for batchctl retry); "
            f"e.g. {wait + 1}, or lower jobTtlDays",
        )
    return config


def notifications(top: ConfigReader) -> NotificationsConfig:
    notes = top.obj("notifications", ("email", "slackWebhook", "notionToken", "notionDatabaseId"))
    email = notes.string("email")
    if email is not None:
        email = notes.checked("email", email, aws_rules.email)
    webhook = notes.string("slackWebhook")
    if webhook is not None:
        notes.checked("slackWebhook", webhook, slack_webhook)
    token = notes.string("notionToken")
    database = notes.string("notionDatabaseId")
    if (token is None) != (database is None):
        missing = "notionDatabaseId" if database is None else "notionToken"
        raise ConfigError(notes.key(missing), None, "set both notionToken and notionDatabaseId")
    if database is not None:
        notes.checked("notionDatabaseId", database, notion_database_id)
    return NotificationsConfig(
        email=email,
        slack_webhook=pulumi.Output.secret(webhook) if webhook is not None else None,
        notion_token=pulumi.Output.secret(token) if token is not None else None,
        notion_database_id=database,
    )


def ecr_keep_images(top: ConfigReader) -> int:
    ecr = top.obj("ecr", ("keepImages",))
    return ecr.checked(
        "keepImages", ecr.integer("keepImages", StackConfig.keep_images), aws_rules.keep_images
    )


# --- small validators that belong to this project, not to AWS ----------------------------


def stale_seconds(value: int, key: str) -> int:
    # Our rule: the worker heartbeats every 60 s; anything under two beats flaps.
    return aws_rules.within(value, 120, 86_400, key, "120..86400 seconds")


def url_ttl_seconds(value: int, key: str) -> int:
    # AWS rule: a presigned URL signed with a Lambda role's temporary credentials stops working
    # when those credentials expire (at most 12 h), whatever its X-Amz-Expires says.
    return aws_rules.within(value, 60, 43_200, key, "60..43200 seconds")


def log_level(value: str, key: str) -> str:
    # Lambda's spelling, so the same value can go to logging_config and to BATCH_LOG_LEVEL.
    name = logs.level_name(value)
    if name is None:
        raise AwsConstraintError(key, value, ", ".join(LOG_LEVELS) + " (WARNING = WARN)")
    return name


def slack_webhook(value: str, key: str) -> str:
    return aws_rules.https_url(value, key, host_suffix="hooks.slack.com")


def notion_database_id(value: str, key: str) -> str:
    compact = value.replace("-", "")
    if len(compact) != 32 or any(c not in "0123456789abcdefABCDEF" for c in compact):
        raise AwsConstraintError(key, value, "a Notion database id (32 hex digits)")
    return value
