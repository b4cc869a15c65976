"""Worker registrations (the ``worker#<name>`` items the FargateWorker and InstanceWorker
components write): the cached lookup of ``jobcontract.registration.WorkerRegistration``,
the record that owns the item's fields and defaults.

Parsed into the typed, immutable record and cached briefly per Lambda execution environment:
a deploy that changes a worker is visible within ``CACHE_SECONDS``, while a burst of
requests costs one read per worker, not one per request.
"""

from __future__ import annotations

import threading
import time

from jobcontract.registration import RegistrationError, WorkerRegistration, family_of
from jobcontract.store import JobStore

__all__ = [
    "CACHE_SECONDS",
    "RegistrationError",
    "WorkerRegistration",
    "clear_cache",
    "family_of",
    "get_worker",
    "list_workers",
    "worker_by_family",
]

CACHE_SECONDS = 30.0

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
