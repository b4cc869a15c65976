"""The ``batchctl`` commands. Each takes the parsed arguments and returns an exit code;
failures are raised as ``CliError`` (see ``cli.api.Exit``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from cli import uploads
from cli.api import (
    STATE_ENV,
    ApiClient,
    CliError,
    Endpoint,
    Exit,
    fetch_url,
    resolve_endpoint,
)
from cli.logs import TERMINAL, print_aws, print_local
from jobcontract import worker_of_job_id
from jobcontract.arrays import MANIFEST_SUFFIXES

FAILED_STATES = frozenset({"FAILED", "CANCELLED"})


def _endpoint(args: argparse.Namespace) -> Endpoint:
    return resolve_endpoint(
        api_url=getattr(args, "api_url", None),
        api_key=getattr(args, "api_key", None),
        stack=getattr(args, "stack", None),
    )


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(_endpoint(args))


def _out(text: str = "", stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout)


def _read_input(spec: str | None) -> Any:
    if spec is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise CliError(Exit.USAGE, "give the job input with --input FILE, or pipe it (-)")
        spec = "-"
    try:
        text = sys.stdin.read() if spec == "-" else Path(spec).read_text()
    except OSError as exc:
        raise CliError(Exit.USAGE, f"cannot read input {spec}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(Exit.USAGE, f"input {spec} is not JSON: {exc}") from None


# --- submit / status ----------------------------------------------------------------------
def _submit_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /jobs body: a job (``--input``), or an array job (``--items``: a JSON array
    inline, or a ``.jsonl``/``.ndjson`` file, always uploaded and sent as ``manifest``)."""
    body: dict[str, Any]
    if getattr(args, "items", None) is None:
        files = getattr(args, "file", None)  # --file: the input is built from the uploads
        return {"worker": args.worker, "input": None if files else _read_input(args.input)}
    if str(args.items).endswith(MANIFEST_SUFFIXES):  # uploaded, then run from S3
        body = {"worker": args.worker, "manifest": None}
    else:
        items = _read_input(args.items)
        body = {"worker": args.worker, "items": items}
    if "items" in body and not isinstance(body["items"], list):
        raise CliError(Exit.USAGE, f"--items {args.items} must hold a JSON array")
    if args.input is not None:
        body["input"] = _read_input(args.input)
    for field in ("shard_size", "parallelism"):
        if getattr(args, field, None) is not None:
            body[field] = getattr(args, field)
    return body


def submit(args: argparse.Namespace) -> int:
    files = getattr(args, "file", None)
    body = _submit_body(args)
    client = _client(args)
    if files:
        body["input"] = _files_input(args, client, files)
    if "manifest" in body:
        body["manifest"] = uploads.manifest(client, args.worker, Path(args.items), sys.stderr)
    if args.cpu is not None:
        body["cpu"] = args.cpu
    if args.memory is not None:
        body["memory"] = args.memory
    if args.max_failed_item_share is not None:
        body["max_failed_item_share"] = args.max_failed_item_share
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    status, job = client.request("POST", "/jobs", body=body, headers=headers)
    job_id = str(job["job_id"])
    if not args.wait:
        _out(job_id)
        return Exit.OK
    print(f"submitted {job_id}" + (" (replayed)" if status == 200 else ""), file=sys.stderr)
    final = wait_for(client, job_id, timeout=args.timeout, poll=args.poll, stream=sys.stderr)
    return finish(final)


def _files_input(args: argparse.Namespace, client: ApiClient, files: list[str]) -> Any:
    """``--file``: upload through POST /uploads, then the input referencing the keys (with
    ``--input``, added to its items)."""
    base = _read_input(args.input) if args.input is not None else None
    return uploads.files_input(client, args.worker, files, base, sys.stderr)


def wait_for(
    client: ApiClient, job_id: str, *, timeout: float, poll: float, stream: TextIO
) -> dict[str, Any]:
    """Poll the job until it ends, drawing a progress bar fed by its progress field."""
    bar = ProgressBar(stream)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    try:
        while True:
            _, job = client.request("GET", f"/jobs/{job_id}")
            bar.update(job)
            if job["status"] in TERMINAL:
                return dict(job)
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(
                    Exit.JOB_FAILED, f"job {job_id} still {job['status']} after {timeout:g} s"
                )
            time.sleep(poll)
    finally:
        bar.close()


