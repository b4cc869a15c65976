"""The registration cache: a drain at every task stop must not query and parse every
registration each time, and a worker deployed since the cached listing is still found."""

from __future__ import annotations

from typing import Any

import pytest

from handlers import registry


class CountingStore:
    """The part of ``JobStore`` the registry reads, counting listings."""

    table_name = "jobs"

    def __init__(self, families: list[str]) -> None:
        self.families = families
        self.listings = 0

    def list_workers(self) -> list[dict[str, Any]]:
        self.listings += 1
        return [
            {
                "name": family,
                "task_definition": f"arn:aws:ecs:r:1:task-definition/{family}:1",
                "queue_url": "https://sqs/q",
                "cpu": 512,
                "memory": 1024,
            }
            for family in self.families
        ]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    registry.clear_cache()
    yield
    registry.clear_cache()


def test_a_listing_is_reused_within_the_cache_window() -> None:
    store = CountingStore(["a", "b"])
    first = registry.list_workers(store)  # type: ignore[arg-type]
    again = registry.list_workers(store)  # type: ignore[arg-type]
    assert [w.name for w in first] == [w.name for w in again] == ["a", "b"]
    assert store.listings == 1
    registry.list_workers(store, fresh=True)  # type: ignore[arg-type]
    assert store.listings == 2


def test_a_worker_deployed_after_the_cached_listing_is_found_by_family() -> None:
    store = CountingStore(["a"])
    registry.list_workers(store)  # type: ignore[arg-type]
    store.families.append("new")
    found = registry.worker_by_family(store, "new")  # type: ignore[arg-type]
    assert found is not None and found.name == "new"
    assert registry.worker_by_family(store, "absent") is None  # type: ignore[arg-type]
