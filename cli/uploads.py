"""``batchctl submit WORKER --file a.png --file b.png``: local files into a job, no AWS credentials.

``POST /uploads`` answers one presigned S3 POST form per file; each file is sent to S3 with
that form (``multipart/form-data``, streamed, with a progress bar on stderr); then the job's
input references the keys: each key becomes ``{"s3_key": KEY}`` in the worker's input array
whose items take an ``s3_key`` (``images`` for image-alt-generator and image-embedder), after
the items of ``--input`` if one is given too. Standard library only, like the rest of the CLI.
"""

from __future__ import annotations

import argparse
import http.client
import mimetypes
import re
import secrets
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from cli.api import ApiClient, CliError, Exit
from jobcontract import MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES
from jobcontract.arrays import MANIFEST_CONTENT_TYPE, MAX_MANIFEST_BYTES, count_lines

CHUNK = 256 * 1024
S3_ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")
S3_ERROR_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")


def add_file_arguments(parser: argparse.ArgumentParser) -> None:
    """``--file`` on ``submit`` (repeatable)."""
    parser.add_argument(
        "--file",
        "-f",
        action="append",
        default=None,
        metavar="PATH",
        help="upload a local file through POST /uploads (no AWS credentials needed) and "
        "reference it in the input, e.g. images[].s3_key; repeat for more files",
    )


def file_list_property(schema: Mapping[str, Any]) -> str | None:
    """The input property whose items reference an uploaded object by ``s3_key``."""
    for name, prop in (schema.get("properties") or {}).items():
        items = prop.get("items") if isinstance(prop, Mapping) else None
        if isinstance(items, Mapping) and "s3_key" in (items.get("properties") or {}):
            return str(name)
    return None


def _worker_schema(client: ApiClient, worker: str) -> Mapping[str, Any]:
    _, body = client.request("GET", "/workers")
    for entry in body.get("workers", []):
        if entry.get("name") == worker:
            schema: Mapping[str, Any] = entry.get("input_schema") or {}
            return schema
    raise CliError(Exit.NOT_FOUND, f"no worker named {worker!r} (batchctl workers lists them)")


def _check_files(paths: Sequence[str]) -> list[Path]:
    files = [Path(p) for p in paths]
    for f in files:
        _check_file(f, "--file", MAX_UPLOAD_BYTES, "uploads are")
    return files


def _check_file(path: Path, option: str, max_bytes: int, what: str) -> None:
    """``path`` is a file of 1..``max_bytes`` bytes, else a usage error naming ``option``."""
    if not path.is_file():
        raise CliError(Exit.USAGE, f"{option} {path}: no such file")
    size = path.stat().st_size
    if size == 0 or size > max_bytes:
        raise CliError(Exit.USAGE, f"{option} {path}: {size} bytes; {what} 1..{max_bytes} bytes")


def files_input(
    client: ApiClient, worker: str, paths: Sequence[str], base: Any, stream: TextIO
) -> dict[str, Any]:
    """The job input: ``base`` (or ``{}``) with every uploaded file's key appended."""
    job_input: dict[str, Any] = dict(base) if isinstance(base, dict) else {}
    if base is not None and not isinstance(base, dict):
        raise CliError(Exit.USAGE, "with --file, --input must be a JSON object")
    prop = file_list_property(_worker_schema(client, worker))
    if prop is None:
        raise CliError(
            Exit.USAGE, f"{worker}'s input takes no uploaded files (no list of s3_key items)"
        )
    files = _check_files(paths)
    keys = upload_files(client, worker, files, stream)
    job_input[prop] = [*(job_input.get(prop) or []), *({"s3_key": k} for k in keys)]
    return job_input


def manifest(client: ApiClient, worker: str, path: Path, stream: TextIO) -> dict[str, Any]:
    """``--items FILE.jsonl``: count its items (lines, as the API counts them), upload it as
    ``application/x-ndjson`` with a progress bar; the ``manifest`` of the POST /jobs body."""
    _check_file(path, "--items", MAX_MANIFEST_BYTES, "a manifest is")
    with path.open("rb") as fh:
        count = count_lines(fh.read)
    (key,) = upload_files(client, worker, [path], stream, MANIFEST_CONTENT_TYPE)
    return {"s3_key": key, "items": count}


