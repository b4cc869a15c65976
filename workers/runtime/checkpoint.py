"""Item results kept across attempts, so a Spot interruption resumes where it stopped.

When SIGTERM stops a job, the items :meth:`JobContext.map` already finished are stored (one
JSON object under the worker's results prefix, named on the job item). The next attempt
reads it once and ``map`` skips those items, in the same map call over the same items: the
handler runs again from the top, but finished (billed) work is not repeated. Values must
be JSON-serialisable to be kept; otherwise the job simply starts over, as without this.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Sequence
from typing import Any

FORMAT = 1


def items_digest(items: Sequence[Any]) -> str:
    """Identity of a map call's input: a checkpoint only applies to the same items."""
    text = json.dumps(list(items), sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class Checkpoint:
    """Finished items per map call (``call`` = the n-th ``map`` of the handler). Digests of
    the items are computed only when they matter (restoring, storing), not on every map."""

    def __init__(self, maps: dict[str, dict[str, Any]] | None = None) -> None:
        self._saved: dict[str, dict[str, Any]] = maps or {}  # as read: digest + items
        self._recorded: dict[str, tuple[Sequence[Any], dict[str, dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_bytes(cls, body: bytes) -> Checkpoint:
        """A stored checkpoint; an unreadable or foreign one counts as none."""
        try:
            data = json.loads(body)
        except ValueError:
            return cls()
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return cls()
        maps = data.get("maps")
        return cls(maps if isinstance(maps, dict) else {})

    def restored(
        self, call: int, items: Sequence[Any]
    ) -> dict[int, tuple[Any, dict[str, str] | None]]:
        """``index -> (value, error)`` finished earlier in this call, if its items match."""
        with self._lock:
            saved = self._saved.get(str(call))
        if not isinstance(saved, dict) or saved.get("digest") != items_digest(items):
            return {}
        out: dict[int, tuple[Any, dict[str, str] | None]] = {}
        for key, entry in (saved.get("items") or {}).items():
            if isinstance(entry, dict) and str(key).isdigit():
                out[int(key)] = (entry.get("value"), entry.get("error"))
        return out

    def record(
        self,
        call: int,
        items: Sequence[Any],
        finished: Iterable[tuple[int, Any, dict[str, str] | None]],
    ) -> None:
        """Remember this call's finished items (in memory; the runtime stores them on stop)."""
        entries = {
            str(index): ({"error": error} if error is not None else {"value": value})
            for index, value, error in finished
        }
        with self._lock:
            self._recorded[str(call)] = (items, entries)

    @property
    def item_count(self) -> int:
        with self._lock:
            maps = {**self._saved, **{c: {"items": e} for c, (_, e) in self._recorded.items()}}
        return sum(len(m.get("items") or {}) for m in maps.values())

    def to_bytes(self) -> bytes | None:
        """The stored form, or None when there is nothing to keep or it is not JSON."""
        with self._lock:
            recorded = dict(self._recorded)
            maps = dict(self._saved)
        maps.update(
            {
                call: {"digest": items_digest(items), "items": entries}
                for call, (items, entries) in recorded.items()
            }
        )
        if not any(m.get("items") for m in maps.values()):
            return None
        try:
            text = json.dumps(
                {"format": FORMAT, "maps": maps},
                ensure_ascii=False,
                separators=(",", ":"),
                allow_nan=False,
            )
        except (TypeError, ValueError):
            return None
        return text.encode()
