"""What only an ``InstanceWorker`` makes: the ECS infrastructure role, the instance role and
profile, and one Spot and one on-demand Managed Instances capacity provider per GPU name.

Cluster attachment: a Managed Instances capacity provider is created *in* its cluster
(``CreateCapacityProvider.cluster``) and never passed to ``PutClusterCapacityProviders``
(ECS API reference, PutClusterCapacityProviders); the providers depend on the platform's one
``ClusterCapacityProviders`` resource only to serialise the two cluster updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from components import iam
from components import instance_rules as rules
from components.worker.instance_validation import CAPACITY_OPTIONS, InstanceSettings

if TYPE_CHECKING:
    from components.platform import BatchPlatform
    from components.worker.args import InstanceWorkerArgs

# AWS managed policies ECS documents for Managed Instances (ECS developer guide: "Amazon ECS
# infrastructure IAM role" and "Amazon ECS Managed Instances instance profile").
INFRASTRUCTURE_POLICY = "AmazonECSInfrastructureRolePolicyForManagedInstances"
INSTANCE_POLICY = "AmazonECSInstanceRolePolicyForManagedInstances"

_Mip = aws.ecs.CapacityProviderManagedInstancesProviderArgs
_Lt = aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateArgs
_Req = (
    aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateInstanceRequirementsArgs
)
_ReqVcpu = aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateInstanceRequirementsVcpuCountArgs  # noqa: E501
_ReqMem = aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateInstanceRequirementsMemoryMibArgs  # noqa: E501
_ReqAcc = aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateInstanceRequirementsAcceleratorCountArgs  # noqa: E501
_Net = (
    aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateNetworkConfigurationArgs
)
_Storage = (
    aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateStorageConfigurationArgs
)
_Opt = aws.ecs.CapacityProviderManagedInstancesProviderInfrastructureOptimizationArgs


@dataclass(frozen=True)
class ServiceRole:
    """A role one AWS service assumes, with the one AWS managed policy ECS documents for it."""

    role: aws.iam.Role
    attachment: aws.iam.RolePolicyAttachment
    role_name: str
    trust_policy: str
    policy_arn: pulumi.Output[str]


@dataclass(frozen=True)
class InstanceRoles:
    infrastructure: ServiceRole
    instance: ServiceRole
    instance_profile: aws.iam.InstanceProfile

    @property
    def infrastructure_role(self) -> aws.iam.Role:
        return self.infrastructure.role

    @property
    def instance_role(self) -> aws.iam.Role:
        return self.instance.role

    @property
    def ready(self) -> list[pulumi.Resource]:
        """What a capacity provider must wait for (the policy attachment and the profile)."""
        return [self.infrastructure.attachment, self.instance_profile]

    def record(self, ledger: iam.InlinePolicyLedger) -> None:
        """Count both roles' trust policies and managed policies in ``ledger`` (IAM quotas)."""
        for r in (self.infrastructure, self.instance):
            ledger.trust(r.role_name, r.trust_policy)
            ledger.managed(r.role_name, [r.policy_arn])


def _service_role(
    name: str,
    kind: str,
    *,
    role_name: str,
    path: str,
    description: str,
    service: str,
    policy_arn: pulumi.Output[str],
    parent: pulumi.Resource,
) -> ServiceRole:
    """``<name>-<kind>-role`` trusted by ``service`` and ``<name>-<kind>-policy`` attaching
    ``policy_arn`` to it."""
    child = pulumi.ResourceOptions(parent=parent)
    trust = iam.assume_role_policy(service)
    role = aws.iam.Role(
        f"{name}-{kind}-role",
        name=role_name,
        path=path,
        description=description,
        assume_role_policy=trust,
        opts=child,
    )
    attachment = aws.iam.RolePolicyAttachment(
        f"{name}-{kind}-policy", role=role.name, policy_arn=policy_arn, opts=child
    )
    return ServiceRole(role, attachment, role_name, trust, policy_arn)


