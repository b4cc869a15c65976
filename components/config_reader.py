"""Typed access to one Pulumi config object (``ConfigReader``), every error a
``ConfigError`` naming the full dotted key (``ai-batch:api.throttle.rateLimit``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from components.aws_rules import AwsConstraintError
from components.config_types import ConfigError

T = TypeVar("T")


@contextmanager
def config_errors() -> Iterator[None]:
    """An ``aws_rules`` error raised inside is re-raised as the ``ConfigError`` of its key."""
    try:
        yield
    except ConfigError:
        raise
    except AwsConstraintError as exc:
        raise ConfigError(exc.key, exc.value, exc.allowed) from None


class ConfigReader:
    """Typed access to one config object, with errors naming the full dotted key."""

    def __init__(self, prefix: str, values: Mapping[str, Any], allowed: tuple[str, ...]):
        self.prefix = prefix
        self.values = values
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            # The value is not echoed: a misspelt key may well hold a secret.
            raise ConfigError(
                f"{prefix}{unknown[0]}", "<value hidden>", f"known keys: {', '.join(allowed)}"
            )

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def obj(self, name: str, allowed: tuple[str, ...]) -> ConfigReader:
        value = self.raw(name)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(self.key(name), value, f"an object with keys {', '.join(allowed)}")
        return ConfigReader(f"{self.key(name)}.", value, allowed)

    # integer, number, boolean: the same unset/default opening on purpose; each then spells
    # out which spellings of its type it accepts (a shared skeleton would hide that).
    def integer(self, name: str, default: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            raise ConfigError(self.key(name), value, "an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        raise ConfigError(self.key(name), value, "an integer")

    def number(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            raise ConfigError(self.key(name), value, "a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(self.key(name), value, "a number") from None
        if not math.isfinite(number):
            raise ConfigError(self.key(name), value, "a finite number")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(self.key(name), value, "true or false")

    def string(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            raise ConfigError(self.key(name), value, "a string")
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        if isinstance(value, str):  # tolerate "a,b" from `pulumi config set`
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.key(name), value, "a list of strings")
        return tuple(value)

    def checked(self, name: str, value: T, check: Callable[[T, str], T]) -> T:
        """Run an aws_rules validator, re-raising its error under the full key."""
        with config_errors():
            return check(value, self.key(name))
