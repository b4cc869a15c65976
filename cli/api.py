"""The HTTP side of ``batchctl``: endpoint resolution and a small JSON client (stdlib only).

Errors are raised as :class:`CliError` carrying the process exit code, so every command
reports failures the same way and scripts can rely on the codes in ``cli.main``.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Exit:
    """Process exit codes (documented in ``cli.main`` and the README)."""

    OK = 0
    JOB_FAILED = 1  # the job ended FAILED or CANCELLED
    USAGE = 2  # bad arguments or a request the API rejected as invalid
    NOT_FOUND = 3  # no such job, worker, stack or route
    AUTH = 4  # missing/wrong API key, or source IP not allowed
    UNREACHABLE = 5  # cannot connect to the endpoint (or time out)
    SERVER = 6  # the API answered with a 5xx
    ITEMS_FAILED = 7  # the job SUCCEEDED, but some of its items failed (within its tolerance)


class CliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


STATE_ENV = "BATCH_LOCAL_STATE"  # path of the local pipeline's endpoint.json
DEFAULT_STATE = Path("local-state") / "endpoint.json"
URL_OUTPUTS = ("apiUrl", "api_url", "url")
KEY_OUTPUTS = ("apiKey", "api_key", "apiKeyValue")


@dataclass
class Endpoint:
    """Where the API is, and what else the source told us (stack outputs, local state)."""

    api_url: str
    api_key: str
    source: str  # "flags" | "env" | "stack:<name>" | "local"
    stack_outputs: dict[str, Any] = field(default_factory=dict)
    local_state: dict[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return bool(self.local_state) and self.local_state.get("api_url") == self.api_url


def state_path(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(STATE_ENV) or DEFAULT_STATE)


def read_local_state(environ: Mapping[str, str]) -> dict[str, Any]:
    path = state_path(environ)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def stack_outputs(stack: str, *, runner: Any = subprocess.run) -> dict[str, Any]:
    """``pulumi stack output --json --show-secrets -s STACK`` (needs the Pulumi CLI)."""
    try:
        done = runner(
            ["pulumi", "stack", "output", "--json", "--show-secrets", "-s", stack],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except FileNotFoundError:
        raise CliError(
            Exit.USAGE,
            "--stack needs the Pulumi CLI (https://www.pulumi.com/docs/install/); "
            "or pass --api-url/--api-key, or set BATCH_API_URL/BATCH_API_KEY",
        ) from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout or "").strip().splitlines()
        raise CliError(
            Exit.NOT_FOUND,
            f"cannot read outputs of stack {stack!r}: {detail[-1] if detail else 'pulumi failed'}",
        )
    try:
        outputs: dict[str, Any] = json.loads(done.stdout or "{}")
    except ValueError:
        raise CliError(Exit.SERVER, f"pulumi printed no JSON for stack {stack!r}") from None
    return outputs


def _first(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def resolve_endpoint(
    *,
    api_url: str | None,
    api_key: str | None,
    stack: str | None,
    environ: Mapping[str, str] | None = None,
    runner: Any = subprocess.run,
) -> Endpoint:
    """Flags, then BATCH_API_URL/BATCH_API_KEY, then ``--stack`` outputs, then the local
    pipeline's state file; the first source that has a value wins, per value."""
    env = os.environ if environ is None else environ
    url, key, source = api_url, api_key, "flags"
    if not url or not key:
        url = url or env.get("BATCH_API_URL") or None
        key = key or env.get("BATCH_API_KEY") or None
        if api_url is None and url:
            source = "env"
    outputs: dict[str, Any] = {}
    if stack and (not url or not key):
        outputs = stack_outputs(stack, runner=runner)
        url = url or _first(outputs, URL_OUTPUTS)
        key = key or _first(outputs, KEY_OUTPUTS)
        source = f"stack:{stack}"
        if not url or not key:
            raise CliError(
                Exit.NOT_FOUND, f"stack {stack!r} has no apiUrl/apiKey outputs (deployed yet?)"
            )
    local = read_local_state(env)
    if not url or not key:
        if not local:
            raise CliError(
                Exit.USAGE,
                "no API endpoint: pass --api-url and --api-key, set BATCH_API_URL and "
                "BATCH_API_KEY, use --stack NAME, or start `batchctl local`",
            )
        url = url or str(local.get("api_url") or "")
        key = key or str(local.get("api_key") or "")
        source = "local"
    assert url and key
    return Endpoint(url.rstrip("/"), key, source, outputs, local)


class ApiClient:
    """JSON over HTTPS with the API key; maps every failure to a CliError."""

    def __init__(self, endpoint: Endpoint, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str | int | None] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        url = self.endpoint.api_url + path
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("x-api-key", self.endpoint.api_key)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, _parse(resp.read())
        except urllib.error.HTTPError as exc:
            raise api_error(exc.code, _parse(exc.read()), method, path) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(
                Exit.UNREACHABLE, f"cannot reach {self.endpoint.api_url}: {reason}"
            ) from None


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def api_error(status: int, body: Any, method: str, path: str) -> CliError:
    """The exit code and message for an HTTP error answer."""
    error = body.get("error") if isinstance(body, dict) else None
    code = str(error.get("code", "")) if isinstance(error, dict) else ""
    message = ""
    if isinstance(error, dict):
        message = str(error.get("message", ""))
        details = error.get("details")
        if details:
            message += "".join(f"\n  - {d}" for d in details)
    elif isinstance(body, dict):
        message = str(body.get("message") or body.get("Message") or "")
    elif isinstance(body, str):
        message = body[:200]
    message = message or f"HTTP {status}"
    if status == 403 and message == "Missing Authentication Token":
        return CliError(
            Exit.NOT_FOUND,
            f"the API has no route {method} {path} (is the API URL right, stage included?)",
        )
    if status in (401, 403):
        return CliError(Exit.AUTH, f"not authorised: {message} (check the API key)")
    if status == 404 or code == "unknown_worker":
        return CliError(Exit.NOT_FOUND, message)
    if status >= 500:
        return CliError(Exit.SERVER, f"server error ({status}): {message}")
    return CliError(Exit.USAGE, f"rejected ({status}{', ' + code if code else ''}): {message}")


def fetch_url(url: str, timeout: float = 30.0) -> bytes:
    """GET a presigned URL (no API key: the signature is the credential)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data: bytes = resp.read()
            return data
    except urllib.error.HTTPError as exc:
        raise CliError(Exit.SERVER, f"result download failed: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(Exit.UNREACHABLE, f"result download failed: {exc}") from None
