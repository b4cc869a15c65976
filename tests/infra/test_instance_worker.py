"""InstanceWorker under Pulumi mocks, with the dev and prod stacks' settings (the program in
``gpu_program.py``): capacity providers in the stack's cluster, roles' trust and policies, the
task definition's GPU requirement and network mode, the registration's capacity strategy and
launch chain, and the preview errors for bad GPU names, counts and memory."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import jobcontract.store
from components import iam
from components import instance_worker as iw
from components.aws_rules import AwsConstraintError
from components.config import load_config, parse_config
from components.fargate_worker import FargateWorker, FargateWorkerArgs
from components.instance_worker import InstanceWorker, InstanceWorkerArgs
from components.offline import StackGraph, run_program, stack_config
from components.platform import BatchPlatform, BatchPlatformArgs
from jobcontract import Env, WorkerField
from jobcontract.registration import WorkerRegistration
from tests.infra.gpu_program import program

CP = "aws:ecs/capacityProvider:CapacityProvider"
ROLE = "aws:iam/role:Role"
ATTACH = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
TASK_DEF = "aws:ecs/taskDefinition:TaskDefinition"
ITEM = "aws:dynamodb/tableItem:TableItem"


@pytest.fixture(scope="module", params=["dev", "prod"])
def stack(request: pytest.FixtureRequest) -> tuple[str, StackGraph]:
    name = str(request.param)
    return name, run_program(program, stack=name, config=stack_config(name))


def _registration(graph: StackGraph, worker: str) -> dict[str, Any]:
    item = graph.named(ITEM, f"{worker}-registration").inputs["item"]
    return json.loads(item) if isinstance(item, str) else item


def test_one_spot_and_one_on_demand_provider_per_gpu_in_the_cluster(
    stack: tuple[str, StackGraph],
) -> None:
    name, graph = stack
    prefix = f"ai-batch-{name}"
    providers = {r.name: r for r in graph.of_type(CP)}
    assert set(providers) == {
        f"image-embedder-{gpu}-{opt}" for gpu in ("l4", "a10g", "t4") for opt in ("spot", "od")
    }
    for gpu, expected_types in [("l4", "g6."), ("a10g", "g5."), ("t4", "g4dn.")]:
        for opt, option in [("spot", "SPOT"), ("od", "ON_DEMAND")]:
            cp = providers[f"image-embedder-{gpu}-{opt}"]
            assert cp.inputs["name"] == f"{prefix}-image-embedder-{gpu}-{opt}"
            # Created *in* the cluster (Managed Instances providers are cluster-scoped and
            # never go through PutClusterCapacityProviders) ...
            assert cp.inputs["cluster"] == prefix
            assert "platform-capacity" in cp.depends_on  # ... after the platform's update
            mip = cp.inputs["managedInstancesProvider"]
            assert mip["infrastructureOptimization"] == {"scaleInAfter": 300}
            lt = mip["instanceLaunchTemplate"]
            assert lt["capacityOptionType"] == option
            assert f"ecsInstanceRole-{prefix}-image-embedder" in lt["ec2InstanceProfileArn"]
            assert lt["networkConfiguration"]["subnets"]
            assert lt["networkConfiguration"]["securityGroups"]
            req = lt["instanceRequirements"]
            assert req["acceleratorNames"] == [gpu]
            assert req["acceleratorTypes"] == ["gpu"]
            assert req["acceleratorCount"] == {"min": 1, "max": 1}
            assert req["vcpuCount"]["min"] == 4 and req["memoryMib"]["min"] == 14336
            allowed = req["allowedInstanceTypes"]
            assert allowed and all(t.startswith(expected_types) for t in allowed)
            assert f"{expected_types}xlarge" in allowed  # 14 GiB fits a 16 GiB xlarge
            assert not any(t.endswith(("12xlarge", "24xlarge", "48xlarge")) for t in allowed)


def test_the_platform_keeps_its_one_cluster_capacity_providers_resource(
    stack: tuple[str, StackGraph],
) -> None:
    _, graph = stack
    (ccp,) = graph.of_type("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")
    # AWS rejects Managed Instances providers in PutClusterCapacityProviders.
    assert sorted(ccp.inputs["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]


def test_infrastructure_and_instance_roles(stack: tuple[str, StackGraph]) -> None:
    name, graph = stack
    infra = graph.named(ROLE, "image-embedder-infra-role").inputs
    trust = json.loads(infra["assumeRolePolicy"])["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "ecs.amazonaws.com"}]
    assert infra["path"] == f"/aibatch/ai-batch-{name}/infrastructure/"  # not the workers' path
    instance = graph.named(ROLE, "image-embedder-instance-role").inputs
    trust = json.loads(instance["assumeRolePolicy"])["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "ec2.amazonaws.com"}]
    # The managed infrastructure policy may pass only role/ecsInstanceRole* (no path).
    assert instance["name"].startswith("ecsInstanceRole") and instance["path"] == "/"
    attached = {
        r.name: r.inputs["policyArn"] for r in graph.of_type(ATTACH) if "image-embedder" in r.name
    }
    assert attached == {
        "image-embedder-infra-policy": (
            "arn:aws:iam::aws:policy/AmazonECSInfrastructureRolePolicyForManagedInstances"
        ),
        "image-embedder-instance-policy": (
            "arn:aws:iam::aws:policy/AmazonECSInstanceRolePolicyForManagedInstances"
        ),
    }
    profile = graph.named(
        "aws:iam/instanceProfile:InstanceProfile", "image-embedder-instance-profile"
    )
    assert profile.inputs["role"] == instance["name"]
    # Providers wait for the policies and the profile: ECS validates them at creation.
    cp = graph.named(CP, "image-embedder-l4-spot")
    assert {"image-embedder-infra-policy", "image-embedder-instance-profile"} <= set(cp.depends_on)


def test_task_role_and_execution_role_are_the_fargate_ones(stack: tuple[str, StackGraph]) -> None:
    _, graph = stack
    policies = {
        r.name: json.loads(r.inputs["policy"])
        for r in graph.of_type("aws:iam/rolePolicy:RolePolicy")
    }
    mine, theirs = policies["image-embedder-task-policy"], policies["content-analyzer-task-policy"]
    sids = [s.get("Sid") for s in mine["Statement"]]
    assert sids == [s.get("Sid") for s in theirs["Statement"]]
    own_rows = next(s for s in mine["Statement"] if s.get("Sid") == "OwnJobRowsOnly")
    assert "job#image-embedder_*" in json.dumps(own_rows)


def test_task_definition_gpu_network_mode_and_compatibility(stack: tuple[str, StackGraph]) -> None:
    _, graph = stack
    td = graph.named(TASK_DEF, "image-embedder-task").inputs
    assert td["requiresCompatibilities"] == ["MANAGED_INSTANCES"]
    # Both stacks are in public network mode: host (an awsvpc task on an instance gets no
    # public IP; there is no NAT).
    assert td["networkMode"] == "host"
    assert td["runtimePlatform"] == {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"}
    assert (td["cpu"], td["memory"]) == ("4096", "14336")
    (container,) = json.loads(td["containerDefinitions"])
    assert container["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert container["stopTimeout"] == 120
    image = graph.named("docker:index/image:Image", "image-embedder-image").inputs
    assert image["build"]["platform"] == "linux/amd64"


def test_registration_capacity_strategy_and_launch_chain(stack: tuple[str, StackGraph]) -> None:
    name, graph = stack
    prefix = f"ai-batch-{name}-image-embedder"
    reg = _registration(graph, "image-embedder")
    strategy = json.loads(reg[WorkerField.CAPACITY_STRATEGY]["S"])
    chain = json.loads(reg[WorkerField.LAUNCH_CHAIN]["S"])
    assert strategy == chain[0]  # today's launcher starts the first preference
    assert reg[WorkerField.SPOT_FALLBACK] == {"BOOL": False}  # never the Fargate fallback
    providers = [[s["capacityProvider"] for s in step] for step in chain]
    if name == "dev":  # spotShare 100
        assert providers == [
            [f"{prefix}-l4-spot"], [f"{prefix}-a10g-spot"], [f"{prefix}-t4-spot"],
            [f"{prefix}-l4-od"], [f"{prefix}-a10g-od"], [f"{prefix}-t4-od"],
        ]  # fmt: skip
    else:  # spotShare 70: each preference splits 7:3, then on-demand only
        assert chain[0] == [
            {"capacityProvider": f"{prefix}-l4-spot", "weight": 7, "base": 0},
            {"capacityProvider": f"{prefix}-l4-od", "weight": 3, "base": 0},
        ]
        assert providers[3:] == [[f"{prefix}-l4-od"], [f"{prefix}-a10g-od"], [f"{prefix}-t4-od"]]
    assert reg[WorkerField.COMPUTE] == {"S": "managed_instances"}
    assert reg[WorkerField.FALLBACK_WORKER] == {"S": "image-embedder-cpu"}
    assert reg[WorkerField.GPU_NAMES] == {"S": '["l4", "a10g", "t4"]'}
    assert reg[WorkerField.STARTUP_TIMEOUT_SECONDS] == {"N": "900"}
    assert reg[WorkerField.CPU] == {"N": "4096"} and reg[WorkerField.MEMORY] == {"N": "14336"}
    deps = set(graph.named(ITEM, "image-embedder-registration").depends_on)
    assert {f"image-embedder-{g}-{o}" for g in ("l4", "a10g", "t4") for o in ("spot", "od")} <= deps
    assert "image-embedder-cpu-registration" in deps
    # The handlers' reading of it (the record that wrote it).
    record = WorkerRegistration.from_item(jobcontract.store.from_item(reg))
    assert record.managed_instances and record.fallback_worker == "image-embedder-cpu"
    assert [list(step) for step in record.launch_chain] == chain == record.launch_steps()
    assert (record.gpu_count, record.gpu_names, record.network_mode) == (
        1,
        ("l4", "a10g", "t4"),
        "host",
    )
    assert record.to_dynamodb() == reg


# --- preview errors (no Pulumi needed: validation runs before any resource) ----------------
def _platform(mode: str = "public") -> Any:
    raw = {"network": {"mode": mode}} if mode == "public" else {
        "network": {"mode": "private", "vpcId": "vpc-0a1b2c3d4e5f60718",
                    "subnetIds": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
                    "routeTableIds": ["rtb-0a1b2c3d4e5f60001"]}}  # fmt: skip
    config = parse_config(raw, project="ai-batch", stack="dev")
    return SimpleNamespace(name_prefix=config.name_prefix, config=config)


BAD = [
    ({"gpu_names": ("l4", "h200")}, "image-embedder: gpu_names", "one of"),
    ({"gpu_names": ()}, "image-embedder: gpu_names", "1..3"),
    ({"gpu_count": 9}, "image-embedder: gpu_count", "0..8"),
    ({"gpu_count": 2, "gpu_names": ("l4",)}, "image-embedder: instance types (max_cpu/max_memory)"
     " (l4): gpu_count", "[1, 4, 8]"),
    ({"memory": 300 * 1024, "gpu_names": ("t4",)},
     "image-embedder: instance types (max_cpu/max_memory) (t4): cpu/memory", "g4dn.16xlarge"),
    ({"max_memory": 600 * 1024}, "image-embedder: instance types (max_cpu/max_memory) (l4): "
     "cpu/memory", "largest"),
    ({"cpu": 64}, "image-embedder: cpu", "128..196608"),
    ({"architecture": "ARM64"}, "image-embedder: instance types (max_cpu/max_memory) (l4)",
     "X86_64"),
    ({"scale_in_after_seconds": 7200}, "image-embedder: scale_in_after_seconds", "0..3600"),
    ({"network_mode": "awsvpc"}, "image-embedder: network_mode", "'host' in the stack's public"),
    ({"network_mode": "bridge"}, "image-embedder: network_mode", "awsvpc"),
    ({"startup_timeout_seconds": 5}, "image-embedder: startup_timeout_seconds", "60..3600"),
    ({"timeout_seconds": 10}, "image-embedder: timeout_seconds", "60..86400"),
    ({"environment": {"HF_TOKEN": "x"}}, "image-embedder: environment", "pass credentials"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "key", "allowed"), BAD)
def test_preview_errors(changes: dict[str, Any], key: str, allowed: str) -> None:
    args = iw.InstanceWorkerArgs(platform=_platform(), **changes)
    with pytest.raises(AwsConstraintError) as err:
        iw._validate_instance("image-embedder", args, args.platform)
    assert err.value.key == key, err.value
    assert allowed in err.value.allowed


def test_valid_settings_private_mode_awsvpc_and_a_large_cpu_worker() -> None:
    args = iw.InstanceWorkerArgs(platform=_platform("private"), gpu_names=("L4",))
    s = iw._validate_instance("image-embedder", args, args.platform)
    assert s.network_mode == "awsvpc" and s.gpu_names == ("l4",)
    big_cpu = iw.InstanceWorkerArgs(
        platform=_platform(), gpu_count=0, gpu_names=(), cpu=32 * 1024, memory=200 * 1024
    )
    s = iw._validate_instance("image-embedder", big_cpu, big_cpu.platform)
    assert s.types == {} and set(s.provider_names) == {("cpu", "spot"), ("cpu", "od")}


@pytest.mark.parametrize(
    ("share", "fallback", "expected"),
    [
        (100, True, [["a-s"], ["b-s"], ["a-o"], ["b-o"]]),
        (100, False, [["a-s"], ["b-s"]]),
        (0, True, [["a-o"], ["b-o"]]),
        (50, True, [["a-s", "a-o"], ["b-s", "b-o"], ["a-o"], ["b-o"]]),
    ],
)
def test_launch_chain_order(share: int, fallback: bool, expected: list[list[str]]) -> None:
    names = {(t, o): f"{t}-{o[0]}" for t in ("a", "b") for o in ("spot", "od")}
    chain = iw.launch_chain(names, ["a", "b"], share, fallback)
    assert [[s["capacityProvider"] for s in step] for step in chain] == expected


def test_the_fallback_workers_task_role_may_run_the_jobs_handed_to_it(
    stack: tuple[str, StackGraph],
) -> None:
    """A job handed to the fallback worker keeps its id (``job#image-embedder_...``) and its
    input under ``inputs/image-embedder/``: that worker's task role gets exactly those."""
    _, graph = stack
    grant = graph.named("aws:iam/rolePolicy:RolePolicy", "image-embedder-fallback-task-policy")
    assert grant.inputs["role"] == graph.named(ROLE, "image-embedder-cpu-task-role").outputs["id"]
    statements = {s["Sid"]: s for s in json.loads(grant.inputs["policy"])["Statement"]}
    assert set(statements) == {"HandedOverJobRows", "HandedOverInputs", "ListHandedOverInputs"}
    rows = statements["HandedOverJobRows"]
    keys = rows["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    assert keys == ["job#image-embedder_*"]
    assert sorted(rows["Action"]) == ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert statements["HandedOverInputs"]["Resource"][0].endswith("/inputs/image-embedder/*")


# --- the fallback worker must take the GPU worker's jobs as they are ------------------------
EMBEDDER_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "workers/image-embedder/input_schema.json").read_text()
)


