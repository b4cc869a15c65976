"""IAM policy building, CDK-grants style: action lists defined once, statements built from them.

Every grant is action-level (never ``service:*``) and names its resources. ``Resource: "*"``
appears only for actions AWS does not scope to a resource; each such constant says which.
Statements take plain strings or ``pulumi.Output``s; ``policy_document`` resolves them to
the JSON text a role policy takes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components import aws_rules
from jobcontract import Table, worker_status
from jobcontract.dispatch import SLOT_PREFIX, slot_key_prefix, worker_key

Resource = str | pulumi.Output[str]
Conditions = Mapping[str, Mapping[str, Any]]

# --- action lists (the one place they are written down) -------------------------------------
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
QUEUE_CONSUME_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
)
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


@dataclass(frozen=True)
class Statement:
    """One IAM statement; resources and condition values may be pulumi Outputs."""

    actions: Sequence[str]
    resources: Sequence[Resource]
    conditions: Conditions | None = None
    sid: str | None = None
    effect: str = "Allow"
    principals: Mapping[str, Any] | str | None = None
    """Resource policies only: ``"*"`` or ``{"Service": ...}`` / ``{"AWS": ...}``."""

    def __post_init__(self) -> None:
        if self.effect not in ("Allow", "Deny"):
            raise ValueError(f"effect {self.effect!r}: Allow or Deny")
        if not self.actions:
            raise ValueError(f"statement {self.sid}: at least one action")
        for action in self.actions:
            service, _, name = action.partition(":")
            if not service or not name:
                raise ValueError(f"IAM action {action!r}: service:Action")
            # Our rule: Allow grants are action-level; a wildcard would grant future actions.
            if "*" in action and self.effect == "Allow":
                raise ValueError(f"IAM action {action!r}: name one action, no wildcards")
        if not self.resources:
            raise ValueError(f"statement {self.sid or self.actions}: at least one resource")
        if any(isinstance(r, str) and r == "*" for r in self.resources):
            unscoped = [a for a in self.actions if a not in STAR_RESOURCE_ACTIONS]
            if unscoped and self.effect == "Allow":
                raise ValueError(f'Resource "*" for resource-scoped actions {unscoped}')


def _statement_json(s: Statement) -> pulumi.Output[dict[str, Any]]:
    body: dict[str, Any] = {
        "Effect": s.effect,
        "Action": sorted(set(s.actions)),
        "Resource": list(s.resources),
    }
    if s.sid:
        body["Sid"] = s.sid
    if s.conditions:
        body["Condition"] = {k: dict(v) for k, v in s.conditions.items()}
    if s.principals:
        body["Principal"] = s.principals if isinstance(s.principals, str) else dict(s.principals)
    resolved: pulumi.Output[dict[str, Any]] = pulumi.Output.from_input(body)  # type: ignore[arg-type]
    return resolved


def policy_document(*statements: Statement) -> pulumi.Output[str]:
    """JSON policy document from statements (Outputs inside are resolved)."""
    if not statements:
        raise ValueError("a policy needs at least one statement")
    parts = [_statement_json(s) for s in statements]
    return pulumi.Output.all(*parts).apply(
        lambda resolved: json.dumps({"Version": "2012-10-17", "Statement": list(resolved)})
    )


def assume_role_policy(service: str) -> str:
    """Trust policy letting one AWS service assume the role, in the form the service documents.
    Confused-deputy conditions are added by the caller only where the service documents the
    keys it sends (ECS task roles, Scheduler): a key the service does not send denies it."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


# --- grants ----------------------------------------------------------------------------------


def table_and_indexes(table_arn: Resource) -> list[Resource]:
    """The table ARN and ``<arn>/index/*`` (Query on a GSI is authorized on the index ARN)."""
    return [table_arn, pulumi.Output.concat(table_arn, "/index/*")]


