"""A worker's log group and its two least-privilege roles, shared by ``FargateWorker`` and
``InstanceWorker``.

- the execution role (ECS pulls the image, writes the log group, reads exactly the secrets
  the worker names);
- the task role (only the worker's own job rows via ``dynamodb:LeadingKeys``, only its own S3
  prefixes, its dispatch rows for warm reuse, plus the statements it declares).

Both live under the stack's worker path ``/aibatch/<prefix>/workers/`` (the control plane's
PassRole reaches exactly these; changing a role's path replaces the role).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

import jobcontract
from components import aws_rules, iam
from components.worker.validation import SECRET_ARN, SSM_ARN, Validated, secret_resource_arn

if TYPE_CHECKING:
    from components.platform import BatchPlatform
    from components.worker.args import FargateWorkerArgs

# A worker reads and writes its own job rows (conditional updates); it never deletes or queries.
WORKER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
SSM_READ_ACTIONS = ("ssm:GetParameters",)


@dataclass(frozen=True)
class WorkerRoles:
    log_group: aws.cloudwatch.LogGroup
    execution_role: aws.iam.Role
    task_role: aws.iam.Role
    exec_policy: aws.iam.RolePolicy
    task_policy: aws.iam.RolePolicy
    ledger: iam.InlinePolicyLedger
    """IAM quotas of the two roles (``policy_statements`` can grow the task role's)."""


def ecs_tasks_trust(
    account: pulumi.Output[str], arn_prefix: pulumi.Output[str]
) -> pulumi.Output[str]:
    """Confused-deputy guard ECS recommends for task roles ("Task IAM role" trust policy)."""
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": account},
                        "ArnLike": {"aws:SourceArn": pulumi.Output.concat(arn_prefix, ":*")},
                    },
                }
            ],
        }
    )


def worker_roles(
    name: str,
    v: Validated,
    args: FargateWorkerArgs,
    repository_arn: pulumi.Output[str],
    *,
    parent: pulumi.Resource,
    account: pulumi.Output[str],
    ecs_arn_prefix: pulumi.Output[str],
) -> WorkerRoles:
    """``<name>-logs``, ``<name>-exec-role``, ``<name>-task-role`` and their inline policies
    ``<name>-exec-policy`` / ``<name>-task-policy``, counted in a fresh ledger."""
    platform = args.platform
    child = pulumi.ResourceOptions(parent=parent)
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-logs",
        name=f"/aibatch/{platform.name_prefix}/workers/{name}",
        retention_in_days=aws_rules.log_retention(platform.log_retention_days),
        opts=child,
    )
    exec_trust = iam.assume_role_policy("ecs-tasks.amazonaws.com")
    task_trust = ecs_tasks_trust(account, ecs_arn_prefix)
    execution_role = aws.iam.Role(
        f"{name}-exec-role",
        name=v.execution_role_name,
        description=f"ECS execution role of worker {name}: image pull, logs, its secrets",
        # ECS documents the execution role's trust without conditions (the source keys are
        # documented for task roles only); a key it does not send would stop every task.
        assume_role_policy=exec_trust,
        # The launcher may pass exactly the roles under this stack's path.
        path=iam.worker_role_path(platform.name_prefix),
        opts=child,
    )
    task_role = aws.iam.Role(
        f"{name}-task-role",
        name=v.task_role_name,
        path=iam.worker_role_path(platform.name_prefix),
        description=f"Task role of worker {name}: its job rows and S3 prefixes only",
        assume_role_policy=task_trust,
        opts=child,
    )
    exec_policy = aws.iam.RolePolicy(
        f"{name}-exec-policy",
        role=execution_role.id,
        policy=iam.policy_document(*execution_statements(args, repository_arn, log_group.arn)),
        opts=child,
    )
    task_policy = aws.iam.RolePolicy(
        f"{name}-task-policy",
        role=task_role.id,
        policy=iam.policy_document(*task_statements(name, args.platform, args)),
        opts=child,
    )
    ledger = _ledger(
        (v.execution_role_name, exec_trust, exec_policy),
        (v.task_role_name, task_trust, task_policy),
    )
    return WorkerRoles(log_group, execution_role, task_role, exec_policy, task_policy, ledger)


def _ledger(
    *roles: tuple[str, pulumi.Input[str], aws.iam.RolePolicy],
) -> iam.InlinePolicyLedger:
    """IAM quotas of the given roles (name, trust policy, their one inline policy)."""
    ledger = iam.InlinePolicyLedger()
    for role_name, trust, policy in roles:
        ledger.add(role_name, policy.policy)
        ledger.trust(role_name, trust)
        ledger.managed(role_name, ())  # none attached: every grant is inline
    return ledger


def execution_statements(
    args: FargateWorkerArgs,
    repository_arn: str | pulumi.Output[str],
    log_group_arn: str | pulumi.Output[str],
) -> list[iam.Statement]:
    """Pull from its repository, write its log group, read exactly its secrets."""
    statements = [
        *iam.ecr_pull(repository_arn),
        iam.log_group_write(log_group_arn, sid="WriteOwnLogs"),
    ]
    values = args.secrets.values()
    sm = sorted({secret_resource_arn(a) for a in values if SECRET_ARN.match(a)})
    ssm = sorted({a for a in values if SSM_ARN.match(a)})
    if sm:
        statements.append(iam.secret_read(list(sm), sid="ReadOwnSecrets"))
    if ssm:
        statements.append(iam.Statement(SSM_READ_ACTIONS, list(ssm), sid="ReadOwnParameters"))
    return statements


def task_statements(
    name: str, platform: BatchPlatform, args: FargateWorkerArgs
) -> list[iam.Statement]:
    """Its own job rows, dispatch rows and S3 prefixes, plus ``args.policy_statements``."""
    bucket_arn = platform.results_bucket.arn
    return [
        iam.table_actions(
            WORKER_TABLE_ACTIONS,
            platform.jobs_table.arn,
            leading_keys=[jobcontract.job_pk_prefix(name) + "*"],
            sid="OwnJobRowsOnly",
        ),
        *iam.worker_dispatch(platform.jobs_table.arn, name),  # warm reuse
        iam.Statement(
            (*iam.OBJECT_WRITE_ACTIONS, *iam.OBJECT_READ_ACTIONS),
            [pulumi.Output.concat(bucket_arn, "/", jobcontract.results_prefix(name), "*")],
            sid="OwnResults",
        ),
        iam.bucket_prefix_read(bucket_arn, jobcontract.inputs_prefix(name), sid="OwnInputs"),
        # A missing input or checkpoint must answer 404 (a clear job error), not 403.
        iam.bucket_prefix_list(
            bucket_arn,
            [jobcontract.inputs_prefix(name), jobcontract.results_prefix(name)],
            sid="ListOwnPrefixes",
        ),
        *args.policy_statements,
    ]