def instance_roles(
    name: str,
    s: InstanceSettings,
    platform: BatchPlatform,
    partition: pulumi.Output[str],
    *,
    parent: pulumi.Resource,
) -> InstanceRoles:
    """``<name>-infra-role`` (+ ``-infra-policy``), ``<name>-instance-role`` (+
    ``-instance-policy``) and ``<name>-instance-profile``."""

    def managed(policy: str) -> pulumi.Output[str]:
        return pulumi.Output.concat("arn:", partition, ":iam::aws:policy/", policy)

    # Infrastructure role: ECS assumes it to launch and terminate this worker's instances
    # (ECS developer guide, "Amazon ECS infrastructure IAM role": trust ecs.amazonaws.com,
    # AWS managed AmazonECSInfrastructureRolePolicyForManagedInstances). Not under the
    # workers' path: the launcher's PassRole (to ECS tasks) must never reach it.
    infrastructure = _service_role(
        name,
        "infra",
        role_name=s.infra_role_name,
        path=f"/aibatch/{platform.name_prefix}/infrastructure/",
        description=f"ECS Managed Instances infrastructure role of worker {name}",
        service="ecs.amazonaws.com",
        policy_arn=managed(INFRASTRUCTURE_POLICY),
        parent=parent,
    )
    # Instance role: the ECS agent on the instance registers it with the cluster and polls
    # for tasks (AWS managed AmazonECSInstanceRolePolicyForManagedInstances; trust
    # ec2.amazonaws.com). Its name starts with ecsInstanceRole and it has no path, because
    # the infrastructure policy's iam:PassRole covers only role/ecsInstanceRole* (ECS
    # developer guide, "Amazon ECS Managed Instances instance profile").
    instance = _service_role(
        name,
        "instance",
        role_name=s.instance_role_name,
        path="/",
        description=f"ECS agent on the Managed Instances of worker {name} (no job access)",
        service="ec2.amazonaws.com",
        policy_arn=managed(INSTANCE_POLICY),
        parent=parent,
    )
    profile = aws.iam.InstanceProfile(
        f"{name}-instance-profile",
        name=s.instance_role_name,
        role=instance.role.name,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[instance.attachment]),
    )
    return InstanceRoles(infrastructure, instance, profile)


def instance_requirements(s: InstanceSettings, tier: str) -> Any:
    """The instance requirements of one tier: exactly the fitting sizes of a GPU name (what
    the cost estimate prices), or any current instance with the size for ``"cpu"``."""
    # The two branches look alike (duplicates lists them) but share no bound: a CPU tier has
    # no accelerator and no type list, a GPU tier is capped by its fitting sizes.
    v = s.base
    cpu_arch = ["amazon-web-services"] if v.architecture == "ARM64" else ["intel", "amd"]
    if tier == "cpu":  # a large CPU worker: any current instance with the size
        return _Req(
            vcpu_count=_ReqVcpu(min=rules.vcpus(v.cpu)),
            memory_mib=_ReqMem(min=int(v.memory / rules.USABLE_MEMORY_SHARE) + 1),
            cpu_manufacturers=cpu_arch,
            instance_generations=["current"],
            burstable_performance="excluded",
        )
    types = s.types[tier]
    return _Req(
        vcpu_count=_ReqVcpu(min=rules.vcpus(v.cpu), max=max(t.vcpu for t in types)),
        memory_mib=_ReqMem(min=v.memory, max=max(t.memory_mib for t in types)),
        accelerator_types=["gpu"],
        accelerator_manufacturers=["nvidia"],
        accelerator_names=[tier],
        accelerator_count=_ReqAcc(min=s.gpu_count, max=max(t.gpus for t in types)),
        allowed_instance_types=[t.name for t in types],
        cpu_manufacturers=cpu_arch,
    )


def capacity_providers(
    name: str,
    args: InstanceWorkerArgs,
    s: InstanceSettings,
    roles: InstanceRoles,
    *,
    parent: pulumi.Resource,
) -> dict[str, aws.ecs.CapacityProvider]:
    """``<name>-<tier>-<spot|od>`` per tier, by provider name."""
    platform = args.platform
    # After the platform's PutClusterCapacityProviders (FARGATE, FARGATE_SPOT): ECS
    # answers concurrent cluster updates with UpdateInProgressException.
    depends = [*roles.ready, platform.capacity_providers]
    optimization = (
        _Opt(scale_in_after=args.scale_in_after_seconds)
        if args.scale_in_after_seconds is not None
        else None
    )
    providers = {}
    for (tier, option), pname in s.provider_names.items():
        providers[pname] = aws.ecs.CapacityProvider(
            f"{name}-{tier}-{option}",
            name=pname,
            cluster=platform.cluster.name,
            managed_instances_provider=_Mip(
                infrastructure_role_arn=roles.infrastructure_role.arn,
                propagate_tags="CAPACITY_PROVIDER",
                infrastructure_optimization=optimization,
                instance_launch_template=_Lt(
                    ec2_instance_profile_arn=roles.instance_profile.arn,
                    capacity_option_type=CAPACITY_OPTIONS[option],
                    network_configuration=_Net(
                        subnets=platform.subnet_ids,
                        security_groups=platform.security_group_ids,
                    ),
                    storage_configuration=_Storage(storage_size_gib=args.storage_gib),
                    instance_requirements=instance_requirements(s, tier),
                    monitoring="BASIC",
                ),
            ),
            tags={"aibatch:stack": platform.name_prefix, "aibatch:worker": name},
            opts=pulumi.ResourceOptions(parent=parent, depends_on=depends),
        )
    return providers
