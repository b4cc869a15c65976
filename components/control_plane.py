"""``ControlPlane``: the four Lambdas that move jobs through their states.

- ``api``: the REST API handler (submit, status, list, cancel, retry; presigned result URLs).
- ``launcher``: consumes the stack's launch queue and calls ``ecs:RunTask``.
- ``reconciler``: ECS "Task State Change" (STOPPED) events of this cluster -> retry / fail /
  notify. An event it failed on every attempt goes to its on-failure destination, the
  ``<prefix>-reconciler-failed`` queue (``components.failed_events``).
- ``sweep``: on a schedule, finds jobs past their timeout or silent (no heartbeat) and stops
  or fails them; it also catches the rare ECS event that was never delivered, and hands the
  reconciler's failed events to the reconciler again.

The stack's one launch queue (``JobQueue`` ``<prefix>-launch.fifo`` + its DLQ) is declared
here too: every worker's jobs go through it (message group = job id), so the stack polls one
queue and alarms on one DLQ whatever the number of workers.

Each function gets all its grants in ``ControlPlane._grants`` (one function per role in
``components.control_plane_grants``), once per stack, each made by the resource accessed
(``components.grants``: ``queue.grant_send``, ``table.grant_job_rows``, ``bucket.grant_prefix``,
``grant_run``...), so their size does not depend on the number of workers (IAM caps one
role's inline policies at 10,240 characters):
- api, reconciler, sweep: ``sqs:SendMessage`` on the launch queue (its ARN), never its DLQ;
- reconciler: ``sqs:SendMessage`` on its failed-events queue (Lambda delivers the record of
  an event that failed every attempt with the function's role); sweep: receive/delete there;
- launcher: receive/delete on the launch queue, and ``grant_run`` over the whole stack:
  ``ecs:RunTask`` on the stack's task families (``task-definition/<prefix>-*:*``) in this
  cluster only (``ecs:cluster``), ``ecs:TagResource`` at launch (``ecs:CreateAction``),
  ``iam:PassRole`` on the stack's worker roles by role path
  (``role/aibatch/<prefix>/workers/*``) to ``ecs-tasks.amazonaws.com`` only.
A ``FargateWorker`` adds nothing to these roles. ``iam_ledger`` records every policy of the
four roles and fails the program before one of IAM's per-role quotas would be exceeded.

Reserved concurrency is left unset on purpose: new accounts can have a regional
concurrency limit as low as 10, and AWS refuses a reservation that would leave fewer than
10 unreserved executions, so a default reservation would break first deployments. The
launcher's parallelism is bounded by the launch queue trigger's maximum concurrency instead
(``launcherConcurrency``, exported to it as ``BATCH_LAUNCHER_CONCURRENCY`` so each invocation
can keep to its share of RunTask's account rate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import iam
from components.config import FunctionConfig, StackConfig
from components.control_plane_grants import (
    Accessed,
    StackTasks,
    api_grants,
    launcher_grants,
    reconciler_grants,
    sweep_grants,
)
from components.failed_events import FailedEvents, failed_events_queue, on_failure_to
from components.grants import (
    Cluster,
    FailedEventsQueue,
    FailureTopic,
    Grantee,
    JobsTable,
    ResultsBucket,
    Secrets,
)
from components.job_queue import JobQueue, JobQueueArgs
from components.naming import node_resources, renamed_from
from components.python_function import PythonFunction, PythonFunctionArgs
from jobcontract import ECS_EVENT_SOURCE, ECS_TASK_STATE_CHANGE, Env

# The launch queue's name inside the stack prefix: ``<prefix>-launch.fifo``.
LAUNCH_QUEUE = "launch"


@dataclass(frozen=True, kw_only=True)
class ControlPlaneArgs:
    """Arguments of ``ControlPlane``: the platform's pieces it uses, nothing else (all
    required; ``BatchPlatform`` passes its own)."""

    config: StackConfig
    """The validated stack config (functions, concurrency, TTLs, log level, alarms)."""
    jobs_table: aws.dynamodb.Table
    results_bucket: aws.s3.Bucket
    cluster: aws.ecs.Cluster
    failure_topic: aws.sns.Topic
    failure_topic_key: aws.kms.Key | None
    """The topic's customer managed key (stacks with alarms), else ``None``."""
    subnet_ids: pulumi.Output[list[str]]
    security_group_ids: pulumi.Output[list[str]]
    region: pulumi.Output[str]
    account_id: pulumi.Output[str]
    slack_webhook_secret: aws.secretsmanager.Secret | None = None
    notion_secret: aws.secretsmanager.Secret | None = None


