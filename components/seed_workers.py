"""The three seed workers the stack ships with: their task sizes and the nightly schedule.

A worker's input schema lives in its folder (``workers/<name>/input_schema.json``), beside the
code that reads the input; ``FargateWorker`` picks it up from there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.fargate_worker import INPUT_SCHEMA_FILE
from jobcontract import schema as jobschema

WORKERS_DIR = Path(__file__).resolve().parents[1] / "workers"


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


# One row per worker (duplicates pairs the rows): a table of values, not repeated logic.
SEED_WORKERS: tuple[SeedWorker, ...] = (
    SeedWorker(
        name="image-alt-generator",
        description="Alt text for images (Bedrock vision model)",
        cpu=512,
        memory=1024,
        timeout_seconds=1800,
        max_attempts=3,
        max_concurrency=5,
    ),
    SeedWorker(
        name="meta-desc-generator",
        description="SEO meta descriptions for web pages",
        cpu=512,
        memory=1024,
        timeout_seconds=1800,
        max_attempts=3,
        max_concurrency=5,
    ),
    SeedWorker(
        name="content-analyzer",
        description="Topics, sentiment, readability and a summary per document",
        cpu=1024,
        memory=2048,
        timeout_seconds=3600,
        max_attempts=3,
        max_concurrency=5,
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


def input_schema(name: str) -> dict[str, Any]:
    """A seed worker's input schema, from its folder (the file FargateWorker deploys)."""
    return dict(json.loads((WORKERS_DIR / name / INPUT_SCHEMA_FILE).read_text()))


def check_schemas() -> None:
    """Fail early if a seed schema uses something the API's validator cannot enforce, or the
    scheduled input would be rejected by its own worker."""
    for worker in SEED_WORKERS:
        jobschema.check_schema(input_schema(worker.name))
    problems = jobschema.validate(dict(SCHEDULED_INPUT), input_schema(SCHEDULED_WORKER))
    if problems:
        raise ValueError(f"scheduled input does not match {SCHEDULED_WORKER}'s schema: {problems}")
