"""The worker registration record: the ``worker#<name>`` item of the jobs table.

``WorkerRegistration`` is the one home of a registration's fields (``WorkerField``) and of
their defaults. The components write it (``FargateWorker`` / ``InstanceWorker`` through
``to_dynamodb``), the handlers' cached lookup (``handlers.registry``), the launcher, the
reconciler, the local provisioner and the test fixtures read it with ``from_item``, so mypy
sees every use and a default cannot differ between the side that writes and the side that
reads.

A registration without the Managed Instances fields is a Fargate worker: compute
``"fargate"``, launch chain ``(capacity_strategy,)``, no fallback worker, no start-up timeout.
Stdlib only (the Lambda zip carries ``jobcontract/``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from jobcontract import (
    CONTAINER_NAME,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_REUSE_IDLE_SECONDS,
    JobField,
    Table,
    WorkerField,
    worker_pk,
)
from jobcontract.managed_instances import COMPUTE_FARGATE, COMPUTE_MANAGED_INSTANCES, launch_chain
from jobcontract.schema import SchemaError, Validator
from jobcontract.store import to_item

# Defaults of a field a registration may lack (written before the field existed). The
# components' argument defaults are these same values (``components.worker.args``).
DEFAULT_TIMEOUT_SECONDS: Final = 3600
DEFAULT_MAX_CONCURRENCY: Final = 10
DEFAULT_ARCHITECTURE: Final = "ARM64"  # FargateWorker's default (about 20 % cheaper)
DEFAULT_NETWORK_MODE: Final = "awsvpc"
DEFAULT_INPUT_SCHEMA: Final[Mapping[str, Any]] = {"type": "object"}
# Fixed so the item never churns on a deploy (it only feeds the by-kind index's sort key).
REGISTRATION_CREATED_AT: Final = "1970-01-01T00:00:00.000000Z"
KNOWN_COMPUTE: Final = (COMPUTE_FARGATE, COMPUTE_MANAGED_INSTANCES)

Strategy = tuple[dict[str, Any], ...]
# The Fargate worker's fallback step: on-demand Fargate when Spot has no capacity.
FARGATE_ON_DEMAND: Final[Strategy] = ({"capacityProvider": "FARGATE", "weight": 1, "base": 0},)


class RegistrationError(ValueError):
    """A registration item is malformed (a deploy problem, never the caller's fault)."""


def family_of(task_definition: str) -> str:
    """``arn:aws:ecs:r:a:task-definition/fam:3`` or ``fam:3`` or ``fam`` -> ``fam``."""
    tail = task_definition.rsplit("/", 1)[-1]
    return tail.split(":", 1)[0]


def _json(value: Any, default: Any) -> Any:
    """A field stored as JSON text (or already parsed), or ``default`` when absent/empty."""
    if not value:
        return default
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True, kw_only=True)
class WorkerRegistration:
    """One worker as the API, the launcher and the reconciler see it."""

    name: str
    task_definition: str
    """Task definition ARN with revision (jobs pin it at submit time)."""
    queue_url: str
    """The stack's launch queue (every worker's jobs go through it)."""
    cpu: int
    memory: int
    max_cpu: int
    max_memory: int
    description: str = ""
    container_name: str = CONTAINER_NAME
    dlq_url: str = ""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    capacity_strategy: Strategy = ()
    spot_fallback: bool = False
    input_schema: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_INPUT_SCHEMA))
    architecture: str = DEFAULT_ARCHITECTURE
    reuse_idle_seconds: int = DEFAULT_REUSE_IDLE_SECONDS
    """Warm reuse window of the worker's tasks (0 = one job per task)."""
    compute: str = COMPUTE_FARGATE
    """``"managed_instances"`` for an ``InstanceWorker``; absent in a Fargate registration."""
    launch_chain: tuple[Strategy, ...] = ()
    """The registered strategies in order (Managed Instances); a Fargate worker's is
    ``(capacity_strategy,)`` (set when left empty). ``launch_steps`` adds the Fargate
    on-demand fallback."""
    fallback_worker: str | None = None
    """The CPU Fargate worker that takes a job whose chain is exhausted (none for Fargate)."""
    startup_timeout_seconds: int | None = None
    """How long a dispatched task may wait for an instance (none for Fargate)."""
    gpu_count: int = 0
    gpu_names: tuple[str, ...] = ()
    network_mode: str = DEFAULT_NETWORK_MODE
    created_at: str = REGISTRATION_CREATED_AT
    validator: Validator = field(init=False, compare=False, repr=False)
    """The checked ``input_schema`` (raises ``SchemaError`` at construction if invalid)."""

    def __post_init__(self) -> None:
        if self.compute not in KNOWN_COMPUTE:
            raise ValueError(f"unknown compute {self.compute!r}")
        if not self.launch_chain and self.capacity_strategy and not self.managed_instances:
            object.__setattr__(self, "launch_chain", (self.capacity_strategy,))
        object.__setattr__(self, "validator", Validator(self.input_schema))

    @property
    def managed_instances(self) -> bool:
        return self.compute == COMPUTE_MANAGED_INSTANCES

    @property
    def family(self) -> str:
        """Task definition family (``arn:...:task-definition/<family>:<revision>``)."""
        return family_of(self.task_definition)

    def launch_steps(self) -> list[list[dict[str, Any]]]:
        """The strategies the launcher walks, in order: the registered chain, plus, for a
        Fargate worker on Spot that may fall back, on-demand Fargate (the Spot fallback is a
        two-step chain). Never empty: ``[[]]`` means the plain FARGATE launch type."""
        steps = [[dict(s) for s in step] for step in self.launch_chain] or [[]]
        uses_spot = any(s.get("capacityProvider") == "FARGATE_SPOT" for s in steps[0])
        if not self.managed_instances and self.spot_fallback and uses_spot:
            steps.append([dict(s) for s in FARGATE_ON_DEMAND])
        return steps

    def limits(self) -> dict[str, int]:
        """What ``GET /workers`` shows of the worker's sizing and retries."""
        # A chosen subset, spelled out: duplicates pairs its shape with other dict literals
        # (the launcher's LaunchState.as_item, the cost estimate), which share no rule.
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "max_cpu": self.max_cpu,
            "max_memory": self.max_memory,
            "timeout_seconds": self.timeout_seconds,
            "max_attempts": self.max_attempts,
            "max_concurrency": self.max_concurrency,
            "reuse_idle_seconds": self.reuse_idle_seconds,
        }

    # --- the item ------------------------------------------------------------------------
    def to_item(self) -> dict[str, Any]:
        """The item with plain values (``to_dynamodb`` for the wire format). Key order is
        part of the deployed item's text: keep it."""
        item: dict[str, Any] = {
            Table.PK: worker_pk(self.name),
            JobField.KIND: Table.KIND_WORKER,
            JobField.CREATED_AT: self.created_at,
            WorkerField.NAME: self.name,
            WorkerField.DESCRIPTION: self.description,
            WorkerField.TASK_DEFINITION: self.task_definition,
            WorkerField.CONTAINER_NAME: self.container_name,
            # Every worker's jobs go through the stack's one launch queue (the handlers send
            # to queue_url; message group = job id keeps jobs of all workers independent).
            WorkerField.QUEUE_URL: self.queue_url,
            WorkerField.DLQ_URL: self.dlq_url,
            WorkerField.CPU: self.cpu,
            WorkerField.MEMORY: self.memory,
            WorkerField.MAX_CPU: self.max_cpu,
            WorkerField.MAX_MEMORY: self.max_memory,
            WorkerField.MAX_ATTEMPTS: self.max_attempts,
            WorkerField.TIMEOUT_SECONDS: self.timeout_seconds,
            WorkerField.MAX_CONCURRENCY: self.max_concurrency,
            WorkerField.CAPACITY_STRATEGY: json.dumps(list(self.capacity_strategy)),
            WorkerField.SPOT_FALLBACK: self.spot_fallback,
            WorkerField.INPUT_SCHEMA: schema_json(self.input_schema),
            WorkerField.ARCHITECTURE: self.architecture,
            WorkerField.REUSE_IDLE_SECONDS: self.reuse_idle_seconds,
        }
        if self.managed_instances:
            item.update(self._instance_item())
        return item

    def _instance_item(self) -> dict[str, Any]:
        if self.startup_timeout_seconds is None:
            raise ValueError(f"worker {self.name}: Managed Instances need a start-up timeout")
        item: dict[str, Any] = {
            WorkerField.COMPUTE: self.compute,
            WorkerField.LAUNCH_CHAIN: json.dumps([list(step) for step in self.launch_chain]),
            WorkerField.STARTUP_TIMEOUT_SECONDS: self.startup_timeout_seconds,
            WorkerField.GPU_COUNT: self.gpu_count,
            WorkerField.GPU_NAMES: json.dumps(list(self.gpu_names)),
            WorkerField.NETWORK_MODE: self.network_mode,
        }
        if self.fallback_worker is not None:
            item[WorkerField.FALLBACK_WORKER] = self.fallback_worker
        return item

    def to_dynamodb(self) -> dict[str, Any]:
        """The item in DynamoDB's wire format (``{"S": ...}``, ``{"N": ...}``, ...)."""
        return to_item(self.to_item())

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> WorkerRegistration:
        """Read an item with plain values (``JobStore.get_worker``); raises
        ``RegistrationError`` naming the item when it is malformed."""
        try:
            return cls(**_common_fields(item), **_instance_fields(item))
        except (KeyError, TypeError, ValueError, SchemaError) as exc:
            raise RegistrationError(f"worker registration {item.get(Table.PK)}: {exc}") from exc


