"""``WorkerComponent``: the steps ``FargateWorker`` and ``InstanceWorker`` share, as methods
of one base class. Each worker's constructor reads as its table of contents: validate, then
``_settings``, ``_image``, ``_roles``, (its own steps), ``_task_definition``, ``_register``.
The logical names of the children are those the steps have always used (``<name>-repo``,
``<name>-task-role``, ...), so existing stacks keep their resources."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components import iam
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
    registration: aws.dynamodb.TableItem
    capacity_provider_strategy: list[dict[str, Any]]
    spot_fallback: bool
    architecture: str
    family: str
    input_schema: dict[str, Any]
    _region: pulumi.Output[str]
    _partition: pulumi.Output[str]

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
        self.exec_policy = roles.exec_policy
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
