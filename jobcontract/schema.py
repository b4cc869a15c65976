"""A small, dependency-free JSON Schema subset validator for worker inputs.

The Lambda zip carries no third-party code, so job inputs are checked with this module. It
enforces a deliberately small subset; a schema using any other keyword is rejected by
:func:`check_schema` (called at deploy time by the FargateWorker component and when a worker
schema is loaded), so a schema is never silently half-enforced.

Semantics follow JSON Schema draft 2020-12 for the supported keywords: ``integer`` accepts
integral floats, booleans are never numbers, ``pattern`` is an unanchored search, ``enum`` /
``const`` compare with JSON equality (``1 != true``). ``format`` supports ``uri`` only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

SUPPORTED_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "uniqueItems",
        "format",
        "oneOf",
        "anyOf",
        "allOf",
    }
)
# Annotations: allowed, never affect validation.
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated"}
)
TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")
FORMATS = frozenset({"uri"})
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]*$")


class SchemaError(ValueError):
    """The schema itself uses something this validator cannot enforce (or is malformed)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def check_schema(schema: Any) -> None:
    """Raise ``SchemaError`` listing every unsupported keyword or malformed value."""
    problems: list[str] = []
    _check(schema, "#", problems)
    if problems:
        raise SchemaError(problems)


def validate(instance: Any, schema: Mapping[str, Any]) -> list[str]:
    """Errors of ``instance`` against ``schema`` (checked first), each ``<json path>: msg``."""
    check_schema(schema)
    errors: list[str] = []
    _validate(instance, schema, "$", errors)
    return errors


class Validator:
    """A checked schema, validated once and reused for many instances."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        check_schema(schema)
        self.schema = schema

    def errors(self, instance: Any) -> list[str]:
        errors: list[str] = []
        _validate(instance, self.schema, "$", errors)
        return errors

    def is_valid(self, instance: Any) -> bool:
        return not self.errors(instance)


# --- schema checking ----------------------------------------------------------------------
def _is_nonneg_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check(schema: Any, where: str, problems: list[str]) -> None:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, Mapping):
        problems.append(f"{where}: a schema must be an object or a boolean")
        return
    for key, value in schema.items():
        at = f"{where}/{key}"
        if key in ANNOTATIONS:
            continue
        if key not in SUPPORTED_KEYWORDS:
            problems.append(f"{at}: unsupported keyword {key!r}")
        elif key == "type":
            names = value if isinstance(value, list) else [value]
            if not names or not all(isinstance(n, str) and n in TYPES for n in names):
                problems.append(f"{at}: must be one of {list(TYPES)} or a list of them")
        elif key == "properties":
            if not isinstance(value, Mapping):
                problems.append(f"{at}: must be an object")
            else:
                for name, sub in value.items():
                    _check(sub, f"{at}/{name}", problems)
        elif key == "required":
            if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
                problems.append(f"{at}: must be a list of strings")
        elif key in ("additionalProperties", "items"):
            _check(value, at, problems)
        elif key == "enum":
            if not isinstance(value, list):
                problems.append(f"{at}: must be a list")
        elif key in ("minLength", "maxLength", "minItems", "maxItems"):
            if not _is_nonneg_int(value):
                problems.append(f"{at}: must be a non-negative integer")
        elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if not _is_number(value):
                problems.append(f"{at}: must be a number")
        elif key == "uniqueItems":
            if not isinstance(value, bool):
                problems.append(f"{at}: must be a boolean")
        elif key == "pattern":
            if not isinstance(value, str):
                problems.append(f"{at}: must be a string")
            else:
                try:
                    _pattern(value)
                except re.error as exc:
                    problems.append(f"{at}: invalid regular expression ({exc})")
        elif key == "format":
            if value not in FORMATS:
                problems.append(f"{at}: unsupported format {value!r} (supported: uri)")
        elif key in ("oneOf", "anyOf", "allOf"):
            if not isinstance(value, list) or not value:
                problems.append(f"{at}: must be a non-empty list of schemas")
            else:
                for i, sub in enumerate(value):
                    _check(sub, f"{at}/{i}", problems)


@lru_cache(maxsize=256)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


# --- instance validation ------------------------------------------------------------------
def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _has_type(value: Any, name: str) -> bool:
    actual = _type_of(value)
    if name == "number":
        return actual in ("integer", "number")
    if name == "integer":
        return actual == "integer" or (
            actual == "number" and math.isfinite(value) and float(value).is_integer()
        )
    return actual == name


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: booleans differ from numbers, 1 == 1.0, containers compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _path(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{base}.{key}"
    return f"{base}[{key!r}]"


def _validate(value: Any, schema: Any, path: str, errors: list[str]) -> None:
    if schema is True:
        return
    if schema is False:
        errors.append(f"{path}: no value is allowed here")
        return
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_has_type(value, n) for n in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {_type_of(value)}")
            return
    if "enum" in schema and not any(json_equal(value, e) for e in schema["enum"]):
        errors.append(f"{path}: must be one of {schema['enum']!r}")
    if "const" in schema and not json_equal(value, schema["const"]):
        errors.append(f"{path}: must equal {schema['const']!r}")
    kind = _type_of(value)
    if kind == "string":
        _validate_string(value, schema, path, errors)
    elif kind in ("integer", "number"):
        _validate_number(value, schema, path, errors)
    elif kind == "array":
        _validate_array(value, schema, path, errors)
    elif kind == "object":
        _validate_object(value, schema, path, errors)
    for sub in schema.get("allOf", ()):
        _validate(value, sub, path, errors)
    if "anyOf" in schema and not any(_ok(value, s, path) for s in schema["anyOf"]):
        errors.append(f"{path}: matches none of anyOf")
    if "oneOf" in schema:
        matches = sum(1 for s in schema["oneOf"] if _ok(value, s, path))
        if matches != 1:
            errors.append(f"{path}: must match exactly one of oneOf (matched {matches})")


def _ok(value: Any, schema: Any, path: str) -> bool:
    errors: list[str] = []
    _validate(value, schema, path, errors)
    return not errors


def _validate_string(value: str, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: shorter than {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']} characters")
    if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
        errors.append(f"{path}: does not match pattern {schema['pattern']!r}")
    if schema.get("format") == "uri" and not _URI.match(value):
        errors.append(f"{path}: not a URI")


def _validate_number(value: float, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: less than minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: greater than maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        errors.append(f"{path}: must be greater than {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        errors.append(f"{path}: must be less than {schema['exclusiveMaximum']}")


def _validate_array(
    value: list[Any], schema: Mapping[str, Any], path: str, errors: list[str]
) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    if schema.get("uniqueItems"):
        for i in range(len(value)):
            if any(json_equal(value[i], value[j]) for j in range(i)):
                errors.append(f"{path}: items are not unique")
                break
    if "items" in schema:
        for i, item in enumerate(value):
            _validate(item, schema["items"], _path(path, i), errors)


def _validate_object(
    value: Mapping[str, Any], schema: Mapping[str, Any], path: str, errors: list[str]
) -> None:
    for name in schema.get("required", ()):
        if name not in value:
            errors.append(f"{_path(path, name)}: is required")
    properties = schema.get("properties", {})
    for name, item in value.items():
        if name in properties:
            _validate(item, properties[name], _path(path, name), errors)
        elif "additionalProperties" in schema:
            extra = schema["additionalProperties"]
            if extra is False:
                errors.append(f"{_path(path, name)}: unexpected property")
            else:
                _validate(item, extra, _path(path, name), errors)
