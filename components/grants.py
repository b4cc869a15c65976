"""Grants on the resource that is accessed, as CDK does it: ``table.grant_job_rows(role,
worker)``, ``bucket.grant_prefix(role, prefix, read=True)``, ``topic.grant_publish(role)``,
``grant_run(role, ...)``, ``repository.grant_pull(role)``, ``log_group.grant_write(role)``,
``secrets.grant_read(role)``, ``failed_events.grant_record(role)``; ``JobQueue.grant_send`` /
``grant_consume`` live on the queue.

A ``Grantee`` is the statements of one role's one inline policy, collected by the resources
the role is granted on; the component that owns the role writes them into its policy (for a
Lambda, ``PythonFunctionArgs.policy_statements=grantee.statements``). Grants come first and
the policy after, because a Pulumi resource's inputs are fixed when it is declared: the
order a role's statements are granted in is the order of its policy document.

The action lists stay in ``components/iam.py`` (each written down once); this module decides
which resource and which condition each grant is scoped to. A new enqueuer is one line::

    launch_queue.grant_send(grantee)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import pulumi

from components import iam
from jobcontract import JOB_PK_PREFIX, job_pk_prefix

Resource = iam.Resource

WORKER_ROLES_SERVICE = "ecs-tasks.amazonaws.com"


@dataclass
class Grantee:
    """One role's inline policy in the making (CDK's ``IGrantable``): the statements the
    resources it is granted on add, in grant order."""

    name: str
    """Who is granted, for error messages and the quota ledger (e.g. ``launcher``)."""
    statements: list[iam.Statement] = field(default_factory=list)

    def add(self, *statements: iam.Statement) -> None:
        self.statements.extend(statements)

    def document(self) -> pulumi.Output[str]:
        """The policy document of everything granted so far."""
        return iam.policy_document(*self.statements)


@dataclass(frozen=True)
class JobsTable:
    """The jobs table as a grant target (its ARN)."""

    arn: Resource

    def grant(
        self,
        grantee: Grantee,
        actions: Sequence[str],
        *,
        sid: str,
        leading_keys: Sequence[str] | None = None,
    ) -> None:
        """``actions`` on the table and its indexes; ``leading_keys`` narrows them to items
        whose partition key matches (``dynamodb:LeadingKeys``)."""
        grantee.add(iam.table_actions(actions, self.arn, leading_keys=leading_keys, sid=sid))

    def grant_job_rows(
        self,
        grantee: Grantee,
        worker: str | None = None,
        *,
        actions: Sequence[str],
        sid: str,
    ) -> None:
        """``actions`` on job rows only: one worker's (``job#<worker>_*``), or with
        ``worker=None`` every worker's (``job#*``), never the rows of other kinds."""
        prefix = job_pk_prefix(worker) if worker is not None else JOB_PK_PREFIX
        self.grant(grantee, actions, sid=sid, leading_keys=[prefix + "*"])

    def grant_leases(self, grantee: Grantee, *, create: bool = True) -> None:
        """Give back (and with ``create``, take) task leases of the dispatch state."""
        grantee.add(iam.lease_writes(self.arn, create=create))

    def grant_worker_dispatch(self, grantee: Grantee, worker: str) -> None:
        """A worker task's warm reuse: its dispatch counts and leases, its QUEUED jobs."""
        grantee.add(*iam.worker_dispatch(self.arn, worker))


@dataclass(frozen=True)
class ResultsBucket:
    """The results bucket as a grant target (its ARN)."""

    arn: Resource

    def grant_prefix(
        self,
        grantee: Grantee,
        prefix: str,
        *,
        read: bool = False,
        write: bool = False,
        sid: str,
    ) -> None:
        """Object reads and/or writes under one literal prefix (``<bucket>/<prefix>*``)."""
        write_actions = iam.OBJECT_WRITE_ACTIONS if write else ()
        actions = (*write_actions, *(iam.OBJECT_READ_ACTIONS if read else ()))
        if not actions:
            raise ValueError(f"grant_prefix({prefix!r}): read, write or both")
        grantee.add(iam.Statement(actions, [iam.objects_under(self.arn, prefix)], sid=sid))

    def grant_list(self, grantee: Grantee, prefixes: Sequence[str], *, sid: str) -> None:
        """``s3:ListBucket`` for keys under ``prefixes`` (a missing key answers 404)."""
        grantee.add(iam.bucket_prefix_list(self.arn, prefixes, sid=sid))

    def grant_array_merge(self, grantee: Grantee) -> None:
        """Merging an array job: its children's results read, the merged files written."""
        grantee.add(*iam.array_merge(self.arn))


@dataclass(frozen=True)
class FailureTopic:
    """The failure topic as a grant target, with its customer managed key when it has one."""

    arn: Resource
    key_arn: Resource | None = None

    def grant_publish(self, grantee: Grantee) -> None:
        """Publish; with a customer managed key, the key too. AWS rule: publishing to a topic
        encrypted with a customer managed key needs kms:GenerateDataKey and kms:Decrypt on
        it (SNS Developer Guide, "Encryption at rest", key management)."""
        grantee.add(iam.topic_publish(self.arn, sid="PublishFailures"))
        if self.key_arn is not None:
            grantee.add(
                iam.Statement(iam.KMS_ENCRYPT_ACTIONS, [self.key_arn], sid="EncryptForFailureTopic")
            )


