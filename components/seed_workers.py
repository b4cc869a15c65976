"""The three seed workers the stack ships with: their task sizes and their schedules (a
nightly job and a weekly array job).

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
from jobcontract.arrays import RequestRejected
from jobcontract.scheduled import ScheduledArray, plan_array

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


@dataclass(frozen=True)
class SeedSchedule:
    """What ``__main__.py`` declares for one scheduled run (a ``ScheduledTask``)."""

    name: str
    worker: str
    schedule: str
    input: Mapping[str, Any]
    array: ScheduledArray | None = None  # run as an array job: ``input`` is what shards share
    timezone: str = "UTC"
    description: str = ""  # default: ScheduledTask's ("Runs worker <worker> (<name>)")


# The pages the weekly run refreshes (inline: all of its overrides stay far below ECS's
# 8,192 characters; a bigger set would be a manifest under inputs/meta-desc-generator/).
WEEKLY_PAGES: tuple[Mapping[str, str], ...] = tuple(
    {"url": f"https://example.com/{slug}", "text": text}
    for slug, text in (
        ("", "Example Domain. This domain is for use in illustrative examples in documents."),
        ("pricing", "Pricing. Pay per job: Fargate seconds, Lambda requests and storage only."),
        ("docs", "Documentation. Submit a job, wait for it and download its merged results."),
        ("blog", "Blog. Notes on running AI batch work on serverless containers cheaply."),
        ("about", "About us. A small team building batch pipelines on AWS for content teams."),
        ("contact", "Contact. Write to us for support, partnerships or a demo of the service."),
    )
)

SEED_SCHEDULES: tuple[SeedSchedule, ...] = (
    # Nightly: re-analyse a fixed document set (an example of a cron job: one job).
    SeedSchedule(
        name="nightly-content-analysis",
        worker="content-analyzer",
        schedule="cron(0 3 * * ? *)",
        input={
            "documents": [
                {
                    "id": "nightly-health-check",
                    "text": "Scheduled run: confirms the pipeline end to end.",
                }
            ]
        },
    ),
    # Weekly, Monday 04:30 UTC: the site's meta descriptions as an array job, two pages a
    # shard (three children on the worker's slots, merged into one results.jsonl); one page
    # in four may fail with the run still SUCCEEDED.
    SeedSchedule(
        name="weekly-meta-descriptions",
        worker="meta-desc-generator",
        schedule="cron(30 4 ? * MON *)",
        description="Array job: meta descriptions of the site's pages, 2 a shard (weekly)",
        input={"max_length": 155},
        array=ScheduledArray(
            items=[dict(page) for page in WEEKLY_PAGES], shard_size=2, max_failed_item_share=0.25
        ),
    ),
)


def by_name(name: str) -> SeedWorker:
    for worker in SEED_WORKERS:
        if worker.name == name:
            return worker
    raise KeyError(f"no seed worker {name!r}; known: {[w.name for w in SEED_WORKERS]}")


def input_schema(name: str) -> dict[str, Any]:
    """A seed worker's input schema, from its folder (the file FargateWorker deploys)."""
    return dict(json.loads((WORKERS_DIR / name / INPUT_SCHEMA_FILE).read_text()))


def check_schemas() -> None:
    """Fail early if a seed schema uses something the API's validator cannot enforce, or a
    scheduled run would be rejected by its own worker (an array run: by the API's checks,
    ``jobcontract.scheduled.plan_array``, which ``ScheduledTask`` repeats at preview)."""
    for worker in SEED_WORKERS:
        jobschema.check_schema(input_schema(worker.name))
    for seed in SEED_SCHEDULES:
        schema = input_schema(seed.worker)
        if seed.array is not None:
            try:
                plan_array(seed.worker, schema, dict(seed.input), seed.array.request())
            except RequestRejected as exc:
                raise ValueError(f"schedule {seed.name}: {exc.code}: {exc.message}") from exc
            continue
        problems = jobschema.validate(dict(seed.input), schema)
        if problems:
            raise ValueError(
                f"schedule {seed.name}: input does not match {seed.worker}: {problems}"
            )