def upload_files(
    client: ApiClient,
    worker: str,
    files: Sequence[Path],
    stream: TextIO,
    content_type: str | None = None,
) -> list[str]:
    """Upload every file (forms asked for in batches of the API's per-call limit); the keys."""
    keys: list[str] = []
    for start in range(0, len(files), MAX_UPLOAD_FILES):
        batch = files[start : start + MAX_UPLOAD_FILES]
        body = {
            "worker": worker,
            "files": [
                {
                    "name": f.name,
                    "size": f.stat().st_size,
                    "content_type": content_type or _content_type(f),
                }
                for f in batch
            ],
        }
        _, answer = client.request("POST", "/uploads", body=body)
        for path, form in zip(batch, answer["uploads"], strict=True):
            bar = UploadBar(stream, path.name, int(form["size"]))
            try:
                post_form(str(form["url"]), form["fields"], path, form["content_type"], bar)
            except CliError:
                bar.close(ok=False)
                raise
            bar.close()
            keys.append(str(form["key"]))
    return keys


def _content_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def _multipart(
    fields: Mapping[str, str], filename: str, content_type: str, boundary: str
) -> tuple[bytes, bytes]:
    """The form's bytes before and after the file's content (S3 wants ``file`` last)."""
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    quoted = filename.replace('"', "_")
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head, f"\r\n--{boundary}--\r\n".encode()


def post_form(
    url: str,
    fields: Mapping[str, str],
    path: Path,
    content_type: str,
    bar: UploadBar | None = None,
    timeout: float = 300.0,
) -> None:
    """POST one presigned form with the file streamed in chunks; S3's refusal as CliError."""
    boundary = "batchctl" + secrets.token_hex(12)
    head, tail = _multipart(fields, path.name, content_type, boundary)
    size = path.stat().st_size
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.netloc, timeout=timeout)
    try:
        conn.putrequest("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + size + len(tail)))
        conn.endheaders()
        conn.send(head)
        for chunk in _chunks(path):
            conn.send(chunk)
            if bar is not None:
                bar.advance(len(chunk))
        conn.send(tail)
        resp = conn.getresponse()
        answer = resp.read()
    except OSError as exc:
        raise CliError(Exit.UNREACHABLE, f"upload of {path.name} failed: {exc}") from None
    finally:
        conn.close()
    if resp.status >= 300:
        raise s3_error(resp.status, answer, path.name)


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def s3_error(status: int, body: bytes, name: str) -> CliError:
    """S3's XML error as a CliError (``EntityTooLarge``, ``AccessDenied``, expired form...)."""
    code = S3_ERROR_CODE.search(body)
    message = S3_ERROR_MESSAGE.search(body)
    text = (code.group(1).decode() if code else f"HTTP {status}") + (
        f": {message.group(1).decode()}" if message else ""
    )
    exit_code = Exit.SERVER if status >= 500 else Exit.USAGE
    return CliError(exit_code, f"upload of {name} refused by S3 ({status}): {text}")


class UploadBar:
    """Bytes sent of one file: one redrawn line on a terminal, a start and an end line else."""

    WIDTH = 30

    def __init__(self, stream: TextIO, name: str, total: int) -> None:
        self.stream, self.name, self.total = stream, name, max(1, total)
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.done = 0
        self.drawn = 0.0
        if not self.tty:
            self._write(f"uploading {name} ({total} bytes)\n")

    def advance(self, sent: int) -> None:
        self.done += sent
        now = time.monotonic()
        if self.tty and (now - self.drawn > 0.1 or self.done >= self.total):
            self.drawn = now
            filled = min(self.WIDTH, self.WIDTH * self.done // self.total)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}]"
            self._write(f"\r\x1b[2K{bar} {self.done}/{self.total} B {self.name}")

    def close(self, ok: bool = True) -> None:
        if self.tty:
            self._write("\n")
        elif ok:
            self._write(f"uploaded {self.name}: {self.done} bytes\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
