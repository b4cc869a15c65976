"""``InstanceWorker``: a GPU (or large) worker on ECS Managed Instances, one instance each.

Fargate has no GPU and stops at 16 vCPU / 120 GB. An ``InstanceWorker`` runs the same worker
runtime, registration, job queue and dispatch as ``FargateWorker`` on EC2 instances that ECS
Managed Instances launches, scales and patches (no Auto Scaling group to own).

What it makes, for a worker ``<name>`` (code in ``workers/<name>/``, ``Dockerfile`` required):

- everything a ``FargateWorker`` makes, with the same helpers and the same least-privilege
  roles: ECR repository + image (built for the instance architecture, pinned by digest), log
  group, execution role, task role and the ``worker#<name>`` registration (jobs go through
  the stack's one launch queue);
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
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

import jobcontract
from components import aws_rules, iam
from components import instance_rules as rules
from components.aws_rules import AwsConstraintError
from components.fargate_worker import (
    READONLY_ROOT_ENV,
    REPO_ROOT,
    STOP_TIMEOUT_SECONDS,
    WORKER_TABLE_ACTIONS,
    FargateWorker,
    FargateWorkerArgs,
    _ecs_tasks_trust,
    _validate,
    _Validated,
    source_fingerprint,
)
from components.job_queue import JobQueue
from jobcontract import Env, WorkerField
from jobcontract.managed_instances import COMPUTE_MANAGED_INSTANCES

if TYPE_CHECKING:
    from components.platform import BatchPlatform

# AWS managed policies ECS documents for Managed Instances (ECS developer guide: "Amazon ECS
# infrastructure IAM role" and "Amazon ECS Managed Instances instance profile").
INFRASTRUCTURE_POLICY = "AmazonECSInfrastructureRolePolicyForManagedInstances"
INSTANCE_POLICY = "AmazonECSInstanceRolePolicyForManagedInstances"
# AWS rule: a capacity provider name is up to 255 letters, numbers, underscores and hyphens
# and cannot start with "aws", "ecs" or "fargate" (ECS API reference, CreateCapacityProvider).
_RESERVED_PROVIDER_PREFIXES = ("aws", "ecs", "fargate")
DEFAULT_STORAGE_GIB = 100  # our default: CUDA base images and model weights are large
CAPACITY_OPTIONS = {"spot": "SPOT", "od": "ON_DEMAND"}


@dataclass(frozen=True, kw_only=True)
class InstanceWorkerArgs(FargateWorkerArgs):
    """Arguments of ``InstanceWorker``: every ``FargateWorkerArgs`` argument (same meaning and
    default, except where noted) plus the instance settings. Only ``platform`` is required."""

    cpu: int = 4096
    """Task cpu units (1024 = 1 vCPU), any value 128..196608: no Fargate pairs here. Default
    ``4096`` (4 vCPU, what the smallest single-GPU sizes have)."""
    memory: int = 14336
    """Task memory MiB; must fit in 90 % of an accepted instance type's memory. Default
    ``14336`` (14 GiB: fits a 16 GiB g4dn/g5/g6.xlarge)."""
    architecture: str = "X86_64"
    """Instance CPU architecture; the image is built for it. Default ``"X86_64"`` (every NVIDIA
    family except g5g/T4G, which is ``"ARM64"``)."""
    gpu_count: int = 1
    """GPUs per task (``resourceRequirements`` type GPU), 0..8. Default ``1``. ``0`` makes a
    large CPU worker (no ``gpu_names``)."""
    gpu_names: Sequence[str] = ("l4", "a10g", "t4")
    """Accepted GPUs in order of preference (EC2 accelerator names, case-insensitive), 1..3 of
    ``instance_rules.KNOWN_GPUS``. Default ``("l4", "a10g", "t4")``: G6, then G5, then G4dn.
    Example: ``("l40s",)`` for 48 GB models."""
    exact_gpu_count: bool = True
    """Only instance types with exactly ``gpu_count`` GPUs (a 1-GPU job never lands on a 4-GPU
    instance). Default ``True``."""
    scale_in_after_seconds: int | None = 300
    """Seconds an idle instance is kept for the next job before ECS terminates it
    (``infrastructureOptimization.scaleInAfter``): ``0`` = at once (cheapest), up to ``3600``;
    ``None`` = AWS's default; ``-1`` = never (instances stay: NOT scale to zero). Default
    ``300``."""
    startup_timeout_seconds: int = 900
    """How long a dispatched job may wait for an instance before the launch counts as failed
    and moves to the next strategy of the chain (not part of ``timeout_seconds``, which starts
    when the worker runs). 60..3600. Default ``900``."""
    storage_gib: int = DEFAULT_STORAGE_GIB
    """Instance task volume in GiB (images + model files), >= 30. Default ``100``."""
    network_mode: str | None = None
    """``"awsvpc"`` (own ENI + the stack's task security group) or ``"host"``. Default ``None``:
    ``awsvpc`` in the stack's private network mode, ``host`` in public mode (an awsvpc task on
    an instance gets no public IP, so without a NAT it could not reach ECR or S3)."""
    fallback_worker: FargateWorker | None = None
    """A CPU ``FargateWorker`` that takes the job when no instance capacity is found in the
    whole chain. Default ``None`` (the job waits and retries). Checked at preview
    (``instance_rules.fallback_worker``): declared in this stack, not an ``InstanceWorker``,
    and with an input schema identical to this worker's."""
    spot_fallback: bool | None = None
    """After the Spot steps of the chain, try the on-demand providers. Default ``None``: the
    platform's ``spotFallback``."""


