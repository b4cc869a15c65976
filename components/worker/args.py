"""The arguments of the worker components: ``FargateWorkerArgs`` and ``InstanceWorkerArgs``.

Plain frozen dataclasses (no Pulumi resource is made here). A default that a registration
also holds is the registration record's own (``jobcontract.registration``), so a worker
declared with defaults and a registration read without the field agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi

from jobcontract import DEFAULT_MAX_ATTEMPTS, DEFAULT_REUSE_IDLE_SECONDS
from jobcontract.registration import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TIMEOUT_SECONDS,
)

if TYPE_CHECKING:
    from components import iam
    from components.fargate_worker import FargateWorker
    from components.platform import BatchPlatform

DEFAULT_STORAGE_GIB = 100  # our default: CUDA base images and model weights are large


@dataclass(frozen=True, kw_only=True)
class FargateWorkerArgs:
    """Arguments of ``FargateWorker``. Only ``platform`` is required."""

    platform: BatchPlatform
    """The shared platform (cluster, table, bucket, control-plane functions). Required."""
    description: str = ""
    """One line shown by ``GET /workers``. Default ``""``. Example: ``"Alt text for images"``."""
    source_dir: str | None = None
    """Folder holding the worker's ``Dockerfile`` (relative to the repository root or
    absolute). Default ``workers/<name>``."""
    cpu: int = 1024
    """Default task cpu units (Fargate pair with ``memory``). Default ``1024`` (1 vCPU)."""
    memory: int = 2048
    """Default task memory in MiB. Default ``2048``. Example: ``4096`` with ``cpu=2048``."""
    architecture: str = DEFAULT_ARCHITECTURE
    """``"ARM64"`` (default: about 20 % cheaper, Spot-capable) or ``"X86_64"``."""
    max_cpu: int | None = None
    """Largest cpu a job may ask for. Default ``None`` (= ``cpu``: no per-job override)."""
    max_memory: int | None = None
    """Largest memory a job may ask for. Default ``None`` (= ``memory``)."""
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    """Run time after which a job fails (worker stops itself; the sweep enforces it).
    Default ``3600``; allowed 60..86400."""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """Runs per job before it is FAILED (Spot interruptions and crashes retry). Default ``3``;
    allowed 1..10."""
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Most tasks of this worker at once (the launcher holds back beyond it). Default ``10``."""
    reuse_idle_seconds: int | None = None
    """Warm reuse: seconds a task that finished a job waits for this worker's next job before
    it exits (0..3600; ``0`` = one job per task). Default ``None``:
    ``jobcontract.DEFAULT_REUSE_IDLE_SECONDS`` (30 s, about a task's start-up, so waiting costs
    no more than a new task would). The stack setting ``taskReuse: false`` makes it 0 for every
    worker. The worker's code needs no change either way."""
    spot_share: int | None = None
    """Percent of tasks on Fargate Spot (0..100). Default ``None``: the platform's default."""
    spot_fallback: bool | None = None
    """Retry on on-demand Fargate when Spot has no capacity. Default ``None``: the platform's
    default."""
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Plain environment variables. Default ``{}``. Names that look like secrets (KEY, TOKEN,
    SECRET, PASSWORD...) are refused: use ``secrets``. Example: ``{"BATCH_MODEL_ID": "..."}``."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Env var -> Secrets Manager secret ARN or SSM parameter ARN, injected by ECS at start;
    the execution role may read exactly these. Default ``{}``. Example:
    ``{"NOTION_TOKEN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:notion-AbCdEf"}``.
    A secret encrypted with a customer-managed KMS key also needs ``kms:Decrypt`` (not granted)."""
    policy_statements: Sequence[iam.Statement] = ()
    """Extra task-role statements (``components.iam.Statement``, which refuses wildcard
    actions and ``Resource: "*"`` on scoped actions). Default none. Example:
    ``iam.bedrock_invoke("amazon.nova-lite-v1:0", region, account_id)``."""
    input_schema: Mapping[str, Any] | None = None
    """JSON schema of a job's ``input`` (checked by the API). Default ``None``: the worker
    folder's ``input_schema.json`` (so the schema lives beside the code that reads the input),
    or ``{"type": "object"}`` when the folder has none."""
    keep_images: int | None = None
    """Images the ECR lifecycle policy keeps (1..1000). Default ``None``: the stack's
    ``ecr.keepImages``."""
    base_image: str | None = None
    """``BASE_IMAGE`` build argument for the Dockerfile. Default ``None`` (Dockerfile default).
    Example: ``"public.ecr.aws/docker/library/python:3.13-slim"``."""
    readonly_root_filesystem: bool = True
    """Mount the container's root filesystem read-only (``/tmp`` stays writable). Default
    ``True``; turn off only for a tool that must write elsewhere."""


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


def reuse_idle_seconds(args: FargateWorkerArgs, task_reuse: bool) -> int:
    """The warm-reuse window in effect: 0 when the stack turns reuse off (``taskReuse:
    false``), else the worker's own or ``jobcontract.DEFAULT_REUSE_IDLE_SECONDS``."""
    if not task_reuse:
        return 0
    if args.reuse_idle_seconds is not None:
        return args.reuse_idle_seconds
    return DEFAULT_REUSE_IDLE_SECONDS