def failed_items(job: dict[str, Any]) -> int:
    """How many of the job's items failed (0 when it recorded no item counts)."""
    items = job.get("items") or {}
    return int(items.get("failed") or 0)


def items_summary(job: dict[str, Any]) -> str:
    items = job.get("items") or {}
    share = job.get("max_failed_item_share") or 0
    return (
        f"{items.get('succeeded')} succeeded, {items.get('failed')} failed of "
        f"{items.get('total')} (max_failed_item_share {share:g})"
    )


def exit_code(job: dict[str, Any]) -> int:
    """The exit code a job's final state gives (``submit --wait``, ``status``)."""
    if job["status"] in FAILED_STATES:
        return Exit.JOB_FAILED
    if job["status"] == "SUCCEEDED" and failed_items(job):
        return Exit.ITEMS_FAILED
    return Exit.OK


def _print_result(job: dict[str, Any]) -> bool:
    result = job.get("result") or {}
    if not result.get("url"):
        return False
    data = fetch_url(str(result["url"]))
    try:
        _out(json.dumps(json.loads(data), indent=2))
    except ValueError:
        _out(data.decode("utf-8", "replace"))
    return True


def finish(job: dict[str, Any]) -> int:
    """Print the result (SUCCEEDED, or FAILED for its items: each item's outcome is in it)
    and the error or the failed items; exit code from the final state (``exit_code``)."""
    if job["status"] == "SUCCEEDED":
        if not _print_result(job):
            _out(json.dumps({"job_id": job["job_id"], "status": job["status"]}))
        if failed_items(job):
            print(
                f"job {job['job_id']} SUCCEEDED with failed items: {items_summary(job)}; "
                "each item's error is in the result",
                file=sys.stderr,
            )
        return exit_code(job)
    if job["status"] == "FAILED":
        _print_result(job)  # a job FAILED for its items keeps the result of the others
    error = job.get("error") or {}
    detail = error.get("message") or error.get("stop_reason") or "no error recorded"
    print(
        f"job {job['job_id']} {job['status']}: {error.get('type', job['status'].lower())}: "
        f"{detail} (attempts {job.get('attempts')})",
        file=sys.stderr,
    )
    return exit_code(job)


class ProgressBar:
    """One status line on a terminal; one line per change otherwise (logs, CI)."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last = ""

    def update(self, job: dict[str, Any]) -> None:
        progress = job.get("progress") or {}
        done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
        if total > 0:
            filled = min(self.WIDTH, self.WIDTH * done // total)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total}"
        else:
            bar = f"[{'.' * self.WIDTH}]"
        array = job.get("array")
        if array:  # one bar for the whole array job: items over every shard
            failed = int((job.get("items") or {}).get("failed") or 0)
            children = array.get("children") or {}
            ended = int(array.get("shards") or 0) - int(children.get("unfinished") or 0)
            line = f"{bar} items, {failed} failed, shards {ended}/{array.get('shards')} "
            manifest = array.get("manifest")
            if manifest and not manifest.get("validated") and job["status"] == "RUNNING":
                line += f"validating {manifest.get('validated_items')}/{total} "
            line += job["status"]
        else:
            line = f"{bar} {job['status']} attempt {job.get('attempts', 0)}"
        if line == self.last:
            return
        self.last = line
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


def fallback_summary(fallback: dict[str, Any]) -> str:
    """``status``'s line for a job handed to its CPU fallback worker (the view's ``fallback``)."""
    return (
        f"{fallback.get('worker')} (handed over from {fallback.get('from')} after attempt "
        f"{fallback.get('attempt')}: no instance capacity; at {fallback.get('at')})"
    )


def status(args: argparse.Namespace) -> int:
    _, job = _client(args).request("GET", f"/jobs/{args.job_id}")
    if args.json:
        _out(json.dumps(job, indent=2, sort_keys=True))
    else:
        rows = [
            ("job", job["job_id"]),
            ("worker", job.get("worker")),
            ("status", job["status"]),
            ("attempts", f"{job.get('attempts')}/{job.get('max_attempts')}"),
            ("created", job.get("created_at")),
            ("updated", job.get("updated_at")),
        ]
        progress = job.get("progress")
        if progress:
            rows.append(("progress", f"{progress.get('done')}/{progress.get('total')}"))
        if job.get("items"):
            rows.append(("items", items_summary(job)))
        fallback = job.get("fallback")
        if fallback:
            rows.append(("fallback", fallback_summary(fallback)))
        if job.get("error"):
            error = job["error"]
            rows.append(("error", f"{error.get('type')}: {error.get('message')}"))
        if (job.get("result") or {}).get("url"):
            rows.append(("result", job["result"]["url"]))
        for name, value in rows:
            _out(f"{name:<9} {value}")
    return exit_code(job)


def results(args: argparse.Namespace) -> int:
    """``batchctl results JOB --out DIR``: an array job's ``results.jsonl`` and
    ``summary.json``, or a job's ``result.json``, into DIR; exit code as ``status``."""
    _, job = _client(args).request("GET", f"/jobs/{args.job_id}")
    result = job.get("result") or {}
    if not result.get("url"):
        raise CliError(
            Exit.NOT_FOUND, f"job {args.job_id} is {job['status']}: it has no results to download"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"results.jsonl" if job.get("array") else "result.json": result["url"]}
    if result.get("summary_url"):
        files["summary.json"] = result["summary_url"]
    for name, url in files.items():
        size = download(str(url), out / name)
        _out(f"{out / name} ({size} bytes)")
    return exit_code(job)


