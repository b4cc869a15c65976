"""IAM policy building, CDK-grants style: action lists defined once (``components.iam_actions``,
re-exported here), statements built from them (here); ``Statement`` and the documents are
``components.iam_policy``, the quota ledger ``components.iam_ledger``.

Every grant is action-level (never ``service:*``) and names its resources. ``Resource: "*"``
appears only for actions AWS does not scope to a resource; each such constant says which.
Statements take plain strings or ``pulumi.Output``s; ``policy_document`` resolves them to
the JSON text a role policy takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from components import aws_rules
from components.iam_actions import (
    API_TABLE_ACTIONS,
    BEDROCK_INVOKE_ACTIONS,
    BUCKET_LIST_ACTIONS,
    CREATE_ARRAY_CHILDREN_ACTIONS,
    DEAD_LETTER_SEND_ACTIONS,
    DESCRIBE_LOG_GROUPS_ACTIONS,
    DRAIN_REQUEST_ACTIONS,
    ECR_AUTH_ACTIONS,
    ECR_PULL_ACTIONS,
    ECS_LIST_TASKS_ACTIONS,
    ECS_RUN_TASK_ACTIONS,
    ECS_STOP_TASK_ACTIONS,
    ECS_TAG_AT_LAUNCH_ACTIONS,
    ECS_TASK_READ_ACTIONS,
    FAILED_EVENT_RECORD_ACTIONS,
    FAILED_EVENT_REDRIVE_ACTIONS,
    KMS_DECRYPT_ACTIONS,
    KMS_ENCRYPT_ACTIONS,
    LAMBDA_INVOKE_ACTIONS,
    LAUNCHER_TABLE_ACTIONS,
    LEASE_WRITE_ACTIONS,
    LOG_WRITE_ACTIONS,
    OBJECT_READ_ACTIONS,
    OBJECT_WRITE_ACTIONS,
    PASS_ROLE_ACTIONS,
    PUT_METRIC_ACTIONS,
    QUEUE_CONSUME_ACTIONS,
    QUEUE_SEND_ACTIONS,
    RECONCILER_TABLE_ACTIONS,
    RECORD_SCHEDULED_RUN_ACTIONS,
    SECRET_READ_ACTIONS,
    SSM_READ_ACTIONS,
    STAR_RESOURCE_ACTIONS,
    SWEEP_TABLE_ACTIONS,
    TOPIC_PUBLISH_ACTIONS,
    WORKER_DISPATCH_ACTIONS,
    WORKER_QUEUE_READ_ACTIONS,
    WORKER_TABLE_ACTIONS,
)
from components.iam_ledger import InlinePolicyLedger
from components.iam_policy import (
    Conditions,
    Resource,
    Statement,
    assume_role_policy,
    deny_insecure_transport,
    guarded_trust_policy,
    policy_document,
)
from jobcontract import Table, worker_status
from jobcontract.dispatch import SLOT_PREFIX, slot_key_prefix, worker_key

# Re-exported: the action lists, documents and ledger are read through this module (``iam.X``).
__all__ = [
    "API_TABLE_ACTIONS",
    "BEDROCK_INVOKE_ACTIONS",
    "BUCKET_LIST_ACTIONS",
    "CREATE_ARRAY_CHILDREN_ACTIONS",
    "DEAD_LETTER_SEND_ACTIONS",
    "DESCRIBE_LOG_GROUPS_ACTIONS",
    "DRAIN_REQUEST_ACTIONS",
    "ECR_AUTH_ACTIONS",
    "ECR_PULL_ACTIONS",
    "ECS_LIST_TASKS_ACTIONS",
    "ECS_RUN_TASK_ACTIONS",
    "ECS_STOP_TASK_ACTIONS",
    "ECS_TAG_AT_LAUNCH_ACTIONS",
    "ECS_TASK_READ_ACTIONS",
    "FAILED_EVENT_RECORD_ACTIONS",
    "FAILED_EVENT_REDRIVE_ACTIONS",
    "KMS_DECRYPT_ACTIONS",
    "KMS_ENCRYPT_ACTIONS",
    "LAMBDA_INVOKE_ACTIONS",
    "LAUNCHER_TABLE_ACTIONS",
    "LEASE_WRITE_ACTIONS",
    "LOG_WRITE_ACTIONS",
    "OBJECT_READ_ACTIONS",
    "OBJECT_WRITE_ACTIONS",
    "PASS_ROLE_ACTIONS",
    "PUT_METRIC_ACTIONS",
    "QUEUE_CONSUME_ACTIONS",
    "QUEUE_SEND_ACTIONS",
    "RECONCILER_TABLE_ACTIONS",
    "RECORD_SCHEDULED_RUN_ACTIONS",
    "SECRET_READ_ACTIONS",
    "SSM_READ_ACTIONS",
    "STAR_RESOURCE_ACTIONS",
    "SWEEP_TABLE_ACTIONS",
    "TOPIC_PUBLISH_ACTIONS",
    "WORKER_DISPATCH_ACTIONS",
    "WORKER_QUEUE_READ_ACTIONS",
    "WORKER_TABLE_ACTIONS",
    "Conditions",
    "InlinePolicyLedger",
    "Resource",
    "Statement",
    "assume_role_policy",
    "deny_insecure_transport",
    "guarded_trust_policy",
    "policy_document",
]

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
