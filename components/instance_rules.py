"""AWS rules for workers on ECS Managed Instances, and the GPU instance types they may use.

Like ``components.aws_rules`` (whose ``AwsConstraintError`` these raise), each check names the
AWS rule it enforces, so ``pulumi preview`` fails with the argument, the value and what is
allowed before AWS sees a capacity provider or task definition it would reject, or one that
could never place a task.

The table ``GPU_INSTANCE_TYPES`` is the EC2 accelerated-computing specification table
(EC2 "Accelerated computing instance specifications", docs.aws.amazon.com/ec2/latest/
instancetypes/ac.html: GPUs, GPU memory, vCPUs and memory per size) for the families a batch
worker is likely to want. Names are the ECS/EC2 ``acceleratorNames`` values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.aws_rules import AwsConstraintError, whole_within


@dataclass(frozen=True)
class GpuInstanceType:
    name: str
    gpu: str  # EC2 acceleratorNames value
    gpus: int
    gpu_memory_gib: int  # per GPU
    vcpu: int
    memory_gib: int
    architecture: str  # ECS cpuArchitecture

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def memory_mib(self) -> int:
        return self.memory_gib * 1024


def _family(
    family: str, gpu: str, gpu_gib: int, arch: str, sizes: Iterable[tuple[str, int, int, int]]
) -> list[GpuInstanceType]:
    return [
        GpuInstanceType(f"{family}.{size}", gpu, gpus, gpu_gib, vcpu, mem, arch)
        for size, gpus, vcpu, mem in sizes
    ]


# (size, GPUs, vCPUs, memory GiB) per family; source: EC2 accelerated computing instance
# specifications (see the module docstring).
GPU_INSTANCE_TYPES: dict[str, GpuInstanceType] = {
    t.name: t
    for t in [
        # G4dn: NVIDIA T4, 16 GiB per GPU.
        *_family("g4dn", "t4", 16, "X86_64", [
            ("xlarge", 1, 4, 16), ("2xlarge", 1, 8, 32), ("4xlarge", 1, 16, 64),
            ("8xlarge", 1, 32, 128), ("16xlarge", 1, 64, 256), ("12xlarge", 4, 48, 192),
            ("metal", 8, 96, 384),
        ]),
        # G5: NVIDIA A10G, 24 GiB per GPU.
        *_family("g5", "a10g", 24, "X86_64", [
            ("xlarge", 1, 4, 16), ("2xlarge", 1, 8, 32), ("4xlarge", 1, 16, 64),
            ("8xlarge", 1, 32, 128), ("16xlarge", 1, 64, 256), ("12xlarge", 4, 48, 192),
            ("24xlarge", 4, 96, 384), ("48xlarge", 8, 192, 768),
        ]),
        # G6: NVIDIA L4, 24 GiB per GPU.
        *_family("g6", "l4", 24, "X86_64", [
            ("xlarge", 1, 4, 16), ("2xlarge", 1, 8, 32), ("4xlarge", 1, 16, 64),
            ("8xlarge", 1, 32, 128), ("16xlarge", 1, 64, 256), ("12xlarge", 4, 48, 192),
            ("24xlarge", 4, 96, 384), ("48xlarge", 8, 192, 768),
        ]),
        # G6e: NVIDIA L40S, 48 GiB per GPU.
        *_family("g6e", "l40s", 48, "X86_64", [
            ("xlarge", 1, 4, 32), ("2xlarge", 1, 8, 64), ("4xlarge", 1, 16, 128),
            ("8xlarge", 1, 32, 256), ("16xlarge", 1, 64, 512), ("12xlarge", 4, 48, 384),
            ("24xlarge", 4, 96, 768), ("48xlarge", 8, 192, 1536),
        ]),
        # G5g: NVIDIA T4G on Graviton2 (ARM64), 16 GiB per GPU.
        *_family("g5g", "t4g", 16, "ARM64", [
            ("xlarge", 1, 4, 8), ("2xlarge", 1, 8, 16), ("4xlarge", 1, 16, 32),
            ("8xlarge", 1, 32, 64), ("16xlarge", 2, 64, 128),
        ]),
        # P4d: NVIDIA A100 40 GB; P5: NVIDIA H100 80 GB.
        *_family("p4d", "a100", 40, "X86_64", [("24xlarge", 8, 96, 1152)]),
        *_family("p5", "h100", 80, "X86_64", [("48xlarge", 8, 192, 2048)]),
    ]
}  # fmt: skip

# AWS rule: ECS/EC2 InstanceRequirements acceleratorNames enum (botocore ecs 2014-11-13
# AcceleratorName): a100, inferentia, k520, k80, m60, radeon-pro-v520, t4, vu9p, v100, a10g,
# h100, t4g, l40s, l4. We accept the GPU names our table knows (so memory can be checked).
ECS_ACCELERATOR_NAMES = frozenset(
    {"a100", "inferentia", "k520", "k80", "m60", "radeon-pro-v520", "t4", "vu9p", "v100",
     "a10g", "h100", "t4g", "l40s", "l4"}
)  # fmt: skip
KNOWN_GPUS: tuple[str, ...] = tuple(sorted({t.gpu for t in GPU_INSTANCE_TYPES.values()}))
assert set(KNOWN_GPUS) <= ECS_ACCELERATOR_NAMES

# AWS rule: one task's GPUs must fit on one instance ("The number of GPUs reserved for all
# containers in a task can't exceed the number of available GPUs on the container instance",
# ECS API ResourceRequirement); the largest instances here have 8.
MAX_GPUS_PER_TASK = max(t.gpus for t in GPU_INSTANCE_TYPES.values())
# Our rule: at most 3 accepted GPU names; each adds a Spot and an on-demand capacity provider.
MAX_GPU_NAMES = 3
# AWS rule: task size on EC2-backed capacity is 128..196,608 cpu units (0.125..192 vCPU)
# (ECS developer guide, "Task definition parameters", Task size).
TASK_CPU_RANGE = (128, 196_608)
# Our margin, not an AWS figure: the ECS agent and the OS keep part of an instance's memory
# (ECS developer guide "Container instance memory management": the registered memory is less
# than the instance type's nominal memory), so a task may ask for at most 90 % of it.
USABLE_MEMORY_SHARE = 0.90
# AWS rule: InfrastructureOptimization.scaleInAfter is null (default), -1 (off) or 0..3600 s
# (ECS API reference, InfrastructureOptimization).
SCALE_IN_AFTER_RANGE = (0, 3600)
# AWS rule: Managed Instances tasks use the awsvpc or host network mode (ECS developer guide,
# "Amazon ECS task definition differences for Amazon ECS Managed Instances").
MANAGED_INSTANCES_NETWORK_MODES = ("awsvpc", "host")
# AWS rule: InstanceRequirements.allowedInstanceTypes holds at most 400 types.
MAX_ALLOWED_INSTANCE_TYPES = 400
# Our rule: an instance can take minutes to launch (GPU AMIs are large); 60 s..1 h.
STARTUP_TIMEOUT_RANGE = (60, 3600)


def gpu_names(values: Sequence[str], gpu_count: int, key: str = "gpu_names") -> tuple[str, ...]:
    """Normalised (lowercase) accepted GPU names, in order of preference."""
    names = tuple(v.strip().lower() for v in values)
    if gpu_count == 0:
        if names:
            raise AwsConstraintError(key, list(values), "none when gpu_count is 0")
        return ()
    if not names:
        raise AwsConstraintError(key, [], f"1..{MAX_GPU_NAMES} of {list(KNOWN_GPUS)}")
    if len(names) > MAX_GPU_NAMES:
        raise AwsConstraintError(key, list(values), f"at most {MAX_GPU_NAMES} names")
    if len(set(names)) != len(names):
        raise AwsConstraintError(key, list(values), "each name once")
    for name in names:
        if name not in KNOWN_GPUS:
            hint = (
                " (an EC2 name this table does not list)" if name in ECS_ACCELERATOR_NAMES else ""
            )
            raise AwsConstraintError(key, name, f"one of {list(KNOWN_GPUS)}{hint}")
    return names


def gpu_count(value: int, key: str = "gpu_count") -> int:
    allowed = f"0..{MAX_GPUS_PER_TASK} GPUs per task"
    return whole_within(value, 0, MAX_GPUS_PER_TASK, key, allowed)


def task_cpu(value: int, key: str = "cpu") -> int:
    lo, hi = TASK_CPU_RANGE
    return whole_within(value, lo, hi, key, f"{lo}..{hi} cpu units (1024 = 1 vCPU)")


def task_memory(value: int, key: str = "memory") -> int:
    if not isinstance(value, int) or value < 512:
        raise AwsConstraintError(key, value, ">= 512 MiB")
    return value


def vcpus(cpu_units: int) -> int:
    """Whole vCPUs an instance needs for a task of ``cpu_units``."""
    return max(1, math.ceil(cpu_units / 1024))


def fits(t: GpuInstanceType, gpus: int, cpu_units: int, memory_mib: int) -> bool:
    return (
        t.gpus >= gpus
        and t.vcpu >= vcpus(cpu_units)
        and memory_mib <= int(t.memory_mib * USABLE_MEMORY_SHARE)
    )


def fitting_types(
    names: Sequence[str],
    gpus: int,
    cpu_units: int,
    memory_mib: int,
    architecture: str,
    *,
    exact_gpus: bool = True,
    key: str = "instance types",
) -> dict[str, list[GpuInstanceType]]:
    """Per accepted GPU name, the instance types (smallest first) that can run the task.

    ``exact_gpus``: only types with exactly ``gpus`` GPUs (a 1-GPU job never pays for a
    4-GPU instance). Raises when a name has no fitting type, naming what the largest
    offering of that GPU has, so the message says which setting to change.
    """
    out: dict[str, list[GpuInstanceType]] = {}
    for name in names:
        of_gpu = [t for t in GPU_INSTANCE_TYPES.values() if t.gpu == name]
        arch_ok = [t for t in of_gpu if t.architecture == architecture]
        if not arch_ok:
            arches = sorted({t.architecture for t in of_gpu})
            raise AwsConstraintError(
                f"{key} ({name})", architecture, f"architecture {' or '.join(arches)} for {name}"
            )
        count_ok = [t for t in arch_ok if (t.gpus == gpus if exact_gpus else t.gpus >= gpus)]
        if not count_ok:
            offered = sorted({t.gpus for t in arch_ok})
            raise AwsConstraintError(
                f"{key} ({name}): gpu_count", gpus, f"a GPU count {name} instances offer: {offered}"
            )
        ok = [t for t in count_ok if fits(t, gpus, cpu_units, memory_mib)]
        if not ok:
            biggest = max(count_ok, key=lambda t: (t.memory_gib, t.vcpu))
            raise AwsConstraintError(
                f"{key} ({name}): cpu/memory",
                (cpu_units, memory_mib),
                f"at most {biggest.vcpu * 1024} cpu units and "
                f"{int(biggest.memory_mib * USABLE_MEMORY_SHARE)} MiB with {gpus} {name} GPU(s) "
                f"(largest: {biggest.name}, {biggest.vcpu} vCPU, {biggest.memory_gib} GiB; "
                f"{int(USABLE_MEMORY_SHARE * 100)} % of its memory is usable by tasks)",
            )
        out[name] = sorted(ok, key=lambda t: (t.vcpu, t.memory_gib))
    total = sum(len(v) for v in out.values())
    if total > MAX_ALLOWED_INSTANCE_TYPES:
        raise AwsConstraintError(key, total, f"at most {MAX_ALLOWED_INSTANCE_TYPES} types")
    return out


def scale_in_after(value: int | None, key: str = "scale_in_after_seconds") -> int | None:
    if value is None or value == -1:
        return value
    lo, hi = SCALE_IN_AFTER_RANGE
    return whole_within(value, lo, hi, key, f"None (AWS default), -1 (never) or {lo}..{hi} s")


def network_mode(value: str, key: str = "network_mode") -> str:
    if value not in MANAGED_INSTANCES_NETWORK_MODES:
        raise AwsConstraintError(key, value, f"one of {list(MANAGED_INSTANCES_NETWORK_MODES)}")
    return value


def startup_timeout(value: int, key: str = "startup_timeout_seconds") -> int:
    lo, hi = STARTUP_TIMEOUT_RANGE
    return whole_within(value, lo, hi, key, f"{lo}..{hi} seconds")


# AWS rule: with the AWS managed AmazonECSInfrastructureRolePolicyForManagedInstances on the
# infrastructure role, the instance role's name must start with "ecsInstanceRole": the policy
# scopes iam:PassRole to arn:aws:iam::*:role/ecsInstanceRole* (ECS developer guide, "Amazon
# ECS Managed Instances instance profile"). That ARN pattern has no path, so the role must
# live under "/" as well. IAM role names are at most 64 characters.
INSTANCE_ROLE_PREFIX = "ecsInstanceRole"


def instance_role_name(name: str, key: str = "instance role name") -> str:
    if not name.startswith(INSTANCE_ROLE_PREFIX):
        raise AwsConstraintError(key, name, f"a name starting with {INSTANCE_ROLE_PREFIX!r}")
    if len(name) > 64:
        raise AwsConstraintError(key, name, "at most 64 characters")
    return name


# Our rule (no AWS limit): the fallback worker of an InstanceWorker. A job the launch chain
# could not place is handed over as it is (same id, same input, no new validation), so the
# fallback must be a CPU Fargate worker of the same stack (its registration is in the same
# jobs table, its tasks in the same cluster; an instance worker would need the capacity that
# just ran out) whose input schema accepts every input this worker accepted. The check is
# schema *identity* (the two schemas equal as canonical JSON, e.g. both read from one
# input_schema.json): sound, and simple to satisfy. A structural "accepts at least as much"
# check of JSON Schemas is undecidable in general and easy to get wrong, so it is not tried.
def canonical_schema(schema: Mapping[str, Any]) -> str:
    """A schema as canonical JSON (sorted keys, no spaces): two schemas compare equal."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


