"""``AwsConstraintError``: what every check of ``components.aws_rules`` (and the components'
own checks) raises, naming the setting, the value given and what is allowed."""

from __future__ import annotations

from typing import TypeVar


class AwsConstraintError(ValueError):
    """A value AWS would reject (or that would break the pipeline) was given."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}: {value!r} is not valid; allowed: {allowed}")


Number = TypeVar("Number", int, float)


def within(value: Number, lo: Number, hi: Number, key: str, allowed: str) -> Number:
    """``value`` when ``lo <= value <= hi``, else ``AwsConstraintError(key, value, allowed)``:
    the shape of most range rules, written once."""
    if not lo <= value <= hi:
        raise AwsConstraintError(key, value, allowed)
    return value


def whole_within(value: object, lo: int, hi: int, key: str, allowed: str) -> int:
    """``within`` for a value that must be an ``int`` too (a component argument, which no
    type checker guarantees at run time)."""
    if not isinstance(value, int) or not lo <= value <= hi:
        raise AwsConstraintError(key, value, allowed)
    return value
