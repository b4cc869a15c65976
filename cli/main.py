"""``batchctl``: the command-line client of the batch pipeline (local or deployed).

Commands: ``submit``, ``results``, ``status``, ``list``, ``logs``, ``cancel``, ``retry``,
``workers``, ``local`` (run the pipeline on this machine), and ``cost`` when ``cli/cost.py``
is present.

Endpoint, first match wins: ``--api-url``/``--api-key``; ``BATCH_API_URL``/``BATCH_API_KEY``;
``--stack NAME`` (``pulumi stack output --json --show-secrets -s NAME``: apiUrl, apiKey);
the state file of a running ``batchctl local`` (``./local-state/endpoint.json``, or the
path in ``BATCH_LOCAL_STATE``).

Exit codes (scripts can rely on them):

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success (``submit --wait``: the job SUCCEEDED, none of its items failed)
1     the job ended FAILED or CANCELLED (``submit --wait``, ``status``), also
      FAILED for its items (error ItemsFailed: more failed than it tolerates)
2     usage error: bad arguments, no endpoint configured, or a request the API
      rejected as invalid (400/409/413/422)
3     not found: job, worker, stack (or its outputs), or an API route
4     authentication: missing/wrong API key, or source IP not allowed (403)
5     endpoint unreachable (connection refused, DNS, timeout)
6     server error (HTTP 5xx)
7     finished with failed items: the job SUCCEEDED, but some of its items
      failed, within its ``--max-failed-item-share`` (``submit --wait``,
      ``status``); the result holds each item's error
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from cli import commands, uploads
from cli.api import CliError, Exit


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchctl",
        description="Submit and manage jobs of the serverless AI batch pipeline.",
        epilog="Exit codes: 0 ok, 1 job failed/cancelled, 2 usage, 3 not found, 4 auth, "
        "5 unreachable, 6 server error, 7 job succeeded with failed items (within "
        "--max-failed-item-share).",
    )
    endpoint = argparse.ArgumentParser(add_help=False)
    group = endpoint.add_argument_group("endpoint")
    group.add_argument("--api-url", help="API base URL (stage included)")
    group.add_argument("--api-key", help="API key (x-api-key)")
    group.add_argument("--stack", help="read apiUrl/apiKey from `pulumi stack output -s STACK`")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("submit", parents=[endpoint], help="submit a job")
    p.add_argument("worker")
    p.add_argument(
        "--input",
        "-i",
        default=None,
        help="JSON input file, or - for stdin (default: stdin when piped)",
    )
    p.add_argument(
        "--items",
        default=None,
        metavar="FILE",
        help="array job: a JSON array of items (file, or - for stdin), run as children of "
        "--shard-size items each; --input then holds only the fields every shard shares. A "
        ".jsonl/.ndjson file (one item per line) is always uploaded through POST /uploads "
        "and run from S3 as a manifest (up to 1 GiB)",
    )
    shards = p.add_mutually_exclusive_group()
    shards.add_argument("--shard-size", type=int, metavar="N", help="array job: items per child")
    shards.add_argument(
        "--parallelism", type=int, metavar="N", help="array job: number of children"
    )
    p.add_argument("--cpu", type=int, help="task CPU units override (e.g. 1024)")
    p.add_argument("--memory", type=int, help="task memory MiB override (e.g. 2048)")
    p.add_argument(
        "--max-failed-item-share",
        type=_share,
        metavar="SHARE",
        help="share of the job's items (0..1) that may fail with the job still SUCCEEDED "
        "(default 0: any failed item fails the job); --wait exits 7 when some failed",
    )
    p.add_argument("--idempotency-key", help="replays return the same job")
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow progress on stderr, then print the result or the error",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=0,
        help="with --wait: give up after this many seconds (0 = never)",
    )
    p.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    uploads.add_file_arguments(p)
    p.set_defaults(run=commands.submit)

    p = sub.add_parser(
        "results",
        parents=[endpoint],
        help="download a job's result (an array job: results.jsonl and summary.json)",
    )
    p.add_argument("job_id")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="directory to write to")
    p.set_defaults(run=commands.results)

    p = sub.add_parser("status", parents=[endpoint], help="show a job")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(run=commands.status)

    p = sub.add_parser("list", parents=[endpoint], help="list jobs, newest first")
    p.add_argument("--worker")
    p.add_argument(
        "--status",
        type=str.upper,
        choices=["QUEUED", "DISPATCHED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"],
    )
    p.add_argument("--limit", type=int, default=20, help="page size (1..100)")
    p.add_argument("--cursor", help="continue from a previous page's next cursor")
    p.add_argument("--all", action="store_true", help="follow cursors to the last page")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=commands.list_jobs)

    p = sub.add_parser("logs", parents=[endpoint], help="a job's worker output")
    p.add_argument("job_id")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    p.set_defaults(run=commands.logs)

    p = sub.add_parser("cancel", parents=[endpoint], help="cancel a job")
    p.add_argument("job_id")
    p.set_defaults(run=commands.cancel)

    p = sub.add_parser(
        "retry",
        parents=[endpoint],
        help="re-drive a worker's dead-letter queue into its job queue",
        description="Move messages from WORKER's dead-letter queue back to its job queue "
        "(receive, re-send with a fresh deduplication id, delete). The launcher then "
        "dispatches the jobs that are still QUEUED; jobs that ended meanwhile are skipped. "
        "Needs AWS access to the queues (local pipeline: automatic).",
    )
    p.add_argument("worker")
    p.add_argument("--max", type=int, default=0, help="move at most N messages (0 = all)")
    p.set_defaults(run=commands.retry)

    p = sub.add_parser("workers", parents=[endpoint], help="list workers and their limits")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=commands.workers)

    p = sub.add_parser(
        "local", help="run the whole pipeline on this machine (embedded AWS emulation)"
    )
    p.add_argument("--stack", default="dev", help="stack config to run (default dev)")
    p.add_argument("--port", type=int, default=8080, help="API port (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-key", help="API key to require (default: a random one)")
    p.add_argument(
        "--docker",
        action="store_true",
        help="run each task's real worker image (needs a Docker engine)",
    )
    p.add_argument("--workers", type=int, default=4, help="most worker processes at once")
    p.add_argument(
        "--sweep-interval",
        type=float,
        default=None,
        help="seconds between sweeps (default: the stack's sweepRate)",
    )
    p.add_argument("--verbose", "-v", action="store_true")
    p.set_defaults(run=commands.local_up)
    local_sub = p.add_subparsers(dest="local_command", metavar="ACTION")
    q = local_sub.add_parser("run-schedule", help="run a scheduled task now (local pipeline)")
    q.add_argument("name", help="schedule name, e.g. nightly-content-analysis")
    q.set_defaults(run=commands.local_run_schedule)
    q = local_sub.add_parser("sweep", help="run the timeout sweep now (local pipeline)")
    q.set_defaults(run=commands.local_sweep)

    if importlib.util.find_spec("cli.cost") is not None:
        cost = importlib.import_module("cli.cost")
        cost.add_parser(sub)
        if "cost" in sub.choices:  # the contract: cost.run(args) -> int
            sub.choices["cost"].set_defaults(run=cost.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0) if isinstance(exc.code, int) else Exit.USAGE
    try:
        code: int = args.run(args)
    except CliError as exc:
        print(f"batchctl: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("batchctl: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
