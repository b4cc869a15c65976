"""Process entry point of every worker image, and the one documented way to run a worker
locally::

    python -m workers.runtime.run --worker content-analyzer

Environment (``jobcontract.Env``): ``BATCH_JOBS_TABLE``, ``BATCH_RESULTS_BUCKET``,
``BATCH_JOB_ID`` + ``BATCH_JOB_ATTEMPT`` (absent for scheduled runs, which read
``BATCH_SCHEDULED_INPUT``), optional ``BATCH_WORKER_TIMEOUT_SECONDS``,
``BATCH_HEARTBEAT_INTERVAL_SECONDS``, ``BATCH_MODEL_ID`` / ``BATCH_MODEL_BACKEND``,
``BATCH_TASK_ARN``; ``AWS_ENDPOINT_URL`` points boto3 at a local emulator. The exit code is
one of ``workers.runtime.exit_codes``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from jobcontract import Env
from workers.runtime import exit_codes
from workers.runtime.lifecycle import run_worker
from workers.runtime.loader import WorkerNotFound, load_worker
from workers.runtime.logs import JsonLogger


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.runtime.run", description=__doc__)
    parser.add_argument(
        "--worker",
        default=os.environ.get(Env.WORKER_NAME),
        help=f"worker (folder) name; default ${Env.WORKER_NAME}",
    )
    parser.add_argument(
        "--workers-dir",
        type=Path,
        default=None,
        help="folder holding <worker>/main.py (default: this checkout's workers/)",
    )
    args = parser.parse_args(argv)
    if not args.worker:
        parser.error(f"--worker or {Env.WORKER_NAME} is required")
    try:
        definition = load_worker(args.worker, args.workers_dir)
    except WorkerNotFound as exc:
        JsonLogger(worker=args.worker).error("worker_not_found", message=str(exc))
        return exit_codes.CONFIG
    return run_worker(definition)


if __name__ == "__main__":
    sys.exit(main())
