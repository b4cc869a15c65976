"""The one JSON log schema of the project, and its only writer.

Every Lambda handler (``handlers._aws.log``) and every worker (``workers.runtime.logs``)
writes its lines through :class:`JsonLogger`: one JSON object per line on stdout, so
CloudWatch Logs Insights can query every field and Lambda's log-level filtering can read the
level. Standard library only: this module is in every Lambda zip and worker image.

A line is ``{"timestamp", "level", "event", <bound fields>, <fields>}``. Job state changes are
written by ``JobStore`` as event :data:`TRANSITION_EVENT` carrying :attr:`LogField.JOB_ID` and
:attr:`LogField.STATUS` (the new status); the dashboard's query is built from these names.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from jobcontract import Env


class LogField:
    """Field names of a log line (the schema), shared by the writer and every reader."""

    # Some are spelled as JobField's (a reader joins lines to rows by them), but they name a
    # log line's fields, not an item's: two records, one class each (duplicates pairs them).

    TIMESTAMP: Final = "timestamp"
    LEVEL: Final = "level"
    EVENT: Final = "event"
    JOB_ID: Final = "job_id"
    WORKER: Final = "worker"
    ATTEMPT: Final = "attempt"
    STATUS: Final = "status"  # on a transition line: the status the job just entered
    # On a transition line: the status it left (the allowed ones, comma-separated, when the
    # write accepted several); absent on creation.
    FROM_STATUS: Final = "from_status"


SCHEMA_FIELDS: Final = (LogField.TIMESTAMP, LogField.LEVEL, LogField.EVENT)
TRANSITION_EVENT: Final = "job_transition"

# AWS rule: Lambda's application log levels, most detailed first, are TRACE, DEBUG, INFO, WARN,
# ERROR, FATAL; a line whose "level" is missing or not one of these, or whose "timestamp" is not
# RFC 3339, is treated as INFO, so a function set to WARN or ERROR drops it. Lambda docs,
# "Log-level filtering":
# https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html and
# LoggingConfig.ApplicationLogLevel:
# https://docs.aws.amazon.com/lambda/latest/api/API_LoggingConfig.html
LEVELS: Final = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
# Python's spellings, accepted from callers and from config, written as Lambda's.
LEVEL_ALIASES: Final = {"WARNING": "WARN", "CRITICAL": "FATAL"}
DEFAULT_LEVEL: Final = "INFO"
_RANK: Final = {name: rank for rank, name in enumerate(LEVELS)}

# One lock for every logger of the process: they share stdout, so lines never interleave.
_WRITE_LOCK = threading.Lock()


def level_name(value: str) -> str | None:
    """Lambda's spelling of a level name (case-insensitive, aliases mapped); None if unknown."""
    upper = value.upper()
    upper = LEVEL_ALIASES.get(upper, upper)
    return upper if upper in _RANK else None


def threshold() -> str:
    """The least severe level written, from ``BATCH_LOG_LEVEL`` (INFO when unset or unknown)."""
    return level_name(os.environ.get(Env.LOG_LEVEL, "")) or DEFAULT_LEVEL


def rfc3339_now() -> str:
    """UTC with microseconds and a ``Z``, e.g. ``2024-11-02T16:51:31.587199Z`` (RFC 3339)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JsonLogger:
    """Thread-safe line-per-event JSON logger, with fields bound for every later line.

    ``stream`` defaults to the process's stdout at the time of each write (so a test's
    capture and Lambda's redirection both see it). Lines below ``BATCH_LOG_LEVEL`` are not
    written; an unknown level is written as INFO, as Lambda would read it.
    """

    def __init__(self, stream: TextIO | None = None, **bound: Any) -> None:
        self._stream = stream
        self._bound: dict[str, Any] = dict(bound)

    def bind(self, **fields: Any) -> None:
        """Add fields (job_id, attempt...) to every later line."""
        with _WRITE_LOCK:
            self._bound.update(fields)

    def log(self, event: str, level: str = DEFAULT_LEVEL, **fields: Any) -> None:
        name = level_name(level) or DEFAULT_LEVEL
        if _RANK[name] < _RANK[threshold()]:
            return
        record: dict[str, Any] = {
            LogField.TIMESTAMP: rfc3339_now(),
            LogField.LEVEL: name,
            LogField.EVENT: event,
        }
        with _WRITE_LOCK:
            for key, value in (*self._bound.items(), *fields.items()):
                # A field may not replace the schema's own: Lambda reads level and timestamp.
                record[f"field_{key}" if key in SCHEMA_FIELDS else key] = value
            line = json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":"))
            stream = self._stream or sys.stdout
            stream.write(line + "\n")
            stream.flush()

    def debug(self, event: str, **fields: Any) -> None:
        self.log(event, "DEBUG", **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log(event, "INFO", **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log(event, "WARN", **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log(event, "ERROR", **fields)


# The process-wide logger of code that has no logger of its own (handlers, JobStore), looked
# up at each call: a host that runs handlers in-process may replace it (tests send it to a file).
DEFAULT = JsonLogger()


def log(level: str, event: str, **fields: Any) -> None:
    """One line through :data:`DEFAULT` (the handlers' ``_aws.log`` calls this)."""
    DEFAULT.log(event, level, **fields)
