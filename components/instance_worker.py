"""``InstanceWorker``: a GPU (or large) worker on ECS Managed Instances, one instance each.

Fargate has no GPU and stops at 16 vCPU / 120 GB. An ``InstanceWorker`` runs the same worker
runtime, registration, job queue and dispatch as ``FargateWorker`` on EC2 instances that ECS
Managed Instances launches, scales and patches (no Auto Scaling group to own).

What it makes, for a worker ``<name>`` (code in ``workers/<name>/``, ``Dockerfile`` required):

- everything a ``FargateWorker`` makes, from the same parts (``components.worker``) and with
  the same least-privilege roles: ECR repository + image (built for the instance
  architecture, pinned by digest), log group, execution role, task role and the
  ``worker#<name>`` registration (jobs go through the stack's one launch queue). The Managed
  Instances checks live in ``components.worker.instance_validation``, the roles and capacity
  providers below in ``components.worker.managed_instances``;
- the **ECS infrastructure role** (trusted by ``ecs.amazonaws.com``; AWS managed policy
  ``AmazonECSInfrastructureRolePolicyForManagedInstances``: launch/terminate the instances, pass
  the instance role) and the **instance role + instance profile** (trusted by
  ``ec2.amazonaws.com``; AWS managed policy ``AmazonECSInstanceRolePolicyForManagedInstances``:
  what the ECS agent on the instance needs, nothing for the job: the job's permissions stay on
  the task role);
- per accepted GPU name, a **Spot and an on-demand capacity provider**
  (``managedInstancesProvider``) in the stack's cluster, restricted to the instance types of
  that GPU that fit the task (``allowedInstanceTypes`` from ``components.instance_rules``),
  with the stack's subnets and task security group, and the scale-in delay (``scaleInAfter``)
  of ``scale_in_after_seconds``;
- a task definition ``requiresCompatibilities: [MANAGED_INSTANCES]`` with the GPU
  ``resourceRequirements`` and the ``awsvpc`` or ``host`` network mode.

Every child is named in ``nodes`` (``InstanceWorkerNodes``: a ``FargateWorker``'s plus the
above).

Cluster attachment: a Managed Instances capacity provider is created *in* its cluster
(``CreateCapacityProvider.cluster``) and is never passed to ``PutClusterCapacityProviders``
(AWS: "Amazon ECS Managed Instances doesn't support this, because when you create a capacity
provider with Amazon ECS Managed Instances, it becomes available only within the specified
cluster"; ECS API reference, PutClusterCapacityProviders). So the platform's one
``ClusterCapacityProviders`` resource (FARGATE, FARGATE_SPOT) stays as it is; the providers
here depend on it only to serialise the two cluster updates on a first ``pulumi up``.

Scale to zero: nothing runs while no job does. ECS Managed Instances launches an instance
when a task needs one and, once the instance is idle, terminates it after
``scale_in_after_seconds`` (default 300 s; 0 = at once). Idle cost: ECR storage only, as for
``FargateWorker``; each burst of jobs also pays for up to ``scale_in_after_seconds`` of idle
instance after its last job (``cost.instance_cost``).

Launch: the registration holds the launch chain (``jobcontract.managed_instances``): per GPU
name in order of preference its Spot/on-demand strategy, then on-demand only, then optionally
a CPU ``FargateWorker``. Its ``capacity_strategy`` is the first step. The launcher walks the
chain (a capacity failure moves to the next step) and hands a job the whole chain could not
place to the fallback worker, whose task role is granted these jobs' rows and inputs here.

Usage (not in the default stacks: a new account's GPU quota is often 0)::

    InstanceWorker("image-embedder", InstanceWorkerArgs(
        platform=platform, gpu_count=1, gpu_names=("l4", "a10g", "t4"),
        cpu=4096, memory=14336, fallback_worker=workers["image-embedder-cpu"]))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.grants import Grantee, JobsTable, ResultsBucket
from components.worker.args import DEFAULT_STORAGE_GIB, InstanceWorkerArgs
from components.worker.base import WorkerComponent, WorkerNodes
from components.worker.instance_validation import (
    CAPACITY_OPTIONS,
    InstanceSettings,
    launch_chain,
    validate_instance,
)
from components.worker.managed_instances import (
    INFRASTRUCTURE_POLICY,
    INSTANCE_POLICY,
    capacity_providers,
    instance_roles,
)
from components.worker.registration import fargate_record
from components.worker.roles import grant_handed_over_jobs
from components.worker.task import TaskShape
from jobcontract.managed_instances import COMPUTE_MANAGED_INSTANCES
from jobcontract.registration import WorkerRegistration

# Importable from here as before (tests, docs).
__all__ = [
    "CAPACITY_OPTIONS",
    "DEFAULT_STORAGE_GIB",
    "INFRASTRUCTURE_POLICY",
    "INSTANCE_POLICY",
    "InstanceWorker",
    "InstanceWorkerArgs",
    "InstanceWorkerNodes",
    "_validate_instance",
    "launch_chain",
]
_validate_instance = validate_instance  # the tests' name for it


@dataclass(frozen=True)
class InstanceWorkerNodes(WorkerNodes):
    """The children of an ``InstanceWorker``: a ``FargateWorker``'s, then these."""

    infrastructure_role: aws.iam.Role
    infrastructure_policy: aws.iam.RolePolicyAttachment
    """``AmazonECSInfrastructureRolePolicyForManagedInstances`` on the infrastructure role."""
    instance_role: aws.iam.Role
    instance_policy: aws.iam.RolePolicyAttachment
    """``AmazonECSInstanceRolePolicyForManagedInstances`` on the instance role."""
    instance_profile: aws.iam.InstanceProfile
    capacity_providers: tuple[aws.ecs.CapacityProvider, ...]
    """A Spot and an on-demand provider per accepted GPU name (or ``cpu``), in order."""
    fallback_policy: aws.iam.RolePolicy | None
    """The hand-over grant on the fallback worker's task role (``None``: no fallback)."""


