"""The price book: ``cost/prices.json`` loaded and checked.

Prices live in one data file (region, date checked and source per figure) so that a price
change is a one-line data edit, reviewable against its source, and never a code change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).with_name("prices.json")


class PriceBookError(ValueError):
    """The price file is missing a figure or a figure lacks its provenance."""


@dataclass(frozen=True)
class Ec2Instance:
    name: str
    hourly: float
    vcpu: int
    memory_gib: float
    arch: str
    source: str


@dataclass(frozen=True)
class PriceBook:
    region: str
    currency: str
    checked: str
    hours_per_month: float
    prices: dict[str, float]
    sources: dict[str, str]
    ec2: dict[str, Ec2Instance]
    free_tier: dict[str, float]
    assumptions: dict[str, float]

    def __getitem__(self, key: str) -> float:
        try:
            return self.prices[key]
        except KeyError:
            raise PriceBookError(f"no price {key!r} in {PRICES_FILE.name}") from None

    def free(self, key: str) -> float:
        try:
            return self.free_tier[key]
        except KeyError:
            raise PriceBookError(f"no free-tier figure {key!r} in {PRICES_FILE.name}") from None

    def assumption(self, key: str) -> float:
        try:
            return self.assumptions[key]
        except KeyError:
            raise PriceBookError(f"no assumption {key!r} in {PRICES_FILE.name}") from None

    def instance(self, name: str) -> Ec2Instance:
        try:
            return self.ec2[name]
        except KeyError:
            known = ", ".join(sorted(self.ec2))
            raise PriceBookError(f"no EC2 price for {name!r}; known: {known}") from None


def _figure(section: str, key: str, entry: Any, *, need_checked: bool) -> float:
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), int | float):
        raise PriceBookError(f"{section}.{key}: needs a numeric 'value'")
    if not str(entry.get("source", "")).startswith("https://"):
        raise PriceBookError(f"{section}.{key}: needs an https 'source'")
    if need_checked and not entry.get("checked"):
        raise PriceBookError(f"{section}.{key}: needs the date it was 'checked'")
    return float(entry["value"])


def load_prices(path: Path = PRICES_FILE) -> PriceBook:
    """Load and validate the price file: every figure must carry its source (and date)."""
    doc = json.loads(path.read_text())
    prices: dict[str, float] = {}
    sources: dict[str, str] = {}
    for key, entry in doc["prices"].items():
        prices[key] = _figure("prices", key, entry, need_checked=True)
        sources[key] = entry["source"]
    ec2 = {
        name: Ec2Instance(
            name=name,
            hourly=_figure("ec2_on_demand_hour", name, e, need_checked=True),
            vcpu=int(e["vcpu"]),
            memory_gib=float(e["memory_gib"]),
            arch=str(e["arch"]),
            source=str(e["source"]),
        )
        for name, e in doc["ec2_on_demand_hour"].items()
    }
    free_tier = {
        k: _figure("free_tier", k, e, need_checked=False) for k, e in doc["free_tier"].items()
    }
    assumptions = {
        k: _figure("assumptions", k, e, need_checked=False)
        for k, e in doc["assumptions"].items()
    }
    return PriceBook(
        region=str(doc["region"]),
        currency=str(doc["currency"]),
        checked=str(doc["checked"]),
        hours_per_month=float(doc["hours_per_month"]),
        prices=prices,
        sources=sources,
        ec2=ec2,
        free_tier=free_tier,
        assumptions=assumptions,
    )
