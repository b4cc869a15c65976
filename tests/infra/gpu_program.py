"""A stack program that declares the example GPU worker (NOT in the default stacks: the GPU
quota of a new account is often 0). Evaluated under mocks with dev's and prod's settings by
``test_instance_worker.py``; the README's "GPU workers" section shows the same lines.
``declare`` returns the workers by name (``test_nodes.py`` reads their ``nodes``)."""

from __future__ import annotations

from components.config import load_config
from components.fargate_worker import FargateWorker, FargateWorkerArgs
from components.instance_worker import InstanceWorker, InstanceWorkerArgs
from components.platform import BatchPlatform, BatchPlatformArgs
from components.worker.base import WorkerComponent


def program() -> None:
    declare()


def declare() -> dict[str, WorkerComponent]:
    """The program's platform and workers; the workers by name."""
    config = load_config()
    platform = BatchPlatform("platform", BatchPlatformArgs(config=config))
    text = FargateWorker("content-analyzer", FargateWorkerArgs(platform=platform))
    # The CPU worker the GPU worker falls back to when no instance capacity is found: the same
    # code and input schema (workers/image-embedder/), on Fargate.
    cpu = FargateWorker(
        "image-embedder-cpu",
        FargateWorkerArgs(
            platform=platform, source_dir="workers/image-embedder", cpu=2048, memory=4096,
            timeout_seconds=3600,
        ),
    )  # fmt: skip
    gpu = InstanceWorker(
        "image-embedder",
        InstanceWorkerArgs(
            platform=platform,
            description="Image embeddings on a GPU (L4, then A10G, then T4)",
            gpu_count=1,
            gpu_names=("l4", "a10g", "t4"),
            cpu=4096,
            memory=14336,
            timeout_seconds=1800,
            fallback_worker=cpu,
        ),
    )
    return {w.worker_name: w for w in (text, cpu, gpu)}
