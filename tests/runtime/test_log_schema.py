"""The one JSON log schema: what Lambda's log-level filtering reads (a level among its names,
an RFC 3339 timestamp), written the same by the handlers and the worker runtime, and the
``BATCH_LOG_LEVEL`` threshold applied by both."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers import _aws
from jobcontract import Env
from jobcontract.logs import LEVELS, SCHEMA_FIELDS, LogField
from workers.runtime.logs import JsonLogger

# RFC 3339 date-time in UTC with a fraction, as Lambda's own example writes it
# ("2024-11-02T16:51:31.587199Z").
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3,6}Z$")


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def handler_lines(capsys: pytest.CaptureFixture[str], *calls: tuple[str, str]) -> list[Any]:
    capsys.readouterr()
    for level, event in calls:
        _aws.log(level, event, job_id="echo_x")
    return lines(capsys.readouterr().out)


def worker_lines(*calls: tuple[str, str]) -> list[dict[str, Any]]:
    stream = io.StringIO()
    logger = JsonLogger(stream, worker="echo")
    for method, event in calls:
        getattr(logger, method)(event, job_id="echo_x")
    return lines(stream.getvalue())


def assert_lambda_readable(record: dict[str, Any]) -> None:
    assert record[LogField.LEVEL] in LEVELS, record
    stamp = record[LogField.TIMESTAMP]
    assert RFC3339_UTC.match(stamp), stamp
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60


def test_handler_lines_carry_lambda_level_names_and_rfc3339_timestamp(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(Env.LOG_LEVEL, "DEBUG")
    out = handler_lines(capsys, ("DEBUG", "d"), ("INFO", "i"), ("WARNING", "w"), ("ERROR", "e"))
    assert [r[LogField.LEVEL] for r in out] == ["DEBUG", "INFO", "WARN", "ERROR"]
    for record in out:
        assert_lambda_readable(record)
        assert "time" not in record and "ts" not in record
    assert list(out[0])[:3] == list(SCHEMA_FIELDS)


def test_worker_lines_carry_the_same_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(Env.LOG_LEVEL, "DEBUG")
    out = worker_lines(("debug", "d"), ("info", "i"), ("warning", "w"), ("error", "e"))
    assert [r[LogField.LEVEL] for r in out] == ["DEBUG", "INFO", "WARN", "ERROR"]
    for record in out:
        assert_lambda_readable(record)
        assert record["worker"] == "echo" and record[LogField.JOB_ID] == "echo_x"
        assert "ts" not in record


def test_both_writers_write_identical_field_sets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(Env.LOG_LEVEL, raising=False)
    (from_handler,) = handler_lines(capsys, ("INFO", "same"))
    (from_worker,) = worker_lines(("info", "same"))
    from_worker.pop("worker")  # bound by the worker runtime, the one intended difference
    assert set(from_handler) == set(from_worker)


@pytest.mark.parametrize(
    ("setting", "written"),
    [
        (None, ["INFO", "WARN", "ERROR"]),
        ("DEBUG", ["DEBUG", "INFO", "WARN", "ERROR"]),
        ("WARN", ["WARN", "ERROR"]),
        ("WARNING", ["WARN", "ERROR"]),  # Python's spelling: same threshold
        ("ERROR", ["ERROR"]),
        ("nonsense", ["INFO", "WARN", "ERROR"]),
    ],
)
def test_log_level_threshold_applies_to_handlers_and_workers(
    setting: str | None,
    written: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if setting is None:
        monkeypatch.delenv(Env.LOG_LEVEL, raising=False)
    else:
        monkeypatch.setenv(Env.LOG_LEVEL, setting)
    out = handler_lines(capsys, ("DEBUG", "d"), ("INFO", "i"), ("WARNING", "w"), ("ERROR", "e"))
    assert [r[LogField.LEVEL] for r in out] == written
    out = worker_lines(("debug", "d"), ("info", "i"), ("warning", "w"), ("error", "e"))
    assert [r[LogField.LEVEL] for r in out] == written


def test_fields_cannot_replace_the_schema_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda reads level and timestamp: a caller's field of the same name is kept aside."""
    monkeypatch.delenv(Env.LOG_LEVEL, raising=False)
    stream = io.StringIO()
    JsonLogger(stream, level="custom", event="bound").error("boom", timestamp=1.5)
    (record,) = lines(stream.getvalue())
    assert record[LogField.LEVEL] == "ERROR" and RFC3339_UTC.match(record[LogField.TIMESTAMP])
    assert record[LogField.EVENT] == "boom"
    assert record["field_timestamp"] == 1.5 and record["field_level"] == "custom"
    assert record["field_event"] == "bound"
