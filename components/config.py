"""The typed stack configuration: every ``ai-batch:*`` setting, validated once, up front.

``load_config()`` reads Pulumi config into frozen dataclasses. A wrong value fails
``pulumi preview`` before any resource is declared, with a ``ConfigError`` naming the full
key (``ai-batch:api.throttle.rateLimit``), the value given and what is allowed. Secret
values (Slack webhook, Notion token) never appear in an error message and are handed on
only as secret ``pulumi.Output``s.

Structured settings are Pulumi config objects, e.g.::

    pulumi config set --path 'api.throttle.rateLimit' 20
    pulumi config set --path --secret 'notifications.slackWebhook' https://hooks.slack.com/...
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import pulumi

from components import aws_rules
from components.aws_rules import AwsConstraintError
from components.job_queue import DEFAULT_RETENTION_SECONDS, SQS_MAX_RETENTION_SECONDS
from jobcontract import logs

PROJECT = "ai-batch"
NetworkMode = Literal["public", "private"]
T = TypeVar("T")


class ConfigError(AwsConstraintError):
    """A stack setting is invalid; ``key`` is the full Pulumi config key."""


# --- the settings ------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkConfig:
    """Where Fargate tasks run (``ai-batch:network``)."""

    mode: NetworkMode = "public"
    """``public`` (default): public subnets, public IP on tasks, no fixed cost. ``private``:
    given private subnets, no public IP, free S3/DynamoDB gateway endpoints."""
    vpc_id: str | None = None
    """VPC id. Required in private mode; in public mode derived from the subnets or the
    default VPC. Default: None."""
    subnet_ids: tuple[str, ...] = ()
    """Subnets for tasks. Default: the default VPC's default subnets (public mode only)."""
    route_table_ids: tuple[str, ...] = ()
    """Private mode: route tables of the private subnets, for the gateway endpoints."""

    @property
    def assign_public_ip(self) -> bool:
        return self.mode == "public"


@dataclass(frozen=True)
class ThrottleConfig:
    """API Gateway throttling (stage and usage plan), ``ai-batch:api.throttle``."""

    rate_limit: float = 10.0
    """Steady-state requests per second. Default 10."""
    burst_limit: int = 20
    """Token-bucket burst. Default 20."""


@dataclass(frozen=True)
class QuotaConfig:
    """Usage plan quota per API key, ``ai-batch:api.quota``."""

    limit: int = 10_000
    """Requests per period. Default 10000."""
    period: str = "DAY"
    """DAY, WEEK or MONTH. Default DAY."""


@dataclass(frozen=True)
class ApiConfig:
    """The REST API, ``ai-batch:api``."""

    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    """Default: 10 rps, burst 20."""
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    """Default: 10000 per DAY."""
    allowed_ips: tuple[str, ...] = ()
    """CIDRs allowed to call the API (resource policy). Default: () = any source."""
    manage_cloudwatch_role: bool = True
    """Set API Gateway's account-wide CloudWatch role (needed by the stage's access logs).
    Default True: every stack deploys alone in a fresh account; the role and the setting are
    kept on destroy, so destroying one stack never breaks another's logs (``BatchApi``).
    False: the setting is owned elsewhere and must already be set in the account and region."""
    stage_name: str = "v1"
    """Stage name, part of the URL. Default v1."""


@dataclass(frozen=True)
class FunctionConfig:
    """Memory and timeout of one Lambda function."""

    memory: int
    """MB, 128..10240."""
    timeout: int
    """Seconds, 1..900."""
    provisioned_concurrency: int = 0
    """Warm instances kept ready (API handler only). Default 0 = none."""


@dataclass(frozen=True)
class FunctionsConfig:
    """``ai-batch:functions``: one entry per control-plane Lambda."""

    api: FunctionConfig = field(default_factory=lambda: FunctionConfig(256, 10))
    """Default 256 MB, 10 s (must answer within API Gateway's 29 s)."""
    launcher: FunctionConfig = field(default_factory=lambda: FunctionConfig(256, 60))
    """Default 256 MB, 60 s (queue visibility timeout is six times this)."""
    reconciler: FunctionConfig = field(default_factory=lambda: FunctionConfig(256, 60))
    """Default 256 MB, 60 s."""
    sweep: FunctionConfig = field(default_factory=lambda: FunctionConfig(256, 120))
    """Default 256 MB, 120 s."""