def table_actions(
    actions: Sequence[str],
    table_arn: Resource,
    *,
    leading_keys: Sequence[str] | None = None,
    sid: str | None = None,
) -> Statement:
    """Table actions on the table and its indexes; ``leading_keys`` narrows to items whose
    partition key matches (``dynamodb:LeadingKeys``, e.g. ``job#<worker>_*``)."""
    conditions = None
    if leading_keys:
        conditions = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(leading_keys)}}
    return Statement(actions, table_and_indexes(table_arn), conditions, sid)


def lease_writes(table_arn: Resource, *, create: bool = True, sid: str = "TaskLeases") -> Statement:
    """Delete (and with ``create``, create) task leases (``slot#*``) of the dispatch state:
    only the launcher creates them; the reconciler and the sweep give them back."""
    actions = LEASE_WRITE_ACTIONS if create else ("dynamodb:DeleteItem",)
    return table_actions(actions, table_arn, leading_keys=[SLOT_PREFIX + "*"], sid=sid)


def worker_dispatch(table_arn: Resource, worker: str) -> list[Statement]:
    """What a worker's task needs for warm reuse: its dispatch counts and leases, and a
    Query of its own worker's QUEUED jobs (oldest first) on the by-worker-status index."""
    leading = {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [worker_status(worker, "QUEUED")]}
    }
    return [
        Statement(
            WORKER_DISPATCH_ACTIONS,
            [table_arn],
            {
                "ForAllValues:StringLike": {
                    "dynamodb:LeadingKeys": [worker_key(worker), slot_key_prefix(worker) + "*"]
                }
            },
            "OwnDispatchState",
        ),
        Statement(
            WORKER_QUEUE_READ_ACTIONS,
            [pulumi.Output.concat(table_arn, f"/index/{Table.BY_WORKER_STATUS}")],
            leading,
            "OwnQueuedJobs",
        ),
    ]


def bucket_prefix_read(bucket_arn: Resource, prefix: str, sid: str | None = None) -> Statement:
    return Statement(OBJECT_READ_ACTIONS, [objects_under(bucket_arn, prefix)], sid=sid)