class InstanceWorker(WorkerComponent):
    """One worker on ECS Managed Instances (see the module docstring)."""

    infrastructure_role: aws.iam.Role
    instance_role: aws.iam.Role
    instance_profile: aws.iam.InstanceProfile
    capacity_providers: dict[str, aws.ecs.CapacityProvider]
    fallback_policy: aws.iam.RolePolicy | None = None  # on the fallback worker's task role
    launch_chain: list[list[dict[str, Any]]]
    network_mode: str
    gpu_count: int
    gpu_names: tuple[str, ...]
    instance_types: list[str]
    _attachments: tuple[aws.iam.RolePolicyAttachment, aws.iam.RolePolicyAttachment]

    def __init__(
        self, name: str, args: InstanceWorkerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:InstanceWorker", name, None, opts)
        s = validate_instance(name, args, args.platform)
        self._settings(name, args, s)
        self._image(name, args, s.base, expire_untagged=False)
        self._roles(name, args, s.base)
        self._capacity(name, args, s)
        shape = TaskShape(("MANAGED_INSTANCES",), s.network_mode, s.gpu_count)
        self._task_definition(name, args, s.base, shape)
        self._fallback_grant(name, args)
        self._register_instance(name, args, s)
        self.register_outputs(
            {
                "queue_url": self.launch_queue.queue.url,
                "task_definition_arn": self.task_definition.arn,
                "repository_url": self.repository.repository_url,
                "capacity_providers": [p.name for p in self.capacity_providers.values()],
                "image": self.image.repo_digest,
            }
        )

    @property
    def nodes(self) -> InstanceWorkerNodes:
        """Every child of this worker, by role."""
        infrastructure_policy, instance_policy = self._attachments
        return self._nodes(
            InstanceWorkerNodes,
            infrastructure_role=self.infrastructure_role,
            infrastructure_policy=infrastructure_policy,
            instance_role=self.instance_role,
            instance_policy=instance_policy,
            instance_profile=self.instance_profile,
            capacity_providers=tuple(self.capacity_providers.values()),
            fallback_policy=self.fallback_policy,
        )

    def _settings(self, name: str, args: InstanceWorkerArgs, s: InstanceSettings) -> None:
        # Warm reuse as FargateWorker: an instance task that finished a job takes the next.
        self._common_settings(name, args, s.base)
        self.network_mode = s.network_mode
        self.gpu_count = s.gpu_count
        self.gpu_names = s.gpu_names
        self.instance_types = [t.name for gpu in s.gpu_names for t in s.types[gpu]]
        self.launch_chain = launch_chain(s.provider_names, s.tiers, s.spot_share, s.spot_fallback)
        self.capacity_provider_strategy = self.launch_chain[0]
        # The launcher's Fargate fallback is on-demand *Fargate*, which cannot run this task
        # definition: the chain replaces it, so the Fargate-style flag stays off.
        self.spot_fallback = False

    def _capacity(self, name: str, args: InstanceWorkerArgs, s: InstanceSettings) -> None:
        roles = instance_roles(name, s, args.platform, self._partition, parent=self)
        self.infrastructure_role = roles.infrastructure_role
        self.instance_role = roles.instance_role
        self.instance_profile = roles.instance_profile
        self._attachments = (roles.infrastructure.attachment, roles.instance.attachment)
        self.capacity_providers = capacity_providers(name, args, s, roles, parent=self)
        roles.record(self.iam_ledger)  # guarded with the task and execution roles

    def _fallback_grant(self, name: str, args: InstanceWorkerArgs) -> None:
        """The fallback worker's task runs the jobs this worker hands it (the launcher, when
        the launch chain finds no capacity): a job keeps its id, so that task role is granted
        these jobs' rows and inputs too (``roles.grant_handed_over_jobs``; its result goes
        under its own prefix). On that role, counted in its ledger; nothing else of this
        worker."""
        fallback = args.fallback_worker
        if fallback is None:
            return
        platform = args.platform
        grantee = Grantee(f"{fallback.worker_name} task, {name}'s jobs")
        table, bucket = (
            JobsTable(platform.jobs_table.arn),
            ResultsBucket(platform.results_bucket.arn),
        )
        grant_handed_over_jobs(grantee, name, table, bucket)
        self.fallback_policy = aws.iam.RolePolicy(
            f"{name}-fallback-task-policy",
            role=fallback.task_role.id,
            policy=grantee.document(),
            opts=pulumi.ResourceOptions(parent=self),
        )
        fallback.iam_ledger.add(f"{fallback.family}-task", self.fallback_policy.policy)

    def _register_instance(self, name: str, args: InstanceWorkerArgs, s: InstanceSettings) -> None:
        base = fargate_record(
            name,
            args,
            s.base,
            capacity_strategy=self.capacity_provider_strategy,
            spot_fallback=self.spot_fallback,
            reuse_idle_seconds=self.reuse_idle_seconds,
        )
        fallback = args.fallback_worker

        def record(task_definition: str, queue_url: str, dlq_url: str) -> WorkerRegistration:
            return dataclasses.replace(
                base(task_definition, queue_url, dlq_url),
                compute=COMPUTE_MANAGED_INSTANCES,
                launch_chain=tuple(tuple(step) for step in self.launch_chain),
                startup_timeout_seconds=args.startup_timeout_seconds,
                gpu_count=s.gpu_count,
                gpu_names=s.gpu_names,
                network_mode=s.network_mode,
                fallback_worker=fallback.worker_name if fallback is not None else None,
            )

        self._register(
            name,
            args,
            record,
            # Every IAM quota is checked before the registration is written, as for a
            # FargateWorker: this worker's four roles (execution, task, infrastructure,
            # instance) and the fallback worker's (its task role gained the hand-over policy).
            ledgers=[self.iam_ledger, *([fallback.iam_ledger] if fallback is not None else [])],
            depends_on=[
                # RunTask on a provider that does not exist yet fails: register after them.
                *self.capacity_providers.values(),
                *([fallback.registration] if fallback is not None else []),
            ],
        )
