"""How ``BatchApi`` writes its access logs: their JSON format (``ACCESS_LOG_FORMAT``), and
API Gateway's account-wide CloudWatch role they need: the role, its logs policy and the
account setting pointing at it, written by every ``BatchApi`` with access logs (unless
``api.manageCloudWatchRole: false``).

Why every stack with access logs writes the setting itself: it is ONE value per account and
region, and CreateStage with access logging fails while it is unset, so a stack that relied on
another stack's setting could not deploy alone (prod in its own account).

Why the role, its policy and the setting are all ``retain_on_delete``: two stacks in one
account/region (dev and prod) both write the setting, last writer wins, and either role serves
both stacks' logs. Destroying one stack must not touch what the other uses:
- the setting may point at this stack's role while the other stack still logs through it:
  deleting the role (or its policy) would silently stop the other stack's logs;
- pulumi-aws 7 (terraform-provider-aws 6) resets the setting when an ``aws.apigateway.Account``
  is deleted; the ``reset_on_delete`` switch of the 5.x provider is gone
  (hashicorp/terraform-provider-aws#42226; pulumi-aws 7.51's ``AccountArgs`` has only
  ``cloudwatch_role_arn`` and ``region``). Retained, destroy only forgets it (Pulumi's
  retainOnDelete: no provider Delete on destroy or replace).
The role is named from a prefix AWS completes with a unique suffix, so the retained role never
collides with the next `pulumi up` of the same stack or with another stack.

Leftover after `pulumi destroy`: one IAM role with its inline policy (IAM is free); delete it
by hand once ``aws apigateway get-account`` no longer names it. After a `pulumi refresh` a
stack may see the other stack's role in the setting and write its own back: harmless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import iam

# One JSON object per request (CloudWatch Logs Insights parses it without a pattern).
ACCESS_LOG_FORMAT: Mapping[str, str] = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "apiKeyId": "$context.identity.apiKeyId",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "latency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integrationStatus",
    "errorMessage": "$context.error.message",
    "errorType": "$context.error.responseType",
}


# What API Gateway's account-wide CloudWatch role needs (the AWS-managed
# AmazonAPIGatewayPushToCloudWatchLogs policy, but limited to this account's log groups).
APIGW_LOGS_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
)
# AWS rule: an IAM role name is at most 64 characters; with name_prefix AWS (the provider)
# appends 26 unique ones, so the prefix is at most 38 (terraform-provider-aws validates 1-38).
ROLE_NAME_PREFIX_MAX = 38
CLOUDWATCH_ROLE_SUFFIX = "-apigw-logs-"
# What a stack that opted out (api.manageCloudWatchRole: false) says at preview: no data
# source reads the setting (pulumi-aws has no get-account function).
UNMANAGED_ROLE_WARNING = (
    "api.manageCloudWatchRole is false: this stack does not set API Gateway's "
    "CloudWatch role for its access logs and relies on the account/region "
    "already having one (check: aws apigateway get-account -> cloudwatchRoleArn). "
    "If it is unset, creating the stage fails with 'CloudWatch Logs role ARN "
    "must be set in account settings to enable logging'; remove the key (default "
    "true) to let this stack set it."
)


def cloudwatch_role_name_prefix(name_prefix: str) -> str:
    """``<stack prefix>-apigw-logs-``, the stack prefix cut so AWS's unique suffix still fits:
    a retained role never blocks the next one (same stack re-created, or another stack)."""
    room = ROLE_NAME_PREFIX_MAX - len(CLOUDWATCH_ROLE_SUFFIX)
    return name_prefix[:room].rstrip("-") + CLOUDWATCH_ROLE_SUFFIX


@dataclass(frozen=True)
class CloudWatchSetting:
    """The account setting and what it names (all three retained on destroy)."""

    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    account: aws.apigateway.Account


def cloudwatch_setting(parent: pulumi.Resource, name: str, name_prefix: str) -> CloudWatchSetting:
    """The role, its policy and the account setting, children of ``parent`` (see the module
    docstring for why each is retained)."""
    # AWS rule: the CloudWatch role setting is one per account and region, and deleting the
    # role it names silently stops every API's logs there. Provider rule (pulumi-aws 7 /
    # terraform-provider-aws 6, hashicorp/terraform-provider-aws#42226): deleting an
    # aws.apigateway.Account resets the setting. Pulumi rule: retain_on_delete skips the
    # provider's Delete on destroy and on replace. So all three are retained.
    retained = pulumi.ResourceOptions(parent=parent, retain_on_delete=True)
    role = aws.iam.Role(
        f"{name}-cloudwatch-role",
        name_prefix=cloudwatch_role_name_prefix(name_prefix),
        description=(
            f"API Gateway account setting (written by {name_prefix}): API logs to "
            "CloudWatch Logs. Kept on destroy: the setting may still point here."
        ),
        # No aws:SourceAccount condition: API Gateway documents this trust without one, and
        # it checks the role by assuming it when the account setting is written, so a key
        # it does not send would fail `pulumi up`. Only this account can pass the role.
        assume_role_policy=iam.assume_role_policy("apigateway.amazonaws.com"),
        opts=retained,
    )
    policy = _logs_policy(name, role, retained)
    account = aws.apigateway.Account(
        f"{name}-cloudwatch-account-setting",
        cloudwatch_role_arn=role.arn,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[policy], retain_on_delete=True),
    )
    return CloudWatchSetting(role, policy, account)


def _logs_policy(
    name: str, role: aws.iam.Role, retained: pulumi.ResourceOptions
) -> aws.iam.RolePolicy:
    """What AmazonAPIGatewayPushToCloudWatchLogs grants (API Gateway's documented policy for
    this role), limited to this account's log groups in the stack's partition and region."""
    account = aws.get_caller_identity_output().account_id
    region = aws.get_region_output().region
    partition = aws.get_partition_output().partition
    return aws.iam.RolePolicy(
        f"{name}-cloudwatch-logs",
        role=role.id,
        policy=iam.policy_document(
            iam.Statement(
                APIGW_LOGS_ACTIONS,
                [
                    pulumi.Output.concat(
                        "arn:", partition, ":logs:", region, ":", account, ":log-group:*"
                    )
                ],
                sid="ApiGatewayLogs",
            ),
            iam.Statement(
                iam.DESCRIBE_LOG_GROUPS_ACTIONS, ["*"], sid="ApiGatewayDescribeLogGroups"
            ),
        ),
        opts=retained,
    )
