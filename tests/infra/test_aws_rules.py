"""The range helpers every ``aws_rules`` range rule is written with (``within``,
``whole_within``): bounds inclusive, the error naming key, value and what is allowed."""

from __future__ import annotations

import pytest

from components import aws_rules
from components.aws_rules import AwsConstraintError


@pytest.mark.parametrize("value", [1, 5, 10])
def test_within_keeps_values_in_range_bounds_included(value: int) -> None:
    assert aws_rules.within(value, 1, 10, "k", "1..10") == value


@pytest.mark.parametrize("value", [0, 11, -1])
def test_within_names_key_value_and_allowed(value: int) -> None:
    with pytest.raises(AwsConstraintError) as info:
        aws_rules.within(value, 1, 10, "fn: size", "1..10 things")
    assert (info.value.key, info.value.value, info.value.allowed) == (
        "fn: size",
        value,
        "1..10 things",
    )


@pytest.mark.parametrize("value", ["5", 5.0, None, [5]])
def test_whole_within_refuses_what_is_not_an_int(value: object) -> None:
    with pytest.raises(AwsConstraintError, match=r"1\.\.10"):
        aws_rules.whole_within(value, 1, 10, "k", "1..10")
    assert aws_rules.whole_within(5, 1, 10, "k", "1..10") == 5


@pytest.mark.parametrize(
    ("rule", "good", "bad", "allowed"),
    [
        (aws_rules.lambda_timeout, 900, 901, "1..900 seconds"),
        (aws_rules.esm_max_concurrency, 2, 1, "2..1000 (Lambda SQS scaling config)"),
        (aws_rules.stop_timeout, 120, 121, "2..120 seconds on Fargate"),
        (aws_rules.percent, 0, 101, "a whole percent 0..100"),
    ],
)
def test_range_rules_keep_their_messages(rule: object, good: int, bad: int, allowed: str) -> None:
    assert callable(rule)
    assert rule(good, "k") == good
    with pytest.raises(AwsConstraintError) as info:
        rule(bad, "k")
    assert info.value.allowed == allowed and info.value.value == bad