@dataclass(frozen=True)
class _ReadByArn:
    """Values read by ARN (secrets, parameters) as a grant target; possibly none."""

    arns: Sequence[Resource] = ()
    read_actions: ClassVar[Sequence[str]]

    def grant_read(self, grantee: Grantee, *, sid: str) -> None:
        """Read exactly these values; nothing is granted when there are none."""
        if self.arns:
            grantee.add(iam.Statement(self.read_actions, list(self.arns), sid=sid))


@dataclass(frozen=True)
class Secrets(_ReadByArn):
    """Secrets Manager secrets as a grant target (their ARNs; possibly none)."""

    read_actions = iam.SECRET_READ_ACTIONS


@dataclass(frozen=True)
class Parameters(_ReadByArn):
    """SSM parameters as a grant target (their ARNs; possibly none): what ECS reads for a
    container secret whose ``valueFrom`` is a parameter."""

    read_actions = iam.SSM_READ_ACTIONS


@dataclass(frozen=True)
class Repository:
    """An ECR repository as a grant target (its ARN)."""

    arn: Resource

    def grant_pull(self, grantee: Grantee) -> None:
        """Pull its images: the account-level auth token plus layer reads on this repo."""
        grantee.add(*iam.ecr_pull(self.arn))


@dataclass(frozen=True)
class LogGroup:
    """A CloudWatch log group as a grant target (its ARN)."""

    arn: Resource

    def grant_write(self, grantee: Grantee, *, sid: str) -> None:
        """Create streams in it and put events into them (``<group arn>:log-stream:*``)."""
        grantee.add(iam.log_group_write(self.arn, sid=sid))


@dataclass(frozen=True)
class FailedEventsQueue:
    """A Lambda's on-failure destination (a standard SQS queue, by its ARN) as a grant
    target: the function's role records into it, the sweep takes the records back."""

    arn: Resource

    def grant_record(self, grantee: Grantee) -> None:
        """SendMessage, which Lambda uses with the function's execution role to deliver the
        record of an invocation that failed every attempt (without it the destination is
        refused: InvalidParameterValueException)."""
        grantee.add(
            iam.Statement(iam.FAILED_EVENT_RECORD_ACTIONS, [self.arn], sid="RecordFailedEvents")
        )

    def grant_redrive(self, grantee: Grantee) -> None:
        """Receive and delete the records (the sweep hands each to the reconciler again)."""
        grantee.add(
            iam.Statement(iam.FAILED_EVENT_REDRIVE_ACTIONS, [self.arn], sid="RedriveFailedEvents")
        )


@dataclass(frozen=True)
class Cluster:
    """The ECS cluster as a grant target (its ARN)."""

    arn: Resource

    def grant_task_actions(self, grantee: Grantee, actions: Sequence[str]) -> None:
        """Task-level actions (DescribeTasks, StopTask) on this cluster's tasks only."""
        grantee.add(iam.ecs_tasks_in_cluster(actions, self.arn))


def grant_run(
    grantee: Grantee,
    cluster_arn: Resource,
    families: Resource,
    roles: Sequence[Resource],
) -> None:
    """Start tasks: ``ecs:RunTask`` on ``families`` (a family's ARN without revision plus
    ``:*``, or the stack's ``task-definition/<prefix>-*:*``) in this cluster only, tagging the
    new tasks at launch, and ``iam:PassRole`` on exactly ``roles``, to ECS tasks only. The
    launcher (every worker of the stack) and a schedule (one worker) both use it.

    AWS rule (Service Authorization Reference, Amazon ECS): ecs:RunTask is authorized on the
    task-definition resource and takes the ecs:cluster condition key; tags passed to RunTask
    are authorized as ecs:TagResource on the task, which takes ecs:CreateAction. (IAM):
    iam:PassRole is authorized on the role and takes iam:PassedToService. ``ArnEquals`` on
    ``ecs:cluster``: the cluster's exact ARN (IAM evaluates ArnEquals and ArnLike alike).
    """
    grantee.add(
        iam.Statement(
            iam.ECS_RUN_TASK_ACTIONS,
            [families],
            iam.cluster_condition(cluster_arn),
            sid="RunWorkerTasks",
        ),
        iam.Statement(
            iam.ECS_TAG_AT_LAUNCH_ACTIONS,
            [iam.task_arns_of(cluster_arn)],
            {"StringEquals": {"ecs:CreateAction": "RunTask"}},
            sid="TagTasksAtLaunch",
        ),
        iam.Statement(
            iam.PASS_ROLE_ACTIONS,
            list(roles),
            {"StringEquals": {"iam:PassedToService": WORKER_ROLES_SERVICE}},
            sid="PassWorkerRoles",
        ),
    )
