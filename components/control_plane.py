"""``ControlPlane``: the four Lambdas that move jobs through their states.

- ``api``: the REST API handler (submit, status, list, cancel, retry; presigned result URLs).
- ``launcher``: consumes the stack's launch queue and calls ``ecs:RunTask``.
- ``reconciler``: ECS "Task State Change" (STOPPED) events of this cluster -> retry / fail /
  notify.
- ``sweep``: on a schedule, finds jobs past their timeout or silent (no heartbeat) and stops
  or fails them; it also catches the rare ECS event that was never delivered.

The stack's one launch queue (``JobQueue`` ``<prefix>-launch.fifo`` + its DLQ) is declared
here too: every worker's jobs go through it (message group = job id), so the stack polls one
queue and alarms on one DLQ whatever the number of workers.

Each function gets all its grants here, once per stack, so their size does not depend on the
number of workers (IAM caps one role's inline policies at 10,240 characters):
- api, reconciler, sweep: ``sqs:SendMessage`` on the launch queue (its ARN), never its DLQ;
- launcher: receive/delete on the launch queue, ``ecs:RunTask`` on the stack's task families
  (``task-definition/<prefix>-*:*``) in this cluster only (``ecs:cluster``),
  ``ecs:TagResource`` at launch (``ecs:CreateAction``), ``iam:PassRole`` on the stack's worker
  roles by role path (``role/aibatch/<prefix>/workers/*``) to ``ecs-tasks.amazonaws.com`` only.
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
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

from components import iam
from components.config import FunctionConfig
from components.job_queue import JobQueue, JobQueueArgs
from components.python_function import PythonFunction, PythonFunctionArgs
from jobcontract import JOB_PK_PREFIX, Env

if TYPE_CHECKING:
    from components.platform import BatchPlatform

ECS_TASK_STOPPED_PATTERN_SOURCE = "aws.ecs"
# The launch queue's name inside the stack prefix: ``<prefix>-launch.fifo``.
LAUNCH_QUEUE = "launch"
ECS_TASK_STATE_CHANGE = "ECS Task State Change"
# Every worker's inputs (large job inputs, POST /uploads): the API role's only S3 write.
INPUTS_PREFIX = "inputs/"


@dataclass(frozen=True)
class ControlPlaneArgs:
    """Arguments of ``ControlPlane``."""

    platform: BatchPlatform
    """Required. The platform this control plane serves (table, bucket, cluster, topic)."""


def task_stopped_pattern(cluster_arn: str) -> dict[str, object]:
    """EventBridge pattern: STOPPED task events of one cluster only."""
    return {
        "source": [ECS_TASK_STOPPED_PATTERN_SOURCE],
        "detail-type": [ECS_TASK_STATE_CHANGE],
        "detail": {"clusterArn": [cluster_arn], "lastStatus": ["STOPPED"]},
    }


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

    def __init__(
        self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:ControlPlane", name, None, opts)
        platform = args.platform
        cfg = platform.config
        child = pulumi.ResourceOptions(parent=self)
        table_arn = platform.jobs_table.arn
        bucket_arn = platform.results_bucket.arn
        cluster_arn = platform.cluster.arn
        topic_arn = platform.failure_topic.arn
        prefix = platform.name_prefix
        partition = aws.get_partition_output().partition
        region, account = platform.region, platform.account_id
        self.launch_queue = JobQueue(
            LAUNCH_QUEUE,
            JobQueueArgs(
                name_prefix=prefix,
                consumer_timeout_seconds=cfg.functions.launcher.timeout,
                max_concurrency=cfg.launcher_concurrency,
                alarm_topic_arn=topic_arn if platform.alarms_enabled else None,
            ),
            opts=child,
        )
        launch_queue_arn = self.launch_queue.queue.arn
        # One statement per stack, not per worker (see the module docstring).
        enqueue = iam.enqueue_launch_queue(launch_queue_arn, self.launch_queue.dlq.arn)
        run_workers = iam.run_stack_tasks(
            iam.stack_task_families(partition, region, account, prefix),
            cluster_arn,
            iam.stack_worker_roles(partition, account, prefix),
        )

        environment: dict[str, pulumi.Input[str]] = {
            Env.STACK: cfg.stack,
            Env.JOBS_TABLE: platform.jobs_table.name,
            Env.RESULTS_BUCKET: platform.results_bucket.bucket,
            Env.CLUSTER_ARN: cluster_arn,
            Env.SUBNETS: platform.subnet_ids.apply(",".join),
            Env.SECURITY_GROUPS: platform.security_group_ids.apply(",".join),
            Env.ASSIGN_PUBLIC_IP: "ENABLED" if platform.assign_public_ip else "DISABLED",
            Env.FAILURE_TOPIC_ARN: topic_arn,
            Env.RESULT_URL_TTL_SECONDS: str(cfg.results.url_ttl_seconds),
            Env.JOB_TTL_DAYS: str(cfg.job_ttl_days),
            Env.HEARTBEAT_STALE_SECONDS: str(cfg.heartbeat_stale_seconds),
            Env.LOG_LEVEL: cfg.log_level,
            Env.LAUNCH_QUEUE_URL: self.launch_queue.queue.url,
            Env.LAUNCHER_CONCURRENCY: str(cfg.launcher_concurrency),
            Env.FARGATE_VCPU_LIMIT: f"{cfg.fargate_vcpu_limit:g}",
        }
        if platform.slack_webhook_secret is not None:
            environment[Env.SLACK_WEBHOOK_SECRET_ARN] = platform.slack_webhook_secret.arn
        if platform.notion_secret is not None:
            environment[Env.NOTION_SECRET_ARN] = platform.notion_secret.arn

        notify = [iam.topic_publish(topic_arn, sid="PublishFailures")]
        if platform.failure_topic_key is not None:
            # Publishing to a topic encrypted with a customer managed key needs the key too.
            notify.append(
                iam.Statement(
                    ("kms:GenerateDataKey", "kms:Decrypt"),
                    [platform.failure_topic_key.arn],
                    sid="EncryptForFailureTopic",
                )
            )
        if platform.secret_arns:
            notify.append(iam.secret_read(platform.secret_arns, sid="ReadNotificationSecrets"))

        def function(
            key: str, fn: FunctionConfig, description: str, statements: list[iam.Statement]
        ) -> PythonFunction:
            return PythonFunction(
                key,
                PythonFunctionArgs(
                    handler=f"handlers.{key}.handler",
                    memory=fn.memory,
                    timeout=fn.timeout,
                    environment=environment,
                    log_retention_days=cfg.log_retention_days,
                    policy_statements=statements,
                    provisioned_concurrency=fn.provisioned_concurrency,
                    description=description,
                    log_level=cfg.log_level,
                    name_prefix=platform.name_prefix,
                ),
                opts=child,
            )

        fns = cfg.functions
        self.api = function(
            "api",
            fns.api,
            "REST API handler: submit, status, list, cancel, retry",
            [
                iam.table_actions(iam.API_TABLE_ACTIONS, table_arn, sid="JobsTable"),
                # Presigned GET of results and PUT of large inputs are signed with this role.
                iam.Statement(
                    iam.OBJECT_READ_ACTIONS,
                    [pulumi.Output.concat(bucket_arn, "/results/*")],
                    sid="ReadResults",
                ),
                # Large job inputs, and the presigned POST forms of POST /uploads: S3
                # authorizes a presigned request as its signer's s3:PutObject on the key, so
                # this one grant (inputs/ only) is what every upload form can reach.
                iam.bucket_prefix_write(bucket_arn, INPUTS_PREFIX, sid="WriteInputs"),
                # POST /jobs with a manifest: HeadObject of the uploaded JSON Lines object
                # (S3 authorizes HeadObject as s3:GetObject), inputs/ only, read only.
                iam.bucket_prefix_read(bucket_arn, INPUTS_PREFIX, sid="HeadManifests"),
                # DELETE /jobs/{id} on a running job stops its task (in this cluster only).
                iam.ecs_tasks_in_cluster(iam.ECS_STOP_TASK_ACTIONS, cluster_arn),
                *enqueue,  # submit and retry
            ],
        )
        self.launcher = function(
            "launcher",
            fns.launcher,
            "Dispatches queued jobs to Fargate (ecs:RunTask)",
            [
                iam.table_actions(iam.LAUNCHER_TABLE_ACTIONS, table_arn, sid="JobsTable"),
                iam.queue_consume(launch_queue_arn, sid="ConsumeLaunchQueue"),
                # A woken job whose RunTask must be retried gets a message (send_resume).
                *enqueue,
                iam.lease_writes(table_arn),
                # StopTask: a job cancelled (or moved on) while its launch was under way.
                iam.ecs_tasks_in_cluster(
                    (*iam.ECS_TASK_READ_ACTIONS, *iam.ECS_STOP_TASK_ACTIONS), cluster_arn
                ),
                *run_workers,
                *notify,  # a job that cannot be launched at all is failed and reported here
                # An array job's fan-out step: its manifest, its children's rows and large
                # shard inputs (job rows only; the rows of other kinds stay the API's).
                iam.table_actions(
                    iam.CREATE_ARRAY_CHILDREN_ACTIONS,
                    table_arn,
                    leading_keys=[JOB_PK_PREFIX + "*"],
                    sid="CreateArrayChildren",
                ),
                iam.Statement(
                    (*iam.OBJECT_READ_ACTIONS, *iam.OBJECT_WRITE_ACTIONS),
                    [pulumi.Output.concat(bucket_arn, "/inputs/*")],
                    sid="ArrayManifestsAndInputs",
                ),
            ],
        )
        self.reconciler = function(
            "reconciler",
            fns.reconciler,
            "Turns ECS task STOPPED events into job outcomes (retry / fail / notify)",
            [
                iam.table_actions(iam.RECONCILER_TABLE_ACTIONS, table_arn, sid="JobsTable"),
                iam.table_actions(
                    iam.RECORD_SCHEDULED_RUN_ACTIONS,
                    table_arn,
                    leading_keys=[JOB_PK_PREFIX + "*"],
                    sid="RecordScheduledRuns",
                ),
                iam.lease_writes(table_arn, create=False),  # a stopped task's slot is given back
                iam.ecs_tasks_in_cluster(iam.ECS_TASK_READ_ACTIONS, cluster_arn),
                *enqueue,  # retry after a failed run; a drain request for the freed slot
                *notify,
                *iam.array_merge(bucket_arn),  # the last child of an array job ended
            ],
        )
        self.sweep = function(
            "sweep",
            fns.sweep,
            "Stops and fails jobs past their timeout or without heartbeat",
            [
                iam.table_actions(iam.SWEEP_TABLE_ACTIONS, table_arn, sid="JobsTable"),
                iam.lease_writes(table_arn, create=False),  # slots of lost tasks given back
                iam.ecs_tasks_in_cluster(
                    (*iam.ECS_STOP_TASK_ACTIONS, *iam.ECS_TASK_READ_ACTIONS), cluster_arn
                ),
                *enqueue,  # retry of a job whose task never reported back
                *notify,  # a job failed by the sweep is reported like any other failure
                *iam.array_merge(bucket_arn),  # an array job nobody merged
            ],
        )

        self.iam_ledger = iam.InlinePolicyLedger()
        for fn in (self.api, self.launcher, self.reconciler, self.sweep):
            role = f"of Lambda {fn.function_name}"
            self.iam_ledger.add(role, fn.policy.policy)
            self.iam_ledger.trust(role, fn.trust_policy)
            self.iam_ledger.managed(role, fn.managed_policy_arns)

        # The launcher's policy (ConsumeLaunchQueue) before the mapping: Lambda checks it.
        self.launch_queue.trigger(self.launcher.function, depends_on=[self.launcher.policy])

        # --- triggers ---------------------------------------------------------------------
        self.task_stopped_rule = aws.cloudwatch.EventRule(
            f"{name}-task-stopped",
            name=f"{platform.name_prefix}-task-stopped",
            description="STOPPED tasks of this cluster -> reconciler",
            event_pattern=cluster_arn.apply(lambda arn: json.dumps(task_stopped_pattern(arn))),
            opts=child,
        )
        self._target(f"{name}-task-stopped", self.task_stopped_rule, self.reconciler)

        self.sweep_rule = aws.cloudwatch.EventRule(
            f"{name}-sweep-schedule",
            name=f"{platform.name_prefix}-sweep",
            description="Periodic timeout / lost-task sweep",
            schedule_expression=cfg.sweep_rate,
            opts=child,
        )
        self._target(f"{name}-sweep-schedule", self.sweep_rule, self.sweep)

        self.register_outputs(
            {
                "api_function": self.api.function.name,
                "launcher_function": self.launcher.function.name,
                "reconciler_function": self.reconciler.function.name,
                "sweep_function": self.sweep.function.name,
                "launch_queue_url": self.launch_queue.queue.url,
            }
        )

    def _target(self, name: str, rule: aws.cloudwatch.EventRule, fn: PythonFunction) -> None:
        permission = fn.allow_invoke(
            f"{name}-invoke",
            "events.amazonaws.com",
            rule.arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.cloudwatch.EventTarget(
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
