"""Worker registrations (the ``worker#<name>`` items the FargateWorker and InstanceWorker
components write).

Parsed into a typed, immutable view and cached briefly per Lambda execution environment:
a deploy that changes a worker is visible within ``CACHE_SECONDS``, while a burst of
requests costs one read per worker, not one per request.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from jobcontract import (
    CONTAINER_NAME,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_REUSE_IDLE_SECONDS,
    WorkerField,
)
from jobcontract.managed_instances import COMPUTE_FARGATE, COMPUTE_MANAGED_INSTANCES, launch_chain
from jobcontract.schema import SchemaError, Validator
from jobcontract.store import JobStore

CACHE_SECONDS = 30.0
# The Fargate worker's fallback step: on-demand Fargate when Spot has no capacity.
FARGATE_ON_DEMAND: tuple[dict[str, Any], ...] = (
    {"capacityProvider": "FARGATE", "weight": 1, "base": 0},
)
Strategy = tuple[dict[str, Any], ...]


class RegistrationError(ValueError):
    """A registration item is malformed (a deploy problem, never the caller's fault)."""


@dataclass(frozen=True)
class WorkerRegistration:
    name: str
    description: str
    task_definition: str
    container_name: str
    queue_url: str
    dlq_url: str
    cpu: int
    memory: int
    max_cpu: int
    max_memory: int
    max_attempts: int
    timeout_seconds: int
    max_concurrency: int
    capacity_strategy: tuple[dict[str, Any], ...]
    spot_fallback: bool
    input_schema: dict[str, Any]
    architecture: str
    validator: Validator = field(compare=False, repr=False)
    reuse_idle_seconds: int = DEFAULT_REUSE_IDLE_SECONDS
    """Warm reuse window of the worker's tasks (0 = one job per task); registrations written
    before the field existed read as the default."""
    compute: str = COMPUTE_FARGATE
    """``"managed_instances"`` for an ``InstanceWorker``; absent in a Fargate registration."""
    launch_chain: tuple[Strategy, ...] = ()
    """The registered strategies in order (Managed Instances); a Fargate worker's is
    ``(capacity_strategy,)``. ``launch_steps`` adds the Fargate on-demand fallback."""
    fallback_worker: str | None = None
    """The CPU Fargate worker that takes a job whose chain is exhausted (none for Fargate)."""
    startup_timeout_seconds: int | None = None
    """How long a dispatched task may wait for an instance (none for Fargate)."""
    network_mode: str = "awsvpc"

    @property
    def managed_instances(self) -> bool:
        return self.compute == COMPUTE_MANAGED_INSTANCES

    def launch_steps(self) -> list[list[dict[str, Any]]]:
        """The strategies the launcher walks, in order: the registered chain, plus, for a
        Fargate worker on Spot that may fall back, on-demand Fargate (the Spot fallback is a
        two-step chain). Never empty: ``[[]]`` means the plain FARGATE launch type."""
        steps = [[dict(s) for s in step] for step in self.launch_chain] or [[]]
        uses_spot = any(s.get("capacityProvider") == "FARGATE_SPOT" for s in steps[0])
        if not self.managed_instances and self.spot_fallback and uses_spot:
            steps.append([dict(s) for s in FARGATE_ON_DEMAND])
        return steps

    @property
    def family(self) -> str:
        """Task definition family (``arn:...:task-definition/<family>:<revision>``)."""
        return family_of(self.task_definition)

    def limits(self) -> dict[str, int]:
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

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> WorkerRegistration:
        try:
            schema_raw = item.get(WorkerField.INPUT_SCHEMA) or '{"type": "object"}'
            schema = json.loads(schema_raw) if isinstance(schema_raw, str) else dict(schema_raw)
            strategy_raw = item.get(WorkerField.CAPACITY_STRATEGY) or "[]"
            strategy = (
                json.loads(strategy_raw) if isinstance(strategy_raw, str) else list(strategy_raw)
            )
            return cls(
                name=str(item[WorkerField.NAME]),
                description=str(item.get(WorkerField.DESCRIPTION, "")),
                task_definition=str(item[WorkerField.TASK_DEFINITION]),
                container_name=str(item.get(WorkerField.CONTAINER_NAME) or CONTAINER_NAME),
                queue_url=str(item[WorkerField.QUEUE_URL]),
                dlq_url=str(item.get(WorkerField.DLQ_URL, "")),
                cpu=int(item[WorkerField.CPU]),
                memory=int(item[WorkerField.MEMORY]),
                max_cpu=int(item.get(WorkerField.MAX_CPU, item[WorkerField.CPU])),
                max_memory=int(item.get(WorkerField.MAX_MEMORY, item[WorkerField.MEMORY])),
                max_attempts=int(item.get(WorkerField.MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS)),
                timeout_seconds=int(item.get(WorkerField.TIMEOUT_SECONDS, 3600)),
                max_concurrency=int(item.get(WorkerField.MAX_CONCURRENCY, 10)),
                capacity_strategy=tuple(dict(s) for s in strategy),
                spot_fallback=bool(item.get(WorkerField.SPOT_FALLBACK, False)),
                input_schema=schema,
                architecture=str(item.get(WorkerField.ARCHITECTURE, "X86_64")),
                validator=Validator(schema),
                reuse_idle_seconds=int(
                    item.get(WorkerField.REUSE_IDLE_SECONDS, DEFAULT_REUSE_IDLE_SECONDS)
                ),
                **_instance_fields(item),
            )
        except (KeyError, TypeError, ValueError, SchemaError) as exc:
            raise RegistrationError(f"worker registration {item.get('pk')}: {exc}") from exc


def _instance_fields(item: dict[str, Any]) -> dict[str, Any]:
    """The Managed Instances fields of a registration, with the Fargate defaults."""
    compute = str(item.get(WorkerField.COMPUTE) or COMPUTE_FARGATE)
    if compute not in (COMPUTE_FARGATE, COMPUTE_MANAGED_INSTANCES):
        raise ValueError(f"unknown compute {compute!r}")
    timeout = item.get(WorkerField.STARTUP_TIMEOUT_SECONDS)
    return {
        "compute": compute,
        "launch_chain": tuple(tuple(step) for step in launch_chain(item)),
        "fallback_worker": str(item.get(WorkerField.FALLBACK_WORKER) or "") or None,
        "startup_timeout_seconds": int(timeout) if timeout is not None else None,
        "network_mode": str(item.get(WorkerField.NETWORK_MODE) or "awsvpc"),
    }


def family_of(task_definition: str) -> str:
    """``arn:aws:ecs:r:a:task-definition/fam:3`` or ``fam:3`` or ``fam`` -> ``fam``."""
    tail = task_definition.rsplit("/", 1)[-1]
    return tail.split(":", 1)[0]


_cache: dict[tuple[str, str], tuple[float, WorkerRegistration | None]] = {}
_list_cache: dict[str, tuple[float, list[WorkerRegistration]]] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _list_cache.clear()


def get_worker(store: JobStore, name: str) -> WorkerRegistration | None:
    key = (store.table_name, name)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    item = store.get_worker(name)
    found = WorkerRegistration.from_item(item) if item else None
    with _lock:
        _cache[key] = (now, found)
    return found


def list_workers(store: JobStore, *, fresh: bool = False) -> list[WorkerRegistration]:
    """Every registration, cached like ``get_worker`` (registrations change on deploys; a
    drain runs at every task stop and would otherwise query and parse them all each time)."""
    now = time.monotonic()
    with _lock:
        hit = _list_cache.get(store.table_name)
    if hit is not None and now - hit[0] < CACHE_SECONDS and not fresh:
        return list(hit[1])
    found = [WorkerRegistration.from_item(item) for item in store.list_workers()]
    with _lock:
        _list_cache[store.table_name] = (now, found)
        for worker in found:
            _cache[(store.table_name, worker.name)] = (now, worker)
    return list(found)


def worker_by_family(store: JobStore, family: str) -> WorkerRegistration | None:
    """The worker whose task definition has ``family`` (scheduled runs carry no job id)."""
    for fresh in (False, True):  # a miss may be a worker deployed since the cached listing
        for worker in list_workers(store, fresh=fresh):
            if worker.family == family:
                return worker
    return None