def task_stopped_pattern(cluster_arn: str) -> dict[str, object]:
    """EventBridge pattern: STOPPED task events of one cluster only."""
    return {
        "source": [ECS_EVENT_SOURCE],
        "detail-type": [ECS_TASK_STATE_CHANGE],
        "detail": {"clusterArn": [cluster_arn], "lastStatus": ["STOPPED"]},
    }


@dataclass(frozen=True)
class ControlPlaneNodes:
    """The children of a ``ControlPlane`` (SST's ``nodes``); the functions and the queue are
    components with ``nodes`` of their own."""

    # One typed field per child, then ``resources``: every component's nodes class has this
    # shape (duplicates pairs them), only the children differ.
    api: PythonFunction
    launcher: PythonFunction
    reconciler: PythonFunction
    sweep: PythonFunction
    launch_queue: JobQueue
    task_stopped_rule: aws.cloudwatch.EventRule
    sweep_rule: aws.cloudwatch.EventRule
    invoke_permissions: tuple[aws.lambda_.Permission, ...]
    """EventBridge's permissions to invoke the reconciler and the sweep."""
    targets: tuple[aws.cloudwatch.EventTarget, ...]
    failed_events: aws.sqs.Queue
    """The reconciler's on-failure destination (``components.failed_events``)."""
    failed_events_policy: aws.sqs.QueuePolicy
    failed_events_alarm: aws.cloudwatch.MetricAlarm | None
    reconciler_on_failure: aws.lambda_.FunctionEventInvokeConfig

    def resources(self) -> list[pulumi.Resource]:
        return node_resources(self)


