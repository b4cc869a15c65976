"""Pure validation of an ``InstanceWorker``'s arguments, and its launch chain.

Everything that is not sizing is checked exactly as for a Fargate worker
(``components.worker.validation``); sizing, GPUs, network mode and names follow the Managed
Instances rules of ``components.instance_rules``. No Pulumi engine is needed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components import aws_rules
from components import instance_rules as rules
from components.aws_rules import AwsConstraintError, whole_within
from components.config_types import spot_weights
from components.worker.validation import ROLE_NAME_MAX, Validated, validate

if TYPE_CHECKING:
    from components.worker.args import InstanceWorkerArgs

# AWS rule: a capacity provider name is up to 255 letters, numbers, underscores and hyphens
# and cannot start with "aws", "ecs" or "fargate" (ECS API reference, CreateCapacityProvider).
_RESERVED_PROVIDER_PREFIXES = ("aws", "ecs", "fargate")
CAPACITY_OPTIONS = {"spot": "SPOT", "od": "ON_DEMAND"}


@dataclass(frozen=True)
class InstanceSettings:
    base: Validated
    gpu_count: int
    gpu_names: tuple[str, ...]
    types: dict[str, list[rules.GpuInstanceType]]
    network_mode: str
    spot_share: int
    spot_fallback: bool
    provider_names: dict[tuple[str, str], str]  # (gpu or "cpu", "spot"|"od") -> name
    instance_role_name: str
    infra_role_name: str

    @property
    def tiers(self) -> list[str]:
        """The accepted GPU names in order, or ``["cpu"]`` for a large CPU worker."""
        return list(self.gpu_names) or ["cpu"]


def validate_instance(name: str, args: InstanceWorkerArgs, platform: Any) -> InstanceSettings:
    """Every check of an ``InstanceWorker``'s arguments (``platform``: its ``name_prefix``
    and ``config``)."""
    # Everything that is not sizing is checked exactly as for FargateWorker (names, env,
    # secrets, schema, Dockerfile): validate with a Fargate-valid size, then use our own.
    neutral = dataclasses.replace(args, cpu=1024, memory=2048, max_cpu=None, max_memory=None)
    base = validate(name, neutral, platform.name_prefix)
    cpu, memory, max_cpu, max_memory = _task_sizes(name, args)
    gpus = rules.gpu_count(args.gpu_count, f"{name}: gpu_count")
    names = rules.gpu_names(args.gpu_names, gpus, f"{name}: gpu_names")
    types = _instance_types(name, args, names, gpus, (cpu, memory, max_cpu, max_memory), base)
    rules.scale_in_after(args.scale_in_after_seconds, f"{name}: scale_in_after_seconds")
    rules.startup_timeout(args.startup_timeout_seconds, f"{name}: startup_timeout_seconds")
    whole_within(args.storage_gib, 30, 16_384, f"{name}: storage_gib", "30..16384 GiB")
    mode = _network_mode(name, args, platform)
    _fallback_worker(name, args, base.input_schema_json, platform.name_prefix)
    spot_share = args.spot_share if args.spot_share is not None else platform.config.spot_share
    aws_rules.percent(spot_share, f"{name}: spot_share")
    spot_fallback = (
        args.spot_fallback if args.spot_fallback is not None else platform.config.spot_fallback
    )
    provider_names, instance_role, infra_role = _instance_names(name, base.family, names)
    # Keyword construction of the record, field by field (as ``validate`` builds Validated).
    return InstanceSettings(
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


def _task_sizes(name: str, args: InstanceWorkerArgs) -> tuple[int, int, int, int]:
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
    return cpu, memory, max_cpu, max_memory


def _instance_types(
    name: str,
    args: InstanceWorkerArgs,
    names: tuple[str, ...],
    gpus: int,
    sizes: tuple[int, int, int, int],
    base: Validated,
) -> dict[str, list[rules.GpuInstanceType]]:
    """Per GPU name, the instance types that fit the task (none for a CPU worker)."""
    if not gpus:
        return {}
    cpu, memory, max_cpu, max_memory = sizes
    arch = base.architecture
    # The largest size a job may ask for must fit too: check with max_cpu/max_memory.
    rules.fitting_types(
        names, gpus, max_cpu, max_memory, arch, exact_gpus=args.exact_gpu_count,
        key=f"{name}: instance types (max_cpu/max_memory)",
    )  # fmt: skip
    return rules.fitting_types(
        names, gpus, cpu, memory, arch, exact_gpus=args.exact_gpu_count,
        key=f"{name}: instance types",
    )  # fmt: skip


def _network_mode(name: str, args: InstanceWorkerArgs, platform: Any) -> str:
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
    return mode


def _fallback_worker(name: str, args: InstanceWorkerArgs, schema_json: str, prefix: str) -> None:
    """The fallback must take this worker's jobs as they are
    (``instance_rules.fallback_worker``)."""
    # Imported here: the component modules need Pulumi, this module does not.
    from components.fargate_worker import FargateWorker
    from components.instance_worker import InstanceWorker

    fallback = args.fallback_worker
    if fallback is None:
        return
    fargate = isinstance(fallback, FargateWorker) and not isinstance(fallback, InstanceWorker)
    rules.fallback_worker(
        worker=name,
        schema=json.loads(schema_json),
        fallback=str(getattr(fallback, "worker_name", fallback)),
        fallback_family=str(getattr(fallback, "family", "")),
        fallback_schema=getattr(fallback, "input_schema", None) or {},
        fallback_is_fargate=fargate,
        stack_prefix=prefix,
        key=f"{name}: fallback_worker",
    )


def _instance_names(
    name: str, family: str, gpu_names: tuple[str, ...]
) -> tuple[dict[tuple[str, str], str], str, str]:
    """Capacity provider names per (tier, option), the instance role and the infra role."""
    tiers = list(gpu_names) or ["cpu"]
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
    if len(infra_role) > ROLE_NAME_MAX:
        raise AwsConstraintError(f"{name}: role name", infra_role, "at most 64 characters")
    return provider_names, instance_role, infra_role


def launch_chain(
    provider_names: dict[tuple[str, str], str],
    tiers: Sequence[str],
    spot_share: int,
    spot_fallback: bool,
) -> list[list[dict[str, Any]]]:
    """The ordered capacity provider strategies (see ``jobcontract.managed_instances``):
    per tier its Spot/on-demand split (weights in lowest terms, zero weights dropped, as the
    platform's Fargate strategy); then, if Spot may fall back, each tier on-demand only."""
    spot, od = spot_weights(spot_share)
    chain: list[list[dict[str, Any]]] = []
    for tier in tiers:
        step: list[dict[str, Any]] = [
            {"capacityProvider": provider_names[(tier, "spot")], "weight": spot, "base": 0},
            {"capacityProvider": provider_names[(tier, "od")], "weight": od, "base": 0},
        ]
        chain.append([s for s in step if s["weight"] > 0])
    if spot > 0 and spot_fallback:
        for tier in tiers:
            only_od = [{"capacityProvider": provider_names[(tier, "od")], "weight": 1, "base": 0}]
            if only_od not in chain:
                chain.append(only_od)
    return chain
