"""``POST /uploads``: presigned S3 POST forms so a client without AWS credentials can hand the
API its files (``handlers.api.create_uploads`` is the route; this module validates and signs).

Why a presigned POST and not a presigned PUT: a PUT URL signs the request, not the body's
size, so anyone holding it can store any amount. A POST form carries a signed policy whose
``content-length-range`` condition S3 itself enforces (an upload beyond it is refused with
``EntityTooLarge``); the policy also pins the key and the Content-Type. Each file gets its key
``inputs/<worker>/<upload id>/<safe name>`` (``jobcontract.upload_key``), which a job's input
then references (e.g. image-alt-generator's ``s3_key``, or an array job's ``manifest``: a
JSON Lines file sent as ``application/x-ndjson`` may be up to ``MAX_MANIFEST_BYTES``).
Presigning is computed locally: a rejected request, like an accepted one, creates nothing.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace
from typing import Any

from jobcontract import (
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_FILES,
    UPLOAD_NAME_MAX,
    UPLOAD_NAME_RE,
    UPLOAD_URL_TTL_SECONDS,
    upload_key,
)
from jobcontract.arrays import MANIFEST_CONTENT_TYPE, MAX_MANIFEST_BYTES

__all__ = ["UPLOAD_URL_TTL_SECONDS", "UploadFile", "UploadRejected", "parse_files", "presign"]

UPLOAD_REQUEST_FIELDS = frozenset({"worker", "files"})
UPLOAD_FILE_FIELDS = frozenset({"name", "size", "content_type"})
DEFAULT_CONTENT_TYPE = "application/octet-stream"
CONTENT_TYPE_RE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")
CONTENT_TYPE_MAX = 127  # RFC 6838: type and subtype names are at most 127 characters
UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class UploadRejected(Exception):
    """A 4xx answer: ``status``, ``code`` and a message naming the rule that was broken."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class UploadFile:
    """One requested file: its name as given, the key-safe name, size and Content-Type."""

    name: str
    safe_name: str
    size: int
    content_type: str


def safe_name(name: Any, index: int) -> str:
    """The key segment for a file name: path-like or invisible names are refused (a key must
    not climb out of its prefix), anything else outside ``[A-Za-z0-9._-]`` becomes ``_``."""
    where = f"files[{index}].name"
    if not isinstance(name, str) or not name.strip():
        raise UploadRejected(400, "invalid_name", f"{where} is required: a file name")
    if len(name) > UPLOAD_NAME_MAX:
        raise UploadRejected(
            400, "invalid_name", f"{where} is longer than {UPLOAD_NAME_MAX} characters"
        )
    if "/" in name or "\\" in name or name.startswith("."):
        raise UploadRejected(
            400,
            "invalid_name",
            f"{where} {name[:64]!r} must be a plain file name: no '/' or '\\', "
            "not starting with '.'",
        )
    if not UPLOAD_NAME_RE.match(name):
        raise UploadRejected(400, "invalid_name", f"{where} contains control characters")
    return UNSAFE_NAME_CHARS.sub("_", name)


def _file(value: Any, index: int) -> UploadFile:
    where = f"files[{index}]"
    if not isinstance(value, dict):
        raise UploadRejected(400, "invalid_request", f"{where} must be an object")
    unknown = sorted(set(value) - UPLOAD_FILE_FIELDS)
    if unknown:
        raise UploadRejected(
            400, "invalid_request", f"{where}: unknown field(s): {', '.join(unknown)}"
        )
    name = safe_name(value.get("name"), index)
    content_type = value.get("content_type", DEFAULT_CONTENT_TYPE)
    if (
        not isinstance(content_type, str)
        or len(content_type) > CONTENT_TYPE_MAX
        or not CONTENT_TYPE_RE.match(content_type)
    ):
        raise UploadRejected(
            400,
            "invalid_content_type",
            f"{where}.content_type must be a media type, e.g. image/png",
        )
    size = value.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UploadRejected(
            400, "invalid_size", f"{where}.size must be the file's size in bytes, at least 1"
        )
    limit = max_bytes(content_type)
    if size > limit:
        raise UploadRejected(
            400,
            "file_too_large",
            f"{where}.size {size} is above the limit of {limit} bytes per "
            + ("manifest (max_manifest_bytes)" if limit != MAX_UPLOAD_BYTES else "file"),
        )
    return UploadFile(str(value["name"]), name, size, content_type)


def max_bytes(content_type: str) -> int:
    """The size limit of one upload: ``MAX_MANIFEST_BYTES`` for an array job's manifest
    (``application/x-ndjson``, JSON Lines), ``MAX_UPLOAD_BYTES`` for any other file."""
    return MAX_MANIFEST_BYTES if content_type == MANIFEST_CONTENT_TYPE else MAX_UPLOAD_BYTES


def parse_files(payload: dict[str, Any]) -> list[UploadFile]:
    """The requested files, checked (count, names, sizes, types), each with its own key."""
    unknown = sorted(set(payload) - UPLOAD_REQUEST_FIELDS)
    if unknown:
        raise UploadRejected(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}")
    files = payload.get("files")
    if not isinstance(files, list) or not files:
        raise UploadRejected(
            400, "invalid_request", "'files' is required: a list of {name, size, content_type}"
        )
    if len(files) > MAX_UPLOAD_FILES:
        raise UploadRejected(
            400,
            "too_many_files",
            f"{len(files)} files in one request; at most {MAX_UPLOAD_FILES} per call",
        )
    parsed = [_file(f, i) for i, f in enumerate(files)]
    seen: set[str] = set()
    unique = []
    for f in parsed:
        name = _distinct(f.safe_name, seen)
        seen.add(name)
        unique.append(replace(f, safe_name=name))
    return unique


def _distinct(safe: str, seen: set[str]) -> str:
    """``safe``, or (a name an earlier file of the request has) ``<stem>-2<ext>``, ``-3``...:
    every file gets its own key, within the name limit."""
    if safe not in seen:
        return safe
    stem, dot, ext = safe.rpartition(".")
    stem, ext = (stem, dot + ext) if stem else (safe, "")
    for n in range(2, MAX_UPLOAD_FILES + 2):
        suffix = f"-{n}{ext}"
        candidate = stem[: UPLOAD_NAME_MAX - len(suffix)] + suffix
        if candidate not in seen:
            return candidate
    raise AssertionError("unreachable: more names than files")  # pragma: no cover


def presign(s3: Any, bucket: str, worker: str, files: list[UploadFile], ttl: int) -> dict[str, Any]:
    """One presigned POST per file, all under one fresh upload id."""
    upload_id = secrets.token_hex(16)
    uploads = []
    for f in files:
        key = upload_key(worker, upload_id, f.safe_name)
        form = s3.generate_presigned_post(
            Bucket=bucket,
            Key=key,
            Fields={"Content-Type": f.content_type},
            Conditions=[
                {"Content-Type": f.content_type},
                ["content-length-range", 1, f.size],
            ],
            ExpiresIn=ttl,
        )
        uploads.append(
            {
                "name": f.name,
                "key": key,
                "size": f.size,
                "content_type": f.content_type,
                "url": form["url"],
                "fields": form["fields"],
            }
        )
    return {
        "upload_id": upload_id,
        "worker": worker,
        "expires_in": ttl,
        "max_bytes": MAX_UPLOAD_BYTES,
        "uploads": uploads,
    }
