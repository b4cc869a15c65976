"""``JobQueue``: the stack's launch queue: one SQS FIFO queue for every worker's jobs, its FIFO
dead-letter queue and the launcher trigger. ``ControlPlane`` declares exactly one
(``<prefix>-launch.fifo``); workers declare none.

What it makes:
- ``<prefix>-<name>.fifo``: the queue (SSE, no content-based deduplication: producers set
  ``MessageDeduplicationId = job id + attempt`` and ``MessageGroupId = job id``, see
  ``jobcontract.queue_message``, so one job's messages stay ordered and different jobs (of any
  worker) never block each other), redriving to ``<prefix>-<name>-dlq.fifo`` after
  ``max_receive_count`` receives;
- a queue policy on both queues that denies any request not made over TLS, and a redrive-allow
  policy so only this queue may use the DLQ;
- when ``alarm_topic_arn`` is given, a CloudWatch alarm on DLQ depth > 0;
- ``grant_send(grantee)`` / ``grant_consume(grantee)``: what a producer / the consumer may do
  on this queue (with the KMS statements when the queue uses a customer managed key), added
  to the grantee's policy (``components.grants.Grantee``);
- ``trigger(consumer)``: the SQS event source mapping to the consumer Lambda (the launcher):
  FIFO batch size <= 10, ``ReportBatchItemFailures``, ``max_concurrency``. It is a separate
  step because the consumer's policy (``queue.grant_consume(grantee)``) and environment need
  the queue first, and Lambda checks the role's SQS rights when the mapping is created.

Idle cost, per stack (not per worker): the mapping's pollers long-poll the queue (about
263,000 empty receives a month per poller pair; see ``cost/estimator.py``), and one alarm is
about $0.10/month when enabled.

Usage::

    queue = JobQueue("launch", JobQueueArgs(
        name_prefix="ai-batch-dev", consumer_timeout_seconds=60, max_concurrency=2,
        alarm_topic_arn=topic.arn))
    launcher_grants = Grantee("launcher")
    queue.grant_consume(launcher_grants, sid="ConsumeLaunchQueue")
    ...  # the launcher, with launcher_grants.statements as its policy
    queue.trigger(launcher.function, depends_on=[launcher.policy])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import aws_rules, iam
from components.alarms import dlq_depth_alarm
from components.aws_rules import AwsConstraintError
from components.grants import Grantee
from components.naming import ChildNames, node_resources

# AWS rule: SQS MessageRetentionPeriod is 60 s .. 1,209,600 s (14 days).
SQS_MAX_RETENTION_SECONDS = 1_209_600
SQS_MIN_RETENTION_SECONDS = 60
DEFAULT_RETENTION_SECONDS = 4 * 24 * 3600


@dataclass(frozen=True, kw_only=True)
class JobQueueArgs:
    """Arguments of ``JobQueue``."""

    name_prefix: str
    """Physical name prefix, ``<project>-<stack>``. Required. Example: ``"ai-batch-dev"``."""
    consumer_timeout_seconds: int
    """The consumer's timeout; the visibility timeout is six times it (AWS guidance).
    Required. Example: ``60``."""
    max_concurrency: int | None = None
    """Most concurrent consumer invocations (2..1000, AWS's ScalingConfig range). Default
    ``None`` (unset). The control plane sets the stack's ``launcherConcurrency``."""
    batch_size: int = 10
    """Messages per invocation (1..10 on FIFO). Default ``10``."""
    max_receive_count: int = 20
    """Receives before a message moves to the DLQ (1..1000). Default ``20``: a message the
    consumer cannot process keeps coming back, then parks in the DLQ (``batchctl retry``)."""
    alarm_topic_arn: pulumi.Input[str] | None = None
    """SNS topic for the DLQ-depth alarm; ``None`` (default) creates no alarm."""
    message_retention_seconds: int = DEFAULT_RETENTION_SECONDS
    """How long the queue keeps a message: 60 s .. < 14 days. Default 4 days
    (``345600``). The DLQ always keeps 14 days, the maximum."""
    short_name: str | None = None
    """The queue's name after the prefix (``<prefix>-<short_name>.fifo``). Default: the
    resource's logical name."""
    previous_name: str | None = None
    """The logical name an existing stack has this queue under, when it was renamed: its
    children keep their old names as aliases (``components.naming``). Default ``None``."""
    kms_master_key_id: pulumi.Input[str] | None = None
    """A KMS key for SSE instead of SQS-managed keys, by its key ARN (the grants name it in
    IAM policies, which take key ARNs). Default ``None`` (SSE-SQS, free)."""


def _validate(args: JobQueueArgs, name: str) -> tuple[str, str, int]:
    queue_name = aws_rules.fifo_queue_name(f"{args.name_prefix}-{name}.fifo", "queue name")
    dlq_name = aws_rules.fifo_queue_name(f"{args.name_prefix}-{name}-dlq.fifo", "DLQ name")
    aws_rules.sqs_batch_size(args.batch_size, "batch_size")
    if args.max_concurrency is not None:
        aws_rules.esm_max_concurrency(args.max_concurrency, "max_concurrency")
    # AWS rule: RedrivePolicy maxReceiveCount is 1..1000.
    if not 1 <= args.max_receive_count <= aws_rules.SQS_MAX_RECEIVE_COUNT:
        raise AwsConstraintError(
            "max_receive_count", args.max_receive_count, f"1..{aws_rules.SQS_MAX_RECEIVE_COUNT}"
        )
    # AWS rule: retention 60..1209600 s; a DLQ must keep messages longer than its source
    # (a FIFO message keeps its original enqueue time when redriven), so the source stays
    # strictly below the DLQ's 14 days.
    retention = args.message_retention_seconds
    if not SQS_MIN_RETENTION_SECONDS <= retention < SQS_MAX_RETENTION_SECONDS:
        raise AwsConstraintError(
            "message_retention_seconds",
            retention,
            f"{SQS_MIN_RETENTION_SECONDS}..{SQS_MAX_RETENTION_SECONDS - 1} "
            "(below the DLQ's 14 days)",
        )
    visibility = aws_rules.visibility_timeout_for(args.consumer_timeout_seconds)
    return queue_name, dlq_name, visibility


@dataclass(frozen=True)
class JobQueueNodes:
    """The children of a ``JobQueue`` (SST's ``nodes``)."""

    # One typed field per child, then ``resources``: every component's nodes class has this
    # shape (duplicates pairs them), only the children differ.
    queue: aws.sqs.Queue
    dlq: aws.sqs.Queue
    redrive_allow: aws.sqs.RedriveAllowPolicy
    tls_policies: tuple[aws.sqs.QueuePolicy, ...]
    """The TLS-only policies of the queue and the DLQ."""
    event_source_mapping: aws.lambda_.EventSourceMapping | None
    """Made by ``trigger``."""
    dlq_alarm: aws.cloudwatch.MetricAlarm | None

    def resources(self) -> list[pulumi.Resource]:
        return node_resources(self)


class JobQueue(pulumi.ComponentResource):
    """A FIFO queue + FIFO DLQ + TLS-only policies (+ DLQ alarm); ``trigger`` adds the
    consumer's event source mapping."""

    queue: aws.sqs.Queue
    dlq: aws.sqs.Queue
    event_source_mapping: aws.lambda_.EventSourceMapping | None
    dlq_alarm: aws.cloudwatch.MetricAlarm | None

    def __init__(
        self, name: str, args: JobQueueArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:JobQueue", name, None, opts)
        queue_name, dlq_name, visibility = _validate(args, args.short_name or name)
        self._name = name
        self._args = args
        self._names = ChildNames(self, name, args.previous_name)
        self._queues(queue_name, dlq_name, visibility)
        self._policies()
        self.event_source_mapping = None
        self.dlq_alarm = None
        if args.alarm_topic_arn is not None:
            self._dlq_alarm(dlq_name, args.alarm_topic_arn)
        self.register_outputs(
            {
                "queue_url": self.queue.url,
                "queue_arn": self.queue.arn,
                "dlq_url": self.dlq.url,
                "dlq_arn": self.dlq.arn,
            }
        )

    @property
    def nodes(self) -> JobQueueNodes:
        """Every child of this queue, by role."""
        # One argument per field, as every component's nodes (duplicates pairs their shape).
        return JobQueueNodes(
            self.queue,
            self.dlq,
            self._redrive_allow,
            self._tls_policies,
            self.event_source_mapping,
            self.dlq_alarm,
        )

    # --- steps ----------------------------------------------------------------------------

    def _queues(self, queue_name: str, dlq_name: str, visibility: int) -> None:
        """The FIFO DLQ, then the FIFO queue that redrives to it."""
        args, names = self._args, self._names
        sse: dict[str, Any] = (
            {"kms_master_key_id": args.kms_master_key_id}
            if args.kms_master_key_id is not None
            else {"sqs_managed_sse_enabled": True}
        )
        self.dlq = aws.sqs.Queue(
            names.name("dlq"),
            name=dlq_name,
            fifo_queue=True,
            content_based_deduplication=False,
            message_retention_seconds=SQS_MAX_RETENTION_SECONDS,
            visibility_timeout_seconds=visibility,
            tags=iam.stack_tags(args.name_prefix),
            **sse,
            opts=names.opts("dlq"),
        )
        self.queue = aws.sqs.Queue(
            names.name("queue"),
            name=queue_name,
            fifo_queue=True,
            # Producers set MessageDeduplicationId = job id + attempt (jobcontract.queue_message):
            # a retry of the same job is a new message, a double submit of one attempt is not.
            content_based_deduplication=False,
            # Throughput per message group (= per job), not per queue. AWS rule (SQS Developer
            # Guide, "Troubleshoot FIFO throttling issues"): a FIFO queue takes 300 calls/s per
            # action unless high throughput is on; FifoThroughputLimit perMessageGroupId (with
            # deduplication per message group) applies the quota per group, so one queue for
            # every worker is not the bottleneck (RunTask's 20 tasks/s is).
            deduplication_scope="messageGroup",
            fifo_throughput_limit="perMessageGroupId",
            message_retention_seconds=args.message_retention_seconds,
            visibility_timeout_seconds=visibility,
            receive_wait_time_seconds=20,
            tags=iam.stack_tags(args.name_prefix),
            redrive_policy=self.dlq.arn.apply(
                lambda arn: json.dumps(
                    {"deadLetterTargetArn": arn, "maxReceiveCount": args.max_receive_count}
                )
            ),
            **sse,
            opts=names.opts("queue"),
        )

    def _policies(self) -> None:
        """Only this queue may redrive to the DLQ; both refuse requests not made over TLS."""
        names = self._names
        self._redrive_allow = aws.sqs.RedriveAllowPolicy(
            names.name("dlq-redrive-allow"),
            queue_url=self.dlq.id,
            redrive_allow_policy=self.queue.arn.apply(
                lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
            ),
            opts=names.opts("dlq-redrive-allow"),
        )
        self._tls_policies = tuple(
            aws.sqs.QueuePolicy(
                names.name(f"{suffix}-tls-only"),
                queue_url=q.id,
                policy=iam.policy_document(iam.deny_insecure_transport(["sqs:*"], [q.arn])),
                opts=names.opts(f"{suffix}-tls-only"),
            )
            for suffix, q in (("queue", self.queue), ("dlq", self.dlq))
        )

    def _dlq_alarm(self, dlq_name: str, topic_arn: pulumi.Input[str]) -> None:
        names = self._names
        self.dlq_alarm = dlq_depth_alarm(
            names.name("dlq-depth"),
            queue_name=self.dlq.name,
            description=(
                f"Messages in {dlq_name}: jobs that could not be dispatched (the message "
                "group id is the job id, its prefix the worker). Inspect them, then retry "
                "with `batchctl retry WORKER`."
            ),
            topic_arn=topic_arn,
            opts=names.opts("dlq-depth"),
        )

    def grant_send(self, grantee: Grantee, *, sid: str) -> None:
        """SendMessage (and the queue's attributes) on this queue by its exact ARN, and an
        explicit Deny on its DLQ: only SQS's redrive may put a message there (``batchctl
        retry`` moves them back)."""
        self._grant_producer(grantee, iam.QUEUE_SEND_ACTIONS, sid)

    def grant_drain_request(self, grantee: Grantee, *, sid: str = "RequestDrain") -> None:
        """SendMessage only (a worker task's drain request when it frees its slot): no
        queue attributes, and the same explicit Deny on the DLQ as every producer."""
        self._grant_producer(grantee, iam.DRAIN_REQUEST_ACTIONS, sid)

    def _grant_producer(self, grantee: Grantee, actions: tuple[str, ...], sid: str) -> None:
        """``actions`` on this queue, the Deny on its DLQ and, with a customer key, encrypt."""
        grantee.add(
            iam.Statement(actions, [self.queue.arn], sid=sid),
            iam.Statement(
                iam.DEAD_LETTER_SEND_ACTIONS,
                [self.dlq.arn],
                sid="NeverIntoDeadLetters",
                effect="Deny",
            ),
        )
        self._grant_key(grantee, iam.KMS_ENCRYPT_ACTIONS, f"{sid}Key")

    def grant_consume(self, grantee: Grantee, *, sid: str) -> None:
        """Receive, delete and extend messages of this queue (not its DLQ)."""
        grantee.add(iam.Statement(iam.QUEUE_CONSUME_ACTIONS, [self.queue.arn], sid=sid))
        self._grant_key(grantee, iam.KMS_DECRYPT_ACTIONS, f"{sid}Key")

    def _grant_key(self, grantee: Grantee, actions: tuple[str, ...], sid: str) -> None:
        key = self._args.kms_master_key_id
        if key is None:
            return  # SSE-SQS: no key permission needed
        if isinstance(key, str) and not key.startswith("arn:"):
            raise AwsConstraintError(
                f"JobQueue {self._name}.kms_master_key_id",
                key,
                "a key ARN (IAM policies name KMS keys by ARN, not by id or alias)",
            )
        grantee.add(iam.Statement(actions, [pulumi.Output.from_input(key)], sid=sid))

    def trigger(
        self,
        consumer: aws.lambda_.Function,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> aws.lambda_.EventSourceMapping:
        """The event source mapping from this queue to ``consumer`` (once). ``depends_on``: the
        consumer's policy with ``grant_consume`` of this queue (Lambda checks the
        role's SQS rights when the mapping is created)."""
        if self.event_source_mapping is not None:
            raise ValueError(f"JobQueue {self._name}: already triggers a consumer")
        args = self._args
        self.event_source_mapping = aws.lambda_.EventSourceMapping(
            self._names.name("trigger"),
            event_source_arn=self.queue.arn,
            function_name=consumer.arn,
            batch_size=args.batch_size,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=(
                None
                if args.max_concurrency is None
                else aws.lambda_.EventSourceMappingScalingConfigArgs(
                    maximum_concurrency=args.max_concurrency
                )
            ),
            enabled=True,
            opts=self._names.opts("trigger", depends_on=list(depends_on)),
        )
        return self.event_source_mapping
