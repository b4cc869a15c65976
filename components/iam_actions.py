"""Every IAM action list of the project, each written down once (CDK-grants style: the
grants in ``components.grants`` and the statement builders in ``components.iam`` pick from
these; a role never gets ``service:*``). Each list that AWS authorizes unusually says how.
Importable from ``components.iam`` too, where the statements are built."""

from __future__ import annotations

API_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",  # an array job's children, by their derived ids
)
LAUNCHER_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",  # an array job's fan-out step: which children exist already
)
SWEEP_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",  # settling a lost task's jobs, as the reconciler does
)
# Jobs are created by the API; every later change is a conditional UpdateItem. The reconciler
# also records a scheduled run whose task stopped before the runtime could (PutItem, job rows
# only: RECORD_SCHEDULED_RUN_ACTIONS with LeadingKeys job#*).
RECONCILER_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",  # the jobs a reused task finished, read when it stops
)
# Dispatch state (jobcontract/dispatch.py): the launcher creates a task's lease (a Put in its
# claim transaction) and the launcher, reconciler and sweep delete it when the slot is given
# back. AWS rule: TransactWriteItems has no IAM action of its own; each Put/Update/Delete in
# it is authorized as PutItem/UpdateItem/DeleteItem on its item (Service Authorization
# Reference, Amazon DynamoDB). Granted on lease rows only (LeadingKeys slot#*).
LEASE_WRITE_ACTIONS = ("dynamodb:PutItem", "dynamodb:DeleteItem")
# A worker task (warm reuse): its worker's dispatch counts and its own leases, and a Query of
# its worker's QUEUED jobs on the by-worker-status index (LeadingKeys on a GSI is the
# index's partition key value, "<worker>#QUEUED").
WORKER_DISPATCH_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
# A worker task reads and writes its own job rows (conditional updates); it never deletes or
# queries them. Granted on its rows only (``JobsTable.grant_job_rows``, LeadingKeys
# job#<worker>_*), to its own task role and to a fallback worker's for the jobs handed to it.
WORKER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
WORKER_QUEUE_READ_ACTIONS = ("dynamodb:Query",)
RECORD_SCHEDULED_RUN_ACTIONS = ("dynamodb:PutItem",)
# The launcher's fan-out step of an array job puts its children (job rows, in transactions).
CREATE_ARRAY_CHILDREN_ACTIONS = ("dynamodb:PutItem",)
QUEUE_SEND_ACTIONS = ("sqs:SendMessage", "sqs:GetQueueAttributes")
# A worker task that freed its slot asks the launcher for a drain: one SendMessage, no more.
DRAIN_REQUEST_ACTIONS = ("sqs:SendMessage",)
# What a dead-letter target needs (Scheduler's DLQ), and what no producer may do to a DLQ.
DEAD_LETTER_SEND_ACTIONS = ("sqs:SendMessage",)
# A Lambda's on-failure destination (standard SQS): Lambda sends the invocation record with
# the function's execution role (Lambda Developer Guide, "Capturing records of asynchronous
# invocations"), and the sweep takes the records back (receive, then delete once handled).
FAILED_EVENT_RECORD_ACTIONS = ("sqs:SendMessage",)
FAILED_EVENT_REDRIVE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage")
QUEUE_CONSUME_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
)
# One tuple per kind of access, even where two hold the same actions: each list can change
# alone (a grant narrows with its own list), so the repeated shape is the table, not logic.
OBJECT_READ_ACTIONS = ("s3:GetObject",)
# AWS rule (S3 GetObject permissions): without s3:ListBucket a missing key answers 403, not
# 404; granted on the bucket with an s3:prefix condition, it lists only the given prefixes.
BUCKET_LIST_ACTIONS = ("s3:ListBucket",)
# AWS rule: a presigned PUT or POST is authorized as its signer's s3:PutObject on the key
# (S3 User Guide, "Uploading objects with presigned URLs"): the grant bounds every form.
OBJECT_WRITE_ACTIONS = ("s3:PutObject",)
TOPIC_PUBLISH_ACTIONS = ("sns:Publish",)
SECRET_READ_ACTIONS = ("secretsmanager:GetSecretValue",)
# A worker's execution role reads the SSM parameters its ``secrets`` name (ECS fetches them).
SSM_READ_ACTIONS = ("ssm:GetParameters",)
ECS_RUN_TASK_ACTIONS = ("ecs:RunTask",)
# Tags passed to RunTask are authorized as ecs:TagResource on the new task.
ECS_TAG_AT_LAUNCH_ACTIONS = ("ecs:TagResource",)
ECS_TASK_READ_ACTIONS = ("ecs:DescribeTasks",)
ECS_STOP_TASK_ACTIONS = ("ecs:StopTask",)
# AWS rule: ecs:ListTasks is authorized against the container instance (or nothing) and
# can only be narrowed with the ecs:cluster condition key, so it takes Resource "*".
ECS_LIST_TASKS_ACTIONS = ("ecs:ListTasks",)
PASS_ROLE_ACTIONS = ("iam:PassRole",)
# AWS rule: sending to an SNS topic or SQS queue encrypted with a customer managed key needs
# kms:GenerateDataKey and kms:Decrypt on the key; receiving from such a queue kms:Decrypt
# (SQS Developer Guide, "Amazon SQS Key management": https://docs.aws.amazon.com/
# AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html).
KMS_ENCRYPT_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
KMS_DECRYPT_ACTIONS = ("kms:Decrypt",)
LOG_WRITE_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
ECR_PULL_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
)
# AWS rule: ecr:GetAuthorizationToken is account-level and supports only Resource "*".
ECR_AUTH_ACTIONS = ("ecr:GetAuthorizationToken",)
# AWS rule: cloudwatch:PutMetricData has no resource type; scope it with cloudwatch:namespace.
PUT_METRIC_ACTIONS = ("cloudwatch:PutMetricData",)
BEDROCK_INVOKE_ACTIONS = ("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream")
LAMBDA_INVOKE_ACTIONS = ("lambda:InvokeFunction",)

# AWS rule: logs:DescribeLogGroups lists across the account; it is authorized on "*" only.
DESCRIBE_LOG_GROUPS_ACTIONS = ("logs:DescribeLogGroups",)

# Actions that AWS only authorizes with Resource "*" (checked by tests over every policy).
STAR_RESOURCE_ACTIONS = frozenset(
    (
        *ECS_LIST_TASKS_ACTIONS,
        *ECR_AUTH_ACTIONS,
        *PUT_METRIC_ACTIONS,
        *DESCRIBE_LOG_GROUPS_ACTIONS,
    )
)
