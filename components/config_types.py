"""The typed stack settings: one frozen dataclass per ``ai-batch:*`` config object, each
field documented with its default, and ``ConfigError``. ``components.config`` reads and
validates them (``load_config``); everything else only reads these records."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import pulumi

from components.aws_rules import AwsConstraintError

NetworkMode = Literal["public", "private"]


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


def spot_weights(spot_share: int) -> tuple[int, int]:
    """The one rule for a Spot percentage as ECS strategy weights (Fargate and Managed
    Instances alike): ``(spot, on_demand)`` in lowest terms; a zero weight means that provider
    is left out of the strategy (AWS: at least one provider needs a weight above 0)."""
    spot, on_demand = spot_share, 100 - spot_share
    divisor = math.gcd(spot, on_demand) or 1
    return spot // divisor, on_demand // divisor


@dataclass(frozen=True)
class CapacityShare:
    """One entry of an ECS capacity provider strategy."""

    # ECS's strategy-item fields; duplicates pairs this field list with local_pipeline's
    # EventSource by shape only (other record, other fields).
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
        spot, on_demand = spot_weights(self.spot_share)
        shares = (CapacityShare("FARGATE_SPOT", spot), CapacityShare("FARGATE", on_demand))
        return tuple(s for s in shares if s.weight > 0)