def _fargate(name: str, schema: dict[str, Any], prefix: str = "ai-batch-dev") -> Any:
    """A declared FargateWorker as the validation sees it (no Pulumi resources needed)."""
    worker = object.__new__(FargateWorker)
    worker.worker_name, worker.family, worker.input_schema = name, f"{prefix}-{name}", schema
    return worker


def _check_fallback(fallback: Any) -> None:
    args = iw.InstanceWorkerArgs(platform=_platform(), fallback_worker=fallback)
    iw._validate_instance("image-embedder", args, args.platform)


def test_a_fallback_with_the_same_input_schema_on_fargate_in_this_stack_is_accepted() -> None:
    # Key order and whitespace do not matter: the schemas compare as canonical JSON.
    reordered = dict(reversed(list(EMBEDDER_SCHEMA.items())))
    assert list(reordered) != list(EMBEDDER_SCHEMA)
    _check_fallback(_fargate("image-embedder-cpu", reordered))


@pytest.mark.parametrize(
    ("fallback", "allowed"),
    [
        # The mistake this check exists for: a CPU worker that takes other input.
        (_fargate("content-analyzer", {"type": "object", "required": ["documents"]}),
         "input schema is identical"),
        # A looser schema is refused too: identity, not "accepts more", is the rule.
        (_fargate("image-embedder-cpu", {"type": "object"}), "input schema is identical"),
        (_fargate("image-embedder-cpu", EMBEDDER_SCHEMA, prefix="ai-batch-prod"),
         "declared in this stack"),
        (object.__new__(iw.InstanceWorker), "a FargateWorker"),
        ("image-embedder-cpu", "a FargateWorker"),
    ],
)  # fmt: skip
def test_a_fallback_that_could_not_take_the_jobs_stops_the_preview(
    fallback: Any, allowed: str
) -> None:
    with pytest.raises(AwsConstraintError) as err:
        _check_fallback(fallback)
    assert err.value.key == "image-embedder: fallback_worker"
    assert allowed in err.value.allowed, err.value


