"""The stack's failure topic: job failures and alarms go there, for the same people. SNS
encryption with the AWS managed key, or with a customer managed key when the stack has alarms
(CloudWatch alarms can publish only to a topic whose key policy grants them); a topic policy
that allows this account's alarms and denies plain HTTP; an email subscription when
``notifications.email`` is set. ``BatchPlatform`` makes it once per stack; who may publish is
decided by ``components.grants.FailureTopic``."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import iam
from components.config import StackConfig

# Service principals allowed to publish to the failure topic (CloudWatch alarm actions).
ALARM_PUBLISHERS = ("cloudwatch.amazonaws.com",)


@dataclass(frozen=True)
class FailureTopicParts:
    """The topic and what comes with it, as ``BatchPlatform.nodes`` lists them."""

    key: aws.kms.Key | None
    """The customer managed key (stacks with alarms), else ``None``."""
    topic: aws.sns.Topic
    policy: aws.sns.TopicPolicy
    email: aws.sns.TopicSubscription | None


def failure_topic(
    parent: pulumi.Resource, name: str, config: StackConfig, account_id: pulumi.Output[str]
) -> FailureTopicParts:
    """The key (with alarms), the topic, its policy and the email subscription, children of
    ``parent``."""
    child = pulumi.ResourceOptions(parent=parent)
    topic_name = f"{config.name_prefix}-job-failures"
    key = None
    kms_key_id: pulumi.Input[str] = "alias/aws/sns"
    if config.alarms:
        # CloudWatch alarms cannot publish to a topic encrypted with the AWS managed key
        # (alias/aws/sns): its key policy cannot grant cloudwatch.amazonaws.com. Alarms
        # need a customer managed key ($1/month) whose policy does.
        key = aws.kms.Key(
            f"{name}-topic-key",
            description=f"{topic_name}: SNS encryption usable by CloudWatch alarms",
            enable_key_rotation=True,
            deletion_window_in_days=30 if config.protect else 7,
            policy=account_id.apply(_topic_key_policy),
            opts=child,
        )
        kms_key_id = key.arn
    topic = aws.sns.Topic(
        f"{name}-failures", name=topic_name, kms_master_key_id=kms_key_id, opts=child
    )
    statements = [
        iam.deny_insecure_transport(["sns:Publish"], [topic.arn]),
        iam.Statement(
            ["sns:Publish"],
            [topic.arn],
            {"StringEquals": {"aws:SourceAccount": account_id}},
            sid="CloudWatchAlarms",
            principals={"Service": list(ALARM_PUBLISHERS)},
        ),
    ]
    policy = aws.sns.TopicPolicy(
        f"{name}-failures-policy",
        arn=topic.arn,
        policy=iam.policy_document(*statements),
        opts=child,
    )
    email = config.notifications.email
    subscription = None
    if email:
        subscription = aws.sns.TopicSubscription(
            f"{name}-failures-email",
            topic=topic.arn,
            protocol="email",
            endpoint=email,
            opts=child,
        )
    return FailureTopicParts(key, topic, policy, subscription)


def _topic_key_policy(account_id: str) -> str:
    """Key policy: the account administers the key (AWS's default key policy statement,
    without which the key becomes unmanageable), CloudWatch alarms of this account may
    encrypt for the topic."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministersKey",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",  # in a key policy "*" means this key
                },
                {
                    "Sid": "CloudWatchAlarmsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Resource": "*",  # in a key policy "*" means this key
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                },
            ],
        }
    )