def download(url: str, path: Path, chunk: int = 1024 * 1024) -> int:
    """Stream ``url`` into ``path`` (through a temporary file: never half a file)."""
    import urllib.error
    import urllib.request

    partial = path.with_name(path.name + ".part")
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, partial.open("wb") as fh:
            while data := resp.read(chunk):
                fh.write(data)
                size += len(data)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise CliError(Exit.UNREACHABLE, f"download of {path.name} failed: {exc}") from None
    partial.replace(path)
    return size


# --- list / workers -----------------------------------------------------------------------
def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def list_jobs(args: argparse.Namespace) -> int:
    client = _client(args)
    cursor = args.cursor
    jobs: list[dict[str, Any]] = []
    while True:
        query = {
            "worker": args.worker,
            "status": args.status,
            "limit": args.limit,
            "cursor": cursor,
        }
        _, page = client.request("GET", "/jobs", query=query)
        jobs += page.get("jobs") or []
        cursor = page.get("next_cursor")
        if not (args.all and cursor):
            break
    if args.json:
        _out(json.dumps({"jobs": jobs, "next_cursor": cursor}, indent=2))
        return Exit.OK
    rows = []
    for j in jobs:
        progress = j.get("progress") or {}
        done = f"{progress.get('done')}/{progress.get('total')}" if progress else ""
        rows.append(
            [
                j["job_id"],
                j.get("worker", ""),
                j["status"],
                str(j.get("attempts", "")),
                str(j.get("created_at", "")),
                done,
            ]
        )
    if rows:
        _out(_table(rows, ["JOB ID", "WORKER", "STATUS", "ATTEMPTS", "CREATED", "PROGRESS"]))
    else:
        _out("no jobs")
    if cursor:
        _out(f"next cursor: {cursor}  (batchctl list --cursor {cursor})")
    return Exit.OK


def workers(args: argparse.Namespace) -> int:
    _, body = _client(args).request("GET", "/workers")
    items = body.get("workers") or []
    limit = body.get("fargate_vcpu_limit")
    if args.json:
        _out(json.dumps(items, indent=2))
        return Exit.OK
    rows = []
    for w in items:
        limits = w.get("limits") or {}
        reuse = limits.get("reuse_idle_seconds")
        rows.append(
            [
                w["name"],
                f"{limits.get('cpu')}/{limits.get('memory')}",
                f"{limits.get('max_cpu')}/{limits.get('max_memory')}",
                str(limits.get("max_attempts", "")),
                str(limits.get("timeout_seconds", "")),
                str(limits.get("max_concurrency", "")),
                "" if reuse is None else ("off" if not reuse else f"{reuse} s"),
                str(w.get("description", "")),
            ]
        )
    headers = ["WORKER", "CPU/MEM", "MAX CPU/MEM", "ATTEMPTS", "TIMEOUT S", "MAX TASKS", "REUSE"]
    _out(_table(rows, [*headers, "DESCRIPTION"]))
    if limit is not None:
        shown = f"{limit:g} vCPUs at once, all workers together" if limit else "none"
        _out(f"Stack Fargate vCPU limit: {shown}")
    return Exit.OK