def test_the_example_program_with_a_mismatched_fallback_fails_under_mocks() -> None:
    """``gpu_program`` with the text worker as the image worker's fallback: the preview stops
    (under mocks, with the dev stack's settings) naming the argument and both schemas."""

    def mismatched() -> None:
        config = load_config()
        platform = BatchPlatform("platform", BatchPlatformArgs(config=config))
        text = FargateWorker("content-analyzer", FargateWorkerArgs(platform=platform))
        InstanceWorker(
            "image-embedder",
            InstanceWorkerArgs(platform=platform, fallback_worker=text),
        )

    with pytest.raises(AwsConstraintError, match="input schema is identical"):
        run_program(mismatched, stack="dev", config=stack_config("dev"))


def test_the_fallback_built_from_the_gpu_workers_folder_runs_under_its_own_name(
    stack: tuple[str, StackGraph],
) -> None:
    """``image-embedder-cpu`` is built from ``workers/image-embedder`` (whose entrypoint runs
    that folder's worker): its container names the folder in BATCH_WORKER_SOURCE so the
    runtime runs the code as ``image-embedder-cpu``; a worker built from its own folder
    carries no such variable."""
    _, graph = stack

    def environment(task: str) -> dict[str, str]:
        td = graph.named(TASK_DEF, task).inputs
        (container,) = json.loads(td["containerDefinitions"])
        return {e["name"]: e["value"] for e in container["environment"]}

    cpu = environment("image-embedder-cpu-task")
    assert cpu[Env.WORKER_NAME] == "image-embedder-cpu"
    assert cpu[Env.WORKER_SOURCE] == "image-embedder"
    assert Env.WORKER_SOURCE not in environment("image-embedder-task")
    assert Env.WORKER_SOURCE not in environment("content-analyzer-task")