@dataclass(frozen=True)
class ResultsConfig:
    """``ai-batch:results``: the results bucket."""

    expire_days: int = 30
    """Days after which ``results/`` objects are deleted. Default 30."""
    inputs_expire_days: int = 31
    """Days after which job inputs under ``inputs/`` (large inputs, POST /uploads files) are
    deleted. Must be more than the longest a job can wait for its input
    (``longest_job_wait_days``). Default: that wait + 1 day (31 with the default jobTtlDays)."""
    url_ttl_seconds: int = 3600
    """Lifetime of presigned result URLs. Default 3600."""


@dataclass(frozen=True)
class NotificationsConfig:
    """``ai-batch:notifications``: where job failures are reported."""

    email: str | None = None
    """Address subscribed to the failure topic (confirm the e-mail AWS sends). Default None."""
    slack_webhook: pulumi.Output[str] | None = None
    """SECRET Slack incoming-webhook URL, stored in Secrets Manager. Default None."""
    notion_token: pulumi.Output[str] | None = None
    """SECRET Notion integration token, stored in Secrets Manager. Default None."""
    notion_database_id: str | None = None
    """Notion database receiving failure pages (needs notionToken). Default None."""


@dataclass(frozen=True)
class CapacityShare:
    """One entry of an ECS capacity provider strategy."""

    capacity_provider: Literal["FARGATE", "FARGATE_SPOT"]
    weight: int
    base: int = 0


