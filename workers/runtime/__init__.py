"""The worker runtime: what every worker image runs around its handler.

    from workers.runtime import JobContext, worker

    @worker(name="content-analyzer")
    def handle(ctx: JobContext) -> dict[str, object]:
        results = ctx.map(analyze, ctx.input["documents"], concurrency=4)
        return {"documents": [...]}

Run with ``python -m workers.runtime.run --worker <name>`` (see ``run.py``); lifecycle and
exit codes: ``lifecycle.py`` and ``exit_codes.py``.
"""

from workers.runtime.context import (
    ItemResult,
    JobContext,
    JobFatalError,
    PermanentError,
    StopRequested,
    error_summary,
)
from workers.runtime.definition import WorkerDefinition, worker
from workers.runtime.lifecycle import run_worker
from workers.runtime.model import (
    BedrockClient,
    ImageInput,
    ModelClient,
    ModelError,
    ModelUnavailableError,
    RetryPolicy,
    model_client_from_env,
)

__all__ = [
    "BedrockClient",
    "ImageInput",
    "ItemResult",
    "JobContext",
    "JobFatalError",
    "ModelClient",
    "ModelError",
    "ModelUnavailableError",
    "PermanentError",
    "RetryPolicy",
    "StopRequested",
    "WorkerDefinition",
    "error_summary",
    "model_client_from_env",
    "run_worker",
    "worker",
]