class ControlPlane(pulumi.ComponentResource):
    """The control-plane Lambdas of one platform (see the module docstring)."""

    api: PythonFunction
    launcher: PythonFunction
    reconciler: PythonFunction
    sweep: PythonFunction
    task_stopped_rule: aws.cloudwatch.EventRule
    sweep_rule: aws.cloudwatch.EventRule
    launch_queue: JobQueue
    """The stack's one launch queue (every worker's jobs) and its DLQ."""
    iam_ledger: iam.InlinePolicyLedger
    """Inline policies of the four roles; see the module docstring."""
    failed_events: FailedEvents
    """The reconciler's failed events (on-failure destination), redriven by the sweep."""
    reconciler_on_failure: aws.lambda_.FunctionEventInvokeConfig

    def __init__(
        self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:ControlPlane", name, None, opts)
        self._args = args
        self._launch_queue(name)
        self._failed_events(name)
        self._functions(name, self._grants(), self._environment())
        self._ledger()
        self.reconciler_on_failure = on_failure_to(
            f"{name}-reconciler",
            self.reconciler,
            self.failed_events.queue,
            pulumi.ResourceOptions(parent=self),
        )
        # The launcher's policy (ConsumeLaunchQueue) before the mapping: Lambda checks it.
        self.launch_queue.trigger(self.launcher.function, depends_on=[self.launcher.policy])
        self._triggers(name)
        self.register_outputs(
            {
                "api_function": self.api.function.name,
                "launcher_function": self.launcher.function.name,
                "reconciler_function": self.reconciler.function.name,
                "sweep_function": self.sweep.function.name,
                "launch_queue_url": self.launch_queue.queue.url,
                "failed_events_url": self.failed_events.queue.url,
            }
        )

    @property
    def nodes(self) -> ControlPlaneNodes:
        """Every child of this control plane, by role."""
        # One argument per field, as every component's nodes (duplicates pairs their shape).
        return ControlPlaneNodes(
            self.api,
            self.launcher,
            self.reconciler,
            self.sweep,
            self.launch_queue,
            self.task_stopped_rule,
            self.sweep_rule,
            tuple(self._permissions),
            tuple(self._targets),
            self.failed_events.queue,
            self.failed_events.policy,
            self.failed_events.alarm,
            self.reconciler_on_failure,
        )

    # --- steps ----------------------------------------------------------------------------

    def _launch_queue(self, name: str) -> None:
        """The stack's one launch queue (+ DLQ and its alarm when alarms are on)."""
        cfg = self._args.config
        # Children are named after this component ("<name>-launch", "<name>-api", ...): two
        # platforms in one program cannot collide. Stacks deployed before that keep their
        # resources through aliases to the old names ("launch", "api", ...).
        self.launch_queue = JobQueue(
            f"{name}-{LAUNCH_QUEUE}",
            JobQueueArgs(
                name_prefix=cfg.name_prefix,
                consumer_timeout_seconds=cfg.functions.launcher.timeout,
                max_concurrency=cfg.launcher_concurrency,
                alarm_topic_arn=self._args.failure_topic.arn if cfg.alarms else None,
                short_name=LAUNCH_QUEUE,
                previous_name=LAUNCH_QUEUE,
            ),
            opts=pulumi.ResourceOptions(parent=self, **renamed_from(LAUNCH_QUEUE)),
        )

    def _failed_events(self, name: str) -> None:
        """The reconciler's on-failure destination: an event whose every attempt failed (a
        scheduled array run's parent exists only once the reconciler made it) waits there
        for the sweep, which hides a record it takes for its own timeout."""
        cfg = self._args.config
        self.failed_events = failed_events_queue(
            name,
            name_prefix=cfg.name_prefix,
            visibility_seconds=cfg.functions.sweep.timeout,
            alarm_topic_arn=self._args.failure_topic.arn if cfg.alarms else None,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _environment(self) -> dict[str, pulumi.Input[str]]:
        """What every control-plane function reads from its environment (``jobcontract.Env``)."""
        args, cfg = self._args, self._args.config
        environment: dict[str, pulumi.Input[str]] = {
            Env.STACK: cfg.stack,
            Env.JOBS_TABLE: args.jobs_table.name,
            Env.RESULTS_BUCKET: args.results_bucket.bucket,
            Env.CLUSTER_ARN: args.cluster.arn,
            Env.SUBNETS: args.subnet_ids.apply(",".join),
            Env.SECURITY_GROUPS: args.security_group_ids.apply(",".join),
            Env.ASSIGN_PUBLIC_IP: "ENABLED" if cfg.network.assign_public_ip else "DISABLED",
            Env.FAILURE_TOPIC_ARN: args.failure_topic.arn,
            Env.RESULT_URL_TTL_SECONDS: str(cfg.results.url_ttl_seconds),
            Env.JOB_TTL_DAYS: str(cfg.job_ttl_days),
            Env.HEARTBEAT_STALE_SECONDS: str(cfg.heartbeat_stale_seconds),
            Env.LOG_LEVEL: cfg.log_level,
            Env.LAUNCH_QUEUE_URL: self.launch_queue.queue.url,
            Env.FAILED_EVENTS_URL: self.failed_events.queue.url,
            Env.LAUNCHER_CONCURRENCY: str(cfg.launcher_concurrency),
            Env.FARGATE_VCPU_LIMIT: f"{cfg.fargate_vcpu_limit:g}",
        }
        if args.slack_webhook_secret is not None:
            environment[Env.SLACK_WEBHOOK_SECRET_ARN] = args.slack_webhook_secret.arn
        if args.notion_secret is not None:
            environment[Env.NOTION_SECRET_ARN] = args.notion_secret.arn
        return environment

    def _functions(
        self, name: str, grantees: dict[str, Grantee], environment: dict[str, pulumi.Input[str]]
    ) -> None:
        """The four Lambdas, each with its grants (``_grants``) and the shared environment."""
        cfg = self._args.config

        def function(key: str, fn: FunctionConfig, description: str) -> PythonFunction:
            return PythonFunction(
                f"{name}-{key}",
                PythonFunctionArgs(
                    handler=f"handlers.{key}.handler",
                    memory=fn.memory,
                    timeout=fn.timeout,
                    environment=environment,
                    log_retention_days=cfg.log_retention_days,
                    policy_statements=grantees[key].statements,
                    provisioned_concurrency=fn.provisioned_concurrency,
                    description=description,
                    log_level=cfg.log_level,
                    name_prefix=cfg.name_prefix,
                    short_name=key,
                    previous_name=key,
                ),
                opts=pulumi.ResourceOptions(parent=self, **renamed_from(key)),
            )

        fns = cfg.functions
        self.api = function("api", fns.api, "REST API handler: submit, status, list, cancel, retry")
        self.launcher = function(
            "launcher", fns.launcher, "Dispatches queued jobs to Fargate (ecs:RunTask)"
        )
        self.reconciler = function(
            "reconciler",
            fns.reconciler,
            "Turns ECS task STOPPED events into job outcomes (retry / fail / notify)",
        )
        self.sweep = function(
            "sweep", fns.sweep, "Stops and fails jobs past their timeout or without heartbeat"
        )

    def _grants(self) -> dict[str, Grantee]:
        """Who may do what, in one place: each grant is made by the resource accessed, once
        per stack, so no role grows with the number of workers (see the module docstring).
        One function per role in ``components.control_plane_grants``."""
        args = self._args
        accessed = Accessed(
            table=JobsTable(args.jobs_table.arn),
            bucket=ResultsBucket(args.results_bucket.arn),
            cluster=Cluster(args.cluster.arn),
            topic=FailureTopic(
                args.failure_topic.arn,
                args.failure_topic_key.arn if args.failure_topic_key is not None else None,
            ),
            secrets=Secrets(
                [s.arn for s in (args.slack_webhook_secret, args.notion_secret) if s is not None]
            ),
            queue=self.launch_queue,
            failed_events=FailedEventsQueue(self.failed_events.queue.arn),
        )
        api, launcher = Grantee("api"), Grantee("launcher")
        reconciler, sweep = Grantee("reconciler"), Grantee("sweep")
        api_grants(api, accessed)
        launcher_grants(launcher, accessed, self._stack_tasks())
        reconciler_grants(reconciler, accessed)
        sweep_grants(sweep, accessed)
        return {g.name: g for g in (api, launcher, reconciler, sweep)}

    def _stack_tasks(self) -> StackTasks:
        """What the launcher may run: the stack's task families in its cluster, passing the
        stack's worker roles (by path)."""
        args = self._args
        partition = aws.get_partition_output().partition
        prefix = args.config.name_prefix
        return StackTasks(
            cluster_arn=args.cluster.arn,
            families=iam.stack_task_families(partition, args.region, args.account_id, prefix),
            roles=[iam.stack_worker_roles(partition, args.account_id, prefix)],
        )

    def _ledger(self) -> None:
        """Every policy of the four roles, checked against IAM's per-role quotas."""
        self.iam_ledger = iam.InlinePolicyLedger()
        for fn in (self.api, self.launcher, self.reconciler, self.sweep):
            role = f"of Lambda {fn.function_name}"
            self.iam_ledger.add(role, fn.policy.policy)
            self.iam_ledger.trust(role, fn.trust_policy)
            self.iam_ledger.managed(role, fn.managed_policy_arns)

    def _triggers(self, name: str) -> None:
        """ECS STOPPED events -> reconciler; the schedule -> sweep."""
        args = self._args
        child = pulumi.ResourceOptions(parent=self)
        self._permissions: list[aws.lambda_.Permission] = []
        self._targets: list[aws.cloudwatch.EventTarget] = []
        self.task_stopped_rule = aws.cloudwatch.EventRule(
            f"{name}-task-stopped",
            name=f"{args.config.name_prefix}-task-stopped",
            description="STOPPED tasks of this cluster -> reconciler",
            event_pattern=args.cluster.arn.apply(lambda arn: json.dumps(task_stopped_pattern(arn))),
            opts=child,
        )
        self._target(f"{name}-task-stopped", self.task_stopped_rule, self.reconciler)
        self.sweep_rule = aws.cloudwatch.EventRule(
            f"{name}-sweep-schedule",
            name=f"{args.config.name_prefix}-sweep",
            description="Periodic timeout / lost-task sweep",
            schedule_expression=args.config.sweep_rate,
            opts=child,
        )
        self._target(f"{name}-sweep-schedule", self.sweep_rule, self.sweep)

    def _target(self, name: str, rule: aws.cloudwatch.EventRule, fn: PythonFunction) -> None:
        permission = fn.allow_invoke(
            f"{name}-invoke",
            "events.amazonaws.com",
            rule.arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._permissions.append(permission)
        target = aws.cloudwatch.EventTarget(
            f"{name}-target",
            rule=rule.name,
            arn=fn.target_arn,
            # EventBridge retries a failed async delivery for up to 24 h by default; an hour
            # is plenty (the sweep catches anything lost), and keeps stale events out.
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_event_age_in_seconds=3600, maximum_retry_attempts=10
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]),
        )
        self._targets.append(target)
