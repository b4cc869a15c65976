"""``WorkerComponent``: the steps ``FargateWorker`` and ``InstanceWorker`` share, as methods
of one base class. Each worker's constructor reads as its table of contents: validate, then
``_settings``, ``_image``, ``_roles``, (its own steps), ``_task_definition``, ``_register``.
The logical names of the children are those the steps have always used (``<name>-repo``,
``<name>-task-role``, ...), so existing stacks keep their resources; ``nodes`` names each
child (``WorkerNodes``; an ``InstanceWorker``'s adds its own)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components import iam
from components.naming import node_resources
from components.worker.args import reuse_idle_seconds
from components.worker.image import worker_image
from components.worker.registration import RecordOf, register
from components.worker.roles import worker_roles
from components.worker.task import (
    TaskShape,
    container_definition,
    task_definition,
    worker_environment,
)
from components.worker.validation import Validated

if TYPE_CHECKING:
    from components.job_queue import JobQueue
    from components.worker.args import FargateWorkerArgs


@dataclass(frozen=True)
class WorkerNodes:
    """The children of a worker (SST's ``nodes``); ``InstanceWorkerNodes`` adds the Managed
    Instances ones."""

    # One typed field per child, then ``resources``: every component's nodes class has this
    # shape (duplicates pairs them), only the children differ.
    repository: aws.ecr.Repository
    """``<name>-repo``: scan on push, AES256."""
    lifecycle_policy: aws.ecr.LifecyclePolicy
    """The repository's: keep the last ``keep_images`` images (untagged ones expire)."""
    image: docker.Image
    """Built from ``workers/<name>/Dockerfile``; the task definition pins its digest."""
    log_group: aws.cloudwatch.LogGroup
    execution_role: aws.iam.Role
    execution_policy: aws.iam.RolePolicy
    """The execution role's one inline policy: image pull, its log group, its secrets."""
    task_role: aws.iam.Role
    task_policy: aws.iam.RolePolicy
    """The task role's one inline policy: its job rows, its S3 prefixes, its statements."""
    task_definition: aws.ecs.TaskDefinition
    registration: aws.dynamodb.TableItem
    """The ``worker#<name>`` item in the jobs table."""

    def resources(self) -> list[pulumi.Resource]:
        return node_resources(self)


_Nodes = TypeVar("_Nodes", bound=WorkerNodes)


class WorkerComponent(pulumi.ComponentResource):
    """What every worker has: image, log group, roles, task definition, registration."""

    worker_name: str
    launch_queue: JobQueue
    """The stack's launch queue this worker's jobs go through (shared, not the worker's)."""
    reuse_idle_seconds: int
    """The warm-reuse window in effect (0 = off)."""
    iam_ledger: iam.InlinePolicyLedger
    """IAM quotas of the worker's roles (execution and task; an ``InstanceWorker``'s
    infrastructure and instance roles too), checked before its registration is written."""
    repository: aws.ecr.Repository
    image: docker.Image
    log_group: aws.cloudwatch.LogGroup
    task_definition: aws.ecs.TaskDefinition
    task_role: aws.iam.Role
    execution_role: aws.iam.Role
    exec_policy: aws.iam.RolePolicy
    task_policy: aws.iam.RolePolicy
    registration: aws.dynamodb.TableItem
    capacity_provider_strategy: list[dict[str, Any]]
    spot_fallback: bool
    architecture: str
    family: str
    input_schema: dict[str, Any]
    _region: pulumi.Output[str]
    _partition: pulumi.Output[str]
    _repo_lifecycle: aws.ecr.LifecyclePolicy

    @property
    def nodes(self) -> WorkerNodes:
        """Every child of this worker, by role."""
        return self._nodes(WorkerNodes)

    def _nodes(self, cls: type[_Nodes], **extra: Any) -> _Nodes:
        """The shared children as ``cls``'s first fields, then a subclass's ``extra``."""
        # One argument per field, as every component's nodes (duplicates pairs their shape).
        return cls(
            self.repository,
            self._repo_lifecycle,
            self.image,
            self.log_group,
            self.execution_role,
            self.exec_policy,
            self.task_role,
            self.task_policy,
            self.task_definition,
            self.registration,
            **extra,
        )

    def _common_settings(self, name: str, args: FargateWorkerArgs, v: Validated) -> None:
        platform = args.platform
        self.worker_name = name
        self.architecture = v.architecture
        self.family = v.family
        self.input_schema = json.loads(v.input_schema_json)
        self.reuse_idle_seconds = reuse_idle_seconds(args, platform.config.task_reuse)
        # No queue of its own: jobs of every worker go through the stack's launch queue.
        self.launch_queue = platform.functions.launch_queue

    def _image(
        self, name: str, args: FargateWorkerArgs, v: Validated, *, expire_untagged: bool
    ) -> None:
        platform = args.platform
        keep = args.keep_images if args.keep_images is not None else platform.config.keep_images
        built = worker_image(
            name,
            v,
            parent=self,
            force_delete=not platform.protect,
            keep_images=keep,
            base_image=args.base_image,
            expire_untagged=expire_untagged,
        )
        self.repository, self.image = built.repository, built.image
        self._repo_lifecycle = built.lifecycle_policy

    def _roles(self, name: str, args: FargateWorkerArgs, v: Validated) -> None:
        """Log group, execution and task roles (one definition of least privilege)."""
        self._region = aws.get_region_output().region
        self._partition = aws.get_partition_output().partition
        account = aws.get_caller_identity_output().account_id
        arn_prefix = pulumi.Output.concat(
            "arn:", self._partition, ":ecs:", self._region, ":", account
        )
        roles = worker_roles(
            name,
            v,
            args,
            self.repository.arn,
            parent=self,
            account=account,
            ecs_arn_prefix=arn_prefix,
        )
        self.log_group = roles.log_group
        self.execution_role, self.task_role = roles.execution_role, roles.task_role
        self.exec_policy, self.task_policy = roles.exec_policy, roles.task_policy
        self.iam_ledger = roles.ledger

    def _task_definition(
        self, name: str, args: FargateWorkerArgs, v: Validated, shape: TaskShape
    ) -> None:
        container = container_definition(
            args,
            worker_environment(name, args, self.reuse_idle_seconds),
            self.image.repo_digest,
            self.log_group.name,
            self._region,
            gpu_count=shape.gpu_count,
        )
        self.task_definition = task_definition(
            name,
            v,
            args,
            container,
            (self.execution_role, self.task_role),
            shape,
            parent=self,
            depends_on=[self.exec_policy],
        )

    def _register(
        self,
        name: str,
        args: FargateWorkerArgs,
        record: RecordOf,
        *,
        ledgers: Sequence[iam.InlinePolicyLedger],
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        self.registration = register(
            name,
            record,
            parent=self,
            platform=args.platform,
            task_definition=self.task_definition,
            launch_queue=self.launch_queue,
            ledgers=ledgers,
            depends_on=depends_on,
        )
