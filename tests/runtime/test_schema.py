"""jobcontract.schema agrees with the reference `jsonschema` library on the subset it supports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobcontract.schema import SchemaError, Validator, check_schema, validate

ROOT = Path(__file__).resolve().parents[2]

# Shapes like the seed workers' inputs, exercising every supported keyword.
SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "required": ["items"],
        "additionalProperties": False,
        "properties": {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 4,
                "items": {
                    "type": "object",
                    "required": ["id", "url"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "string", "minLength": 1, "maxLength": 8},
                        "url": {"type": "string", "pattern": "^https?://"},
                        "lang": {"enum": ["en", "de", "fr"]},
                    },
                },
            },
            "max_chars": {"type": "integer", "minimum": 50, "maximum": 300},
        },
    },
    {
        "type": "object",
        "required": ["pages"],
        "properties": {
            "pages": {"type": "array", "items": {"type": ["string", "null"]}, "uniqueItems": True},
            "mode": {"const": "fast"},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        },
        "additionalProperties": {"type": "boolean"},
    },
    {
        "type": "object",
        "properties": {
            "target": {
                "oneOf": [
                    {"type": "string", "maxLength": 3},
                    {"type": "integer", "minimum": 0},
                    {"type": "string", "pattern": "^a"},
                ]
            },
            "alt": {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 2}]},
            "all": {"allOf": [{"type": "number"}, {"maximum": 10}]},
            "flag": {"type": "boolean"},
        },
    },
]


def _seed_schemas() -> list[dict[str, Any]]:
    """Input schemas that seed workers ship as JSON files, when they have landed."""
    found = []
    for path in sorted(ROOT.glob("workers/*/*schema*.json")):
        schema = json.loads(path.read_text())
        if "format" not in json.dumps(schema):
            found.append(schema)
    return found


def _keys(schema: Any) -> list[str]:
    out: list[str] = []
    if isinstance(schema, dict):
        out += list(schema.get("properties", {}))
        for v in schema.values():
            out += _keys(v)
    elif isinstance(schema, list):
        for v in schema:
            out += _keys(v)
    return out


def _values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    keys = sorted(set(_keys(schema))) or ["x"]
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 400),
        st.floats(-2, 400, allow_nan=False),
        st.sampled_from([0.5, 1.0, 10.0, 0, 1]),
        st.sampled_from(["", "en", "de", "fast", "abc", "abcd", "http://x", "ftp://y", "a"]),
        st.text(max_size=10),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(st.sampled_from([*keys, "zz"]), children, max_size=5),
        ),
        max_leaves=25,
    )


ALL = SCHEMAS + _seed_schemas()


@pytest.mark.parametrize("schema", ALL, ids=lambda s: str(sorted(s.get("properties", {}))))
def test_same_verdict_as_jsonschema(schema: dict[str, Any]) -> None:
    reference = jsonschema.Draft202012Validator(schema)
    ours = Validator(schema)
    seen = {"valid": 0, "invalid": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_values(schema))
    def check(instance: Any) -> None:
        expected = reference.is_valid(instance)
        errors = ours.errors(instance)
        assert (not errors) == expected, (instance, errors)
        seen["valid" if expected else "invalid"] += 1

    check()
    assert seen["invalid"] > 0


@pytest.mark.parametrize("schema", ALL, ids=lambda s: str(sorted(s.get("properties", {}))))
def test_valid_examples_accepted(schema: dict[str, Any]) -> None:
    # The random instances are mostly invalid; make sure valid ones are accepted too.
    examples = {
        0: [{"items": [{"id": "a", "url": "https://x", "lang": "en"}], "max_chars": 100}],
        1: [{"pages": ["a", None], "extra": True, "ratio": 0.5, "mode": "fast"}],
        2: [{"target": 5, "alt": None, "all": 3, "flag": False}, {"target": "abcd"}],
    }.get(SCHEMAS.index(schema) if schema in SCHEMAS else -1, [])
    for example in examples:
        assert jsonschema.Draft202012Validator(schema).is_valid(example)
        assert validate(example, schema) == []


def test_errors_name_the_json_path() -> None:
    errors = validate({"items": [{"id": "", "url": "nope", "extra": 1}]}, SCHEMAS[0])
    assert "$.items[0].id: shorter than 1 characters" in errors
    assert any(e.startswith("$.items[0].url: does not match") for e in errors)
    assert "$.items[0].extra: unexpected property" in errors
    assert validate({}, SCHEMAS[0]) == ["$.items: is required"]


def test_uri_format() -> None:
    schema = {"type": "string", "format": "uri"}
    assert validate("https://example.com/a.png", schema) == []
    assert validate("s3://bucket/key", schema) == []
    assert validate("not a uri", schema) != []
    assert validate("/relative/path", schema) != []


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "patternProperties": {"a": {}}},
        {"properties": {"x": {"$ref": "#/defs/x"}}},
        {"type": "strng"},
        {"format": "email"},
        {"pattern": "("},
        {"minLength": -1},
        {"oneOf": []},
        {"items": [{"type": "string"}]},
        ["not", "a", "schema"],
    ],
)
def test_unenforceable_schemas_are_rejected(schema: Any) -> None:
    with pytest.raises(SchemaError):
        check_schema(schema)


def test_annotations_are_allowed() -> None:
    check_schema({"$schema": "x", "title": "t", "description": "d", "default": 1, "examples": []})
