"""The DynamoDB wire format of the jobs table's items: a small (de)serializer for the
low-level client (``to_attr``/``from_attr``, ``to_item``/``from_item``), and what an item can
hold as is (``storable``). Numbers come back as ``int`` when integral, else ``float`` (no
``Decimal`` leaks to callers); no boto3 import, so it is cheap on a cold start."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Item = dict[str, Any]


def to_attr(value: Any) -> dict[str, Any]:
    """One Python value -> DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        if isinstance(value, float) and (value != value or value in (float("inf"), -float("inf"))):
            raise ValueError("NaN and infinity cannot be stored")
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attr(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attr(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__}")


def from_attr(attr: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value -> Python value."""
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        text = str(value)
        if any(c in text for c in ".eE"):
            number = float(text)
            return int(number) if number.is_integer() and "e" not in text.lower() else number
        return int(text)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [from_attr(v) for v in value]
    if kind == "B":
        return bytes(value)
    if kind == "SS":
        return set(value)
    if kind == "NS":
        return {from_attr({"N": v}) for v in value}
    raise TypeError(f"unknown attribute type {kind}")


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_attr(v) for k, v in values.items()}


def from_item(item: Mapping[str, Any]) -> Item:
    return {k: from_attr(v) for k, v in item.items()}


def storable(value: Any, depth: int = 0) -> bool:
    """Whether DynamoDB can hold ``value`` as is (number range, nesting depth); otherwise
    the input goes to S3 like a large one."""
    if depth > 30:
        return False
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return abs(value) < 10**38
    if isinstance(value, float):
        return value == 0 or 1e-128 < abs(value) < 1e125
    if isinstance(value, dict):
        return all(k and storable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(storable(v, depth + 1) for v in value)
    return False


def old_item(exc: Exception) -> Item | None:
    """The item a failed conditional write returned (``ReturnValuesOnConditionCheckFailure``)."""
    raw = getattr(exc, "response", {}).get("Item")
    return from_item(raw) if raw else None
