"""``FargateWorker``: everything one AI worker needs. Declaring one is all it takes to add a worker.

What it makes, for a worker ``<name>`` whose code lives in ``workers/<name>/`` (``Dockerfile``
required):
- an ECR repository (scan on push, AES256, lifecycle policy keeping the last N images) and the
  image built from ``workers/<name>/Dockerfile`` (build context: the repository root, so the
  image can copy ``workers/runtime`` and ``jobcontract``) for the task's CPU architecture,
  pushed with pulumi-docker; the task definition pins it **by digest**;
- a log group with the platform's retention; a Fargate task definition (``awsvpc``, runtime
  platform, validated cpu/memory pair, ``stopTimeout`` 120 s so a Spot interruption can save
  progress, read-only root filesystem with a writable ``/tmp``, secrets through ``secrets``);
- an execution role (pull from its repository, write its log group, read only its secrets) and
  a task role (only its own job rows via ``dynamodb:LeadingKeys``, only its own S3 prefixes,
  plus the statements it declares, e.g. ``bedrock:InvokeModel`` on named models);
- its registration: the ``worker#<name>`` item in the jobs table (what the API and launcher
  read), whose ``queue_url`` / ``dlq_url`` are the stack's one launch queue
  (``ControlPlane.launch_queue``, ``<prefix>-launch.fifo``): a worker has no queue, trigger or
  DLQ alarm of its own. It adds no policy to the control-plane roles: ``ControlPlane`` grants
  once per stack (RunTask on ``<prefix>-*`` families in this cluster, PassRole on the roles
  under this stack's path ``/aibatch/<prefix>/workers/``, SendMessage on the launch queue), so
  their policies do not grow with the number of workers. Both roles live under that path
  (changing a role's path replaces the role; the logical names stay the same).

Idle cost: only the ECR storage of the kept images (``ecr.keepImages``, default 3; about
$0.013/month for a seed-sized image, see ``batchctl cost``); nothing polls, alarms or runs for a
worker until a job arrives. A task costs Fargate per-second pricing (ARM and Spot are the cheap
corner); with warm reuse (``reuse_idle_seconds``) a task that finished a job takes the next one
of its worker instead of a new task paying its start-up and one-minute minimum again.

Where things live: the arguments and their defaults in ``components.worker.args``; the checks
(pure, no Pulumi) in ``components.worker.validation``; the image, roles, task definition and
registration steps in ``components.worker`` (shared with ``InstanceWorker``); what a
registration holds in ``jobcontract.registration``.

Usage (in ``__main__.py``)::

    FargateWorker("image-alt-generator", FargateWorkerArgs(
        platform=platform, description="Alt text for images", cpu=1024, memory=2048,
        secrets={"OPENAI_KEY": "arn:aws:secretsmanager:...:secret:openai-AbCdEf"},
        policy_statements=iam.bedrock_invoke(model_id, region, account_id)))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi

from components.config import StackConfig
from components.iam import WORKER_TABLE_ACTIONS
from components.worker.args import FargateWorkerArgs
from components.worker.base import WorkerComponent
from components.worker.image import source_fingerprint
from components.worker.registration import RecordOf, fargate_record
from components.worker.task import FARGATE_TASK, READONLY_ROOT_ENV, STOP_TIMEOUT_SECONDS
from components.worker.validation import (
    INPUT_SCHEMA_FILE,
    REPO_ROOT,
    RESERVED_ENV,
    Validated,
    looks_secret,
    secret_resource_arn,
    validate,
)

# Importable from here as before (``__main__.py``, tests, docs, ``seed_workers``).
__all__ = [
    "INPUT_SCHEMA_FILE",
    "READONLY_ROOT_ENV",
    "REPO_ROOT",
    "RESERVED_ENV",
    "STOP_TIMEOUT_SECONDS",
    "WORKER_TABLE_ACTIONS",
    "FargateWorker",
    "FargateWorkerArgs",
    "capacity_strategy",
    "looks_secret",
    "secret_resource_arn",
    "source_fingerprint",
]


def capacity_strategy(config: StackConfig, spot_share: int) -> list[dict[str, Any]]:
    """ECS capacity provider strategy for a Spot percentage, by the stack's own rule
    (``StackConfig.capacity_strategy``), so a worker override and the default agree."""
    shares = dataclasses.replace(config, spot_share=spot_share).capacity_strategy()
    return [
        {"capacityProvider": s.capacity_provider, "weight": s.weight, "base": s.base}
        for s in shares
    ]


class FargateWorker(WorkerComponent):
    """One worker: image, task definition, roles and registration."""

    def __init__(
        self, name: str, args: FargateWorkerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:FargateWorker", name, None, opts)
        v = validate(name, args, args.platform.name_prefix)
        self._settings(name, args, v)
        self._image(name, args, v, expire_untagged=True)
        self._roles(name, args, v)
        self._task_definition(name, args, v, FARGATE_TASK)
        self._register(name, args, self._record(name, args, v), ledgers=[self.iam_ledger])
        self.register_outputs(
            {
                "queue_url": self.launch_queue.queue.url,
                "dlq_url": self.launch_queue.dlq.url,
                "task_definition_arn": self.task_definition.arn,
                "repository_url": self.repository.repository_url,
                "image": self.image.repo_digest,
            }
        )

    def _settings(self, name: str, args: FargateWorkerArgs, v: Validated) -> None:
        """What the worker resolves from its args and the stack's defaults."""
        platform = args.platform
        self._common_settings(name, args, v)
        self.capacity_provider_strategy = (
            capacity_strategy(platform.config, args.spot_share)
            if args.spot_share is not None
            else [dict(s) for s in platform.capacity_provider_strategy()]
        )
        self.spot_fallback = (
            args.spot_fallback if args.spot_fallback is not None else platform.config.spot_fallback
        )

    def _record(self, name: str, args: FargateWorkerArgs, v: Validated) -> RecordOf:
        return fargate_record(
            name,
            args,
            v,
            capacity_strategy=self.capacity_provider_strategy,
            spot_fallback=self.spot_fallback,
            reuse_idle_seconds=self.reuse_idle_seconds,
        )