# --- cancel / logs / retry ----------------------------------------------------------------
def cancel(args: argparse.Namespace) -> int:
    _, job = _client(args).request("POST", f"/jobs/{args.job_id}/cancel")
    what = "cancelled" if job["status"] == "CANCELLED" else "cancel requested (task stopping)"
    _out(f"{job['job_id']} {what}: {job['status']}")
    return Exit.OK


def logs(args: argparse.Namespace) -> int:
    endpoint = _endpoint(args)
    client = ApiClient(endpoint)
    _, job = client.request("GET", f"/jobs/{args.job_id}")

    def job_status() -> str:
        return str(client.request("GET", f"/jobs/{args.job_id}")[1]["status"])

    if endpoint.is_local:
        logs_dir = Path(str(endpoint.local_state["logs_dir"]))
        return print_local(
            logs_dir, args.job_id, sys.stdout, follow=args.follow, job_status=job_status
        )
    session = _aws_session(endpoint)
    cluster = endpoint.stack_outputs.get("clusterArn")
    return print_aws(
        session, job, sys.stdout, cluster=cluster, follow=args.follow, job_status=job_status
    )


def _aws_session(endpoint: Endpoint) -> Any:
    """boto3 for the stack: the moto server locally, else the default credential chain in
    the API's region (taken from the execute-api URL when no region is configured)."""
    import boto3

    if endpoint.is_local:
        return _LocalSession(str(endpoint.local_state["moto_endpoint"]))
    session = boto3.session.Session()  # type: ignore[attr-defined]
    if session.region_name is None:
        match = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", endpoint.api_url)
        if match:
            session = boto3.session.Session(region_name=match.group(1))  # type: ignore[attr-defined]
    return session


