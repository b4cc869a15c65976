"""components.instance_rules: table-driven, every invalid input and the error it produces,
plus the instance types a valid worker may run on."""

from __future__ import annotations

from typing import Any

import pytest

from components import instance_rules as rules
from components.aws_rules import AwsConstraintError


def test_table_is_consistent_with_the_ecs_accelerator_enum() -> None:
    assert set(rules.KNOWN_GPUS) <= rules.ECS_ACCELERATOR_NAMES
    for t in rules.GPU_INSTANCE_TYPES.values():
        assert t.gpus >= 1 and t.vcpu >= 4 and t.memory_gib >= 8
        assert t.architecture == ("ARM64" if t.gpu == "t4g" else "X86_64")
    assert rules.GPU_INSTANCE_TYPES["g6.xlarge"].gpu == "l4"
    assert rules.GPU_INSTANCE_TYPES["g5.12xlarge"].gpus == 4


@pytest.mark.parametrize(
    ("call", "key", "allowed"),
    [
        (lambda: rules.gpu_names(["L4", "h200"], 1), "gpu_names", "one of"),
        (lambda: rules.gpu_names(["inferentia"], 1), "gpu_names", "this table does not list"),
        (lambda: rules.gpu_names([], 1), "gpu_names", "1..3"),
        (lambda: rules.gpu_names(["l4", "L4"], 1), "gpu_names", "each name once"),
        (lambda: rules.gpu_names(["l4", "a10g", "t4", "l40s"], 1), "gpu_names", "at most 3"),
        (lambda: rules.gpu_names(["l4"], 0), "gpu_names", "none when gpu_count is 0"),
        (lambda: rules.gpu_count(9), "gpu_count", "0..8"),
        (lambda: rules.gpu_count(-1), "gpu_count", "0..8"),
        (lambda: rules.task_cpu(64), "cpu", "128..196608"),
        (lambda: rules.task_memory(256), "memory", ">= 512"),
        (lambda: rules.scale_in_after(3601), "scale_in_after_seconds", "0..3600"),
        (lambda: rules.scale_in_after(-2), "scale_in_after_seconds", "-1 (never)"),
        (lambda: rules.network_mode("bridge"), "network_mode", "awsvpc"),
        (lambda: rules.startup_timeout(30), "startup_timeout_seconds", "60..3600"),
        (lambda: rules.instance_role_name("my-role"), "instance role name", "ecsInstanceRole"),
        # memory beyond what any 1-GPU T4 size offers (g4dn.16xlarge: 256 GiB)
        (lambda: rules.fitting_types(["t4"], 1, 4096, 300 * 1024, "X86_64"),
         "instance types (t4): cpu/memory", "largest: g4dn.16xlarge"),
        # 2 GPUs: no L4 size has exactly two
        (lambda: rules.fitting_types(["l4"], 2, 4096, 8192, "X86_64"),
         "instance types (l4): gpu_count", "[1, 4, 8]"),
        # T4G exists only on ARM64 (g5g), L4 only on x86
        (lambda: rules.fitting_types(["t4g"], 1, 4096, 4096, "X86_64"),
         "instance types (t4g)", "ARM64"),
        (lambda: rules.fitting_types(["l4"], 1, 4096, 4096, "ARM64"),
         "instance types (l4)", "X86_64"),
        # 8 vCPU of memory that only fits in 90 % of a 16 GiB instance: 16 GiB itself does not
        (lambda: rules.fitting_types(["a10g"], 1, 4096, 512 * 1024, "X86_64"),
         "instance types (a10g): cpu/memory", "90 %"),
    ],
)  # fmt: skip
def test_invalid_values_name_key_and_allowed(call: Any, key: str, allowed: str) -> None:
    with pytest.raises(AwsConstraintError) as err:
        call()
    assert err.value.key == key
    assert allowed in err.value.allowed


def test_fitting_types_smallest_first_exact_gpu_count_and_memory_margin() -> None:
    got = rules.fitting_types(["l4", "t4"], 1, 4096, 14336, "X86_64")
    assert [t.name for t in got["l4"]][:2] == ["g6.xlarge", "g6.2xlarge"]
    assert all(t.gpus == 1 for ts in got.values() for t in ts)
    # 15 GiB does not fit in 90 % of a 16 GiB xlarge: the smallest is the 2xlarge
    bigger = rules.fitting_types(["l4"], 1, 4096, 15 * 1024, "X86_64")
    assert bigger["l4"][0].name == "g6.2xlarge"
    multi = rules.fitting_types(["a10g"], 1, 4096, 8192, "X86_64", exact_gpus=False)
    assert "g5.12xlarge" in [t.name for t in multi["a10g"]]


def test_vcpus_round_up() -> None:
    assert rules.vcpus(128) == 1 and rules.vcpus(4096) == 4 and rules.vcpus(4097) == 5
