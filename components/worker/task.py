"""A worker's task definition: environment, the one container, and the ECS TaskDefinition,
shared by ``FargateWorker`` (``requiresCompatibilities: [FARGATE]``, ``awsvpc``) and
``InstanceWorker`` (``[MANAGED_INSTANCES]``, GPUs as a resource requirement)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

import jobcontract
from components import aws_rules
from components.worker.validation import Validated
from jobcontract import Env

if TYPE_CHECKING:
    from components.worker.args import FargateWorkerArgs

STOP_TIMEOUT_SECONDS = jobcontract.TASK_STOP_TIMEOUT_SECONDS  # the runtime sizes model calls by it
# With a read-only root filesystem, point caches and temp files at the writable /tmp volume.
READONLY_ROOT_ENV: Mapping[str, str] = {
    "TMPDIR": "/tmp",
    "XDG_CACHE_HOME": "/tmp/.cache",
    "PYTHONDONTWRITEBYTECODE": "1",
}


@dataclass(frozen=True)
class TaskShape:
    """What differs between the Fargate and the Managed Instances task definition."""

    requires_compatibilities: Sequence[str]
    network_mode: str
    gpu_count: int = 0


FARGATE_TASK = TaskShape(requires_compatibilities=("FARGATE",), network_mode="awsvpc")


def worker_environment(
    name: str, args: FargateWorkerArgs, reuse_idle_seconds: int
) -> dict[str, pulumi.Input[str]]:
    """The container's plain environment: what the runtime reads, then the worker's own."""
    platform = args.platform
    return {
        Env.STACK: pulumi.get_stack(),
        Env.JOBS_TABLE: platform.jobs_table.name,
        Env.RESULTS_BUCKET: platform.results_bucket.bucket,
        Env.WORKER_NAME: name,
        **_worker_source(name, args),
        Env.WORKER_TIMEOUT_SECONDS: str(args.timeout_seconds),
        # A scheduled run records its own job from these (no registration read).
        Env.WORKER_MAX_ATTEMPTS: str(args.max_attempts),
        Env.JOB_TTL_DAYS: str(platform.config.job_ttl_days),
        Env.MODEL_BACKEND: "bedrock",
        Env.MODEL_ID: platform.config.bedrock_model_id,
        Env.LOG_LEVEL: platform.config.log_level,
        Env.REUSE_IDLE_SECONDS: str(reuse_idle_seconds),
        # A task that ends its last job frees its slot and asks the launcher for a drain.
        Env.LAUNCH_QUEUE_URL: platform.functions.launch_queue.queue.url,
        **(READONLY_ROOT_ENV if args.readonly_root_filesystem else {}),
        **dict(args.environment),
    }


def _worker_source(name: str, args: FargateWorkerArgs) -> dict[str, str]:
    """``BATCH_WORKER_SOURCE`` when the code comes from another worker's folder: the image's
    entrypoint names that folder's worker, and the runtime runs it as ``name``."""
    folder = PurePath(args.source_dir).name if args.source_dir else name
    return {Env.WORKER_SOURCE: folder} if folder != name else {}


def container_definition(
    args: FargateWorkerArgs,
    environment: Mapping[str, pulumi.Input[str]],
    image_digest: pulumi.Input[str],
    log_group_name: pulumi.Input[str],
    region: pulumi.Input[str],
    gpu_count: int,
) -> dict[str, Any]:
    readonly = args.readonly_root_filesystem
    container: dict[str, Any] = {
        "name": jobcontract.CONTAINER_NAME,
        "image": image_digest,
        "essential": True,
        # AWS rule: Fargate caps stopTimeout at 120 s; Spot (Fargate or an instance) gives a
        # two-minute warning after SIGTERM: stop in time to save progress.
        "stopTimeout": aws_rules.stop_timeout(STOP_TIMEOUT_SECONDS),
        "readonlyRootFilesystem": readonly,
        "mountPoints": (
            [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}]
            if readonly
            else []
        ),
        "environment": [{"name": k, "value": environment[k]} for k in sorted(environment)],
        "secrets": [{"name": k, "valueFrom": arn} for k, arn in sorted(args.secrets.items())],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group_name,
                "awslogs-region": region,
                "awslogs-stream-prefix": "job",
                "mode": "non-blocking",
            },
        },
    }
    if gpu_count:
        # AWS rule: GPUs are a container resourceRequirement {"type": "GPU", "value": "<n>"}
        # (ECS API ResourceRequirement; "Specifying GPUs in an Amazon ECS task definition");
        # the agent pins that many physical GPUs to the container.
        container["resourceRequirements"] = [{"type": "GPU", "value": str(gpu_count)}]
    return container


def task_definition(
    name: str,
    v: Validated,
    args: FargateWorkerArgs,
    container: Mapping[str, Any],
    roles: tuple[aws.iam.Role, aws.iam.Role],
    shape: TaskShape,
    *,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource],
) -> aws.ecs.TaskDefinition:
    """``<name>-task`` (``roles``: execution role, task role)."""
    execution_role, task_role = roles
    return aws.ecs.TaskDefinition(
        f"{name}-task",
        family=v.family,
        # AWS rule: Compatibility enum EC2 | FARGATE | EXTERNAL | MANAGED_INSTANCES (ECS API).
        requires_compatibilities=list(shape.requires_compatibilities),
        network_mode=shape.network_mode,
        cpu=str(v.cpu),
        memory=str(v.memory),
        runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
            operating_system_family="LINUX", cpu_architecture=v.architecture
        ),
        execution_role_arn=execution_role.arn,
        task_role_arn=task_role.arn,
        container_definitions=pulumi.Output.json_dumps([dict(container)]),
        volumes=(
            [aws.ecs.TaskDefinitionVolumeArgs(name="tmp")]
            if args.readonly_root_filesystem
            else None
        ),
        # Jobs are pinned to the revision current at submit time: keep old revisions
        # ACTIVE (AWS cannot run new tasks from an INACTIVE revision). Revisions are free.
        skip_destroy=True,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