@dataclass(frozen=True)
class _InstanceSettings:
    base: _Validated
    gpu_count: int
    gpu_names: tuple[str, ...]
    types: dict[str, list[rules.GpuInstanceType]]
    network_mode: str
    spot_share: int
    spot_fallback: bool
    provider_names: dict[tuple[str, str], str]  # (gpu or "cpu", "spot"|"od") -> name
    instance_role_name: str
    infra_role_name: str


def _validate_instance(name: str, args: InstanceWorkerArgs, platform: Any) -> _InstanceSettings:
    prefix = platform.name_prefix
    # Everything that is not sizing is checked exactly as for FargateWorker (names, env,
    # secrets, schema, Dockerfile): validate with a Fargate-valid size, then use our own.
    neutral = dataclasses.replace(args, cpu=1024, memory=2048, max_cpu=None, max_memory=None)
    base = _validate(name, neutral, prefix)
    cpu = rules.task_cpu(args.cpu, f"{name}: cpu")
    memory = rules.task_memory(args.memory, f"{name}: memory")
    max_cpu = rules.task_cpu(args.max_cpu if args.max_cpu is not None else cpu, f"{name}: max_cpu")
    max_memory = rules.task_memory(
        args.max_memory if args.max_memory is not None else memory, f"{name}: max_memory"
    )
    if max_cpu < cpu or max_memory < memory:
        raise AwsConstraintError(
            f"{name}: max_cpu/max_memory", (max_cpu, max_memory), f"at least ({cpu}, {memory})"
        )
    gpus = rules.gpu_count(args.gpu_count, f"{name}: gpu_count")
    names = rules.gpu_names(args.gpu_names, gpus, f"{name}: gpu_names")
    arch = base.architecture
    types: dict[str, list[rules.GpuInstanceType]] = {}
    if gpus:
        # The largest size a job may ask for must fit too: check with max_cpu/max_memory.
        rules.fitting_types(
            names, gpus, max_cpu, max_memory, arch, exact_gpus=args.exact_gpu_count,
            key=f"{name}: instance types (max_cpu/max_memory)",
        )  # fmt: skip
        types = rules.fitting_types(
            names, gpus, cpu, memory, arch, exact_gpus=args.exact_gpu_count,
            key=f"{name}: instance types",
        )  # fmt: skip
    rules.scale_in_after(args.scale_in_after_seconds, f"{name}: scale_in_after_seconds")
    rules.startup_timeout(args.startup_timeout_seconds, f"{name}: startup_timeout_seconds")
    if not isinstance(args.storage_gib, int) or not 30 <= args.storage_gib <= 16_384:
        raise AwsConstraintError(f"{name}: storage_gib", args.storage_gib, "30..16384 GiB")
    public = platform.config.network.mode != "private"
    mode = args.network_mode or ("host" if public else "awsvpc")
    rules.network_mode(mode, f"{name}: network_mode")
    if mode == "awsvpc" and public:
        raise AwsConstraintError(
            f"{name}: network_mode",
            mode,
            "'host' in the stack's public network mode (an awsvpc task on an instance has no "
            "public IP and no NAT to reach ECR/S3), or network.mode private with a NAT",
        )
    fallback = args.fallback_worker
    if fallback is not None:  # fit to take this worker's jobs as they are (instance_rules)
        fargate = isinstance(fallback, FargateWorker) and not isinstance(fallback, InstanceWorker)
        rules.fallback_worker(
            worker=name,
            schema=json.loads(base.input_schema_json),
            fallback=str(getattr(fallback, "worker_name", fallback)),
            fallback_family=str(getattr(fallback, "family", "")),
            fallback_schema=getattr(fallback, "input_schema", None) or {},
            fallback_is_fargate=fargate,
            stack_prefix=prefix,
            key=f"{name}: fallback_worker",
        )
    spot_share = args.spot_share if args.spot_share is not None else platform.config.spot_share
    aws_rules.percent(spot_share, f"{name}: spot_share")
    spot_fallback = (
        args.spot_fallback if args.spot_fallback is not None else platform.config.spot_fallback
    )

    family = base.family
    tiers = list(names) or ["cpu"]
    provider_names = {
        (tier, option): f"{family}-{tier}-{option}" for tier in tiers for option in CAPACITY_OPTIONS
    }
    for pname in provider_names.values():
        if pname.lower().startswith(_RESERVED_PROVIDER_PREFIXES) or len(pname) > 255:
            raise AwsConstraintError(
                f"{name}: capacity provider name", pname, "not starting with aws/ecs/fargate"
            )
    instance_role = rules.instance_role_name(
        f"{rules.INSTANCE_ROLE_PREFIX}-{family}", f"{name}: instance role name"
    )
    infra_role = f"{family}-infra"
    if len(infra_role) > 64:
        raise AwsConstraintError(f"{name}: role name", infra_role, "at most 64 characters")
    return _InstanceSettings(
        base=dataclasses.replace(
            base, cpu=cpu, memory=memory, max_cpu=max_cpu, max_memory=max_memory
        ),
        gpu_count=gpus,
        gpu_names=names,
        types=types,
        network_mode=mode,
        spot_share=spot_share,
        spot_fallback=spot_fallback,
        provider_names=provider_names,
        instance_role_name=instance_role,
        infra_role_name=infra_role,
    )