@dataclass(frozen=True)
class StackConfig:
    """Every setting of one stack. Built only by ``load_config``."""

    project: str
    """Pulumi project name."""
    stack: str
    """Pulumi stack name (dev, prod, ...)."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """Default: public mode in the default VPC."""
    log_retention_days: int = 14
    """Retention of every log group; one of CloudWatch's allowed values. Default 14."""
    protect: bool = False
    """Retain the table and bucket on delete, DynamoDB deletion protection. Default False."""
    point_in_time_recovery: bool = False
    """DynamoDB PITR on the jobs table. Default False."""
    alarms: bool = False
    """CloudWatch alarms + dashboard. Default False (no idle cost in dev)."""
    container_insights: bool = False
    """ECS Container Insights (paid custom metrics). Default False."""
    spot_share: int = 100
    """Percent of tasks placed on FARGATE_SPOT, 0..100. Default 100."""
    spot_fallback: bool = True
    """Retry a task on FARGATE when Spot has no capacity. Default True."""
    api: ApiConfig = field(default_factory=ApiConfig)
    """Default: see ApiConfig."""
    functions: FunctionsConfig = field(default_factory=FunctionsConfig)
    """Default: see FunctionsConfig."""
    results: ResultsConfig = field(default_factory=ResultsConfig)
    """Default: see ResultsConfig."""
    job_ttl_days: int = 30
    """Days a finished job item is kept (DynamoDB TTL). Default 30."""
    sweep_rate: str = "rate(5 minutes)"
    """EventBridge rule schedule of the timeout sweep. Default rate(5 minutes)."""
    heartbeat_stale_seconds: int = 300
    """A RUNNING job without a heartbeat for this long is treated as lost. Default 300."""
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    """Default: failure topic only, no subscribers."""
    bedrock_model_id: str = "amazon.nova-lite-v1:0"
    """Model the seed workers invoke (task roles may invoke only this one): a foundation model
    id, or a cross-Region inference profile id such as ``us.amazon.nova-lite-v1:0`` /
    ``global.<model id>`` (more throughput; required for models served only through a
    profile). Default Amazon Nova Lite: Active, In-Region in us-east-1, multimodal (the alt-text
    worker sends images), and an Amazon model, so no AWS Marketplace subscription or use-case
    form is needed (model card: docs.aws.amazon.com/bedrock/latest/userguide/
    model-card-amazon-nova-lite.html). The former default, Claude 3 Haiku, reached end of life
    in most Regions on 2026-09-10 (its model card; model-lifecycle-legacy.html): Legacy models
    are closed to new customers."""
    keep_images: int = 3
    """ECR lifecycle: images kept per worker repository. Default 3 (the running image and two
    to roll back to): a worker's idle cost is the storage of its kept images, and 3 seed-sized
    images (0.07 GB, 40 % new per push) come to about $0.013/month per worker (cost/prices.json);
    untagged images expire after a day whatever this says."""
    launcher_concurrency: int = 2
    """Maximum concurrency of the launch queue's trigger (``launcherConcurrency``, 2..1000): the
    most launcher invocations at once, for the whole stack. Default 2, the AWS minimum. The
    launcher divides RunTask's account rate (burst 100, 20 tasks/s sustained) by it, so a
    bigger value launches no faster; it only adds Lambda concurrency taken from the account."""
    fargate_vcpu_limit: float = 6.0
    """Most Fargate vCPUs the stack's launched tasks hold at once, across workers
    (``fargateVcpuLimit``, 0.25..4096, or 0 for no limit). Default 6: the Fargate On-Demand
    vCPU quota of a new account can be as low as 6, and RunTask beyond it fails. Jobs beyond
    it wait and start when a task stops."""
    task_reuse: bool = True
    """Warm reuse (``taskReuse``): a task that finished a job takes its worker's next waiting
    job for up to the worker's ``reuse_idle_seconds``. ``false`` turns it off for every worker
    (one job per task). Default true."""
    log_level: str = "INFO"
    """Log level of Lambdas and workers. Default INFO."""

    @property
    def name_prefix(self) -> str:
        """``<project>-<stack>``, lowercase: the prefix of every physical name."""
        return f"{self.project}-{self.stack}".lower()

    def capacity_strategy(self) -> tuple[CapacityShare, ...]:
        """ECS strategy from ``spot_share``: weights reduced to lowest terms, base 0, and
        zero-weight providers dropped (AWS: at least one provider needs weight > 0)."""
        spot, on_demand = self.spot_share, 100 - self.spot_share
        divisor = math.gcd(spot, on_demand)
        shares = (
            CapacityShare("FARGATE_SPOT", spot // divisor),
            CapacityShare("FARGATE", on_demand // divisor),
        )
        return tuple(s for s in shares if s.weight > 0)


# --- reading -----------------------------------------------------------------------------

_TOP_LEVEL_KEYS = (
    "network", "logRetentionDays", "protect", "pointInTimeRecovery", "alarms",
    "containerInsights", "spotShare", "spotFallback", "api", "functions", "results",
    "jobTtlDays", "sweepRate", "heartbeatStaleSeconds", "notifications", "bedrockModelId",
    "ecr", "logLevel", "launcherConcurrency", "fargateVcpuLimit", "taskReuse",
)  # fmt: skip
# Settings whose meaning changed with a new name: a stack still using the old key is told so.
# launcherMaxConcurrency capped each worker queue's trigger; the stack now has one launch
# queue, capped by launcherConcurrency.
_RENAMED_KEYS = {"launcherMaxConcurrency": "launcherConcurrency"}
# Lambda's level names (jobcontract.logs); WARNING is still accepted and read as WARN.
LOG_LEVELS = logs.LEVELS


class _Reader:
    """Typed access to one config object, with errors naming the full dotted key."""

    def __init__(self, prefix: str, values: Mapping[str, Any], allowed: tuple[str, ...]):
        self.prefix = prefix
        self.values = values
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            # The value is not echoed: a misspelt key may well hold a secret.
            raise ConfigError(
                f"{prefix}{unknown[0]}", "<value hidden>", f"known keys: {', '.join(allowed)}"
            )

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def obj(self, name: str, allowed: tuple[str, ...]) -> _Reader:
        value = self.raw(name)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(self.key(name), value, f"an object with keys {', '.join(allowed)}")
        return _Reader(f"{self.key(name)}.", value, allowed)

    def integer(self, name: str, default: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            raise ConfigError(self.key(name), value, "an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        raise ConfigError(self.key(name), value, "an integer")

    def number(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            raise ConfigError(self.key(name), value, "a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(self.key(name), value, "a number") from None
        if not math.isfinite(number):
            raise ConfigError(self.key(name), value, "a finite number")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(self.key(name), value, "true or false")

    def string(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            raise ConfigError(self.key(name), value, "a string")
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        if isinstance(value, str):  # tolerate "a,b" from `pulumi config set`
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.key(name), value, "a list of strings")
        return tuple(value)

    def checked(self, name: str, value: T, check: Callable[[T, str], T]) -> T:
        """Run an aws_rules validator, re-raising its error under the full key."""
        try:
            return check(value, self.key(name))
        except ConfigError:
            raise
        except AwsConstraintError as exc:
            raise ConfigError(exc.key, exc.value, exc.allowed) from None


def _top_level_values(project: str) -> dict[str, Any]:
    """Every ``<project>:*`` value Pulumi passed in, structured values parsed from JSON."""
    from pulumi.runtime import config as runtime_config

    raw: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values: dict[str, Any] = {}
    for full_key, value in raw.items():
        ns, _, key = full_key.partition(":")
        if ns != project or not key:
            continue
        if isinstance(value, str) and value[:1] in ("{", "["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(full_key, value, "valid JSON for a structured value") from None
        values[key] = value
    return values


def load_config(project: str | None = None, stack: str | None = None) -> StackConfig:
    """Read and validate every setting of the current stack (see the module docstring)."""
    project = project or pulumi.get_project() or PROJECT
    stack = stack or pulumi.get_stack()
    return parse_config(_top_level_values(project), project=project, stack=stack)


# AWS rule: the results bucket is named "<project>-<stack>-results-" + 26 characters, and
# S3 bucket prefixes are at most 37 characters of [a-z0-9-] (bucket names: 63, lowercase).
NAME_PREFIX_MAX = 37 - len("-results-")
_NAME_PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")


def parse_config(values: Mapping[str, Any], *, project: str, stack: str) -> StackConfig:
    """Build a ``StackConfig`` from already-read values (keys without the project prefix)."""
    prefix = f"{project}-{stack}".lower()
    if len(prefix) > NAME_PREFIX_MAX or not _NAME_PREFIX.match(prefix) or "--" in prefix:
        raise ConfigError(
            "pulumi stack name",
            stack,
            f"lowercase letters, digits and single hyphens, with '{project}-<stack>' at most "
            f"{NAME_PREFIX_MAX} characters (it prefixes bucket, table and function names)",
        )
    for old_key, new_key in _RENAMED_KEYS.items():
        if old_key in values:
            raise ConfigError(
                f"{project}:{old_key}", values[old_key], f"renamed: set {project}:{new_key}"
            )
    top = _Reader(f"{project}:", values, _TOP_LEVEL_KEYS)
    config = StackConfig(
        project=project,
        stack=stack,
        network=_network(top),
        log_retention_days=top.checked(
            "logRetentionDays", top.integer("logRetentionDays", 14), aws_rules.log_retention
        ),
        protect=top.boolean("protect", False),
        point_in_time_recovery=top.boolean("pointInTimeRecovery", False),
        alarms=top.boolean("alarms", False),
        container_insights=top.boolean("containerInsights", False),
        spot_share=top.checked("spotShare", top.integer("spotShare", 100), aws_rules.percent),
        spot_fallback=top.boolean("spotFallback", True),
        api=_api(top),
        functions=_functions(top),
        results=_results(top),
        job_ttl_days=top.checked(
            "jobTtlDays", top.integer("jobTtlDays", 30), aws_rules.positive_days
        ),
        sweep_rate=top.checked(
            "sweepRate", top.string("sweepRate") or "rate(5 minutes)", aws_rules.event_rule_schedule
        ),
        heartbeat_stale_seconds=top.checked(
            "heartbeatStaleSeconds", top.integer("heartbeatStaleSeconds", 300), _stale_seconds
        ),
        notifications=_notifications(top),
        bedrock_model_id=top.checked(
            "bedrockModelId",
            top.string("bedrockModelId") or StackConfig.bedrock_model_id,
            aws_rules.bedrock_model_id,
        ),
        keep_images=_ecr_keep_images(top),
        launcher_concurrency=top.checked(
            "launcherConcurrency",
            top.integer("launcherConcurrency", StackConfig.launcher_concurrency),
            aws_rules.esm_max_concurrency,
        ),
        fargate_vcpu_limit=top.checked(
            "fargateVcpuLimit",
            top.number("fargateVcpuLimit", StackConfig.fargate_vcpu_limit),
            aws_rules.fargate_vcpu_limit,
        ),
        task_reuse=top.boolean("taskReuse", StackConfig.task_reuse),
        log_level=top.checked("logLevel", (top.string("logLevel") or "INFO"), _log_level),
    )
    return _inputs_outlive_jobs(top, config)


def _network(top: _Reader) -> NetworkConfig:
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


def _api(top: _Reader) -> ApiConfig:
    api = top.obj("api", ("throttle", "quota", "allowedIps", "manageCloudWatchRole", "stageName"))
    thr = api.obj("throttle", ("rateLimit", "burstLimit"))
    rate, burst = thr.number("rateLimit", 10.0), thr.integer("burstLimit", 20)
    try:
        aws_rules.throttle(rate, burst, api.key("throttle"))
    except AwsConstraintError as exc:
        raise ConfigError(exc.key, exc.value, exc.allowed) from None
    quo = api.obj("quota", ("limit", "period"))
    limit, period = quo.integer("limit", 10_000), (quo.string("period") or "DAY").upper()
    try:
        aws_rules.quota(limit, period, api.key("quota"))
    except AwsConstraintError as exc:
        raise ConfigError(exc.key, exc.value, exc.allowed) from None
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


def _functions(top: _Reader) -> FunctionsConfig:
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


def _results(top: _Reader) -> ResultsConfig:
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
            "urlTtlSeconds", res.integer("urlTtlSeconds", 3600), _url_ttl_seconds
        ),
    )


def longest_job_wait_days(job_ttl_days: int) -> int:
    """Days after its submission a job may still read its input: its row lives jobTtlDays
    (DynamoDB TTL, set at submit; until then a QUEUED, parked or retried job still runs, and
    TTL deletes late), and its launch message can sit in the dead-letter queue for
    ``batchctl retry`` as long as the DLQ keeps it (14 days; the launch queue keeps 4)."""
    queue_seconds = max(DEFAULT_RETENTION_SECONDS, SQS_MAX_RETENTION_SECONDS)
    return max(job_ttl_days, math.ceil(queue_seconds / 86_400))


def _inputs_outlive_jobs(top: _Reader, config: StackConfig) -> StackConfig:
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


def _notifications(top: _Reader) -> NotificationsConfig:
    notes = top.obj("notifications", ("email", "slackWebhook", "notionToken", "notionDatabaseId"))
    email = notes.string("email")
    if email is not None:
        email = notes.checked("email", email, aws_rules.email)
    webhook = notes.string("slackWebhook")
    if webhook is not None:
        notes.checked("slackWebhook", webhook, _slack_webhook)
    token = notes.string("notionToken")
    database = notes.string("notionDatabaseId")
    if (token is None) != (database is None):
        missing = "notionDatabaseId" if database is None else "notionToken"
        raise ConfigError(notes.key(missing), None, "set both notionToken and notionDatabaseId")
    if database is not None:
        notes.checked("notionDatabaseId", database, _notion_database_id)
    return NotificationsConfig(
        email=email,
        slack_webhook=pulumi.Output.secret(webhook) if webhook is not None else None,
        notion_token=pulumi.Output.secret(token) if token is not None else None,
        notion_database_id=database,
    )


def _ecr_keep_images(top: _Reader) -> int:
    ecr = top.obj("ecr", ("keepImages",))
    return ecr.checked(
        "keepImages", ecr.integer("keepImages", StackConfig.keep_images), aws_rules.keep_images
    )


# --- small validators that belong to this project, not to AWS ----------------------------


def _stale_seconds(value: int, key: str) -> int:
    # Our rule: the worker heartbeats every 60 s; anything under two beats flaps.
    if not 120 <= value <= 86_400:
        raise AwsConstraintError(key, value, "120..86400 seconds")
    return value


def _url_ttl_seconds(value: int, key: str) -> int:
    # AWS rule: a presigned URL signed with a Lambda role's temporary credentials stops working
    # when those credentials expire (at most 12 h), whatever its X-Amz-Expires says.
    if not 60 <= value <= 43_200:
        raise AwsConstraintError(key, value, "60..43200 seconds")
    return value


def _log_level(value: str, key: str) -> str:
    # Lambda's spelling, so the same value can go to logging_config and to BATCH_LOG_LEVEL.
    name = logs.level_name(value)
    if name is None:
        raise AwsConstraintError(key, value, ", ".join(LOG_LEVELS) + " (WARNING = WARN)")
    return name


def _slack_webhook(value: str, key: str) -> str:
    return aws_rules.https_url(value, key, host_suffix="hooks.slack.com")


def _notion_database_id(value: str, key: str) -> str:
    compact = value.replace("-", "")
    if len(compact) != 32 or any(c not in "0123456789abcdefABCDEF" for c in compact):
        raise AwsConstraintError(key, value, "a Notion database id (32 hex digits)")
    return value