def bucket_prefix_list(
    bucket_arn: Resource, prefixes: Sequence[str], sid: str | None = None
) -> Statement:
    """``s3:ListBucket`` on the bucket, for keys under ``prefixes`` only (``s3:prefix``), so a
    missing object under them answers 404 NoSuchKey instead of 403 AccessDenied."""
    for prefix in prefixes:
        if "*" in prefix:
            raise ValueError(f"prefix {prefix!r}: give the literal prefix, '*' is appended")
    return Statement(
        BUCKET_LIST_ACTIONS,
        [bucket_arn],
        {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
        sid=sid,
    )


def array_merge(bucket_arn: Resource) -> list[Statement]:
    """Merging an array job (handlers/arrays.py: the reconciler, the sweep): read its
    children's ``result.json`` and write the parent's ``results.jsonl`` and ``summary.json``,
    never a worker's own result (``jobcontract.arrays.merged_key`` / ``summary_key``)."""
    from jobcontract.arrays import merged_key, summary_key

    def objects(key: str) -> pulumi.Output[str]:
        return pulumi.Output.concat(bucket_arn, "/results/*/", key.rsplit("/", 1)[-1])

    return [
        Statement(OBJECT_READ_ACTIONS, [objects("result.json")], sid="ReadChildResults"),
        Statement(
            OBJECT_WRITE_ACTIONS,
            [objects(merged_key("w", "j")), objects(summary_key("w", "j"))],
            sid="WriteMergedResults",
        ),
    ]


def objects_under(bucket_arn: Resource, prefix: str) -> pulumi.Output[str]:
    """``<bucket arn>/<prefix>*``: the objects under one literal prefix."""
    if "*" in prefix:
        raise ValueError(f"prefix {prefix!r}: give the literal prefix, '*' is appended")
    return pulumi.Output.concat(bucket_arn, "/", prefix, "*")


def topic_publish(topic_arn: Resource, sid: str | None = None) -> Statement:
    return Statement(TOPIC_PUBLISH_ACTIONS, [topic_arn], sid=sid)


def secret_read(secret_arns: Sequence[Resource], sid: str | None = None) -> Statement:
    return Statement(SECRET_READ_ACTIONS, list(secret_arns), sid=sid)


def log_group_write(log_group_arn: Resource, sid: str | None = None) -> Statement:
    """Write to one log group's streams (``<group arn>:log-stream:*``)."""
    return Statement(
        LOG_WRITE_ACTIONS, [pulumi.Output.concat(log_group_arn, ":log-stream:*")], sid=sid
    )


def cluster_condition(cluster_arn: Resource) -> dict[str, dict[str, Any]]:
    """``ArnEquals ecs:cluster``: the action applies to tasks of this cluster only."""
    return {"ArnEquals": {"ecs:cluster": cluster_arn}}


def task_arns_of(cluster_arn: Resource) -> pulumi.Output[str]:
    """``arn:...:task/<cluster name>/*`` from ``arn:...:cluster/<cluster name>``."""
    return pulumi.Output.from_input(cluster_arn).apply(
        lambda arn: arn.replace(":cluster/", ":task/", 1) + "/*"
    )


def ecs_tasks_in_cluster(actions: Sequence[str], cluster_arn: Resource) -> Statement:
    """Task-level ECS actions (DescribeTasks, StopTask) on this cluster's tasks only."""
    return Statement(actions, [task_arns_of(cluster_arn)], cluster_condition(cluster_arn))


def ecs_list_tasks(cluster_arn: Resource) -> Statement:
    # AWS rule: ecs:ListTasks has no task resource; Resource "*" + ecs:cluster condition.
    return Statement(ECS_LIST_TASKS_ACTIONS, ["*"], cluster_condition(cluster_arn))


def run_task(task_definition_arn_without_revision: Resource, cluster_arn: Resource) -> Statement:
    """``ecs:RunTask`` on every revision of one task definition family, in one cluster."""
    family = pulumi.Output.concat(task_definition_arn_without_revision, ":*")
    return Statement(ECS_RUN_TASK_ACTIONS, [family], cluster_condition(cluster_arn))


def pass_role(role_arns: Sequence[Resource], service: str = "ecs-tasks.amazonaws.com") -> Statement:
    """``iam:PassRole`` on exactly these roles, and only to ``service``."""
    return Statement(
        PASS_ROLE_ACTIONS,
        list(role_arns),
        {"StringEquals": {"iam:PassedToService": service}},
    )


def put_metric_data(namespace: str) -> Statement:
    # AWS rule: cloudwatch:PutMetricData supports only Resource "*"; the namespace condition
    # keeps a role from writing into other namespaces.
    return Statement(
        PUT_METRIC_ACTIONS, ["*"], {"StringEquals": {"cloudwatch:namespace": namespace}}
    )


def ecr_pull(repository_arn: Resource) -> list[Statement]:
    """Pull one repository's images: the account-level token plus layer reads on the repo."""
    return [
        # AWS rule: ecr:GetAuthorizationToken supports only Resource "*".
        Statement(ECR_AUTH_ACTIONS, ["*"]),
        Statement(ECR_PULL_ACTIONS, [repository_arn]),
    ]


def _bedrock_grant(
    model_id: str, region: Resource, account_id: Resource
) -> tuple[Resource | None, list[Resource]]:
    """(inference profile ARN or None, foundation-model ARNs) for one model id."""
    model = aws_rules.bedrock_model(model_id)
    if model.profile_prefix is None:
        fm = pulumi.Output.concat("arn:aws:bedrock:", region, "::foundation-model/", model_id)
        return None, [fm]
    profile = pulumi.Output.concat(
        "arn:aws:bedrock:", region, ":", account_id, ":inference-profile/", model_id
    )
    base = model.foundation_model
    if model.is_global_profile:
        # AWS rule: a global profile is authorized on the profile, the foundation model in the
        # source Region and the Region-less "arn:aws:bedrock:::foundation-model/<model>"
        # ("Global cross-Region inference", IAM policy requirements).
        in_region = pulumi.Output.concat("arn:aws:bedrock:", region, "::foundation-model/", base)
        return profile, [in_region, f"arn:aws:bedrock:::foundation-model/{base}"]
    # AWS rule: a Geographic profile is authorized on the profile and on the foundation model
    # in the source Region and every destination Region of the profile ("Geographic
    # cross-Region inference", IAM policy requirements); the Region wildcard covers the
    # destination list, which AWS extends over time.
    return profile, [f"arn:aws:bedrock:*::foundation-model/{base}"]


def bedrock_model_arns(model_id: str, region: Resource, account_id: Resource) -> list[Resource]:
    """Every ARN ``bedrock:InvokeModel`` is checked against for a model id: the foundation
    model in this Region, or a cross-Region inference profile (``us.``, ``eu.``, ``apac.``,
    ``jp.``, ``au.``, ``global.``) plus its foundation model wherever the profile routes."""
    profile, models = _bedrock_grant(model_id, region, account_id)
    return [profile, *models] if profile is not None else models


def bedrock_invoke(model_id: str, region: Resource, account_id: Resource) -> list[Statement]:
    """Invoke one model id and nothing else. Through a profile, the foundation model grant
    holds only for requests made through that profile (``bedrock:InferenceProfileArn``, as
    the Bedrock user guide's cross-Region examples do): the role cannot call the model
    directly in another Region, outside the profile's geography."""
    profile, models = _bedrock_grant(model_id, region, account_id)
    if profile is None:
        return [Statement(BEDROCK_INVOKE_ACTIONS, models, sid="InvokeModel")]
    return [
        Statement(BEDROCK_INVOKE_ACTIONS, [profile], sid="InvokeInferenceProfile"),
        Statement(
            BEDROCK_INVOKE_ACTIONS,
            models,
            {"StringEquals": {"bedrock:InferenceProfileArn": profile}},
            sid="InvokeModelThroughProfile",
        ),
    ]


def deny_insecure_transport(actions: Sequence[str], resources: Sequence[Resource]) -> Statement:
    """Resource-policy statement denying every request not made over TLS.

    A Deny may use a service wildcard (``s3:*``): denying more is never a privilege grant.
    """
    return Statement(
        actions,
        resources,
        {"Bool": {"aws:SecureTransport": "false"}},
        sid="DenyInsecureTransport",
        effect="Deny",
        principals="*",
    )


# --- stack-wide grants (one statement, whatever the number of workers) ----------------------


def worker_role_path(name_prefix: str) -> str:
    """IAM path of every worker role of one stack: ``/aibatch/<project>-<stack>/workers/``.

    The path ends in ``/``, so ``role/aibatch/ai-batch-dev/workers/*`` can never match a role of
    the stack ``dev2`` (``/aibatch/ai-batch-dev2/...``) or ``dev-x``
    (``/aibatch/ai-batch-dev-x/...``).
    """
    return aws_rules.iam_path(f"/aibatch/{name_prefix}/workers/", "worker role path")


def stack_worker_roles(partition: Resource, account: Resource, name_prefix: str) -> Resource:
    """``arn:<partition>:iam::<account>:role/aibatch/<prefix>/workers/*``: this stack's worker
    roles only (IAM role ARNs carry the path: IAM User Guide, "IAM identifiers")."""
    return pulumi.Output.concat(
        "arn:", partition, ":iam::", account, ":role", worker_role_path(name_prefix), "*"
    )


def stack_task_families(
    partition: Resource, region: Resource, account: Resource, name_prefix: str
) -> Resource:
    """Every revision of every task definition family ``<prefix>-<worker>`` of this stack."""
    return pulumi.Output.concat(
        "arn:", partition, ":ecs:", region, ":", account, ":task-definition/", name_prefix, "-*:*"
    )


# The tag every stack queue carries with its stack's name prefix (cost allocation, inventory;
# AWS rule: SQS authorizes queue actions on aws:ResourceTag in IAM policies, SQS Developer
# Guide, "ABAC condition keys for Amazon SQS":
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-abac-condition-keys.html,
# should a grant ever need to span queues again).
STACK_TAG = "aibatch:stack"


def stack_tags(name_prefix: str) -> dict[str, str]:
    """The tags that mark a resource as this stack's (``STACK_TAG``)."""
    return {STACK_TAG: name_prefix}


def _role_check(role: str, documents: Sequence[pulumi.Output[str]]) -> pulumi.Output[int]:
    def check(texts: list[Any]) -> int:
        return aws_rules.role_inline_policies(role, [str(t) for t in texts])

    return pulumi.Output.all(*documents).apply(check)


def _trust_check(role: str, document: pulumi.Output[str]) -> pulumi.Output[int]:
    return document.apply(lambda text: aws_rules.trust_policy(role, str(text)))


class InlinePolicyLedger:
    """Every IAM quota of each role that grows with what the program declares, wherever the
    pieces are declared, checked before IAM would refuse them:

    - ``add(role, document)``: an inline policy; all of a role's together at most 10,240
      characters (``aws_rules.role_inline_policies``);
    - ``trust(role, document)``: the role's trust policy, at most 2,048 characters
      (``aws_rules.trust_policy``);
    - ``managed(role, policy_arns)``: managed policies attached to the role, at most 10
      (``aws_rules.managed_policy_count``).

    A plain-string trust policy and the managed-policy count are checked at once (the program
    fails where it declares them); documents holding Outputs are checked when they resolve:
    ``guard(value)`` returns ``value`` once everything recorded so far fits, or fails the
    program (``pulumi preview`` / ``up``) with ``AwsConstraintError`` naming the role, its size
    and the limit. Pass a guarded value into a resource created after the policies
    (FargateWorker's registration item) so the check is part of the deployment.
    """

    def __init__(self) -> None:
        self._documents: dict[str, list[pulumi.Output[str]]] = {}
        self._trust: dict[str, pulumi.Output[str]] = {}
        self._managed: dict[str, list[pulumi.Input[str]]] = {}

    def add(self, role: str, document: pulumi.Input[str]) -> None:
        self._documents.setdefault(role, []).append(pulumi.Output.from_input(document))

    def trust(self, role: str, document: pulumi.Input[str]) -> None:
        if isinstance(document, str):
            aws_rules.trust_policy(role, document)
        self._trust[role] = pulumi.Output.from_input(document)

    def managed(self, role: str, policy_arns: Sequence[pulumi.Input[str]]) -> None:
        attached = self._managed.setdefault(role, [])
        attached.extend(policy_arns)
        aws_rules.managed_policy_count(role, len(attached))

    def roles(self) -> list[str]:
        return sorted({*self._documents, *self._trust, *self._managed})

    def checks(self) -> list[pulumi.Output[int]]:
        """One Output per check recorded so far (each fails when its quota is exceeded)."""
        snapshot = {role: list(docs) for role, docs in self._documents.items()}
        checks = [_role_check(role, docs) for role, docs in snapshot.items()]
        checks += [_trust_check(role, doc) for role, doc in self._trust.items()]
        return checks

    def guard(self, value: pulumi.Output[Any], *others: InlinePolicyLedger) -> pulumi.Output[Any]:
        """``value`` once every check of this ledger (and of ``others``) passes."""
        checks = [c for ledger in (self, *others) for c in ledger.checks()]
        return pulumi.Output.all(value, *checks).apply(lambda resolved: resolved[0])
