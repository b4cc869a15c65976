"""AWS rules of schedules, checked before anything is sent to AWS: EventBridge Scheduler's
expression, time zone, flexible window and retry policy, and an EventBridge rule's schedule.
Importable from ``components.aws_rules`` too."""

from __future__ import annotations

import re
from functools import lru_cache

from components.aws_rules_error import AwsConstraintError, within

# AWS rule: ScheduleExpression is at(yyyy-mm-ddThh:mm:ss), rate(value unit) or a six-field
# cron(minutes hours day-of-month month day-of-week year) in which one of day-of-month /
# day-of-week must be '?'.
_AT = re.compile(r"^at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)$")
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\(([^()]+)\)$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/\-#L W]+$")


def schedule_expression(expr: str, key: str = "schedule") -> str:
    expr = expr.strip()
    allowed = (
        "at(yyyy-mm-ddThh:mm:ss), rate(N minute[s]|hour[s]|day[s]) or "
        "cron(min hour day-of-month month day-of-week year) with '?' in one day field"
    )
    if m := _RATE.match(expr):
        n, unit = int(m.group(1)), m.group(2)
        if n < 1 or (n == 1) != (not unit.endswith("s")):
            raise AwsConstraintError(key, expr, allowed + " (1 takes a singular unit)")
        return expr
    if m := _AT.match(expr):
        _y, mo, d, h, mi, s = (int(g) for g in m.groups())
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 60):
            raise AwsConstraintError(key, expr, allowed)
        return expr
    if m := _CRON.match(expr):
        fields = m.group(1).split()
        if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
            raise AwsConstraintError(key, expr, allowed + " (six fields)")
        dom, dow = fields[2], fields[4]
        if (dom == "?") == (dow == "?"):
            raise AwsConstraintError(key, expr, allowed + " (exactly one of day fields is '?')")
        _cron_range(fields[0], 0, 59, key, expr)
        _cron_range(fields[1], 0, 23, key, expr)
        return expr
    raise AwsConstraintError(key, expr, allowed)


def _cron_range(field: str, lo: int, hi: int, key: str, expr: str) -> None:
    for part in re.split(r"[,/\-]", field):
        if part.isdigit() and not lo <= int(part) <= hi:
            raise AwsConstraintError(key, expr, f"values {lo}..{hi} in that field")


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def timezone(name: str, key: str = "timezone") -> str:
    # AWS rule: ScheduleExpressionTimezone is an IANA time zone name.
    if name not in _zones() and name != "UTC":
        raise AwsConstraintError(key, name, "an IANA time zone such as UTC or Europe/Berlin")
    return name


# AWS rule: FlexibleTimeWindow MaximumWindowInMinutes is 1..1440 when the mode is FLEXIBLE.
def flexible_window(minutes: int | None, key: str = "flexibleWindowMinutes") -> int | None:
    if minutes is not None and not 1 <= minutes <= 1440:
        raise AwsConstraintError(key, minutes, "None (OFF) or 1..1440 minutes")
    return minutes


# AWS rule: Scheduler RetryPolicy: MaximumRetryAttempts 0..185, MaximumEventAgeInSeconds 60..86400.
def scheduler_retry(attempts: int, max_age_seconds: int, key: str = "retry") -> tuple[int, int]:
    return (
        within(attempts, 0, 185, f"{key}.attempts", "0..185"),
        within(max_age_seconds, 60, 86_400, f"{key}.maxEventAgeSeconds", "60..86400"),
    )


# AWS rule: an EventBridge *rule* ScheduleExpression is rate(...) or cron(...) only (at() is
# EventBridge Scheduler syntax), and the finest rate is one minute.
def event_rule_schedule(expr: str, key: str = "schedule") -> str:
    expr = expr.strip()
    if expr.startswith("at("):
        raise AwsConstraintError(key, expr, "rate(...) or cron(...) for an EventBridge rule")
    return schedule_expression(expr, key)
