"""``POST /jobs`` with ``manifest``: an array job whose items are a JSON Lines object the
client uploaded (``POST /uploads``) under the worker's ``inputs/`` prefix.

A manifest of 1,000,000 items cannot be read within API Gateway's 29 s integration timeout,
so the request checks only what it can check at once, each a 4xx naming the rule, and
writes nothing on a rejection:

- ``manifest`` is ``{"s3_key": KEY, "items": N}``: the declared item count gives the shard
  count now (``max_shards``, 400 ``array_limit``) and the progress total; the fan-out fails
  the parent when the object holds another count.
- the key is under ``inputs/<worker>/`` (the prefix the launcher may read), a plain key of
  at most 1,024 bytes (S3's key limit), no empty, ``.`` or ``..`` segment;
- the object exists (HeadObject; without ``s3:ListBucket`` S3 answers a missing key with
  403, not 404, so both mean "not found") and is at most ``MAX_MANIFEST_BYTES``
  (413 ``manifest_too_large``, limit ``max_manifest_bytes``);
- the fields every shard shares (``input``) match the worker's schema and are small enough to
  be stored on the parent (``MAX_INLINE_INPUT_BYTES``, 413 ``shared_input_too_large``).

Each item (JSON, ``max_item_bytes``, the item schema) is checked by the launcher's fan-out
before any child is enqueued (``handlers.manifests``).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from handlers import _aws
from handlers.registry import WorkerRegistration
from jobcontract import Env, array_requests
from jobcontract import arrays as contract

NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "403", "AccessDenied", "Forbidden"})


def declared_items(manifest: Any) -> int:
    return array_requests.declared_items(manifest)


def check_key(worker: WorkerRegistration, key: str) -> None:
    array_requests.check_manifest_key(worker.name, key)


def check_shared_input(worker: WorkerRegistration, field: str, base: dict[str, Any]) -> None:
    array_requests.check_shared_input(worker.name, worker.input_schema, field, base)


def head(worker: WorkerRegistration, manifest: dict[str, Any]) -> dict[str, Any]:
    """The parent's ``array.manifest``: key, size and ETag of the object (HeadObject), the
    fan-out's validation cursor at the start."""
    key = str(manifest["s3_key"])
    check_key(worker, key)
    try:
        meta = _aws.client("s3").head_object(Bucket=_aws.env(Env.RESULTS_BUCKET), Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in NOT_FOUND_CODES:
            raise contract.RequestRejected(
                400,
                "manifest_not_found",
                f"no manifest at {key} (upload it with POST /uploads first; forms expire)",
            ) from None
        raise
    size = int(meta["ContentLength"])
    if size > contract.MAX_MANIFEST_BYTES:
        raise contract.RequestRejected(
            413,
            "manifest_too_large",
            f"the manifest is {size} bytes; at most {contract.MAX_MANIFEST_BYTES} "
            "(max_manifest_bytes)",
            extra={"limit": "max_manifest_bytes"},
        )
    items = int(manifest["items"])
    if size < 2 * items - 1:  # every item is at least one byte, and a newline between two
        raise contract.RequestRejected(
            400,
            "invalid_manifest",
            f"a manifest of {size} bytes cannot hold {items} items (manifest.items)",
        )
    return {
        "key": key,
        "bytes": size,
        "etag": str(meta["ETag"]),
        "format": "jsonl",
        "validated": False,
        "offset": 0,
        "items": 0,
        "invalid_count": 0,
    }
