"""The three seed workers the stack ships with: their input schemas and task sizes.

One place that ``__main__.py`` (deployment) and tests read, so a worker's declared input
schema (checked by the API with ``jobcontract.schema``) and its size are written once. The
worker code itself lives in ``workers/<name>/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobcontract import schema as jobschema

_TEXT_LIMIT = 100_000  # characters of one page/document: fits a model context comfortably
_ITEMS_LIMIT = 500  # items per job: a job is minutes of work, not a day


IMAGE_ALT_INPUT: Mapping[str, Any] = {
    "type": "object",
    "description": "Images to describe; each by https URL or by key in the results bucket",
    "required": ["images"],
    "additionalProperties": False,
    "properties": {
        "images": {
            "type": "array",
            "minItems": 1,
            "maxItems": _ITEMS_LIMIT,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "format": "uri", "pattern": "^https://"},
                    "s3_key": {"type": "string", "minLength": 1, "pattern": "^inputs/"},
                    "context": {"type": "string", "maxLength": 2000},
                },
                "oneOf": [{"required": ["url"]}, {"required": ["s3_key"]}],
            },
        },
        "language": {"type": "string", "minLength": 2, "maxLength": 8},
    },
}

META_DESC_INPUT: Mapping[str, Any] = {
    "type": "object",
    "description": "Pages to write meta descriptions for; each with its html or text",
    "required": ["pages"],
    "additionalProperties": False,
    "properties": {
        "pages": {
            "type": "array",
            "minItems": 1,
            "maxItems": _ITEMS_LIMIT,
            "items": {
                "type": "object",
                "required": ["url"],
                "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "html": {"type": "string", "maxLength": _TEXT_LIMIT},
                    "text": {"type": "string", "maxLength": _TEXT_LIMIT},
                },
                "oneOf": [{"required": ["html"]}, {"required": ["text"]}],
            },
        },
        "max_length": {"type": "integer", "minimum": 50, "maximum": 320},
    },
}

CONTENT_ANALYZER_INPUT: Mapping[str, Any] = {
    "type": "object",
    "description": "Documents to analyse (topics, sentiment, readability, summary)",
    "required": ["documents"],
    "additionalProperties": False,
    "properties": {
        "documents": {
            "type": "array",
            "minItems": 1,
            "maxItems": _ITEMS_LIMIT,
            "items": {
                "type": "object",
                "required": ["id", "text"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "minLength": 1, "maxLength": 200},
                    "text": {"type": "string", "minLength": 1, "maxLength": _TEXT_LIMIT},
                },
            },
        },
    },
}


@dataclass(frozen=True)
class SeedWorker:
    """What ``__main__.py`` declares for one seed worker."""

    name: str
    description: str
    cpu: int
    memory: int
    timeout_seconds: int
    max_attempts: int
    max_concurrency: int
    input_schema: Mapping[str, Any]


SEED_WORKERS: tuple[SeedWorker, ...] = (
    SeedWorker(
        name="image-alt-generator",
        description="Alt text for images (Bedrock vision model)",
        cpu=512,
        memory=1024,
        timeout_seconds=1800,
        max_attempts=3,
        max_concurrency=5,
        input_schema=IMAGE_ALT_INPUT,
    ),
    SeedWorker(
        name="meta-desc-generator",
        description="SEO meta descriptions for web pages",
        cpu=512,
        memory=1024,
        timeout_seconds=1800,
        max_attempts=3,
        max_concurrency=5,
        input_schema=META_DESC_INPUT,
    ),
    SeedWorker(
        name="content-analyzer",
        description="Topics, sentiment, readability and a summary per document",
        cpu=1024,
        memory=2048,
        timeout_seconds=3600,
        max_attempts=3,
        max_concurrency=5,
        input_schema=CONTENT_ANALYZER_INPUT,
    ),
)

# The nightly scheduled run: re-analyse a fixed document set (an example of a cron job).
SCHEDULED_WORKER = "content-analyzer"
SCHEDULE = "cron(0 3 * * ? *)"
SCHEDULE_TIMEZONE = "UTC"
SCHEDULED_INPUT: Mapping[str, Any] = {
    "documents": [
        {"id": "nightly-health-check", "text": "Scheduled run: confirms the pipeline end to end."}
    ]
}


def by_name(name: str) -> SeedWorker:
    for worker in SEED_WORKERS:
        if worker.name == name:
            return worker
    raise KeyError(f"no seed worker {name!r}; known: {[w.name for w in SEED_WORKERS]}")


def check_schemas() -> None:
    """Fail early if a seed schema uses something the API's validator cannot enforce."""
    for worker in SEED_WORKERS:
        jobschema.check_schema(worker.input_schema)
    problems = jobschema.validate(dict(SCHEDULED_INPUT), by_name(SCHEDULED_WORKER).input_schema)
    if problems:
        raise ValueError(f"scheduled input does not match {SCHEDULED_WORKER}'s schema: {problems}")
