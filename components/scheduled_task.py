"""``ScheduledTask``: run a FargateWorker's task on a schedule (EventBridge Scheduler).

What it makes:
- an EventBridge Scheduler schedule (``cron(...)``, ``rate(...)`` or ``at(...)``, validated;
  IANA time zone; optional flexible window) whose templated ECS target runs the worker's task
  definition in the platform's cluster, with the platform's network configuration and the
  worker's capacity provider strategy (Fargate Spot allowed), a retry policy and a dead-letter
  queue for runs Scheduler could not start;
- that dead-letter queue (standard SQS, SSE, TLS-only) and, when alarms are on, an alarm on
  its depth to the failure topic;
- its own role, assumable only by ``scheduler.amazonaws.com`` for this account: ``ecs:RunTask``
  on the worker's task definition family in this cluster, ``iam:PassRole`` on the worker's two
  roles (to ECS tasks only), ``ecs:TagResource`` at launch, ``sqs:SendMessage`` on its DLQ.

A scheduled run is a job like any other. The target's ``Input`` is what Scheduler hands to
RunTask as the task ``overrides`` (a JSON ``TaskOverride``; AWS rejects other JSON with
"Unable to convert target input to TaskOverride"), so the job input travels as the container
environment variable ``BATCH_SCHEDULED_INPUT``. The task starts without ``BATCH_JOB_ID``; the
worker runtime then records the run as job ``<worker>_<ECS task id>`` with ``source =
"schedule"``, so it is listed, retried and reported like a submitted job. With ``array`` the
run is an array job: its items (or manifest) travel as ``BATCH_SCHEDULED_ARRAY``, checked
here with the API's rules, and the reconciler makes and fans out the parent when the task
stops (``jobcontract.scheduled``).

Idle cost: nothing (Scheduler: 14 million invocations/month free, then $1 per million).

Usage::

    ScheduledTask("nightly-audit", ScheduledTaskArgs(
        platform=platform, worker=content_analyzer, schedule="cron(0 3 * * ? *)",
        timezone="Europe/Berlin", input={"urls": ["https://example.com/"]}))
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulumi
import pulumi_aws as aws

import jobcontract
from components import aws_rules, iam
from components.alarms import dlq_depth_alarm
from components.aws_rules import AwsConstraintError
from components.fargate_worker import FargateWorker
from components.grants import Grantee, grant_run
from components.naming import node_resources
from jobcontract import Env
from jobcontract.arrays import RequestRejected
from jobcontract.scheduled import ScheduledArray, plan_array
from jobcontract.schema import Validator


class SchedulePlatform(Protocol):
    """What ``ScheduledTask`` reads of the platform (``BatchPlatform`` is one)."""

    @property
    def name_prefix(self) -> str: ...
    @property
    def cluster(self) -> aws.ecs.Cluster: ...
    @property
    def capacity_providers(self) -> aws.ecs.ClusterCapacityProviders: ...
    @property
    def assign_public_ip(self) -> bool: ...
    @property
    def alarms_enabled(self) -> bool: ...
    @property
    def failure_topic(self) -> aws.sns.Topic: ...
    def network_configuration(self) -> pulumi.Output[dict[str, Any]]: ...


TAG_SCHEDULE = "batch:schedule"
TAG_SOURCE = "batch:source"
# AWS rule: ECS RunTask overrides are limited to 8192 characters of JSON in total.
MAX_OVERRIDES_CHARS = 8192
# AWS rule: schedule names are 1-64 characters of [0-9A-Za-z_.-].
_SCHEDULE_NAME = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")
DLQ_RETENTION_SECONDS = 1_209_600  # 14 days, the SQS maximum
SCHEDULE_GROUP = "default"  # the account's built-in group: nothing to create or pay for


@dataclass(frozen=True, kw_only=True)
class ScheduledTaskArgs:
    """Arguments of ``ScheduledTask``."""

    platform: SchedulePlatform
    """The shared platform (cluster, network, failure topic). Required."""
    worker: FargateWorker
    """The worker whose task runs. Required."""
    schedule: str
    """``cron(min hour dom month dow year)``, ``rate(N unit)`` or ``at(yyyy-mm-ddThh:mm:ss)``.
    Required. Example: ``"cron(0 3 * * ? *)"`` (03:00 every day)."""
    timezone: str = "UTC"
    """IANA time zone of the expression. Default ``"UTC"``. Example: ``"Europe/Berlin"``."""
    input: Mapping[str, Any] = field(default_factory=dict)
    """The job input (checked against the worker's input schema). Default ``{}``. With
    ``array``: the fields every shard shares (the items are ``array``'s)."""
    array: ScheduledArray | None = None
    """Run as an array job, as ``POST /jobs`` with ``items`` or ``manifest`` does: its
    shards fan out on the worker's slots and merge back. Checked at preview with the API's
    rules (same limits, same messages). Default ``None``: one job. Example:
    ``ScheduledArray(items=[{"url": u} for u in URLS], shard_size=10)``."""
    flexible_window_minutes: int | None = None
    """Let Scheduler start up to this many minutes late to spread load (1..1440). Default
    ``None``: start on time."""
    retry_attempts: int = 2
    """Scheduler's retries when RunTask fails (e.g. no Spot capacity), 0..185. Default ``2``."""
    max_event_age_seconds: int = 3600
    """Give up retrying after this long, 60..86400. Default ``3600``."""
    enabled: bool = True
    """Schedule state. Default ``True``."""
    description: str = ""
    """Shown in the console. Default ``""``."""


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def task_overrides(job_input: Mapping[str, Any], array: ScheduledArray | None = None) -> str:
    """The target ``Input``: a RunTask ``TaskOverride`` putting the job input (and an array
    job's items or manifest, ``jobcontract.scheduled``) in the env."""
    environment = [{"name": Env.SCHEDULED_INPUT, "value": _compact(dict(job_input))}]
    if array is not None:
        environment.append({"name": Env.SCHEDULED_ARRAY, "value": _compact(array.request())})
    overrides = {
        "containerOverrides": [{"name": jobcontract.CONTAINER_NAME, "environment": environment}]
    }
    return json.dumps(overrides, sort_keys=True, separators=(",", ":"))


def role_name(schedule_name: str) -> str:
    return f"{schedule_name}-scheduler"


def _validate(name: str, args: ScheduledTaskArgs, name_prefix: str) -> tuple[str, str]:
    aws_rules.schedule_expression(args.schedule, f"{name}: schedule")
    aws_rules.timezone(args.timezone, f"{name}: timezone")
    aws_rules.flexible_window(args.flexible_window_minutes, f"{name}: flexible_window_minutes")
    aws_rules.scheduler_retry(args.retry_attempts, args.max_event_age_seconds, f"{name}: retry")
    schedule_name = f"{name_prefix}-{name}"
    if not _SCHEDULE_NAME.match(schedule_name):
        raise AwsConstraintError(f"{name}: schedule name", schedule_name, "1-64 of [0-9A-Za-z_.-]")
    # AWS rule: IAM role names are at most 64 characters.
    if len(role_name(schedule_name)) > 64:
        raise AwsConstraintError(
            f"{name}: role name", role_name(schedule_name), "at most 64 characters (shorten name)"
        )
    if args.array is not None:
        _validate_array(name, args)
    problems = [] if args.array else Validator(args.worker.input_schema).errors(dict(args.input))
    if problems:
        raise AwsConstraintError(
            f"{name}: input",
            dict(args.input),
            f"an input matching worker {args.worker.worker_name}'s schema ({'; '.join(problems)})",
        )
    overrides = task_overrides(args.input, args.array)
    if len(overrides) > MAX_OVERRIDES_CHARS:
        raise AwsConstraintError(
            f"{name}: input",
            f"{len(overrides)} characters of overrides",
            f"at most {MAX_OVERRIDES_CHARS} (ECS RunTask overrides limit); pass a pointer instead",
        )
    return schedule_name, overrides


@dataclass(frozen=True)
class ScheduledTaskNodes:
    """The children of a ``ScheduledTask`` (SST's ``nodes``)."""

    schedule: aws.scheduler.Schedule
    role: aws.iam.Role
    """The schedule's role (Scheduler assumes it to run the task)."""
    policy: aws.iam.RolePolicy
    """The role's one inline policy: RunTask + PassRole (``grant_run``) and its DLQ."""
    dlq: aws.sqs.Queue
    dlq_policy: aws.sqs.QueuePolicy
    """The DLQ's TLS-only policy."""
    dlq_alarm: aws.cloudwatch.MetricAlarm | None

    def resources(self) -> list[pulumi.Resource]:
        return node_resources(self)


def _validate_array(name: str, args: ScheduledTaskArgs) -> None:
    """The API's checks of an array request (``jobcontract.scheduled.plan_array``), but the
    manifest's HeadObject (the reconciler's, when the schedule fires)."""
    array = args.array
    assert array is not None
    if not isinstance(array, ScheduledArray):
        raise AwsConstraintError(f"{name}: array", array, "a jobcontract.scheduled.ScheduledArray")
    try:
        plan_array(args.worker.worker_name, args.worker.input_schema, args.input, array.request())
    except RequestRejected as exc:
        limit = exc.extra.get("limit")
        raise AwsConstraintError(
            f"{name}: array",
            exc.code + (f" (limit {limit})" if limit else ""),
            f"a request POST /jobs accepts: {exc.message}"
            + (f" ({'; '.join(exc.details[:3])})" if exc.details else ""),
        ) from exc


class ScheduledTask(pulumi.ComponentResource):
    """An EventBridge Scheduler schedule running a worker's task, with its DLQ and role."""

    schedule: aws.scheduler.Schedule
    role: aws.iam.Role
    dlq: aws.sqs.Queue
    dlq_alarm: aws.cloudwatch.MetricAlarm | None

    def __init__(
        self, name: str, args: ScheduledTaskArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:ScheduledTask", name, None, opts)
        schedule_name, overrides = _validate(name, args, args.platform.name_prefix)
        self._dead_letter_queue(name, schedule_name)
        self._role(name, schedule_name, args.worker)
        self._grants(name, args)
        self._schedule(name, schedule_name, args, overrides)
        self._alarm(name, schedule_name, args.platform)
        self.register_outputs(
            {"schedule_arn": self.schedule.arn, "dlq_url": self.dlq.url, "role_arn": self.role.arn}
        )

    def _dead_letter_queue(self, name: str, schedule_name: str) -> None:
        """Runs Scheduler could not start (standard SQS, SSE, kept 14 days, TLS only)."""
        child = pulumi.ResourceOptions(parent=self)
        self.dlq = aws.sqs.Queue(
            f"{name}-dlq",
            name=f"{schedule_name}-dlq",
            sqs_managed_sse_enabled=True,
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            opts=child,
        )
        self._dlq_policy = aws.sqs.QueuePolicy(
            f"{name}-dlq-tls-only",
            queue_url=self.dlq.id,
            policy=iam.policy_document(iam.deny_insecure_transport(["sqs:*"], [self.dlq.arn])),
            opts=child,
        )

    def _role(self, name: str, schedule_name: str, worker: FargateWorker) -> None:
        """The role Scheduler assumes, for this account's schedule group only."""
        account = aws.get_caller_identity_output().account_id
        region = aws.get_region_output().region
        partition = aws.get_partition_output().partition
        # AWS rule: Scheduler assumes its execution role with aws:SourceArn = the schedule
        # GROUP's ARN (never the schedule's), so a condition naming the schedule makes every
        # invocation fail to assume the role (Scheduler user guide, "Set up the execution role").
        group_arn = pulumi.Output.concat(
            "arn:", partition, ":scheduler:", region, ":", account, ":schedule-group/",
            SCHEDULE_GROUP,
        )  # fmt: skip
        self.role = aws.iam.Role(
            f"{name}-role",
            name=role_name(schedule_name),
            description=f"EventBridge Scheduler: runs {worker.worker_name} tasks for {name}",
            # Confused-deputy guard: only this account's schedule group.
            assume_role_policy=iam.guarded_trust_policy(
                "scheduler.amazonaws.com", account, group_arn, arn_operator="ArnEquals"
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _grants(self, name: str, args: ScheduledTaskArgs) -> None:
        """What the schedule's role may do: run this worker's task family (``grant_run``, as
        the launcher is granted every worker's) and dead-letter undeliverable runs."""
        worker = args.worker
        grantee = Grantee(f"{name} scheduler")
        grant_run(
            grantee,
            args.platform.cluster.arn,
            pulumi.Output.concat(worker.task_definition.arn_without_revision, ":*"),
            [worker.task_role.arn, worker.execution_role.arn],
        )
        grantee.add(iam.Statement(iam.DEAD_LETTER_SEND_ACTIONS, [self.dlq.arn], sid="DeadLetter"))
        self._policy = aws.iam.RolePolicy(
            f"{name}-run-task",
            role=self.role.id,
            policy=grantee.document(),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _schedule(
        self, name: str, schedule_name: str, args: ScheduledTaskArgs, overrides: str
    ) -> None:
        """The schedule: its expression, window and state; its target runs the task."""
        platform, worker = args.platform, args.worker
        window = args.flexible_window_minutes
        self.schedule = aws.scheduler.Schedule(
            f"{name}-schedule",
            name=schedule_name,
            group_name=SCHEDULE_GROUP,
            description=args.description or f"Runs worker {worker.worker_name} ({name})",
            schedule_expression=args.schedule.strip(),
            schedule_expression_timezone=args.timezone,
            state="ENABLED" if args.enabled else "DISABLED",
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(
                mode="FLEXIBLE" if window else "OFF", maximum_window_in_minutes=window
            ),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=platform.cluster.arn,
                role_arn=self.role.arn,
                input=overrides,
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                    maximum_retry_attempts=args.retry_attempts,
                    maximum_event_age_in_seconds=args.max_event_age_seconds,
                ),
                dead_letter_config=aws.scheduler.ScheduleTargetDeadLetterConfigArgs(
                    arn=self.dlq.arn
                ),
                ecs_parameters=_ecs_parameters(name, platform, worker),
            ),
            # RunTask with a capacity provider strategy needs the providers on the cluster.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self._policy, platform.capacity_providers]
            ),
        )

    def _alarm(self, name: str, schedule_name: str, platform: SchedulePlatform) -> None:
        """When alarms are on: the DLQ's depth, to the failure topic."""
        self.dlq_alarm = None
        if platform.alarms_enabled:
            self.dlq_alarm = dlq_depth_alarm(
                f"{name}-dlq-depth",
                queue_name=self.dlq.name,
                description=(
                    f"Scheduled runs of {name} that never started (see {schedule_name}-dlq)"
                ),
                topic_arn=platform.failure_topic.arn,
                opts=pulumi.ResourceOptions(parent=self),
            )

    @property
    def nodes(self) -> ScheduledTaskNodes:
        """Every child of this scheduled task, by role."""
        return ScheduledTaskNodes(
            self.schedule, self.role, self._policy, self.dlq, self._dlq_policy, self.dlq_alarm
        )


def _ecs_parameters(
    name: str, platform: SchedulePlatform, worker: FargateWorker
) -> aws.scheduler.ScheduleTargetEcsParametersArgs:
    """The target's RunTask: the worker's task definition in the platform's cluster and
    network, tagged as this schedule's."""
    network = platform.network_configuration()
    return aws.scheduler.ScheduleTargetEcsParametersArgs(
        task_definition_arn=worker.task_definition.arn,
        task_count=1,
        # AWS rule (Scheduler AwsVpcConfiguration): AssignPublicIp ENABLED only with
        # LaunchType FARGATE, and a launch type excludes a capacity provider
        # strategy. So public mode runs scheduled tasks on-demand; private mode
        # keeps the worker's strategy (Spot allowed).
        launch_type="FARGATE" if platform.assign_public_ip else None,
        capacity_provider_strategies=(
            None
            if platform.assign_public_ip
            else [
                aws.scheduler.ScheduleTargetEcsParametersCapacityProviderStrategyArgs(
                    capacity_provider=s["capacityProvider"],
                    weight=s["weight"],
                    base=s["base"],
                )
                for s in worker.capacity_provider_strategy
            ]
        ),
        network_configuration=aws.scheduler.ScheduleTargetEcsParametersNetworkConfigurationArgs(
            subnets=network.apply(lambda n: n["subnets"]),
            security_groups=network.apply(lambda n: n["securityGroups"]),
            assign_public_ip=network.apply(lambda n: n["assignPublicIp"] == "ENABLED"),
        ),
        enable_ecs_managed_tags=True,
        tags={TAG_SCHEDULE: name, TAG_SOURCE: "schedule"},
    )
