"""The typed stack configuration: every ``ai-batch:*`` setting, validated once, up front.

``load_config()`` reads Pulumi config into frozen dataclasses. A wrong value fails
``pulumi preview`` before any resource is declared, with a ``ConfigError`` naming the full
key (``ai-batch:api.throttle.rateLimit``), the value given and what is allowed. Secret
values (Slack webhook, Notion token) never appear in an error message and are handed on
only as secret ``pulumi.Output``s.

The records are ``components.config_types`` (re-exported here), each config object's reading
and checks ``components.config_sections``, the typed reader ``components.config_reader``.

Structured settings are Pulumi config objects, e.g.::

    pulumi config set --path 'api.throttle.rateLimit' 20
    pulumi config set --path --secret 'notifications.slackWebhook' https://hooks.slack.com/...
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pulumi

from components import aws_rules, config_sections
from components.config_reader import ConfigReader
from components.config_sections import LOG_LEVELS, longest_job_wait_days
from components.config_types import (
    ApiConfig,
    CapacityShare,
    ConfigError,
    FunctionConfig,
    FunctionsConfig,
    NetworkConfig,
    NetworkMode,
    NotificationsConfig,
    QuotaConfig,
    ResultsConfig,
    StackConfig,
    ThrottleConfig,
)

__all__ = [
    "LOG_LEVELS",
    "NAME_PREFIX_MAX",
    "PROJECT",
    "ApiConfig",
    "CapacityShare",
    "ConfigError",
    "FunctionConfig",
    "FunctionsConfig",
    "NetworkConfig",
    "NetworkMode",
    "NotificationsConfig",
    "QuotaConfig",
    "ResultsConfig",
    "StackConfig",
    "ThrottleConfig",
    "load_config",
    "longest_job_wait_days",
    "parse_config",
]

PROJECT = "ai-batch"

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
    _check_name_prefix(project, stack)
    _check_renamed_keys(values, project)
    top = ConfigReader(f"{project}:", values, _TOP_LEVEL_KEYS)
    return config_sections.inputs_outlive_jobs(top, _stack_config(top, project, stack))


def _check_name_prefix(project: str, stack: str) -> None:
    prefix = f"{project}-{stack}".lower()
    if len(prefix) > NAME_PREFIX_MAX or not _NAME_PREFIX.match(prefix) or "--" in prefix:
        raise ConfigError(
            "pulumi stack name",
            stack,
            f"lowercase letters, digits and single hyphens, with '{project}-<stack>' at most "
            f"{NAME_PREFIX_MAX} characters (it prefixes bucket, table and function names)",
        )


def _check_renamed_keys(values: Mapping[str, Any], project: str) -> None:
    for old_key, new_key in _RENAMED_KEYS.items():
        if old_key in values:
            raise ConfigError(
                f"{project}:{old_key}", values[old_key], f"renamed: set {project}:{new_key}"
            )


def _stack_config(top: ConfigReader, project: str, stack: str) -> StackConfig:
    """Every top-level setting, each read and checked (objects by ``config_sections``)."""
    sections = config_sections
    return StackConfig(
        project=project,
        stack=stack,
        network=sections.network(top),
        log_retention_days=top.checked(
            "logRetentionDays", top.integer("logRetentionDays", 14), aws_rules.log_retention
        ),
        protect=top.boolean("protect", False),
        point_in_time_recovery=top.boolean("pointInTimeRecovery", False),
        alarms=top.boolean("alarms", False),
        container_insights=top.boolean("containerInsights", False),
        spot_share=top.checked("spotShare", top.integer("spotShare", 100), aws_rules.percent),
        spot_fallback=top.boolean("spotFallback", True),
        api=sections.api(top),
        functions=sections.functions(top),
        results=sections.results(top),
        job_ttl_days=top.checked(
            "jobTtlDays", top.integer("jobTtlDays", 30), aws_rules.positive_days
        ),
        sweep_rate=top.checked(
            "sweepRate", top.string("sweepRate") or "rate(5 minutes)", aws_rules.event_rule_schedule
        ),
        heartbeat_stale_seconds=top.checked(
            "heartbeatStaleSeconds",
            top.integer("heartbeatStaleSeconds", 300),
            sections.stale_seconds,
        ),
        notifications=sections.notifications(top),
        bedrock_model_id=top.checked(
            "bedrockModelId",
            top.string("bedrockModelId") or StackConfig.bedrock_model_id,
            aws_rules.bedrock_model_id,
        ),
        keep_images=sections.ecr_keep_images(top),
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
        log_level=top.checked("logLevel", (top.string("logLevel") or "INFO"), sections.log_level),
    )
