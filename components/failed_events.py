"""The reconciler's failed events: a standard SQS queue as its asynchronous on-failure
destination, so an ECS event whose every reconciler attempt failed is kept, not discarded.

AWS rules (Lambda Developer Guide, "Asynchronous invocation", "Capturing records of Lambda
asynchronous invocations"): once Lambda has queued an asynchronous invocation, a function
error is retried (``MaximumRetryAttempts``, default 2) until ``MaximumEventAgeInSeconds``
(default and maximum 21,600 s), then the event goes to the on-failure destination, if any, as
an invocation record (``requestContext`` with its ``condition``, the original event as
``requestPayload``, ``responseContext``). An SQS destination must be a standard queue (FIFO
is refused), and Lambda sends with the function's execution role, which needs
``sqs:SendMessage`` on it (``FailedEventsQueue.grant_record``). The event invoke config
applies to the qualifier invoked: EventBridge's target is ``PythonFunction.target_arn`` (the
``live`` alias when provisioned, else the unqualified function), so the config names the
same.

The sweep takes the records back (``handlers/failed_events.py``): that is what brings back a
scheduled array run whose parent row only the reconciler creates.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import iam
from components.alarms import dlq_depth_alarm
from components.python_function import PythonFunction

# AWS rule: SQS keeps a message at most 1,209,600 s (14 days).
RETENTION_SECONDS = 1_209_600
# Lambda's own retries of a failed asynchronous invocation (0..2; 2 is its default).
RETRY_ATTEMPTS = 2
# AWS rule: 60..21,600 s; the maximum (Lambda's default) keeps an event through a long outage.
MAX_EVENT_AGE_SECONDS = 21_600


@dataclass(frozen=True)
class FailedEvents:
    """The queue, its TLS-only policy and (alarms on) its depth alarm."""

    queue: aws.sqs.Queue
    policy: aws.sqs.QueuePolicy
    alarm: aws.cloudwatch.MetricAlarm | None


def failed_events_queue(
    name: str,
    *,
    name_prefix: str,
    visibility_seconds: int,
    alarm_topic_arn: pulumi.Input[str] | None,
    opts: pulumi.ResourceOptions,
) -> FailedEvents:
    """``<prefix>-reconciler-failed``: standard, SSE-SQS, 14 days, TLS only; a message is
    hidden ``visibility_seconds`` after a receive (the sweep's timeout), so a record the
    sweep could not handle comes back at a later sweep."""
    queue = aws.sqs.Queue(
        f"{name}-reconciler-failed",
        name=f"{name_prefix}-reconciler-failed",
        sqs_managed_sse_enabled=True,
        message_retention_seconds=RETENTION_SECONDS,
        visibility_timeout_seconds=visibility_seconds,
        tags=iam.stack_tags(name_prefix),
        opts=opts,
    )
    policy = aws.sqs.QueuePolicy(
        f"{name}-reconciler-failed-tls-only",
        queue_url=queue.id,
        policy=iam.policy_document(iam.deny_insecure_transport(["sqs:*"], [queue.arn])),
        opts=opts,
    )
    alarm = None
    if alarm_topic_arn is not None:
        alarm = dlq_depth_alarm(
            f"{name}-reconciler-failed-depth",
            queue_name=queue.name,
            description=(
                f"ECS events the reconciler failed on every attempt ({name_prefix}-reconciler-"
                "failed). The sweep hands them to the reconciler again; one that stays is "
                "failing each time: read the reconciler's and the sweep's logs."
            ),
            topic_arn=alarm_topic_arn,
            opts=opts,
        )
    return FailedEvents(queue, policy, alarm)


def on_failure_to(
    name: str,
    fn: PythonFunction,
    queue: aws.sqs.Queue,
    opts: pulumi.ResourceOptions,
) -> aws.lambda_.FunctionEventInvokeConfig:
    """``fn``'s asynchronous invocations: Lambda's retries, then the record into ``queue``.
    Declared after ``fn``'s policy (Lambda checks the role may send to the destination)."""
    return aws.lambda_.FunctionEventInvokeConfig(
        f"{name}-on-failure",
        function_name=fn.function.name,
        qualifier=fn.alias.name if fn.alias is not None else None,
        maximum_retry_attempts=RETRY_ATTEMPTS,
        maximum_event_age_in_seconds=MAX_EVENT_AGE_SECONDS,
        destination_config=aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
            on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(
                destination=queue.arn
            )
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[fn.policy])),
    )
