"""A worker's log group and its two least-privilege roles, shared by ``FargateWorker`` and
``InstanceWorker``.

- the execution role (ECS pulls the image, writes the log group, reads exactly the secrets
  the worker names), granted by the repository, the log group and the secrets
  (``execution_grants``: ``repository.grant_pull``, ``log_group.grant_write``,
  ``secrets.grant_read``);
- the task role (only the worker's own job rows via ``dynamodb:LeadingKeys``, only its own S3
  prefixes, its dispatch rows for warm reuse, plus the statements it declares), each granted
  by the resource it reaches (``components.grants``: ``table.grant_job_rows``,
  ``table.grant_worker_dispatch``, ``bucket.grant_prefix`` / ``grant_list``), as the control
  plane's roles are; the action lists are ``components.iam``'s.

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
from components.grants import (
    Grantee,
    JobsTable,
    LogGroup,
    Parameters,
    Repository,
    ResultsBucket,
    Secrets,
)
from components.worker.validation import SECRET_ARN, SSM_ARN, Validated, secret_resource_arn

if TYPE_CHECKING:
    from components.platform import BatchPlatform
    from components.worker.args import FargateWorkerArgs


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
    source = pulumi.Output.concat(arn_prefix, ":*")
    return iam.guarded_trust_policy(
        "ecs-tasks.amazonaws.com", account, source, arn_operator="ArnLike"
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
    log_group = _log_group(name, platform, child)
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
        policy=execution_grants(
            name, args, Repository(repository_arn), LogGroup(log_group.arn)
        ).document(),
        opts=child,
    )
    task_policy = aws.iam.RolePolicy(
        f"{name}-task-policy",
        role=task_role.id,
        policy=task_grants(name, args.platform, args).document(),
        opts=child,
    )
    ledger = _ledger(
        (v.execution_role_name, exec_trust, exec_policy),
        (v.task_role_name, task_trust, task_policy),
    )
    return WorkerRoles(log_group, execution_role, task_role, exec_policy, task_policy, ledger)


def _log_group(
    name: str, platform: BatchPlatform, child: pulumi.ResourceOptions
) -> aws.cloudwatch.LogGroup:
    """``/aibatch/<prefix>/workers/<name>``, kept the stack's ``logRetentionDays``."""
    return aws.cloudwatch.LogGroup(
        f"{name}-logs",
        name=f"/aibatch/{platform.name_prefix}/workers/{name}",
        retention_in_days=aws_rules.log_retention(platform.log_retention_days),
        opts=child,
    )


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


def execution_grants(
    name: str, args: FargateWorkerArgs, repository: Repository, log_group: LogGroup
) -> Grantee:
    """The execution role's one policy, granted by the resources ECS reaches for the task:
    the image pull from its repository, its log group, exactly the secrets and parameters
    its ``secrets`` name (a Secrets Manager ``valueFrom`` without its json-key suffix)."""
    grantee = Grantee(f"{name} execution")
    values = args.secrets.values()
    secrets = Secrets(sorted({secret_resource_arn(a) for a in values if SECRET_ARN.match(a)}))
    parameters = Parameters(sorted({a for a in values if SSM_ARN.match(a)}))
    repository.grant_pull(grantee)
    log_group.grant_write(grantee, sid="WriteOwnLogs")
    secrets.grant_read(grantee, sid="ReadOwnSecrets")
    parameters.grant_read(grantee, sid="ReadOwnParameters")
    return grantee


def task_grants(name: str, platform: BatchPlatform, args: FargateWorkerArgs) -> Grantee:
    """The task role's one policy, granted by the resources it reaches (``components.grants``):
    its own job rows, dispatch rows and S3 prefixes, plus ``args.policy_statements``."""
    grantee = Grantee(f"{name} task")
    table = JobsTable(platform.jobs_table.arn)
    bucket = ResultsBucket(platform.results_bucket.arn)
    inputs, results = jobcontract.inputs_prefix(name), jobcontract.results_prefix(name)
    table.grant_job_rows(grantee, name, actions=iam.WORKER_TABLE_ACTIONS, sid="OwnJobRowsOnly")
    table.grant_worker_dispatch(grantee, name)  # warm reuse, a slot freed at the task's end
    platform.functions.launch_queue.grant_drain_request(grantee)
    bucket.grant_prefix(grantee, results, read=True, write=True, sid="OwnResults")
    bucket.grant_prefix(grantee, inputs, read=True, sid="OwnInputs")
    # A missing input or checkpoint must answer 404 (a clear job error), not 403.
    bucket.grant_list(grantee, [inputs, results], sid="ListOwnPrefixes")
    grantee.add(*args.policy_statements)
    return grantee


def grant_handed_over_jobs(
    grantee: Grantee, worker: str, table: JobsTable, bucket: ResultsBucket
) -> None:
    """What another worker's task needs to run ``worker``'s jobs handed to it (a job keeps its
    id and its input prefix; its result goes under the runner's own prefix): the rows and
    inputs of ``worker``'s jobs, as the worker's own task role has them."""
    inputs = jobcontract.inputs_prefix(worker)
    table.grant_job_rows(grantee, worker, actions=iam.WORKER_TABLE_ACTIONS, sid="HandedOverJobRows")
    bucket.grant_prefix(grantee, inputs, read=True, sid="HandedOverInputs")
    bucket.grant_list(grantee, [inputs], sid="ListHandedOverInputs")