class _LocalSession:
    """boto3 clients for the local pipeline's moto server."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self._session = boto3.session.Session(  # type: ignore[attr-defined]
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self.endpoint)


def retry(args: argparse.Namespace) -> int:
    endpoint = _endpoint(args)
    if endpoint.is_local:
        urls = endpoint.local_state.get("workers", {}).get(args.worker) or {}
        queue_url, dlq_url = urls.get("queue_url"), urls.get("dlq_url")
    else:
        outputs = endpoint.stack_outputs
        if not outputs:
            raise CliError(Exit.USAGE, "retry needs --stack NAME (queue URLs come from outputs)")
        if args.worker not in (outputs.get("queueUrls") or {}):
            raise CliError(Exit.NOT_FOUND, f"no worker {args.worker!r} in the stack's outputs")
        # Every worker's jobs go through the stack's one launch queue (and its one DLQ).
        queue_url = outputs.get("launchQueueUrl") or outputs["queueUrls"][args.worker]
        dlq_url = outputs.get("launchDlqUrl") or (outputs.get("dlqUrls") or {}).get(args.worker)
    if not queue_url or not dlq_url:
        raise CliError(Exit.NOT_FOUND, f"no queues known for worker {args.worker!r}")
    moved = redrive(
        _aws_session(endpoint).client("sqs"), dlq_url, queue_url, args.max, worker=args.worker
    )
    _out(
        f"moved {moved} message(s) of {args.worker} from the dead-letter queue to the launch queue"
    )
    return Exit.OK


def _job_of(message: dict[str, Any]) -> str:
    """The job a launch message is about: ``job_id`` of its body (``jobcontract.queue_message``),
    else its message group id (= the job id)."""
    try:
        body = json.loads(message.get("Body") or "{}")
    except ValueError:
        body = {}
    job_id = body.get("job_id") if isinstance(body, dict) else None
    attrs = message.get("Attributes") or {}
    return str(job_id or attrs.get("MessageGroupId") or "")


def redrive(
    sqs: Any, dlq_url: str, queue_url: str, limit: int = 0, worker: str | None = None
) -> int:
    """Receive from the DLQ, re-send to the queue with a fresh deduplication id (the old
    one may still be inside FIFO's 5-minute window), then delete from the DLQ.

    The stack has one DLQ for every worker: with ``worker``, only that worker's messages
    (job id ``<worker>_...``) move; the others are made visible again at once, untouched."""
    moved = 0
    skipped: list[str] = []
    try:
        while not limit or moved < limit:
            batch = min(10, limit - moved) if limit else 10
            messages = sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=batch,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
                MessageAttributeNames=["All"],
                VisibilityTimeout=60,  # received ones stay hidden: the loop ends when all seen
            ).get("Messages", [])
            if not messages:
                break
            for m in messages:
                if worker is not None and worker_of_job_id(_job_of(m)) != worker:
                    skipped.append(m["ReceiptHandle"])
                    continue
                if limit and moved >= limit:
                    skipped.append(m["ReceiptHandle"])
                    continue
                attrs = m.get("Attributes") or {}
                group = attrs.get("MessageGroupId") or m["MessageId"]
                dedup = f"{attrs.get('MessageDeduplicationId', m['MessageId'])}-r{int(time.time())}"
                send: dict[str, Any] = {
                    "QueueUrl": queue_url,
                    "MessageBody": m["Body"],
                    "MessageGroupId": group,
                    "MessageDeduplicationId": dedup[-128:],
                }
                if m.get("MessageAttributes"):
                    send["MessageAttributes"] = m["MessageAttributes"]
                sqs.send_message(**send)
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
                moved += 1
    finally:
        for receipt in skipped:  # other workers' messages: back in the DLQ as they were
            sqs.change_message_visibility(
                QueueUrl=dlq_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
    return moved


# --- local --------------------------------------------------------------------------------
def local_up(args: argparse.Namespace) -> int:
    from local_pipeline.pipeline import LocalPipeline, LocalPipelineError

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    for noisy in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    pipeline = LocalPipeline(
        stack=args.stack,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        max_tasks=args.workers,
        docker=args.docker,
        sweep_interval=args.sweep_interval,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    # Explicit handlers: Ctrl-C (SIGINT) and SIGTERM both mean "stop cleanly", also when the
    # process was started with SIGINT ignored (e.g. `batchctl local &` from a script).
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            pipeline.start()
        except LocalPipelineError as exc:
            raise CliError(Exit.USAGE, str(exc)) from None
        except OSError as exc:
            raise CliError(Exit.USAGE, f"cannot start the local pipeline: {exc}") from None
        _out(f"Local pipeline for stack {args.stack!r} is up.")
        _out(f"  API URL: {pipeline.api_url}")
        _out(f"  API key: {pipeline.api_key}")
        _out(f"  moto:    {pipeline.moto_endpoint}   logs: {pipeline.logs_dir}")
        _out("In another shell (batchctl also finds ./local-state/endpoint.json by itself):")
        _out(f"  export BATCH_API_URL={pipeline.api_url} BATCH_API_KEY={pipeline.api_key}")
        _out("  batchctl workers")
        _out("Ctrl-C stops everything.")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
        _out("stopping...")
    finally:
        pipeline.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _out("stopped; nothing left running.")
    return Exit.OK


def _local_endpoint() -> Endpoint:
    # Only the state file: a BATCH_API_URL pointing at AWS must not receive local calls.
    environ = {k: v for k, v in os.environ.items() if k == STATE_ENV}
    endpoint = resolve_endpoint(api_url=None, api_key=None, stack=None, environ=environ)
    if not endpoint.is_local:
        raise CliError(Exit.UNREACHABLE, "no local pipeline running (start `batchctl local`)")
    return endpoint


def local_run_schedule(args: argparse.Namespace) -> int:
    client = ApiClient(_local_endpoint())
    _, body = client.request("POST", f"/_local/schedules/{args.name}/run")
    _out(json.dumps(body, indent=2, default=str))
    return Exit.OK


def local_sweep(args: argparse.Namespace) -> int:
    client = ApiClient(_local_endpoint())
    _, body = client.request("POST", "/_local/sweep")
    _out(json.dumps(body, indent=2, default=str))
    return Exit.OK