def schema_json(schema: Mapping[str, Any]) -> str:
    """The canonical text of an input schema in the item (sorted, compact)."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _common_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    cpu, memory = int(item[WorkerField.CPU]), int(item[WorkerField.MEMORY])
    strategy = _json(item.get(WorkerField.CAPACITY_STRATEGY), [])
    return {
        "name": str(item[WorkerField.NAME]),
        "description": str(item.get(WorkerField.DESCRIPTION, "")),
        "task_definition": str(item[WorkerField.TASK_DEFINITION]),
        "container_name": str(item.get(WorkerField.CONTAINER_NAME) or CONTAINER_NAME),
        "queue_url": str(item[WorkerField.QUEUE_URL]),
        "dlq_url": str(item.get(WorkerField.DLQ_URL, "")),
        "cpu": cpu,
        "memory": memory,
        "max_cpu": int(item.get(WorkerField.MAX_CPU, cpu)),
        "max_memory": int(item.get(WorkerField.MAX_MEMORY, memory)),
        "max_attempts": int(item.get(WorkerField.MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS)),
        "timeout_seconds": int(item.get(WorkerField.TIMEOUT_SECONDS, DEFAULT_TIMEOUT_SECONDS)),
        "max_concurrency": int(item.get(WorkerField.MAX_CONCURRENCY, DEFAULT_MAX_CONCURRENCY)),
        "capacity_strategy": tuple(dict(s) for s in strategy),
        "spot_fallback": bool(item.get(WorkerField.SPOT_FALLBACK, False)),
        "input_schema": dict(_json(item.get(WorkerField.INPUT_SCHEMA), DEFAULT_INPUT_SCHEMA)),
        "architecture": str(item.get(WorkerField.ARCHITECTURE) or DEFAULT_ARCHITECTURE),
        "reuse_idle_seconds": int(
            item.get(WorkerField.REUSE_IDLE_SECONDS, DEFAULT_REUSE_IDLE_SECONDS)
        ),
        "created_at": str(item.get(JobField.CREATED_AT) or REGISTRATION_CREATED_AT),
    }


def _instance_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """The Managed Instances fields, with the Fargate defaults."""
    timeout = item.get(WorkerField.STARTUP_TIMEOUT_SECONDS)
    return {
        "compute": str(item.get(WorkerField.COMPUTE) or COMPUTE_FARGATE),
        "launch_chain": tuple(tuple(step) for step in launch_chain(item)),
        "fallback_worker": str(item.get(WorkerField.FALLBACK_WORKER) or "") or None,
        "startup_timeout_seconds": int(timeout) if timeout is not None else None,
        "gpu_count": int(item.get(WorkerField.GPU_COUNT) or 0),
        "gpu_names": tuple(str(n) for n in _json(item.get(WorkerField.GPU_NAMES), [])),
        "network_mode": str(item.get(WorkerField.NETWORK_MODE) or DEFAULT_NETWORK_MODE),
    }