# Keyword-only: five strings a positional call could swap (duplicates pairs the list with
# JobContext's keyword-only parameters, which are other values).
def fallback_worker(
    *,
    worker: str,
    schema: Mapping[str, Any],
    fallback: str,
    fallback_family: str,
    fallback_schema: Mapping[str, Any],
    fallback_is_fargate: bool,
    stack_prefix: str,
    key: str = "fallback_worker",
) -> str:
    """The fallback worker's name, once it is fit to take this worker's jobs (see above)."""
    if not fallback_is_fargate:
        raise AwsConstraintError(
            key, fallback, "a FargateWorker (CPU on Fargate), not an InstanceWorker or other"
        )
    if fallback == worker:
        raise AwsConstraintError(key, fallback, "another worker than this one")
    if fallback_family != f"{stack_prefix}-{fallback}":
        raise AwsConstraintError(
            key,
            fallback,
            f"a worker declared in this stack ({stack_prefix}); its task definition family "
            f"is {fallback_family!r}",
        )
    if canonical_schema(schema) != canonical_schema(fallback_schema):
        raise AwsConstraintError(
            key,
            fallback,
            f"a worker whose input schema is identical to {worker}'s (a handed-over job keeps "
            f"its input): {fallback}'s is {canonical_schema(fallback_schema)[:200]}, "
            f"{worker}'s is {canonical_schema(schema)[:200]} (point both at one "
            "input_schema.json, e.g. FargateWorkerArgs(source_dir=...) or input_schema=...)",
        )
    return fallback
