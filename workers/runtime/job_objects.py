"""A job's objects in the results bucket: its input (inline or an S3 pointer), the checkpoint
of an interrupted earlier attempt, and its result (a conditional put, fenced when an object is
already there)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jobcontract import (
    JobField,
    access_denied_error,
    checkpoint_key,
    inputs_prefix,
    results_prefix,
)
from workers.runtime.checkpoint import Checkpoint
from workers.runtime.context import PermanentError, error_summary
from workers.runtime.definition import WorkerDefinition
from workers.runtime.logs import JsonLogger

# S3 answers a conditional put on an existing key with 412 PreconditionFailed, or 409
# ConditionalRequestConflict while another conditional write of that key is in flight.
EXISTING_OBJECT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})


@dataclass(frozen=True)
class JobObjects:
    """The results bucket as one worker's job sees it."""

    s3: Any
    bucket: str
    # The worker whose job this is; also how tests/authz/recorder.py attributes a call made
    # from an item's thread (ctx.read_object) to the worker's task role.
    definition: WorkerDefinition
    logger: JsonLogger

    def load_input(self, job: Mapping[str, Any]) -> Mapping[str, Any]:
        pointer = job.get(JobField.INPUT_S3_KEY)
        if pointer:
            try:
                data = json.loads(self.read(str(pointer)))
            except ValueError as exc:
                raise PermanentError(f"input object {pointer} is not JSON: {exc}") from exc
        else:
            data = job.get(JobField.INPUT, {})
        if not isinstance(data, Mapping):
            raise PermanentError("job input is not a JSON object")
        return data

    def load_checkpoint(self, job: Mapping[str, Any]) -> Checkpoint:
        """What an interrupted earlier attempt finished (one read, only when there is one)."""
        key = job.get(JobField.CHECKPOINT_KEY)
        if not key:
            return Checkpoint()
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=str(key))
            checkpoint = Checkpoint.from_bytes(bytes(response["Body"].read()))
        except Exception as exc:  # best effort: without it the job starts over, as before
            self.logger.warning("checkpoint_not_read", key=key, **error_summary(exc))
            return Checkpoint()
        self.logger.info("checkpoint_read", key=key, items=checkpoint.item_count)
        return checkpoint

    def save_checkpoint(self, job_id: str, checkpoint: Checkpoint) -> str | None:
        """Store the finished items of an interrupted attempt; the key, or None."""
        body = checkpoint.to_bytes()
        if body is None:
            return None
        key = checkpoint_key(self.definition.name, job_id)
        try:
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
            )
        except Exception as exc:  # best effort: the retry then starts over
            self.logger.warning("checkpoint_not_saved", key=key, **error_summary(exc))
            return None
        self.logger.info("checkpoint_saved", key=key, items=checkpoint.item_count)
        return key

    def read(self, key: str) -> bytes:
        """An object of the results bucket. Missing (404, or 403 where the role may not list
        the prefix: S3 hides existence then) and denied keys are the job's input problem,
        not a crash to retry."""
        from botocore.exceptions import ClientError

        where = f"s3://{self.bucket}/{key}"
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.NoSuchKey as exc:
            raise PermanentError(f"s3 object {where} does not exist") from exc
        except ClientError as exc:
            if access_denied_error(exc) is None:
                raise
            raise PermanentError(
                f"s3:GetObject denied on {where}: the object is missing or outside this "
                f"worker's prefixes ({inputs_prefix(self.definition.name)}, "
                f"{results_prefix(self.definition.name)})"
            ) from exc
        return bytes(response["Body"].read())

    def put_result(self, key: str, body: bytes, fence: Callable[[], object]) -> None:
        """Store the result without overwriting a newer attempt's, in one request when no
        object is there yet (the usual case): a conditional put (``If-None-Match: *``). If
        one is there (an earlier attempt's, or a newer one's), ``fence`` first (the caller's
        heartbeat fails with ``TransitionConflict`` unless its attempt is still the job's
        RUNNING one), and only then is the object overwritten."""
        from botocore.exceptions import ClientError

        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": "application/json",
        }
        try:
            self.s3.put_object(**args, IfNoneMatch="*")
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in EXISTING_OBJECT_CODES:
                raise
        fence()
        self.s3.put_object(**args)