def test_registration_fails_before_an_instance_worker_role_exceeds_an_iam_quota() -> None:
    """As for a FargateWorker: a task role whose declared statements exceed IAM's inline
    quota fails the program at preview, naming the role, before IAM would refuse it."""
    many = [
        iam.Statement(
            ("s3:GetObject",),
            [f"arn:aws:s3:::bucket-{i:04d}-with-a-rather-long-name/prefix/*" for i in range(200)],
            sid="ManyBuckets",
        )
    ]

    def oversized() -> None:
        platform = BatchPlatform("platform", BatchPlatformArgs(config=load_config()))
        InstanceWorker(
            "image-embedder",
            InstanceWorkerArgs(platform=platform, gpu_names=("l4",), policy_statements=many),
        )

    with pytest.raises(ValueError) as err:  # Pulumi re-raises it while registering the item
        run_program(oversized, stack="dev", config=stack_config("dev"))
    message = str(err.value)
    assert "image-embedder-registration" in message
    found = re.search(
        r"IAM role ai-batch-dev-image-embedder-task: inline policies: '(\d+) characters' is "
        r"not valid; allowed: at most 10240 characters",
        message,
    )
    assert found, message
    assert int(found.group(1)) > 10_240


def test_the_instance_worker_registration_waits_for_its_own_role_checks(
    stack: tuple[str, StackGraph],
) -> None:
    """The guard reads this worker's role policies, so the registration comes after them."""
    _, graph = stack
    deps = set(graph.named(ITEM, "image-embedder-registration").depends_on)
    assert {"image-embedder-task-policy", "image-embedder-exec-policy"} <= deps
