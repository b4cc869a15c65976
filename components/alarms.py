"""CloudWatch alarm builders shared by components (one definition per kind of alarm)."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

ALARM_PERIOD_SECONDS = 300


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
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        alarm_description=description,
        namespace="AWS/SQS",
        metric_name="ApproximateNumberOfMessagesVisible",
        dimensions={"QueueName": queue_name},
        statistic="Maximum",
        period=ALARM_PERIOD_SECONDS,
        evaluation_periods=1,
        threshold=0,
        comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching",
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn],
        opts=opts,
    )
