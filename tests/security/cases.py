"""Compliant and non-compliant inputs per rule, side by side (cdk-nag ``validateStack`` style).

Shared by ``test_checklist.py`` (rules.py directly) and ``test_policy_pack.py`` (through the
pulumi-policy wrappers), so both prove the same behaviour on the same data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from policy import rules
from policy.rules import Resource, RuleContext

DEV = RuleContext(stack="dev", production=False)
PROD = RuleContext(stack="prod", production=True)
ACCT = "123456789012"


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


LAMBDA_TRUST = doc(
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
     "Action": "sts:AssumeRole"}
)


@dataclass(frozen=True)
class Case:
    """One rule, one resource type: ``good`` passes, ``bad`` fails with ``expect`` in a message."""

    rule_id: str
    type: str
    good: dict[str, Any]
    bad: dict[str, Any]
    expect: str
    context: RuleContext = DEV


RESOURCE_CASES: tuple[Case, ...] = (
    Case("dynamodb-encryption", rules.T_TABLE,
         {"serverSideEncryption": {"enabled": True}}, {}, "serverSideEncryption"),
    Case("dynamodb-encryption", rules.T_TABLE,
         {"serverSideEncryption": {"enabled": True, "kmsKeyArn": "arn:aws:kms:x:1:key/k"}},
         {"serverSideEncryption": {"enabled": False}}, "serverSideEncryption"),
    Case("sqs-encryption", rules.T_QUEUE, {"sqsManagedSseEnabled": True},
         {"sqsManagedSseEnabled": False}, "sqsManagedSseEnabled"),
    Case("sqs-encryption", rules.T_QUEUE, {"kmsMasterKeyId": "alias/aws/sqs"}, {"name": "q"},
         "kmsMasterKeyId"),
    Case("sns-encryption", rules.T_TOPIC, {"kmsMasterKeyId": "alias/aws/sns"}, {"name": "t"},
         "kmsMasterKeyId"),
    Case("ecr-encryption", rules.T_REPO,
         {"encryptionConfigurations": [{"encryptionType": "AES256"}]},
         {"encryptionConfigurations": [{"encryptionType": "NONE"}]}, "encryptionType"),
    Case("log-group-encryption", rules.T_LOG_GROUP, {"retentionInDays": 14},
         {"retentionInDays": 14, "kmsKeyId": "alias/logs"}, "key ARN"),
    Case("secret-encryption", rules.T_SECRET, {"name": "s"}, {"name": "s", "kmsKeyId": " "},
         "kmsKeyId"),
    Case("kms-key-rotation", rules.T_KMS_KEY, {"enableKeyRotation": True}, {"description": "k"},
         "enableKeyRotation"),
    Case("dynamodb-pitr-in-production", rules.T_TABLE, {"pointInTimeRecovery": {"enabled": True}},
         {"pointInTimeRecovery": {"enabled": False}}, "pointInTimeRecovery", PROD),
    Case("deletion-protection-in-production", rules.T_TABLE, {"deletionProtectionEnabled": True},
         {"deletionProtectionEnabled": False}, "deletionProtectionEnabled", PROD),
    Case("deletion-protection-in-production", "aws:s3/bucket:Bucket", {"forceDestroy": False},
         {"forceDestroy": True}, "forceDestroy", PROD),
    Case("log-retention", rules.T_LOG_GROUP, {"retentionInDays": 30}, {"name": "/x"},
         "retentionInDays"),
    Case("log-retention", rules.T_LOG_GROUP, {"retentionInDays": 7}, {"retentionInDays": 10},
         "not a CloudWatch Logs value"),
    Case("no-plaintext-secrets", rules.T_FUNCTION,
         {"environment": {"variables": {
             "BATCH_SLACK_WEBHOOK_SECRET_ARN": f"arn:aws:secretsmanager:us-east-1:{ACCT}:secret:s",
             "BATCH_JOBS_TABLE": "jobs"}}},
         {"environment": {"variables": {"SLACK_WEBHOOK": "https://hooks.slack.com/services/T/B/X"}}},
         "SLACK_WEBHOOK"),
    Case("no-plaintext-secrets", rules.T_FUNCTION,
         {"environment": {"variables": {"LOG_LEVEL": "INFO"}}},
         {"environment": {"variables": {"CONFIG": "AKIAABCDEFGHIJKLMNOP"}}}, "credential"),
    Case("no-plaintext-secrets", rules.T_TASK_DEF,
         {"containerDefinitions": json.dumps([{
             "name": "worker", "environment": [{"name": "BATCH_WORKER_NAME", "value": "w"}],
             "secrets": [{"name": "NOTION",
                          "valueFrom": f"arn:aws:secretsmanager:x:{ACCT}:secret:n"}],
         }])},
         {"containerDefinitions": json.dumps([{
             "name": "worker", "environment": [{"name": "NOTION_TOKEN", "value": "secret_abc"}]}])},
         "NOTION_TOKEN"),
    Case("ecs-container-logging", rules.T_TASK_DEF,
         {"containerDefinitions": json.dumps([{"name": "worker", "logConfiguration": {
             "logDriver": "awslogs", "options": {}}}])},
         {"containerDefinitions": json.dumps([{"name": "worker"}])}, "awslogs"),
    Case("lambda-current-runtime", rules.T_FUNCTION, {"runtime": "python3.13"},
         {"runtime": "python3.8"}, "python3.8"),
    Case("lambda-arm64", rules.T_FUNCTION, {"architectures": ["arm64"]},
         {"architectures": ["x86_64"]}, "arm64"),
    Case("ecr-scan-on-push", rules.T_REPO, {"imageScanningConfiguration": {"scanOnPush": True}},
         {"imageScanningConfiguration": {"scanOnPush": False}}, "scanOnPush"),
    Case("scheduler-retry-and-dlq", rules.T_SCHEDULE,
         {"target": {"arn": "c", "retryPolicy": {"maximumRetryAttempts": 3},
                     "deadLetterConfig": {"arn": "arn:aws:sqs:us-east-1:1:dlq"}}},
         {"target": {"arn": "c"}}, "retryPolicy"),
    Case("scheduler-retry-and-dlq", rules.T_SCHEDULE,
         {"target": {"arn": "c", "retryPolicy": {"maximumRetryAttempts": 1},
                     "deadLetterConfig": {"arn": "arn:aws:sqs:us-east-1:1:dlq"}}},
         {"target": {"arn": "c", "retryPolicy": {"maximumRetryAttempts": 2}}},
         "deadLetterConfig"),
    Case("iam-no-wildcard-action", rules.T_ROLE_POLICY,
         {"policy": doc({"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": "arn:q"})},
         {"policy": doc({"Effect": "Allow", "Action": "sqs:*", "Resource": "arn:q"})}, "sqs:*"),
    Case("iam-no-wildcard-action", rules.T_ROLE,
         {"assumeRolePolicy": LAMBDA_TRUST, "inlinePolicies": [{"name": "p", "policy": doc(
             {"Effect": "Deny", "Action": "*", "Resource": "*"})}]},
         {"assumeRolePolicy": LAMBDA_TRUST, "inlinePolicies": [{"name": "p", "policy": doc(
             {"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:x"})}]}, "NotAction"),
    Case("iam-no-resource-star", rules.T_ROLE_POLICY,
         {"policy": doc({"Effect": "Allow", "Action": "ecr:GetAuthorizationToken",
                         "Resource": "*"})},
         {"policy": doc({"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken",
                                                       "s3:GetObject"], "Resource": "*"})},
         "s3:getobject"),
    Case("iam-passrole-scoped", rules.T_ROLE_POLICY,
         {"policy": doc({"Effect": "Allow", "Action": "iam:PassRole",
                         "Resource": f"arn:aws:iam::{ACCT}:role/task",
                         "Condition": {"StringEquals": {
                             "iam:PassedToService": "ecs-tasks.amazonaws.com"}}})},
         {"policy": doc({"Effect": "Allow", "Action": "iam:PassRole",
                         "Resource": f"arn:aws:iam::{ACCT}:role/task"})}, "PassedToService"),
    Case("iam-trust-service-only", rules.T_ROLE, {"assumeRolePolicy": LAMBDA_TRUST},
         {"assumeRolePolicy": doc({"Effect": "Allow", "Principal": {"AWS": "*"},
                                   "Action": "sts:AssumeRole"})}, "AWS principal"),
    Case("iam-no-managed-policies", rules.T_ROLE_POLICY_ATTACHMENT,
         {"policyArn": "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"},
         {"policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}, "AdministratorAccess"),
    Case("security-group-no-ingress", rules.T_SECURITY_GROUP,
         {"description": "Fargate tasks: egress only",
          "egress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]},
         {"description": "tasks", "ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22,
                                                "cidrBlocks": ["0.0.0.0/0"]}]}, "ingress"),
    Case("security-group-no-ingress", rules.T_SECURITY_GROUP, {"description": "egress only"},
         {"description": "Managed by Pulumi"}, "description"),
    Case("apigw-api-key-required", rules.T_REST_API,
         {"body": json.dumps({
             "openapi": "3.0.1",
             "components": {"securitySchemes": {"api_key": {
                 "type": "apiKey", "name": "x-api-key", "in": "header"}}},
             "security": [{"api_key": []}],
             "paths": {"/jobs": {"get": {}, "post": {"security": [{"api_key": []}]}}}})},
         {"body": json.dumps({
             "openapi": "3.0.1",
             "components": {"securitySchemes": {"api_key": {
                 "type": "apiKey", "name": "x-api-key", "in": "header"}}},
             "security": [{"api_key": []}],
             "paths": {"/jobs": {"get": {}, "post": {"security": [{}]}}}})},
         "POST /jobs"),
    Case("apigw-api-key-required", rules.T_METHOD, {"httpMethod": "GET", "apiKeyRequired": True},
         {"httpMethod": "GET", "apiKeyRequired": False}, "apiKeyRequired"),
    Case("apigw-request-validation", rules.T_REST_API,
         {"body": json.dumps({"paths": {}, "x-amazon-apigateway-request-validator": "all",
                              "x-amazon-apigateway-request-validators": {"all": {
                                  "validateRequestBody": True,
                                  "validateRequestParameters": True}}})},
         {"body": json.dumps({"paths": {}})}, "request-validator"),
    Case("apigw-access-logging", rules.T_STAGE,
         {"accessLogSettings": {"destinationArn": "arn:aws:logs:x:1:log-group:a",
                                "format": '{"requestId":"$context.requestId"}'}},
         {"accessLogSettings": {"destinationArn": "arn:aws:logs:x:1:log-group:a",
                                "format": "$context.requestId"}}, "JSON"),
)


@dataclass(frozen=True)
class StackCase:
    rule_id: str
    good: list[Resource]
    bad: list[Resource]
    expect: str
    context: RuleContext = field(default=DEV)


BUCKET = Resource("aws:s3/bucket:Bucket", "results",
                  {"bucket": "b", "id": "b", "arn": "arn:aws:s3:::b"})
BUCKET_SSE = Resource(next(iter(sorted(rules.T_BUCKET_SSE))), "sse", {
    "bucket": "b", "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]})
BUCKET_PAB = Resource(rules.T_BUCKET_PAB, "pab", {"bucket": "b", **{
    f: True for f in rules.PUBLIC_ACCESS_FLAGS}})
TLS_DENY = {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
BUCKET_POLICY = Resource(rules.T_BUCKET_POLICY, "tls", {"bucket": "b", "policy": doc(TLS_DENY)})
Q_ARN, DLQ_ARN = "arn:aws:sqs:us-east-1:1:q.fifo", "arn:aws:sqs:us-east-1:1:q-dlq.fifo"
QUEUE = Resource(rules.T_QUEUE, "q", {"arn": Q_ARN, "url": "https://sqs/q", "id": "https://sqs/q",
                                      "redrivePolicy": json.dumps({
                                          "deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 5})})
DLQ = Resource(rules.T_QUEUE, "dlq", {"arn": DLQ_ARN, "url": "https://sqs/dlq"})
# A Lambda's asynchronous on-failure destination counts as a DLQ (the reconciler's).
FAILED_EVENTS = Resource(rules.T_QUEUE, "failed", {"arn": "arn:aws:sqs:us-east-1:1:failed"})
ON_FAILURE = Resource(rules.T_INVOKE_CONFIG, "on-failure", {"destinationConfig": {
    "onFailure": {"destination": "arn:aws:sqs:us-east-1:1:failed"}}})


def _queue_policy(url: str, arn: str) -> Resource:
    return Resource(rules.T_QUEUE_POLICY, f"tls-{arn}", {"queueUrl": url, "policy": doc({
        "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": arn,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}})})


TOPIC = Resource(rules.T_TOPIC, "failures", {"arn": "arn:aws:sns:us-east-1:1:f"})
TOPIC_POLICY = Resource(rules.T_TOPIC_POLICY, "tls", {"arn": "arn:aws:sns:us-east-1:1:f",
                                                     "policy": doc({
    "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sns:Publish",
    "Resource": "arn:aws:sns:us-east-1:1:f",
    "Condition": {"Bool": {"aws:SecureTransport": "false"}}})})
FN = Resource(rules.T_FUNCTION, "api", {"name": "ai-batch-dev-api"})
FN_LOGS = Resource(rules.T_LOG_GROUP, "api-logs", {"name": "/aws/lambda/ai-batch-dev-api",
                                                   "retentionInDays": 14})
REPO = Resource(rules.T_REPO, "repo",
                {"name": "w", "id": "w", "arn": "arn:aws:ecr:x:1:repository/w"})
REPO_LIFECYCLE = Resource(rules.T_REPO_LIFECYCLE, "keep", {"repository": "w", "policy": json.dumps(
    {"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType":
                "imageCountMoreThan", "countNumber": 10}, "action": {"type": "expire"}}]})})
STAGE = Resource(rules.T_STAGE, "stage", {"restApi": "api1", "stageName": "v1"})
METHOD_SETTINGS = Resource(rules.T_METHOD_SETTINGS, "all", {
    "restApi": "api1", "stageName": "v1", "methodPath": "*/*",
    "settings": {"throttlingBurstLimit": 20, "throttlingRateLimit": 10}})
USAGE_PLAN = Resource(rules.T_USAGE_PLAN, "plan", {
    "apiStages": [{"apiId": "api1", "stage": "v1"}],
    "throttleSettings": {"burstLimit": 20, "rateLimit": 10}})
GATEWAY_ENDPOINT = Resource(rules.T_VPC_ENDPOINT, "s3", {"vpcEndpointType": "Gateway"})
LAUNCHER_PRIVATE = Resource(rules.T_FUNCTION, "launcher", {
    "name": "l", "environment": {"variables": {"BATCH_ASSIGN_PUBLIC_IP": "DISABLED"}}})
LAUNCHER_PUBLIC = Resource(rules.T_FUNCTION, "launcher", {
    "name": "l", "environment": {"variables": {"BATCH_ASSIGN_PUBLIC_IP": "ENABLED"}}})

STACK_CASES: tuple[StackCase, ...] = (
    StackCase("s3-encryption", [BUCKET, BUCKET_SSE], [BUCKET], "server-side encryption"),
    StackCase("s3-block-public-access", [BUCKET, BUCKET_PAB],
              [BUCKET, Resource(rules.T_BUCKET_PAB, "pab", {
                  "bucket": "b", **{f: True for f in rules.PUBLIC_ACCESS_FLAGS},
                  "restrictPublicBuckets": False})], "all four"),
    StackCase("s3-tls-only", [BUCKET, BUCKET_POLICY],
              [BUCKET, Resource(rules.T_BUCKET_POLICY, "tls", {"bucket": "b", "policy": doc(
                  {**TLS_DENY, "Effect": "Allow"})})], "non-TLS"),
    StackCase("sqs-tls-only", [QUEUE, _queue_policy("https://sqs/q", Q_ARN)],
              [QUEUE, _queue_policy("https://sqs/other", "arn:other")], "non-TLS"),
    StackCase("sns-tls-only", [TOPIC, TOPIC_POLICY], [TOPIC], "non-TLS"),
    StackCase("sqs-dlq", [QUEUE, DLQ], [DLQ], "neither has a DLQ"),
    StackCase("sqs-dlq", [QUEUE, DLQ], [QUEUE], "not in the stack"),
    StackCase("sqs-dlq", [QUEUE, DLQ, FAILED_EVENTS, ON_FAILURE], [QUEUE, DLQ, FAILED_EVENTS],
              "neither has a DLQ"),
    StackCase("lambda-own-log-group", [FN, FN_LOGS], [FN], "/aws/lambda/ai-batch-dev-api"),
    StackCase("ecr-lifecycle-policy", [REPO, REPO_LIFECYCLE], [REPO], "lifecycle"),
    StackCase("apigw-throttling", [STAGE, METHOD_SETTINGS, USAGE_PLAN], [STAGE, USAGE_PLAN],
              "stage-wide"),
    StackCase("apigw-throttling", [STAGE, METHOD_SETTINGS, USAGE_PLAN], [STAGE, METHOD_SETTINGS],
              "usage plan"),
    StackCase("no-public-ip-in-private-mode", [GATEWAY_ENDPOINT, LAUNCHER_PRIVATE],
              [GATEWAY_ENDPOINT, LAUNCHER_PUBLIC], "BATCH_ASSIGN_PUBLIC_IP=ENABLED"),
)
