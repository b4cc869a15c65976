"""CloudWatch alarm builders shared by components (one definition per kind of alarm), and the
one shape every alarm of the stack has (``metric_alarm``): 5-minute periods, missing data is
not a breach, the failure topic notified."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

ALARM_PERIOD_SECONDS = 300


def metric_alarm(
    resource_name: str,
    *,
    description: str,
    namespace: str,
    metric_name: str,
    dimensions: Mapping[str, pulumi.Input[str]],
    threshold: float,
    comparison_operator: str,
    topic_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    statistic: str | None = None,
    extended_statistic: str | None = None,
    evaluation_periods: int = 1,
    name: str | None = None,
    notify_ok: bool = False,
) -> aws.cloudwatch.MetricAlarm:
    """One alarm on one metric, to ``topic_arn`` (and its return to OK with ``notify_ok``).
    No data means nothing happened (no requests, no messages): ``notBreaching``."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=name,
        alarm_description=description,
        namespace=namespace,
        metric_name=metric_name,
        dimensions=dict(dimensions),
        statistic=statistic,
        extended_statistic=extended_statistic,
        period=ALARM_PERIOD_SECONDS,
        evaluation_periods=evaluation_periods,
        threshold=threshold,
        comparison_operator=comparison_operator,
        treat_missing_data="notBreaching",
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn] if notify_ok else None,
        opts=opts,
    )


def dlq_depth_alarm(
    resource_name: str,
    *,
    queue_name: pulumi.Input[str],
    description: str,
    topic_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """Fires as soon as one message sits in a dead-letter queue, and says OK when it drains:
    a message there is a job (or a scheduled run) that needs a person."""
    return metric_alarm(
        resource_name,
        description=description,
        namespace="AWS/SQS",
        metric_name="ApproximateNumberOfMessagesVisible",
        dimensions={"QueueName": queue_name},
        statistic="Maximum",
        threshold=0,
        comparison_operator="GreaterThanThreshold",
        topic_arn=topic_arn,
        notify_ok=True,
        opts=opts,
    )
