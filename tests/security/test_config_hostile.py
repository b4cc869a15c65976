"""Hostile stack settings: what tests/infra/test_config.py (the table of every invalid
setting) does not already try -- type confusion, NaN/Infinity, huge and fractional numbers,
control characters, secrets in misplaced keys -- must still fail with a ConfigError naming
the key (never a TypeError/KeyError crash, never a silently accepted value). And the real
program, run as ``pulumi preview`` would run it (under mocks), fails the same way before it
creates a single resource.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from components.config import ConfigError, parse_config
from components.offline import evaluate_stack
from tests.security.conftest import require_program

HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"logRetentionDays": math.nan}, "ai-batch:logRetentionDays"),
    ({"logRetentionDays": math.inf}, "ai-batch:logRetentionDays"),
    ({"logRetentionDays": 7.5}, "ai-batch:logRetentionDays"),
    ({"logRetentionDays": True}, "ai-batch:logRetentionDays"),
    ({"logRetentionDays": 10**400}, "ai-batch:logRetentionDays"),
    ({"logRetentionDays": [7]}, "ai-batch:logRetentionDays"),
    ({"spotShare": math.nan}, "ai-batch:spotShare"),
    ({"spotShare": 50.5}, "ai-batch:spotShare"),
    ({"spotShare": "50%"}, "ai-batch:spotShare"),
    ({"jobTtlDays": -0.0}, "ai-batch:jobTtlDays"),
    ({"heartbeatStaleSeconds": "1e9"}, "ai-batch:heartbeatStaleSeconds"),
    ({"api": []}, "ai-batch:api"),
    ({"api": {"throttle": []}}, "ai-batch:api.throttle"),
    ({"api": {"throttle": {"rateLimit": math.nan}}}, "ai-batch:api.throttle.rateLimit"),
    ({"api": {"throttle": {"rateLimit": math.inf}}}, "ai-batch:api.throttle.rateLimit"),
    ({"api": {"stageName": "v1\u0000"}}, "ai-batch:api.stageName"),
    ({"api": {"stageName": "\u202ev1"}}, "ai-batch:api.stageName"),
    ({"api": {"stageName": "v" * 10_000}}, "ai-batch:api.stageName"),
    ({"api": {"allowedIps": ["0.0.0.0/0\u0000"]}}, "ai-batch:api.allowedIps[0]"),
    ({"api": {"allowedIps": [None]}}, "ai-batch:api.allowedIps[0]"),
    ({"network": {"mode": "PUBLIC"}}, "ai-batch:network.mode"),
    ({"network": {"subnetIds": [{"id": "subnet-0abc1234"}]}}, "ai-batch:network.subnetIds[0]"),
    ({"functions": {"api": {"memory": "512MB"}}}, "ai-batch:functions.api.memory"),
    ({"functions": {"api": []}}, "ai-batch:functions.api"),
    ({"sweepRate": "rate(5 minutes)\nrate(1 minute)"}, "ai-batch:sweepRate"),
    ({"sweepRate": "rate(0 minutes)"}, "ai-batch:sweepRate"),
    ({"bedrockModelId": "anthropic.claude-3-haiku-20240307-v1:0\u0000"}, "ai-batch:bedrockModelId"),
    ({"logLevel": "info\n"}, "ai-batch:logLevel"),
    ({"notifications": {"email": "a@b.c\r\nBcc: x@y.z"}}, "ai-batch:notifications.email"),
    ({"notifications": []}, "ai-batch:notifications"),
]


def _keys_under(key: str) -> tuple[str, ...]:
    """A ConfigError may name the exact key or the enclosing object key."""
    parts = [key]
    while "." in key or "[" in key:
        key = key.rsplit("[", 1)[0] if key.endswith("]") else key.rsplit(".", 1)[0]
        parts.append(key)
    return tuple(parts)


@pytest.mark.parametrize(("values", "key"), HOSTILE, ids=[f"{k}-{i}" for i, (_, k) in
                                                            enumerate(HOSTILE)])
def test_hostile_setting_is_a_config_error_naming_the_key(values: dict[str, Any],
                                                          key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(values, project="ai-batch", stack="test")
    assert info.value.key in _keys_under(key), (info.value.key, key)
    assert str(info.value).startswith(f"{info.value.key}: ")


SECRET = "xoxb-0123456789-very-secret-token"


@pytest.mark.parametrize("values", [
    {"notifications": {"slackWebhok": SECRET}},
    {"notifications": {"slackWebhook": SECRET + "\u0000"}},
    {"notifications": {"notionToken": SECRET}},
    {"notificatons": {"notionToken": SECRET}},
])
def test_secret_values_never_echoed(values: dict[str, Any]) -> None:
    """Values of secret settings (webhook, token), even misspelt or malformed, stay out of
    the error; non-secret settings (e-mail, database id) are echoed on purpose."""
    with pytest.raises(ConfigError) as info:
        parse_config(values, project="ai-batch", stack="test")
    assert "very-secret-token" not in str(info.value)
    assert "very-secret-token" not in repr(info.value.args)


@pytest.mark.parametrize(("override", "key"), [
    ({"spotShare": "NaN"}, "ai-batch:spotShare"),
    ({"api": json.dumps({"stageName": "v1\u0000"})}, "ai-batch:api.stageName"),
    ({"network": json.dumps({"mode": "private"})}, "ai-batch:network.vpcId"),
    ({"logRetentionDays": "1e400"}, "ai-batch:logRetentionDays"),
    ({"api": "{not json"}, "ai-batch:api"),
])
def test_the_program_fails_preview_with_the_key(override: dict[str, str], key: str) -> None:
    """Run the real __main__.py as a preview would: the error names the key and no resource
    is created before it (config is read first)."""
    require_program("dev")
    with pytest.raises(ConfigError) as info:
        evaluate_stack("dev", override)
    assert info.value.key in _keys_under(key), (info.value.key, key)