def launch_chain(
    provider_names: dict[tuple[str, str], str],
    tiers: Sequence[str],
    spot_share: int,
    spot_fallback: bool,
) -> list[list[dict[str, Any]]]:
    """The ordered capacity provider strategies (see ``jobcontract.managed_instances``):
    per tier its Spot/on-demand split (weights in lowest terms, zero weights dropped, as the
    platform's Fargate strategy); then, if Spot may fall back, each tier on-demand only."""
    spot, od = spot_share, 100 - spot_share
    div = math.gcd(spot, od) or 1
    chain: list[list[dict[str, Any]]] = []
    for tier in tiers:
        step: list[dict[str, Any]] = [
            {"capacityProvider": provider_names[(tier, "spot")], "weight": spot // div, "base": 0},
            {"capacityProvider": provider_names[(tier, "od")], "weight": od // div, "base": 0},
        ]
        chain.append([s for s in step if s["weight"] > 0])
    if spot > 0 and spot_fallback:
        for tier in tiers:
            only_od = [{"capacityProvider": provider_names[(tier, "od")], "weight": 1, "base": 0}]
            if only_od not in chain:
                chain.append(only_od)
    return chain


class InstanceWorker(pulumi.ComponentResource):
    """One worker on ECS Managed Instances (see the module docstring)."""

    worker_name: str
    launch_queue: JobQueue
    repository: aws.ecr.Repository
    image: docker.Image
    log_group: aws.cloudwatch.LogGroup
    task_definition: aws.ecs.TaskDefinition
    task_role: aws.iam.Role
    execution_role: aws.iam.Role
    infrastructure_role: aws.iam.Role
    instance_role: aws.iam.Role
    instance_profile: aws.iam.InstanceProfile
    capacity_providers: dict[str, aws.ecs.CapacityProvider]
    registration: aws.dynamodb.TableItem
    fallback_policy: aws.iam.RolePolicy | None = None  # on the fallback worker's task role
    capacity_provider_strategy: list[dict[str, Any]]
    launch_chain: list[list[dict[str, Any]]]
    spot_fallback: bool
    architecture: str
    family: str
    network_mode: str
    gpu_count: int
    gpu_names: tuple[str, ...]
    instance_types: list[str]
    input_schema: dict[str, Any]

    def __init__(
        self, name: str, args: InstanceWorkerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:InstanceWorker", name, None, opts)
        platform = args.platform
        s = _validate_instance(name, args, platform)
        # Warm reuse as FargateWorker: an instance task that finished a job takes the next.
        self.reuse_idle_seconds = (
            0
            if not platform.config.task_reuse
            else args.reuse_idle_seconds
            if args.reuse_idle_seconds is not None
            else jobcontract.DEFAULT_REUSE_IDLE_SECONDS
        )
        v = s.base
        self.worker_name = name
        self.architecture = v.architecture
        self.family = v.family
        self.network_mode = s.network_mode
        self.gpu_count = s.gpu_count
        self.gpu_names = s.gpu_names
        self.instance_types = [t.name for name_ in s.gpu_names for t in s.types[name_]]
        self.input_schema = json.loads(v.input_schema_json)
        tiers = list(s.gpu_names) or ["cpu"]
        self.launch_chain = launch_chain(s.provider_names, tiers, s.spot_share, s.spot_fallback)
        self.capacity_provider_strategy = self.launch_chain[0]
        # The launcher's Fargate fallback is on-demand *Fargate*, which cannot run this task
        # definition: the chain replaces it, so the Fargate-style flag stays off.
        self.spot_fallback = False
        child = pulumi.ResourceOptions(parent=self)

        identity = aws.get_caller_identity_output()
        region = aws.get_region_output().region
        partition = aws.get_partition_output().partition
        account = identity.account_id
        ecs_arn_prefix = pulumi.Output.concat("arn:", partition, ":ecs:", region, ":", account)

        self._image(name, args, v, child)
        self._logs_and_task_roles(name, args, v, account, ecs_arn_prefix, child)
        self._instance_roles(name, s, platform, partition, child)
        self._capacity_providers(name, args, s, platform, child)
        self._task_definition(name, args, s, region, child)
        self._queue(name, platform, child)
        self._fallback_grant(name, args, child)
        self._register(name, args, s, platform)

        self.register_outputs(
            {
                "queue_url": self.launch_queue.queue.url,
                "task_definition_arn": self.task_definition.arn,
                "repository_url": self.repository.repository_url,
                "capacity_providers": [p.name for p in self.capacity_providers.values()],
                "image": self.image.repo_digest,
            }
        )

    # --- pieces shared with FargateWorker (same shapes, same helpers) ------------------------
    def _image(
        self, name: str, args: InstanceWorkerArgs, v: _Validated, child: pulumi.ResourceOptions
    ) -> None:
        platform = args.platform
        keep = args.keep_images if args.keep_images is not None else platform.config.keep_images
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            name=v.repo_name,
            image_tag_mutability="MUTABLE",  # tags are informative; the task pins the digest
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
            ],
            force_delete=not platform.protect,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-repo-lifecycle",
            repository=self.repository.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": f"keep the last {keep} images",
                            "selection": {
                                "tagStatus": "any",
                                "countType": "imageCountMoreThan",
                                "countNumber": keep,
                            },
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
            opts=child,
        )
        creds = aws.ecr.get_authorization_token_output(registry_id=self.repository.registry_id)
        tag = source_fingerprint(
            v.dockerfile.parent, REPO_ROOT / "workers" / "runtime", REPO_ROOT / "jobcontract"
        )
        build_args = {"BASE_IMAGE": args.base_image} if args.base_image else None
        self.image = docker.Image(
            f"{name}-image",
            image_name=self.repository.repository_url.apply(lambda url: f"{url}:{tag}"),
            build=docker.DockerBuildArgs(
                context=str(v.context),
                dockerfile=str(v.dockerfile),
                # The image runs on the instance's CPU: build for its architecture.
                platform=aws_rules.docker_platform(v.architecture),
                args=build_args,
            ),
            registry=docker.RegistryArgs(
                server=self.repository.repository_url,
                username=creds.user_name,
                password=pulumi.Output.secret(creds.password),
            ),
            opts=child,
        )

    def _logs_and_task_roles(
        self,
        name: str,
        args: InstanceWorkerArgs,
        v: _Validated,
        account: pulumi.Output[str],
        ecs_arn_prefix: pulumi.Output[str],
        child: pulumi.ResourceOptions,
    ) -> None:
        platform = args.platform
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aibatch/{platform.name_prefix}/workers/{name}",
            retention_in_days=aws_rules.log_retention(platform.log_retention_days),
            opts=child,
        )
        self.execution_role = aws.iam.Role(
            f"{name}-exec-role",
            name=v.execution_role_name,
            description=f"ECS execution role of worker {name}: image pull, logs, its secrets",
            assume_role_policy=iam.assume_role_policy("ecs-tasks.amazonaws.com"),
            path=iam.worker_role_path(platform.name_prefix),
            opts=child,
        )
        self.task_role = aws.iam.Role(
            f"{name}-task-role",
            name=v.task_role_name,
            path=iam.worker_role_path(platform.name_prefix),
            description=f"Task role of worker {name}: its job rows and S3 prefixes only",
            assume_role_policy=_ecs_tasks_trust(account, ecs_arn_prefix),
            opts=child,
        )
        # The very statements FargateWorker grants (one definition of least privilege); they
        # read only repository, log group and the args, which this component has too.
        as_fargate = cast(FargateWorker, self)
        self.exec_policy = aws.iam.RolePolicy(
            f"{name}-exec-policy",
            role=self.execution_role.id,
            policy=iam.policy_document(*FargateWorker._execution_statements(as_fargate, args)),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-task-policy",
            role=self.task_role.id,
            policy=iam.policy_document(*FargateWorker._task_statements(as_fargate, name, args)),
            opts=child,
        )

    # --- Managed Instances ---------------------------------------------------------------
    def _instance_roles(
        self,
        name: str,
        s: _InstanceSettings,
        platform: BatchPlatform,
        partition: pulumi.Output[str],
        child: pulumi.ResourceOptions,
    ) -> None:
        def managed(policy: str) -> pulumi.Output[str]:
            return pulumi.Output.concat("arn:", partition, ":iam::aws:policy/", policy)

        # Infrastructure role: ECS assumes it to launch and terminate this worker's instances
        # (ECS developer guide, "Amazon ECS infrastructure IAM role": trust ecs.amazonaws.com,
        # AWS managed AmazonECSInfrastructureRolePolicyForManagedInstances). Not under the
        # workers' path: the launcher's PassRole (to ECS tasks) must never reach it.
        self.infrastructure_role = aws.iam.Role(
            f"{name}-infra-role",
            name=s.infra_role_name,
            path=f"/aibatch/{platform.name_prefix}/infrastructure/",
            description=f"ECS Managed Instances infrastructure role of worker {name}",
            assume_role_policy=iam.assume_role_policy("ecs.amazonaws.com"),
            opts=child,
        )
        infra_policy = aws.iam.RolePolicyAttachment(
            f"{name}-infra-policy",
            role=self.infrastructure_role.name,
            policy_arn=managed(INFRASTRUCTURE_POLICY),
            opts=child,
        )
        # Instance role: the ECS agent on the instance registers it with the cluster and polls
        # for tasks (AWS managed AmazonECSInstanceRolePolicyForManagedInstances; trust
        # ec2.amazonaws.com). Its name starts with ecsInstanceRole and it has no path, because
        # the infrastructure policy's iam:PassRole covers only role/ecsInstanceRole* (ECS
        # developer guide, "Amazon ECS Managed Instances instance profile").
        self.instance_role = aws.iam.Role(
            f"{name}-instance-role",
            name=s.instance_role_name,
            path="/",
            description=f"ECS agent on the Managed Instances of worker {name} (no job access)",
            assume_role_policy=iam.assume_role_policy("ec2.amazonaws.com"),
            opts=child,
        )
        instance_policy = aws.iam.RolePolicyAttachment(
            f"{name}-instance-policy",
            role=self.instance_role.name,
            policy_arn=managed(INSTANCE_POLICY),
            opts=child,
        )
        self.instance_profile = aws.iam.InstanceProfile(
            f"{name}-instance-profile",
            name=s.instance_role_name,
            role=self.instance_role.name,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[instance_policy]),
        )
        self._role_ready: list[pulumi.Resource] = [infra_policy, self.instance_profile]

    def _capacity_providers(
        self,
        name: str,
        args: InstanceWorkerArgs,
        s: _InstanceSettings,
        platform: BatchPlatform,
        child: pulumi.ResourceOptions,
    ) -> None:
        Lt = aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateArgs
        Req = aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateInstanceRequirementsArgs  # noqa: E501
        ReqVcpu = aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateInstanceRequirementsVcpuCountArgs  # noqa: E501
        ReqMem = aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateInstanceRequirementsMemoryMibArgs  # noqa: E501
        ReqAcc = aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateInstanceRequirementsAcceleratorCountArgs  # noqa: E501
        Net = aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateNetworkConfigurationArgs  # noqa: E501
        Storage = aws.ecs.CapacityProviderManagedInstancesProviderInstanceLaunchTemplateStorageConfigurationArgs  # noqa: E501
        Opt = aws.ecs.CapacityProviderManagedInstancesProviderInfrastructureOptimizationArgs
        v = s.base
        cpu_arch = ["amazon-web-services"] if v.architecture == "ARM64" else ["intel", "amd"]

        def requirements(tier: str) -> Any:
            if tier == "cpu":  # a large CPU worker: any current instance with the size
                return Req(
                    vcpu_count=ReqVcpu(min=rules.vcpus(v.cpu)),
                    memory_mib=ReqMem(min=int(v.memory / rules.USABLE_MEMORY_SHARE) + 1),
                    cpu_manufacturers=cpu_arch,
                    instance_generations=["current"],
                    burstable_performance="excluded",
                )
            types = s.types[tier]
            return Req(
                vcpu_count=ReqVcpu(min=rules.vcpus(v.cpu), max=max(t.vcpu for t in types)),
                memory_mib=ReqMem(min=v.memory, max=max(t.memory_mib for t in types)),
                accelerator_types=["gpu"],
                accelerator_manufacturers=["nvidia"],
                accelerator_names=[tier],
                accelerator_count=ReqAcc(min=s.gpu_count, max=max(t.gpus for t in types)),
                # Exactly the table's fitting sizes: what the cost estimate prices.
                allowed_instance_types=[t.name for t in types],
                cpu_manufacturers=cpu_arch,
            )

        # After the platform's PutClusterCapacityProviders (FARGATE, FARGATE_SPOT): ECS
        # answers concurrent cluster updates with UpdateInProgressException.
        depends = [*self._role_ready, platform.capacity_providers]
        self.capacity_providers = {}
        for (tier, option), pname in s.provider_names.items():
            self.capacity_providers[pname] = aws.ecs.CapacityProvider(
                f"{name}-{tier}-{option}",
                name=pname,
                cluster=platform.cluster.name,
                managed_instances_provider=aws.ecs.CapacityProviderManagedInstancesProviderArgs(
                    infrastructure_role_arn=self.infrastructure_role.arn,
                    propagate_tags="CAPACITY_PROVIDER",
                    infrastructure_optimization=(
                        Opt(scale_in_after=args.scale_in_after_seconds)
                        if args.scale_in_after_seconds is not None
                        else None
                    ),
                    instance_launch_template=Lt(
                        ec2_instance_profile_arn=self.instance_profile.arn,
                        capacity_option_type=CAPACITY_OPTIONS[option],
                        network_configuration=Net(
                            subnets=platform.subnet_ids,
                            security_groups=platform.security_group_ids,
                        ),
                        storage_configuration=Storage(storage_size_gib=args.storage_gib),
                        instance_requirements=requirements(tier),
                        monitoring="BASIC",
                    ),
                ),
                tags={"aibatch:stack": platform.name_prefix, "aibatch:worker": name},
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
            )
        del child

    def _task_definition(
        self,
        name: str,
        args: InstanceWorkerArgs,
        s: _InstanceSettings,
        region: pulumi.Output[str],
        child: pulumi.ResourceOptions,
    ) -> None:
        platform = args.platform
        v = s.base
        environment: dict[str, pulumi.Input[str]] = {
            Env.STACK: pulumi.get_stack(),
            Env.JOBS_TABLE: platform.jobs_table.name,
            Env.RESULTS_BUCKET: platform.results_bucket.bucket,
            Env.WORKER_NAME: name,
            Env.WORKER_TIMEOUT_SECONDS: str(args.timeout_seconds),
            Env.WORKER_MAX_ATTEMPTS: str(args.max_attempts),
            Env.JOB_TTL_DAYS: str(platform.config.job_ttl_days),
            Env.MODEL_BACKEND: "bedrock",
            Env.MODEL_ID: platform.config.bedrock_model_id,
            Env.LOG_LEVEL: platform.config.log_level,
            Env.REUSE_IDLE_SECONDS: str(self.reuse_idle_seconds),
            **(READONLY_ROOT_ENV if args.readonly_root_filesystem else {}),
            **dict(args.environment),
        }
        container: dict[str, Any] = {
            "name": jobcontract.CONTAINER_NAME,
            "image": self.image.repo_digest,
            "essential": True,
            # A Spot instance gets a two-minute warning: stop in time to save progress.
            "stopTimeout": aws_rules.stop_timeout(STOP_TIMEOUT_SECONDS),
            "readonlyRootFilesystem": args.readonly_root_filesystem,
            "mountPoints": (
                [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}]
                if args.readonly_root_filesystem
                else []
            ),
            "environment": [{"name": k, "value": environment[k]} for k in sorted(environment)],
            "secrets": [{"name": k, "valueFrom": arn} for k, arn in sorted(args.secrets.items())],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": self.log_group.name,
                    "awslogs-region": region,
                    "awslogs-stream-prefix": "job",
                    "mode": "non-blocking",
                },
            },
        }
        if s.gpu_count:
            # AWS rule: GPUs are a container resourceRequirement {"type": "GPU", "value": "<n>"}
            # (ECS API ResourceRequirement; "Specifying GPUs in an Amazon ECS task definition");
            # the agent pins that many physical GPUs to the container.
            container["resourceRequirements"] = [{"type": "GPU", "value": str(s.gpu_count)}]
        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=v.family,
            # AWS rule: Compatibility enum EC2 | FARGATE | EXTERNAL | MANAGED_INSTANCES (ECS API).
            requires_compatibilities=["MANAGED_INSTANCES"],
            network_mode=s.network_mode,
            cpu=str(v.cpu),
            memory=str(v.memory),
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture=v.architecture
            ),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            container_definitions=pulumi.Output.json_dumps([container]),
            volumes=(
                [aws.ecs.TaskDefinitionVolumeArgs(name="tmp")]
                if args.readonly_root_filesystem
                else None
            ),
            skip_destroy=True,  # jobs pin the revision current at submit time
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.exec_policy]),
        )
        del child

    def _fallback_grant(
        self, name: str, args: InstanceWorkerArgs, child: pulumi.ResourceOptions
    ) -> None:
        """The fallback worker's task runs the jobs this worker hands it (the launcher, when
        the launch chain finds no capacity): a job keeps its id, so that task role needs
        these jobs' rows and inputs too (its result goes under its own prefix). On that
        role, counted in its ledger; nothing else of this worker."""
        fallback = args.fallback_worker
        if fallback is None:
            return
        platform = args.platform
        bucket_arn = platform.results_bucket.arn
        self.fallback_policy = aws.iam.RolePolicy(
            f"{name}-fallback-task-policy",
            role=fallback.task_role.id,
            policy=iam.policy_document(
                iam.table_actions(
                    WORKER_TABLE_ACTIONS,
                    platform.jobs_table.arn,
                    leading_keys=[jobcontract.job_pk_prefix(name) + "*"],
                    sid="HandedOverJobRows",
                ),
                iam.bucket_prefix_read(
                    bucket_arn, jobcontract.inputs_prefix(name), sid="HandedOverInputs"
                ),
                iam.bucket_prefix_list(
                    bucket_arn, [jobcontract.inputs_prefix(name)], sid="ListHandedOverInputs"
                ),
            ),
            opts=child,
        )
        fallback.iam_ledger.add(f"{fallback.family}-task", self.fallback_policy.policy)

    def _queue(self, name: str, platform: BatchPlatform, child: pulumi.ResourceOptions) -> None:
        """As FargateWorker: no queue of its own; jobs go through the stack's launch queue."""
        del name, child
        self.launch_queue = platform.functions.launch_queue

    def _register(
        self, name: str, args: InstanceWorkerArgs, s: _InstanceSettings, platform: BatchPlatform
    ) -> None:
        functions = platform.functions
        launcher = functions.launcher
        ledger = functions.iam_ledger
        item = FargateWorker._registration_item(cast(FargateWorker, self), name, args, s.base)
        item.update(
            {
                WorkerField.COMPUTE: {"S": COMPUTE_MANAGED_INSTANCES},
                WorkerField.LAUNCH_CHAIN: {"S": json.dumps(self.launch_chain)},
                WorkerField.STARTUP_TIMEOUT_SECONDS: {"N": str(args.startup_timeout_seconds)},
                WorkerField.GPU_COUNT: {"N": str(s.gpu_count)},
                WorkerField.GPU_NAMES: {"S": json.dumps(list(s.gpu_names))},
                WorkerField.NETWORK_MODE: {"S": s.network_mode},
            }
        )
        if args.fallback_worker is not None:
            item[WorkerField.FALLBACK_WORKER] = {"S": args.fallback_worker.worker_name}
        item[WorkerField.CAPACITY_STRATEGY] = {"S": json.dumps(self.capacity_provider_strategy)}
        item[WorkerField.SPOT_FALLBACK] = {"BOOL": False}
        depends: list[pulumi.Resource] = [
            launcher.policy,
            functions.api.policy,
            functions.reconciler.policy,
            functions.sweep.policy,
            platform.capacity_providers,
            # RunTask on a provider that does not exist yet fails: register after them.
            *self.capacity_providers.values(),
        ]
        if args.fallback_worker is not None:
            depends.append(args.fallback_worker.registration)
        self.registration = aws.dynamodb.TableItem(
            f"{name}-registration",
            table_name=platform.jobs_table.name,
            hash_key=jobcontract.Table.PK,
            item=ledger.guard(
                pulumi.Output.json_dumps(item),
                *([args.fallback_worker.iam_ledger] if args.fallback_worker is not None else []),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )
