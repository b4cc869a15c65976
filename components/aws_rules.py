"""AWS constraints that Pulumi mocks cannot check, validated before anything is sent to AWS.

Each check names the AWS rule it enforces. A violation raises ``AwsConstraintError`` with
the setting's name, the value given and what is allowed, so ``pulumi preview`` fails with a
message a platform engineer can act on. Two rule groups live in their own modules and are
re-exported here: schedules (``aws_rules_scheduler``) and IAM quotas (``aws_rules_iam``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from components.aws_rules_error import AwsConstraintError, whole_within, within
from components.aws_rules_iam import (
    IAM_MANAGED_POLICIES_PER_ROLE,
    IAM_MANAGED_POLICY_CHARS,
    IAM_PATH_MAX,
    IAM_ROLE_INLINE_POLICY_CHARS,
    IAM_TRUST_POLICY_CHARS,
    iam_path,
    managed_policy_count,
    policy_chars,
    role_inline_policies,
    trust_policy,
)
from components.aws_rules_scheduler import (
    event_rule_schedule,
    flexible_window,
    schedule_expression,
    scheduler_retry,
    timezone,
)
from jobcontract import FARGATE_CPU_MEMORY

# Re-exported: every rule is read as ``aws_rules.X`` (the groups above live in their modules).
__all__ = [
    "IAM_MANAGED_POLICIES_PER_ROLE",
    "IAM_MANAGED_POLICY_CHARS",
    "IAM_PATH_MAX",
    "IAM_ROLE_INLINE_POLICY_CHARS",
    "IAM_TRUST_POLICY_CHARS",
    "AwsConstraintError",
    "event_rule_schedule",
    "flexible_window",
    "iam_path",
    "managed_policy_count",
    "policy_chars",
    "role_inline_policies",
    "schedule_expression",
    "scheduler_retry",
    "timezone",
    "trust_policy",
    "whole_within",
    "within",
]


# --- Fargate ---------------------------------------------------------------------------
# AWS rule: Fargate task cpu/memory must be one of the documented pairs (ECS developer guide,
# "Task CPU and memory"). The table is jobcontract.FARGATE_CPU_MEMORY, shared with the API
# handler, which checks per-job overrides against the same pairs.
FARGATE_ARCHITECTURES = ("ARM64", "X86_64")


def fargate_pair(cpu: int, memory: int, key: str = "cpu/memory") -> tuple[int, int]:
    if cpu not in FARGATE_CPU_MEMORY:
        raise AwsConstraintError(
            f"{key} (cpu)", cpu, f"Fargate cpu units {sorted(FARGATE_CPU_MEMORY)}"
        )
    allowed = FARGATE_CPU_MEMORY[cpu]
    if memory not in allowed:
        raise AwsConstraintError(
            f"{key} (memory)",
            memory,
            f"for cpu {cpu}, memory MiB in {list(allowed)}",
        )
    return cpu, memory


def fargate_architecture(value: str, key: str = "architecture") -> str:
    upper = value.upper().replace("AMD64", "X86_64").replace("ARM", "ARM").strip()
    if upper not in FARGATE_ARCHITECTURES:
        raise AwsConstraintError(key, value, "ARM64 or X86_64")
    return upper


def docker_platform(architecture: str) -> str:
    """Docker build platform matching an ECS runtimePlatform cpuArchitecture."""
    return {"ARM64": "linux/arm64", "X86_64": "linux/amd64"}[fargate_architecture(architecture)]


# AWS rule: ECS container stopTimeout on Fargate is at most 120 seconds.
FARGATE_MAX_STOP_TIMEOUT = 120


def stop_timeout(seconds: int, key: str = "stopTimeout") -> int:
    allowed = f"2..{FARGATE_MAX_STOP_TIMEOUT} seconds on Fargate"
    return within(seconds, 2, FARGATE_MAX_STOP_TIMEOUT, key, allowed)


# --- CloudWatch Logs -------------------------------------------------------------------
# AWS rule: PutRetentionPolicy accepts only these day counts (CloudWatch Logs API reference).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip


def log_retention(days: int, key: str = "logRetentionDays") -> int:
    if days not in LOG_RETENTION_DAYS:
        raise AwsConstraintError(key, days, f"one of {list(LOG_RETENTION_DAYS)}")
    return days


# --- SQS -------------------------------------------------------------------------------
# AWS rule: queue names are 1-80 characters of [A-Za-z0-9_-]; a FIFO queue's name must end
# in ".fifo" (the suffix counts toward the 80).
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,75}\.fifo$")
SQS_MAX_VISIBILITY_TIMEOUT = 43_200  # 12 hours
SQS_MAX_RECEIVE_COUNT = 1000


def fifo_queue_name(name: str, key: str = "queue name") -> str:
    if not _QUEUE_NAME.match(name):
        raise AwsConstraintError(key, name, "1-80 chars of [A-Za-z0-9_-] ending in '.fifo'")
    return name


def visibility_timeout_for(consumer_timeout_seconds: int, batch_window_seconds: int = 0) -> int:
    """AWS guidance for a Lambda SQS trigger: visibility timeout at least six times the
    function timeout plus the batching window, so a message is not redelivered while a
    throttled or retried invocation still holds it."""
    value = 6 * consumer_timeout_seconds + batch_window_seconds
    if value > SQS_MAX_VISIBILITY_TIMEOUT:
        raise AwsConstraintError(
            "launcher timeout",
            consumer_timeout_seconds,
            f"6 x timeout must fit SQS's {SQS_MAX_VISIBILITY_TIMEOUT} s visibility limit",
        )
    return value


# One named function per AWS rule, each citing its source, all written with ``within``: the
# repeated shape below is the table of rules (each with its own message), not copied logic.
# AWS rule: an SQS event source mapping on a FIFO queue takes batch size 1..10 and no
# batching window; maximum concurrency is 2..1000.
def sqs_batch_size(size: int, key: str = "batchSize") -> int:
    return within(size, 1, 10, key, "1..10 for a FIFO queue trigger")


def esm_max_concurrency(value: int, key: str = "maxConcurrency") -> int:
    return within(value, 2, 1000, key, "2..1000 (Lambda SQS scaling config)")


# Fargate vCPU quota (our setting ``fargateVcpuLimit``). AWS rule: Fargate task sizes start at
# 0.25 vCPU (256 cpu units, ECS developer guide "Task CPU and memory"), and the account's
# "Fargate On-Demand vCPU resource count" quota (ECS developer guide, "Amazon ECS service
# quotas": https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html)
# can be as low as 6 on a new account; 4096 is far above any default quota. RunTask beyond
# the quota fails ("You've reached the limit on the number of vCPUs you can run concurrently").
FARGATE_MIN_TASK_VCPU = 0.25
FARGATE_VCPU_LIMIT_MAX = 4096


def fargate_vcpu_limit(value: float, key: str = "fargateVcpuLimit") -> float:
    if value != 0 and not FARGATE_MIN_TASK_VCPU <= value <= FARGATE_VCPU_LIMIT_MAX:
        raise AwsConstraintError(
            key,
            value,
            f"0 (no limit) or {FARGATE_MIN_TASK_VCPU:g}..{FARGATE_VCPU_LIMIT_MAX} vCPUs (the "
            "smallest Fargate task is 0.25 vCPU; a new account's quota can be 6)",
        )
    return value


# --- Lambda ----------------------------------------------------------------------------
# AWS rule: memory 128..10240 MB in 1 MB steps; timeout 1..900 s.
def lambda_memory(mb: int, key: str = "memory") -> int:
    return within(mb, 128, 10_240, key, "128..10240 MB")


def lambda_timeout(seconds: int, key: str = "timeout") -> int:
    return within(seconds, 1, 900, key, "1..900 seconds")


# AWS rule: API Gateway REST integrations time out at 29 s by default; the API handler must
# answer well before that or the client sees a 504.
API_GATEWAY_INTEGRATION_TIMEOUT = 29


def api_handler_timeout(seconds: int, key: str = "apiHandler.timeout") -> int:
    lambda_timeout(seconds, key)
    if seconds > API_GATEWAY_INTEGRATION_TIMEOUT:
        raise AwsConstraintError(
            key, seconds, f"at most {API_GATEWAY_INTEGRATION_TIMEOUT} s (API Gateway timeout)"
        )
    return seconds


# --- Networking ------------------------------------------------------------------------
def cidr(value: str, key: str = "allowedIps") -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        allowed = f"an IPv4/IPv6 CIDR such as 203.0.113.0/24 ({exc})"
        raise AwsConstraintError(key, value, allowed) from exc


def cidrs(values: Iterable[str], key: str = "allowedIps") -> tuple[str, ...]:
    return tuple(cidr(v, f"{key}[{i}]") for i, v in enumerate(values))


_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_VPC = re.compile(r"^vpc-[0-9a-f]{8,17}$")


def subnet_id(value: str, key: str = "subnetIds") -> str:
    if not _SUBNET.match(value):
        raise AwsConstraintError(key, value, "a subnet id like subnet-0abc1234")
    return value


def vpc_id(value: str, key: str = "vpcId") -> str:
    if not _VPC.match(value):
        raise AwsConstraintError(key, value, "a VPC id like vpc-0abc1234")
    return value


# --- Names -----------------------------------------------------------------------------
_WORKER = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def worker_name(name: str, key: str = "worker name") -> str:
    # Our rule, derived from AWS's tightest consumer: it becomes part of an SQS FIFO name
    # (80 chars), an IAM role name (64 chars) and an ECR repository name (lowercase).
    if not _WORKER.match(name) or len(name) > 32:
        raise AwsConstraintError(key, name, "1-32 lowercase letters, digits and single hyphens")
    return name


def email(value: str, key: str = "alertEmail") -> str:
    if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
        raise AwsConstraintError(key, value, "an e-mail address")
    return value


# AWS rule: API Gateway usage plan / stage throttling: rate > 0, burst >= 1; quota periods.
QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")


def throttle(rate: float, burst: int, key: str = "api.throttle") -> tuple[float, int]:
    if rate <= 0 or rate > 10_000:
        raise AwsConstraintError(f"{key}.rateLimit", rate, "0 < rate <= 10000 requests/s")
    return rate, within(burst, 1, 5_000, f"{key}.burstLimit", "1..5000")


def quota(limit: int, period: str, key: str = "api.quota") -> tuple[int, str]:
    if limit < 1:
        raise AwsConstraintError(f"{key}.limit", limit, "a positive request count")
    if period not in QUOTA_PERIODS:
        raise AwsConstraintError(f"{key}.period", period, ", ".join(QUOTA_PERIODS))
    return limit, period


# AWS rule: ECR lifecycle policy rule countNumber >= 1.
def keep_images(count: int, key: str = "keepImages") -> int:
    return within(count, 1, 1000, key, "1..1000 images")


# Our rule: a share is a whole percent; ECS capacity provider weights are 0..1000 integers.
def percent(value: int, key: str = "percent") -> int:
    return within(value, 0, 100, key, "a whole percent 0..100")


# AWS rule: S3 lifecycle Expiration Days and DynamoDB TTL horizons must be positive integers.
def positive_days(days: int, key: str = "days", maximum: int = 3650) -> int:
    return within(days, 1, maximum, key, f"1..{maximum} days")


# AWS rule: provisioned concurrency is a positive count (0 here means "none"); it counts
# against the account's regional concurrency limit (1000 by default, often 10 on new accounts).
def provisioned_concurrency(value: int, key: str = "provisionedConcurrency") -> int:
    return within(value, 0, 1000, key, "0 (off) .. 1000")


# AWS rule: a Bedrock foundation model id is "provider.model[:version]" in lowercase letters,
# digits and hyphens (the modelId pattern of the Bedrock API, e.g. GetFoundationModelAvailability:
# https://docs.aws.amazon.com/bedrock/latest/APIReference/API_GetFoundationModelAvailability.html).
# A cross-Region (system-defined) inference profile id is that model id behind a geography
# prefix (us., eu., apac., jp., au.: "Geographic cross-Region inference") or global. ("Global
# cross-Region inference"), e.g. us.amazon.nova-lite-v1:0; several newer models are served
# on demand only through a profile (each model card lists its In-Region / Geo / Global ids:
# https://docs.aws.amazon.com/bedrock/latest/userguide/model-cards.html).
BEDROCK_PROFILE_PREFIXES = ("us", "eu", "apac", "jp", "au", "global")
_BEDROCK_SEGMENT = "[a-z0-9-]{1,63}"
# provider.model (the API pattern also admits the profile prefix; a model id has no third part)
_BEDROCK_FOUNDATION_MODEL = re.compile(
    rf"^{_BEDROCK_SEGMENT}\.{_BEDROCK_SEGMENT}(:{_BEDROCK_SEGMENT}){{0,2}}$"
)
BEDROCK_MODEL_ALLOWED = (
    "a Bedrock foundation model id, provider.model[:version] in lowercase (e.g."
    " amazon.nova-lite-v1:0), or a cross-Region inference profile id,"
    f" <{'|'.join(BEDROCK_PROFILE_PREFIXES)}>.<model id> (e.g. us.amazon.nova-lite-v1:0)"
)


@dataclass(frozen=True)
class BedrockModel:
    """A validated model id: what the worker sends as ``modelId``, the foundation model it
    runs on, and the profile geography (``None`` = the foundation model in this region)."""

    model_id: str
    foundation_model: str
    profile_prefix: str | None = None

    @property
    def is_global_profile(self) -> bool:
        return self.profile_prefix == "global"


def bedrock_model(value: str, key: str = "bedrockModelId") -> BedrockModel:
    prefix, _, rest = value.partition(".")
    if prefix in BEDROCK_PROFILE_PREFIXES and _BEDROCK_FOUNDATION_MODEL.match(rest):
        return BedrockModel(value, rest, prefix)
    if prefix not in BEDROCK_PROFILE_PREFIXES and _BEDROCK_FOUNDATION_MODEL.match(value):
        return BedrockModel(value, value)
    raise AwsConstraintError(key, value, BEDROCK_MODEL_ALLOWED)


def bedrock_model_id(value: str, key: str = "bedrockModelId") -> str:
    return bedrock_model(value, key).model_id


def https_url(value: str, key: str = "url", host_suffix: str | None = None) -> str:
    """An https URL (optionally on a given host); never echoes the value (it may be secret)."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    ok = parts.scheme == "https" and bool(parts.hostname)
    if ok and host_suffix is not None:
        ok = (parts.hostname or "").endswith(host_suffix)
    if not ok:
        where = f" on {host_suffix}" if host_suffix else ""
        raise AwsConstraintError(key, "<redacted>", f"an https:// URL{where}")
    return value


_ROUTE_TABLE = re.compile(r"^rtb-[0-9a-f]{8,17}$")


def route_table_id(value: str, key: str = "routeTableIds") -> str:
    if not _ROUTE_TABLE.match(value):
        raise AwsConstraintError(key, value, "a route table id like rtb-0abc1234")
    return value
