"""A stack's config as Pulumi hands it to a program, read offline from
``Pulumi.<stack>.yaml`` (full keys, string values, structured values as JSON text, encrypted
values as a placeholder): what ``components.offline`` runs a program with. Importable from
``components.offline`` too."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_PROJECT = "ai-batch"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def stack_config(stack: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The config of ``Pulumi.<stack>.yaml`` as Pulumi hands it to a program: full keys,
    string values, structured values as JSON text, secure values as placeholders."""
    import yaml

    path = PROJECT_ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no stack config {path}")
    doc = yaml.safe_load(path.read_text()) or {}
    project = project_name()
    config: dict[str, str] = {}
    for key, value in (doc.get("config") or {}).items():
        full = key if ":" in key else f"{project}:{key}"
        config[full] = _config_string(value)
    for key, value in (overrides or {}).items():
        config[key if ":" in key else f"{project}:{key}"] = value
    return config


OFFLINE_SECRET = "offline-placeholder-secret"


def _without_ciphertext(value: Any) -> Any:
    """Encrypted values can only be decrypted by the Pulumi CLI; offline they become a marker."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return OFFLINE_SECRET
        return {k: _without_ciphertext(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_ciphertext(v) for v in value]
    return value


def _config_string(value: Any) -> str:
    value = _without_ciphertext(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def project_name() -> str:
    import yaml

    path = PROJECT_ROOT / "Pulumi.yaml"
    if path.exists():
        doc = yaml.safe_load(path.read_text()) or {}
        return str(doc.get("name", DEFAULT_PROJECT))
    return DEFAULT_PROJECT
