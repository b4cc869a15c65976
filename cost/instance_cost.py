"""What an ``InstanceWorker`` (ECS Managed Instances, GPU) costs: idle and per job.

Pure functions over the price section ``gpu_instance_hour`` of ``cost/prices.json`` (every
figure with its source; the GPU figures are marked as estimates there). Separate from
``cost/estimator.py``: the estimator prices Fargate tasks; the hook for it is
``instance_workers_from_graph(graph)`` + ``job_cost`` / ``idle_cost`` (see the README's
"GPU workers" section).

The model:

- **Idle (no job running): $0 of compute.** Managed Instances launches an instance for a task
  and terminates it once idle for ``scale_in_after_seconds`` (scale to zero); what remains is
  the ECR storage of the worker's images, priced by the estimator (``model.instance_workers``,
  at the GPU image size ``gpu_worker_image_gb`` or ``--gpu-image-gb``).
- **One job** of N minutes runs on the cheapest accepted type (ECS picks among the allowed
  types; we price the cheapest, the likely pick, and also report the dearest). Billed instance
  time = start-up (launch, agent, image pull: an estimate) + N minutes + the idle tail
  ``scale_in_after_seconds`` when the job is alone in its burst (a following job reuses the
  instance and pays no start-up), with EC2's 60-second minimum. The hourly price is the
  Spot/on-demand blend of the worker's Spot share (Spot = on-demand x (1 - discount), an
  estimate). The ECS Managed Instances management charge is added per instance-hour, for
  Spot and on-demand instances alike: the type's on-demand price x its family's share
  (``managed_instances_fee_share_by_family``: 7.8 % for the G families since AWS's
  2026-07-01 cut, from transcribed per-type rows) or else ``managed_instances_fee_share``
  (12.09 %, from the ECS pricing page's c6a.2xlarge example). Both are estimates: AWS's
  per-type table was not readable offline, see the entries' evidence; ``null`` leaves the
  charge out and the result says so. It is billed for the same
  instance time as EC2, and ``batchctl cost`` labels it an estimate.
- **Never scaling in** (``scale_in_after_seconds`` -1): the idle floor is one instance of the
  cheapest accepted type all month, EC2 plus the management charge.

``batchctl cost`` prints these for every InstanceWorker of the stack (``report``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cost.prices import PRICES_FILE, PriceBookError

EC2_MINIMUM_SECONDS = 60  # EC2 per-second billing, one-minute minimum (Linux)
HOURS_PER_MONTH = 730  # as cost/prices.json's hours_per_month
FEE_SHARE_TOLERANCE = 0.0005  # the share must match the priced example to 4 decimals
FAMILY_EXAMPLE_TOLERANCE = 0.001  # family examples are rounded to 3 decimals of a dollar


@dataclass(frozen=True)
class GpuPrices:
    on_demand: dict[str, float]  # instance type -> USD per hour
    spot_discount: float
    fee_share: float | None  # Managed Instances management charge, share of on-demand
    startup_seconds: float
    sources: dict[str, str]
    # The fee share is an estimate (the price book says so): every output labels it.
    fee_estimate: bool = True
    # Per instance family (``g6`` of ``g6.xlarge``), where AWS prices it differently.
    family_fee_share: dict[str, float] = field(default_factory=dict)
    family_fee_estimate: bool = True  # the price book's label of those family shares

    def hourly(self, instance_type: str, spot_share: float) -> float:
        try:
            od = self.on_demand[instance_type]
        except KeyError:
            raise PriceBookError(f"no GPU instance price for {instance_type!r}") from None
        blended = spot_share * od * (1 - self.spot_discount) + (1 - spot_share) * od
        return blended + self.fee(instance_type)

    def fee_share_of(self, instance_type: str) -> float | None:
        """The management charge's share of on-demand for this type: its family's, else the
        general share (``None`` when unpriced)."""
        if self.fee_share is None:
            return None
        return self.family_fee_share.get(instance_type.split(".", 1)[0], self.fee_share)

    def fee_is_estimate(self, instance_type: str) -> bool:
        """Whether the share this type pays (its family's or the general one) is labelled an
        estimate in the price book."""
        if self.fee_share is None:
            return False
        if instance_type.split(".", 1)[0] in self.family_fee_share:
            return self.family_fee_estimate
        return self.fee_estimate

    def fee(self, instance_type: str) -> float:
        """The Managed Instances management charge per instance-hour (0 when unpriced)."""
        return self.on_demand.get(instance_type, 0.0) * (self.fee_share_of(instance_type) or 0.0)


def load_gpu_prices(path: Path = PRICES_FILE) -> GpuPrices:
    section = json.loads(path.read_text())["gpu_instance_hour"]
    types = section["types"]
    for name, entry in types.items():
        if not str(entry.get("source", "")).startswith("https://"):
            raise PriceBookError(f"gpu_instance_hour.types.{name}: needs an https 'source'")
    fee = section["managed_instances_fee_share"]["value"]
    example = section.get("managed_instances_fee_example")
    if fee is not None and example is not None:
        derived = float(example["value"]) / float(example["on_demand"])
        if abs(float(fee) - derived) > FEE_SHARE_TOLERANCE:
            raise PriceBookError(
                f"gpu_instance_hour.managed_instances_fee_share {fee} does not match its "
                f"example ({example['value']} / {example['on_demand']} = {derived:.4f})"
            )
    return GpuPrices(
        family_fee_share=_family_fee_shares(section, None if fee is None else float(fee)),
        family_fee_estimate=bool(
            (section.get("managed_instances_fee_share_by_family") or {}).get("estimate", True)
        ),
        on_demand={name: float(e["value"]) for name, e in types.items()},
        spot_discount=float(section["spot_discount_estimate"]["value"]),
        fee_share=None if fee is None else float(fee),
        startup_seconds=float(section["instance_startup_seconds"]["value"]),
        sources={name: str(e["source"]) for name, e in types.items()},
        fee_estimate=bool(section["managed_instances_fee_share"].get("estimate", True)),
    )


def _family_fee_shares(section: Mapping[str, Any], general: float | None) -> dict[str, float]:
    """``managed_instances_fee_share_by_family``, each family's share checked against the
    price rows it was read from (a row marked ``family_share: general`` checks the general
    share), so a mistyped share cannot pass silently."""
    entry = section.get("managed_instances_fee_share_by_family")
    if entry is None:
        return {}
    shares = {str(k): float(v) for k, v in entry["value"].items()}
    for row in entry.get("examples", []):
        family = str(row["instance_type"]).split(".", 1)[0]
        expected = general if row.get("family_share") == "general" else shares.get(family)
        derived = float(row["fee"]) / float(row["on_demand"])
        if expected is None or abs(expected - derived) > FAMILY_EXAMPLE_TOLERANCE:
            raise PriceBookError(
                f"gpu_instance_hour.managed_instances_fee_share_by_family: {family} share "
                f"{expected} does not match its example {row['instance_type']} "
                f"({row['fee']} / {row['on_demand']} = {derived:.4f})"
            )
    return shares


@dataclass(frozen=True)
class InstanceWorkerSpec:
    """What the cost depends on, as the stack declares it."""

    name: str
    instance_types: tuple[str, ...]  # allowed types, any order
    spot_share: float  # 0..1, of the first launch step
    scale_in_after_seconds: int | None  # None: AWS default (priced as 0, said so)


@dataclass(frozen=True)
class JobCost:
    worker: str
    instance_type: str  # the cheapest accepted type
    hourly: float  # blended Spot/on-demand + the management charge (when priced)
    fee_hourly: float  # of which the Managed Instances management charge
    fee_estimate: bool  # that charge is an estimate (labelled so in the summary)
    billed_seconds: float
    cost: float  # one job alone in its burst (start-up + run + idle tail)
    cost_warm: float  # a job that finds a warm instance (no start-up, no own tail)
    dearest_type: str
    dearest_cost: float
    notes: tuple[str, ...]


def billed_seconds(run_seconds: float, startup_seconds: float, idle_tail_seconds: float) -> float:
    return max(EC2_MINIMUM_SECONDS, startup_seconds + run_seconds + idle_tail_seconds)


def job_cost(spec: InstanceWorkerSpec, minutes: float, prices: GpuPrices) -> JobCost:
    """Cost of one job of ``minutes`` on the cheapest accepted type (see the module doc)."""
    if not spec.instance_types:
        raise PriceBookError(f"{spec.name}: no instance types to price")
    by_price = sorted(spec.instance_types, key=lambda t: prices.hourly(t, spec.spot_share))
    cheapest, dearest = by_price[0], by_price[-1]
    tail = float(spec.scale_in_after_seconds or 0)
    run = minutes * 60
    seconds = billed_seconds(run, prices.startup_seconds, tail)
    hourly = prices.hourly(cheapest, spec.spot_share)
    notes = [
        f"start-up {prices.startup_seconds:.0f} s and Spot discount "
        f"{prices.spot_discount:.0%} are estimates (cost/prices.json)",
    ]
    share = prices.fee_share_of(cheapest)
    if share is None:
        notes.append("ECS Managed Instances management charge not included (not priced yet)")
    else:
        how = (
            ": an ESTIMATE derived from the share per family of AWS's per-type fees as "
            "transcribed (G families 7.8 % since 2026-07-01) or the ECS pricing page's "
            "c6a.2xlarge example (12.09 %); AWS's per-type table could not be read"
            if prices.fee_is_estimate(cheapest)
            else ""
        )
        notes.append(
            f"includes the ECS Managed Instances management charge, {share:.2%} of on-demand "
            f"per instance-hour for {cheapest}{how} (cost/prices.json "
            "managed_instances_fee_share, _by_family)"
        )
    if spec.scale_in_after_seconds is None:
        notes.append("scale-in delay is AWS's default: idle tail priced as 0 s")
    return JobCost(
        worker=spec.name,
        instance_type=cheapest,
        hourly=hourly,
        fee_hourly=prices.fee(cheapest),
        fee_estimate=prices.fee_is_estimate(cheapest),
        billed_seconds=seconds,
        cost=hourly * seconds / 3600,
        cost_warm=hourly * max(EC2_MINIMUM_SECONDS, run) / 3600,
        dearest_type=dearest,
        dearest_cost=prices.hourly(dearest, spec.spot_share) * seconds / 3600,
        notes=tuple(notes),
    )


def idle_cost(spec: InstanceWorkerSpec, prices: GpuPrices | None = None) -> float:
    """Monthly compute cost with no job running: $0 when the worker scales to zero
    (instances terminate ``scale_in_after_seconds`` after their last task, and the
    management charge stops with them). A worker whose instances never scale in (``-1``)
    keeps one instance: the cheapest accepted type all month, EC2 (Spot blend) plus the
    management charge; that needs ``prices``."""
    if spec.scale_in_after_seconds != -1:
        return 0.0
    if prices is None:
        raise PriceBookError(
            f"{spec.name}: scale_in_after_seconds -1 keeps instances running; "
            "pass the prices to price the always-on instance"
        )
    if not spec.instance_types:
        raise PriceBookError(f"{spec.name}: no instance types to price")
    return min(prices.hourly(t, spec.spot_share) for t in spec.instance_types) * HOURS_PER_MONTH


def instance_workers_from_graph(resources: Sequence[Any]) -> list[InstanceWorkerSpec]:
    """Specs of the InstanceWorkers in a mocked stack graph (``components.offline``): the
    capacity providers' allowed types, capacity option and scale-in delay, grouped by the
    worker tag; the Spot share from the registration's first launch step."""
    by_worker: dict[str, dict[str, Any]] = {}
    for r in resources:
        if r.type != "aws:ecs/capacityProvider:CapacityProvider":
            continue
        mip = r.inputs.get("managedInstancesProvider") or {}
        worker = (r.inputs.get("tags") or {}).get("aibatch:worker")
        if not mip or not worker:
            continue
        lt = mip["instanceLaunchTemplate"]
        entry = by_worker.setdefault(worker, {"types": set(), "scale_in": None})
        entry["types"].update(lt.get("instanceRequirements", {}).get("allowedInstanceTypes", []))
        entry["scale_in"] = (mip.get("infrastructureOptimization") or {}).get("scaleInAfter")
    shares = {w: _spot_share(resources, w) for w in by_worker}
    return [
        InstanceWorkerSpec(
            name=w,
            instance_types=tuple(sorted(e["types"])),
            spot_share=shares[w],
            scale_in_after_seconds=e["scale_in"],
        )
        for w, e in sorted(by_worker.items())
    ]


def _spot_share(resources: Sequence[Any], worker: str) -> float:
    for r in resources:
        if r.type == "aws:dynamodb/tableItem:TableItem" and r.name == f"{worker}-registration":
            item = r.inputs["item"]
            item = json.loads(item) if isinstance(item, str) else item
            step = json.loads(item["capacity_strategy"]["S"])
            total = sum(int(s["weight"]) for s in step) or 1
            spot = sum(
                int(s["weight"]) for s in step if str(s["capacityProvider"]).endswith("-spot")
            )
            return spot / total
    return 0.0


def report(
    resources: Sequence[Any], minutes: Mapping[str, float] | float, prices: GpuPrices
) -> dict[str, tuple[JobCost, float]]:
    """Per InstanceWorker of a mocked stack graph: one job's cost (``minutes`` globally or
    per worker; default 1 min) and its idle cost per month."""
    out: dict[str, tuple[JobCost, float]] = {}
    for spec in instance_workers_from_graph(resources):
        run = minutes if isinstance(minutes, int | float) else minutes.get(spec.name, 1.0)
        out[spec.name] = (job_cost(spec, float(run), prices), idle_cost(spec, prices))
    return out


def summary(
    costs: Mapping[str, JobCost | tuple[JobCost, float]],
    minutes: float | None,
    image_storage: Mapping[str, float] | None = None,
) -> str:
    """Plain-text lines for ``batchctl cost``: per GPU worker its idle cost and one job's.
    ``image_storage``: the estimate's idle footprint per worker (``Estimate.idle_by_worker``:
    the ECR storage of its images), added to the idle compute when given."""
    head = f", one job of {minutes:g} min" if minutes is not None else ""
    lines = [f"GPU workers (ECS Managed Instances){head}:"]
    for value in costs.values():
        c, idle = value if isinstance(value, tuple) else (value, 0.0)
        idle_text = (
            "idle $0.00/month (scale to zero)"
            if idle == 0
            else f"idle ${idle:.2f}/month (never scales in: one {c.instance_type} always on)"
        )
        lines.append(
            f"  {c.worker}: {idle_text}; one job ${c.cost:.4f} on "
            f"{c.instance_type} (${c.hourly:.4f}/h incl. ${c.fee_hourly:.4f}/h management"
            f"{' (estimate)' if c.fee_estimate else ''}, "
            f"{c.billed_seconds:.0f} s billed), ${c.cost_warm:.4f} on a warm instance; up to "
            f"${c.dearest_cost:.4f} on {c.dearest_type}"
        )
        lines += [f"    - {n}" for n in c.notes]
        if image_storage is not None and c.worker in image_storage:
            lines.append(
                f"    - idle also pays ${image_storage[c.worker]:.4f}/month of ECR storage for "
                "its images (in the estimate's ECR lines above)"
            )
        else:
            lines.append("    - idle is compute only: the ECR storage of its images is not in it")
    return "\n".join(lines)
