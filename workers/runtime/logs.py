"""Structured logs: one JSON object per line on stdout, so CloudWatch Logs Insights can filter
on ``job_id``/``worker``/``attempt`` without parsing free text."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO


class JsonLogger:
    """Thread-safe line-per-event JSON logger with fields bound for the whole job."""

    def __init__(self, stream: TextIO | None = None, **bound: Any) -> None:
        self._stream = stream
        self._bound: dict[str, Any] = dict(bound)
        self._lock = threading.Lock()

    def bind(self, **fields: Any) -> None:
        """Add fields (job_id, attempt...) to every later line."""
        with self._lock:
            self._bound.update(fields)

    def log(self, event: str, level: str = "INFO", **fields: Any) -> None:
        record: dict[str, Any] = {
            "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": level,
            "event": event,
        }
        with self._lock:
            record.update(self._bound)
            record.update(fields)
            line = json.dumps(record, default=str, ensure_ascii=False)
            stream = self._stream or sys.stdout
            stream.write(line + "\n")
            stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        self.log(event, "INFO", **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log(event, "WARNING", **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log(event, "ERROR", **fields)
