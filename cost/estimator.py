"""Monthly cost of a stack: what it costs idle, and what each job adds.

Every figure is a line item (service, item, quantity, unit price) so the table shows how a
total was reached, the free tier can be applied per pool across lines, and tests can check
each piece of arithmetic on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cost import billing
from cost.model import (
    ARM64,
    JobProfile,
    LambdaSpec,
    StackCostModel,
    Usage,
    WorkerSpec,
    WorkerUsage,
)
from cost.prices import PriceBook, load_prices

SECONDS_PER_HOUR = 3600
KB = 1024
GB_IN_KB = 1024 * 1024

# Free-tier pools: one allowance shared by every line that draws on it.
POOL_LAMBDA_REQUESTS = "lambda_requests"
POOL_LAMBDA_GB_S = "lambda_gb_seconds"
POOL_SQS = "sqs_requests"
POOL_ALARMS = "cloudwatch_alarms"
POOL_DASHBOARDS = "cloudwatch_dashboards"
POOL_LOGS = "logs_gb"
POOL_DDB_STORAGE = "dynamodb_storage_gb"


@dataclass(frozen=True)
class Line:
    """One priced quantity. ``fixed`` lines are paid with zero jobs (the idle cost)."""

    service: str
    item: str
    quantity: float
    unit: str
    unit_price: float
    fixed: bool
    worker: str | None = None
    free_pool: str | None = None
    free_quantity: float = 0.0  # part of ``quantity`` the free tier covers
    footprint: bool = False  # what ``worker`` costs idle just by being declared (its images)

    @property
    def cost(self) -> float:
        return max(0.0, self.quantity - self.free_quantity) * self.unit_price


@dataclass(frozen=True)
class WorkerFigures:
    name: str
    vcpu: float
    memory_gb: float
    arch: str
    spot_share: float
    jobs_per_month: float
    duration_seconds: float
    billed_seconds: int
    fargate_per_job: float
    cost_per_job: float  # every per-job line of this worker, divided by its jobs


@dataclass(frozen=True)
class Estimate:
    stack: str
    region: str
    prices_checked: str
    free_tier_applied: bool
    spot_discount: float
    lines: tuple[Line, ...]
    workers: tuple[WorkerFigures, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def fixed_total(self) -> float:
        return sum(line.cost for line in self.lines if line.fixed)

    def idle_by_worker(self) -> dict[str, float]:
        """What each declared worker adds to the idle month by existing (its footprint lines:
        ECR storage of its kept images). The stack's shared idle lines (the launch queue's
        polling, its DLQ alarm, the sweep) are not a worker's: they do not grow with them."""
        out = {w.name: 0.0 for w in self.workers}
        for line in self.lines:
            if line.fixed and line.footprint and line.worker is not None:
                out[line.worker] = out.get(line.worker, 0.0) + line.cost
        return out

    @property
    def idle_per_worker(self) -> float:
        """The largest idle footprint of any one worker ($/month)."""
        return max(self.idle_by_worker().values(), default=0.0)

    @property
    def jobs_total(self) -> float:
        return sum(line.cost for line in self.lines if not line.fixed)

    @property
    def total(self) -> float:
        return self.fixed_total + self.jobs_total

    @property
    def jobs_per_month(self) -> float:
        return sum(w.jobs_per_month for w in self.workers)

    def by_service(self, *, fixed: bool | None = None) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.lines:
            if fixed is None or line.fixed == fixed:
                out[line.service] = out.get(line.service, 0.0) + line.cost
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "region": self.region,
            "prices_checked": self.prices_checked,
            "free_tier_applied": self.free_tier_applied,
            "spot_discount": self.spot_discount,
            "monthly": {
                "idle": round(self.fixed_total, 6),
                "jobs": round(self.jobs_total, 6),
                "total": round(self.total, 6),
            },
            "jobs_per_month": self.jobs_per_month,
            "idle_per_worker": {n: round(c, 6) for n, c in self.idle_by_worker().items()},
            "workers": [asdict(w) for w in self.workers],
            "lines": [{**asdict(line), "cost": round(line.cost, 8)} for line in self.lines],
            "notes": list(self.notes),
        }


# --- the unit arithmetic (each piece tested on its own) ---------------------------------


# --- warm reuse (issue 10): the billing rule lives in cost/billing.py ----------------------
def reuse_billed_seconds(worker: WorkerSpec, wu: WorkerUsage, prices: PriceBook) -> float:
    """Billed Fargate seconds per job: a task's billed time (start-up + its jobs + the idle
    window, one-minute minimum) shared by the jobs it runs (one with reuse off)."""
    return billing.billed_seconds_per_job(
        wu.jobs_per_task, wu.duration_seconds, worker.reuse_idle_seconds, wu.startup_seconds,
        prices["fargate_minimum_seconds"],
    )


def fargate_billed_seconds(
    duration_seconds: float, startup_seconds: float, minimum_seconds: float = 60
) -> int:
    """Per-second billing from the start of the image pull, with a one-minute minimum."""
    return int(max(minimum_seconds, math.ceil(duration_seconds + startup_seconds)))


def spot_blend(on_demand_price: float, spot_share: float, spot_discount: float) -> float:
    """Expected price when ``spot_share`` of tasks run on Spot at ``spot_discount`` off."""
    if not 0.0 <= spot_share <= 1.0:
        raise ValueError(f"spot share must be within 0..1, got {spot_share}")
    return on_demand_price * ((1.0 - spot_share) + spot_share * (1.0 - spot_discount))


def fargate_task_cost(
    worker: WorkerSpec, billed_seconds: float, prices: PriceBook, spot_discount: float
) -> float:
    """Fargate compute (+ ephemeral storage beyond 20 GB) of one task, blended for Spot."""
    arch = "arm" if worker.arch == ARM64 else "x86"
    hours = billed_seconds / SECONDS_PER_HOUR
    hourly = (
        worker.vcpu * prices[f"fargate_{arch}_vcpu_hour"]
        + worker.memory_gb * prices[f"fargate_{arch}_gb_hour"]
    )
    extra_gb = max(0, worker.ephemeral_gib - 20)
    compute = spot_blend(hourly * hours, worker.spot_share, spot_discount)
    return compute + extra_gb * prices["fargate_ephemeral_gb_hour"] * hours


def sqs_requests(payload_bytes: int, chunk_bytes: int = 64 * KB) -> int:
    """Billed SQS requests for one call carrying ``payload_bytes`` (each 64 KB chunk is one)."""
    return max(1, math.ceil(payload_bytes / chunk_bytes))


def write_units(item_kb: float) -> int:
    """On-demand write request units for one write of an item (1 KB each, rounded up)."""
    return max(1, math.ceil(item_kb))


def read_units(item_kb: float, *, consistent: bool = True) -> float:
    """Read request units for one read (4 KB each, rounded up; eventual reads cost half)."""
    units = max(1, math.ceil(item_kb / 4))
    return units if consistent else units / 2


def job_item_write_units(item_kb: float, gsi_count: int, *, changes_status: bool) -> int:
    """WRUs of one write to a job item present in ``gsi_count`` ALL-projecting indexes.

    Every index holding the item is written too; when the write changes an index's key
    (status lives in two index keys: by-status and by-worker-status) that index needs a
    delete plus a put, so two writes.
    """
    units = write_units(item_kb)
    key_changes = min(2, gsi_count) if changes_status else 0
    return units * (1 + gsi_count + key_changes)


def image_gb(usage: Usage, prices: PriceBook) -> float:
    """Compressed size of one worker image: the caller's figure, else the price book's."""
    if usage.image_gb is not None:
        return usage.image_gb
    return prices.assumption("worker_image_gb")


def gpu_image_gb(usage: Usage, prices: PriceBook) -> float:
    """Compressed size of one InstanceWorker (GPU) image: the caller's, else the estimate."""
    if usage.gpu_image_gb is not None:
        return usage.gpu_image_gb
    return prices.assumption("gpu_worker_image_gb")


def changed_share(usage: Usage, prices: PriceBook) -> float:
    if usage.image_changed_share is not None:
        return usage.image_changed_share
    return prices.assumption("image_changed_share")


def ecr_storage_gb(kept_images: int, image_size_gb: float, share_changed: float) -> float:
    """One repository's billed storage: ECR keeps each unique layer once, so the kept images
    share their base layers; each image after the first adds only its changed layers."""
    if not 0.0 <= share_changed <= 1.0:
        raise ValueError(f"image changed share must be within 0..1, got {share_changed}")
    if image_size_gb < 0:
        raise ValueError(f"image size must not be negative, got {image_size_gb} GB")
    if kept_images <= 0:
        return 0.0
    return image_size_gb * (1 + (kept_images - 1) * share_changed)


def idle_poll_requests(pollers: float, long_poll_seconds: float, hours: float) -> float:
    """Empty ReceiveMessage calls of an idle event source mapping in ``hours``."""
    return pollers * (SECONDS_PER_HOUR / long_poll_seconds) * hours


# --- the estimate -----------------------------------------------------------------------


def _lambda(model: StackCostModel, role: str) -> LambdaSpec:
    found = model.lambdas_with_role(role)
    return found[0] if found else LambdaSpec(name=role, role=role, memory_mb=256)


def _lambda_lines(
    fn: LambdaSpec,
    invocations: float,
    ms: float,
    prices: PriceBook,
    *,
    fixed: bool,
    item: str,
    worker: str | None = None,
) -> list[Line]:
    arch = "arm" if fn.arch == ARM64 else "x86"
    gb_s = invocations * (fn.memory_mb / 1024) * (ms / 1000)
    return [
        Line("Lambda", f"{fn.role} requests ({item})", invocations, "requests",
             prices["lambda_request_million"] / 1e6, fixed, worker, POOL_LAMBDA_REQUESTS),
        Line("Lambda", f"{fn.role} compute ({item})", gb_s, f"GB-s {fn.arch}",
             prices[f"lambda_{arch}_gb_second"], fixed, worker, POOL_LAMBDA_GB_S),
    ]


def _fixed_lines(model: StackCostModel, usage: Usage, prices: PriceBook) -> list[Line]:
    hours = prices.hours_per_month
    p = usage.profile
    lines: list[Line] = []
    if model.nat_gateways:
        lines.append(Line("VPC", "NAT gateway hours", model.nat_gateways * hours,
                          "gateway-hours", prices["nat_gateway_hour"], True))
    if model.interface_endpoint_azs:
        lines.append(Line("VPC", "interface endpoint AZ-hours",
                          model.interface_endpoint_azs * hours, "AZ-hours",
                          prices["interface_endpoint_az_hour"], True))
    if model.alarms:
        lines.append(Line("CloudWatch", "alarms", model.alarms, "alarms",
                          prices["cloudwatch_alarm_month"], True, None, POOL_ALARMS))
    if model.dashboards:
        lines.append(Line("CloudWatch", "dashboards", model.dashboards, "dashboards",
                          prices["cloudwatch_dashboard_month"], True, None, POOL_DASHBOARDS))
    if model.secrets:
        lines.append(Line("Secrets Manager", "secrets", model.secrets, "secrets",
                          prices["secret_month"], True))
    # Per worker: its repository's kept images, and nothing else (no queue, trigger or alarm
    # of its own: the stack's one launch queue is polled and alarmed once).
    for w in model.workers:
        gb = ecr_storage_gb(w.kept_images, image_gb(usage, prices), changed_share(usage, prices))
        if gb:
            lines.append(Line("ECR", "image storage (one image + changed layers of the others)",
                              gb, "GB-month", prices["ecr_storage_gb_month"], True, w.name,
                              footprint=True))
    # A GPU worker (cost.instance_cost prices its EC2 time) has a repository too, of images
    # several GB large (CUDA libraries, the model's weights): the same rule, its own size.
    for iw in model.instance_workers:
        gb = ecr_storage_gb(iw.kept_images, gpu_image_gb(usage, prices),
                            changed_share(usage, prices))
        if gb:
            lines.append(Line("ECR", "GPU image storage (one image + changed layers of the "
                              "others)", gb, "GB-month", prices["ecr_storage_gb_month"], True,
                              iw.name, footprint=True))
    # Lambda's SQS pollers long-poll every mapped queue (the stack's launch queue), jobs or not.
    poll_s = prices.assumption("esm_long_poll_seconds")
    for q in model.queues:
        pollers = prices.assumption(
            "esm_idle_pollers_max_concurrency" if q.max_concurrency
            else "esm_idle_pollers_default"
        )
        lines.append(Line("SQS", f"idle event-source polling of {q.name} ({pollers:g} pollers)",
                          idle_poll_requests(pollers, poll_s, hours), "requests",
                          prices["sqs_fifo_million"] / 1e6, True, None, POOL_SQS))
    for fn in model.lambdas:
        if fn.provisioned_concurrency:
            arch_key = "lambda_provisioned_arm_gb_second"
            gb_s = fn.provisioned_concurrency * fn.memory_mb / 1024 * hours * SECONDS_PER_HOUR
            lines.append(Line("Lambda", f"{fn.role} provisioned concurrency", gb_s,
                              "GB-s", prices[arch_key] * (1 if fn.arch == ARM64 else 1.25),
                              True))
    scheduled = sum(
        s.invocations_per_month for s in model.schedules if s.via == "scheduler"
    )
    if scheduled:
        billable = max(0.0, scheduled - prices["scheduler_included_invocations"])
        lines.append(Line("EventBridge Scheduler", "invocations beyond the $0 tier of 14 M",
                          billable, "invocations", prices["scheduler_million"] / 1e6, True))
    sweep_runs = sum(s.invocations_per_month for s in model.schedules if s.target == "lambda")
    if sweep_runs:
        sweep = _lambda(model, "sweep")
        lines += _lambda_lines(sweep, sweep_runs, p.sweep_ms, prices, fixed=True,
                               item="periodic")
        lines.append(Line("DynamoDB", "sweep queries", sweep_runs * p.sweep_reads_per_run,
                          "RRU", prices["dynamodb_rru_million"] / 1e6, True))
        lines.append(Line("CloudWatch Logs", "sweep log ingestion",
                          sweep_runs * p.lambda_log_kb / GB_IN_KB, "GB",
                          prices["logs_ingest_gb"], True, None, POOL_LOGS))
    return lines


def _job_lines(
    model: StackCostModel,
    worker: WorkerSpec,
    jobs: float,
    wu: WorkerUsage,
    prices: PriceBook,
    spot_discount: float,
    usage: Usage,
    *,
    via_api: bool,
    fixed: bool,
) -> list[Line]:
    """Everything ``jobs`` jobs of ``worker`` add to the month."""
    if jobs <= 0:
        return []
    p: JobProfile = usage.profile
    name = worker.name
    tag = "api jobs" if via_api else "scheduled runs"
    billed = reuse_billed_seconds(worker, wu, prices)  # cost.billing (warm reuse)
    task_hours = jobs * billed / SECONDS_PER_HOUR
    arch = "arm" if worker.arch == ARM64 else "x86"
    blend = spot_blend(1.0, worker.spot_share, spot_discount)
    spot_note = f"{worker.spot_share:.0%} Spot" if worker.spot_share else "on-demand"
    lines = [
        Line("Fargate", f"vCPU-hours ({worker.arch}, {spot_note})", task_hours * worker.vcpu,
             "vCPU-hours", prices[f"fargate_{arch}_vcpu_hour"] * blend, fixed, name),
        Line("Fargate", f"GB-hours ({worker.arch}, {spot_note})", task_hours * worker.memory_gb,
             "GB-hours", prices[f"fargate_{arch}_gb_hour"] * blend, fixed, name),
    ]
    if worker.ephemeral_gib > 20:
        lines.append(Line("Fargate", "ephemeral storage beyond 20 GB",
                          task_hours * (worker.ephemeral_gib - 20), "GB-hours",
                          prices["fargate_ephemeral_gb_hour"], fixed, name))
    if model.public_ip:
        ip_hours = jobs * billing.public_ipv4_hours_per_job(
            wu.jobs_per_task, wu.duration_seconds, worker.reuse_idle_seconds, wu.startup_seconds
        )  # cost.billing: the task's lifetime, shared by its jobs
        lines.append(Line("VPC", "public IPv4 while tasks run", ip_hours, "IP-hours",
                          prices["public_ipv4_hour"], fixed, name))
    if model.nat_gateways:
        lines.append(Line("VPC", "image pulls through NAT", jobs * image_gb(usage, prices), "GB",
                          prices["nat_gateway_gb"], fixed, name))
    elif model.interface_endpoint_azs:
        lines.append(Line("VPC", "image pulls through interface endpoints",
                          jobs * image_gb(usage, prices), "GB", prices["interface_endpoint_gb"],
                          fixed, name))

    lambda_invocations = 0.0
    api_requests = 0.0
    g = model.gsi_count
    wru = 0.0
    rru = 0.0
    if via_api:
        api_requests = jobs * (1 + p.status_polls)
        lines.append(Line("API Gateway", "REST requests (submit + status polls)", api_requests,
                          "requests", prices["apigw_rest_million"] / 1e6, fixed, name))
        api_fn = _lambda(model, "api")
        lines += _lambda_lines(api_fn, api_requests, p.api_ms, prices, fixed=fixed,
                               item=tag, worker=name)
        batches = jobs / max(1.0, p.esm_batch_fill)
        launcher = _lambda(model, "launcher")
        lines += _lambda_lines(launcher, batches, p.launcher_ms, prices, fixed=fixed,
                               item=tag, worker=name)
        lambda_invocations += api_requests + batches
        chunk = int(prices["sqs_chunk_bytes"])
        sqs = jobs * sqs_requests(p.message_bytes, chunk) + 2 * batches * sqs_requests(
            int(p.message_bytes * max(1.0, p.esm_batch_fill)), chunk
        )
        lines.append(Line("SQS", "FIFO send + receive + delete", sqs, "requests",
                          prices["sqs_fifo_million"] / 1e6, fixed, name, POOL_SQS))
        wru += jobs * job_item_write_units(p.item_kb, g, changes_status=False)  # PutItem
        wru += jobs * job_item_write_units(p.item_kb, g, changes_status=True)  # DISPATCHED
        wru += jobs * p.launcher_record_writes * job_item_write_units(
            p.item_kb, g, changes_status=False
        )
        rru += jobs * (p.api_reads + p.launcher_reads + p.status_polls * read_units(p.item_kb))
    else:
        wru += jobs * job_item_write_units(p.item_kb, g, changes_status=False)  # recorded
    heartbeats = math.floor(wu.duration_seconds / p.heartbeat_seconds)
    wru += jobs * 2 * job_item_write_units(p.item_kb, g, changes_status=True)  # RUNNING, done
    plain_writes = heartbeats + p.progress_writes + p.reconciler_writes
    wru += jobs * plain_writes * job_item_write_units(p.item_kb, g, changes_status=False)
    events = model.reconciler_events_per_task
    reconciler = _lambda(model, "reconciler")
    lines += _lambda_lines(reconciler, jobs * events, p.reconciler_ms, prices, fixed=fixed,
                           item=tag, worker=name)
    lambda_invocations += jobs * events
    rru += jobs * (p.worker_reads + p.reconciler_reads * events)
    lines.append(Line("DynamoDB", "job writes (table + indexes, heartbeats)", wru, "WRU",
                      prices["dynamodb_wru_million"] / 1e6, fixed, name))
    lines.append(Line("DynamoDB", "job reads", rru, "RRU",
                      prices["dynamodb_rru_million"] / 1e6, fixed, name))
    ttl_days = model.job_ttl_days
    overhead_kb = prices.assumption("dynamodb_item_overhead_bytes") / KB
    stored_gb = jobs * (ttl_days / (prices.hours_per_month / 24)) * (1 + g) * (
        p.item_kb + overhead_kb
    ) / GB_IN_KB
    lines.append(Line("DynamoDB", "job item storage, steady state (table + indexes)",
                      stored_gb, "GB-month", prices["dynamodb_storage_gb_month"], fixed, name,
                      POOL_DDB_STORAGE))
    if model.pitr:
        lines.append(Line("DynamoDB", "point-in-time recovery", stored_gb / (1 + g),
                          "GB-month", prices["dynamodb_pitr_gb_month"], fixed, name))
    lines.append(Line("S3", "result PUT", jobs, "requests", prices["s3_put_thousand"] / 1e3,
                      fixed, name))
    if p.result_downloads and via_api:
        lines.append(Line("S3", "result GET (presigned download)", jobs * p.result_downloads,
                          "requests", prices["s3_get_thousand"] / 1e3, fixed, name))
    expiry = model.results_expiry_days
    lines.append(Line("S3", "result storage, steady state",
                      jobs * p.result_kb * expiry / (prices.hours_per_month / 24) / GB_IN_KB,
                      "GB-month", prices["s3_storage_gb_month"], fixed, name))
    log_kb = (
        jobs * p.worker_log_kb
        + lambda_invocations * p.lambda_log_kb
        + api_requests * p.api_access_log_kb
    )
    log_gb = log_kb / GB_IN_KB
    lines.append(Line("CloudWatch Logs", "log ingestion (worker, Lambdas, API access)", log_gb,
                      "GB", prices["logs_ingest_gb"], fixed, name, POOL_LOGS))
    retained_months = model.log_retention_days / (prices.hours_per_month / 24)
    lines.append(Line("CloudWatch Logs", "log storage, steady state (uncompressed bound)",
                      log_gb * retained_months, "GB-month", prices["logs_storage_gb_month"],
                      fixed, name))
    return lines


def _apply_free_tier(lines: Sequence[Line], prices: PriceBook) -> list[Line]:
    """Spend each always-free allowance on its pool's lines, idle lines first."""
    remaining = {pool: prices.free(pool) for pool in {ln.free_pool for ln in lines} if pool}
    out: list[Line] = []
    for line in sorted(lines, key=lambda ln: not ln.fixed):
        if line.free_pool and remaining.get(line.free_pool, 0) > 0:
            covered = min(line.quantity, remaining[line.free_pool])
            remaining[line.free_pool] -= covered
            line = replace(line, free_quantity=covered)
        out.append(line)
    return out


def estimate(
    model: StackCostModel, usage: Usage | None = None, prices: PriceBook | None = None
) -> Estimate:
    """The month's bill for ``model`` under ``usage`` (no jobs: the idle cost)."""
    usage = usage or Usage()
    prices = prices or load_prices()
    discount = (
        usage.spot_discount if usage.spot_discount is not None
        else prices["fargate_spot_discount"]
    )
    default_wu = WorkerUsage(jobs_per_month=0, duration_seconds=60)
    lines = _fixed_lines(model, usage, prices)
    figures: list[WorkerFigures] = []
    for worker in model.workers:
        wu = usage.workers.get(worker.name, default_wu)
        job_lines = _job_lines(model, worker, wu.jobs_per_month, wu, prices, discount, usage,
                               via_api=True, fixed=False)
        lines += job_lines
        billed = reuse_billed_seconds(worker, wu, prices)  # cost.billing (warm reuse)
        per_job = (
            sum(ln.cost for ln in job_lines) / wu.jobs_per_month if wu.jobs_per_month else
            sum(ln.cost for ln in _job_lines(model, worker, 1, wu, prices, discount, usage,
                                             via_api=True, fixed=False))
        )
        figures.append(WorkerFigures(
            name=worker.name, vcpu=worker.vcpu, memory_gb=worker.memory_gb, arch=worker.arch,
            spot_share=worker.spot_share, jobs_per_month=wu.jobs_per_month,
            duration_seconds=wu.duration_seconds, billed_seconds=math.ceil(billed),
            fargate_per_job=fargate_task_cost(worker, billed, prices, discount),
            cost_per_job=per_job,
        ))
    for sch in model.schedules:
        if sch.target != "ecs" or sch.worker is None:
            continue
        worker = model.worker(sch.worker)
        wu = usage.workers.get(worker.name, default_wu)
        runs = sch.invocations_per_month * sch.tasks_per_run  # an array run: + its shards
        lines += _job_lines(model, worker, runs, wu, prices, discount,
                            usage, via_api=False, fixed=True)
    if usage.apply_free_tier:
        lines = _apply_free_tier(lines, prices)
    notes = [
        f"Prices: {prices.region}, checked {prices.checked}, source per figure in "
        "cost/prices.json.",
        f"Fargate Spot priced at {discount:.0%} off on-demand; real Spot prices vary.",
        "Billed task time = startup (image pull onwards) + job duration (+ the idle window of "
        "a warm task, shared by the jobs it runs), one-minute minimum; the task's public IPv4 "
        "(public mode) is billed over the same lifetime, without the minimum (cost/billing.py).",
        "Idle SQS polling: Lambda long-polls every mapped queue (20 s polls); with maximum "
        "concurrency set on the mapping AWS keeps 5 pollers, otherwise as few as 2. The stack "
        "maps one launch queue, whatever the number of workers.",
        "Idle per worker: the ECR storage of its kept images (ecr.keepImages); nothing else of "
        "a worker is billed while no job runs.",
        "Scheduled ECS runs are counted in the idle cost: they happen with no API jobs.",
        "Not priced: data transfer out, KMS on AWS-managed keys, SNS failure notices "
        "(failures only), Secrets Manager API calls at task start ($0.05 per 10,000).",
    ]
    if model.instance_workers:
        notes.append(
            f"GPU worker images ({', '.join(w.name for w in model.instance_workers)}): "
            f"{gpu_image_gb(usage, prices):g} GB each"
            + ("" if usage.gpu_image_gb is not None else
               " (an ESTIMATE: pass --gpu-image-gb with the pushed image's compressed size)")
            + "; their EC2 time is in the GPU workers' lines below."
        )
    if model.container_insights:
        notes.append("Container Insights is on: its CloudWatch metrics are billed and NOT "
                     "included here (see https://aws.amazon.com/cloudwatch/pricing/).")
    if not usage.apply_free_tier:
        notes.append("Free tier NOT applied (use --free-tier for always-free allowances).")
    return Estimate(
        stack=model.stack, region=prices.region, prices_checked=prices.checked,
        free_tier_applied=usage.apply_free_tier, spot_discount=discount,
        lines=tuple(lines), workers=tuple(figures), notes=tuple(notes),
    )


# --- serverless vs an always-on instance -----------------------------------------------


@dataclass(frozen=True)
class ComparisonRow:
    jobs_per_month: int
    serverless: float
    serverless_idle: float
    ec2_instance: str
    ec2_monthly: float
    ec2_utilisation: float  # share of the instance's vCPU-hours the jobs need

    @property
    def cheaper(self) -> str:
        return "serverless" if self.serverless <= self.ec2_monthly else "ec2"


def ec2_monthly(prices: PriceBook, instance: str, *, public_ip: bool = True) -> float:
    """An always-on instance: compute + root volume (+ its public IPv4)."""
    inst = prices.instance(instance)
    hours = prices.hours_per_month
    disk = prices.assumption("ec2_root_volume_gb") * prices["ebs_gp3_gb_month"]
    ip = prices["public_ipv4_hour"] * hours if public_ip else 0.0
    return inst.hourly * hours + disk + ip


def compare_ec2(
    model: StackCostModel,
    usage: Usage,
    volumes: Sequence[int] = (100, 1_000, 10_000),
    instance: str = "t4g.medium",
    prices: PriceBook | None = None,
) -> list[ComparisonRow]:
    """Serverless at each monthly volume (split like ``usage``) vs one always-on instance."""
    prices = prices or load_prices()
    shares = _mix(model, usage)
    rows: list[ComparisonRow] = []
    inst = prices.instance(instance)
    for volume in volumes:
        scaled = {
            name: replace(wu, jobs_per_month=volume * share)
            for name, (wu, share) in shares.items()
        }
        est = estimate(model, replace(usage, workers=scaled), prices)
        need = sum(
            wu.jobs_per_month * wu.duration_seconds / SECONDS_PER_HOUR * model.worker(n).vcpu
            for n, wu in scaled.items()
        )
        rows.append(ComparisonRow(
            jobs_per_month=volume, serverless=est.total, serverless_idle=est.fixed_total,
            ec2_instance=instance,
            ec2_monthly=ec2_monthly(prices, instance, public_ip=model.public_ip),
            ec2_utilisation=need / (inst.vcpu * prices.hours_per_month),
        ))
    return rows


def _mix(model: StackCostModel, usage: Usage) -> dict[str, tuple[WorkerUsage, float]]:
    """Each worker's share of the job volume (even split when no volume is given)."""
    given = {n: wu for n, wu in usage.workers.items() if wu.jobs_per_month > 0}
    total = sum(wu.jobs_per_month for wu in given.values())
    if total > 0:
        return {n: (wu, wu.jobs_per_month / total) for n, wu in given.items()}
    names = [w.name for w in model.workers]
    return {
        n: (usage.workers.get(n, WorkerUsage(jobs_per_month=0, duration_seconds=60)),
            1 / len(names))
        for n in names
    }


# --- text output ------------------------------------------------------------------------


def _money(value: float) -> str:
    if value == 0:
        return "$0.00"
    if abs(value) < 0.01:
        return f"${value:.5f}"
    return f"${value:,.2f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(headers), sep, *(fmt(r) for r in rows)])


def _grouped(lines: Sequence[Line]) -> list[list[str]]:
    groups: dict[tuple[str, str, str], list[float]] = {}
    for ln in lines:
        key = (ln.service, ln.item, ln.unit)
        acc = groups.setdefault(key, [0.0, 0.0])
        acc[0] += ln.quantity
        acc[1] += ln.cost
    return [
        [svc, item, f"{qty:,.4g} {unit}", _money(cost)]
        for (svc, item, unit), (qty, cost) in sorted(
            groups.items(), key=lambda kv: (-kv[1][1], kv[0])  # ties: by name, stable output
        )
    ]


def format_estimate(est: Estimate) -> str:
    """The human table: workers, idle lines, per-job lines, totals, notes."""
    out = [
        f"Stack {est.stack}: monthly cost estimate ({est.region}, prices checked "
        f"{est.prices_checked}, free tier {'applied' if est.free_tier_applied else 'not applied'})",
        "",
        _table(
            ["worker", "vCPU", "GB", "arch", "Spot", "jobs/mo", "run s", "billed s",
             "Fargate/job", "all-in/job"],
            [[w.name, f"{w.vcpu:g}", f"{w.memory_gb:g}", w.arch, f"{w.spot_share:.0%}",
              f"{w.jobs_per_month:,.0f}", f"{w.duration_seconds:g}", str(w.billed_seconds),
              _money(w.fargate_per_job), _money(w.cost_per_job)] for w in est.workers],
            {1, 2, 4, 5, 6, 7, 8, 9},
        ),
        "",
        "Idle (fixed) monthly costs:",
        _table(["service", "item", "quantity", "$/month"],
               _grouped([ln for ln in est.lines if ln.fixed]) or [["-", "none", "", "$0.00"]],
               {2, 3}),
        "",
        f"Per-job monthly costs ({est.jobs_per_month:,.0f} jobs):",
        _table(["service", "item", "quantity", "$/month"],
               _grouped([ln for ln in est.lines if not ln.fixed]) or [["-", "no jobs", "",
                                                                       "$0.00"]],
               {2, 3}),
        "",
        _idle_per_worker_text(est),
        "",
        f"Idle: {_money(est.fixed_total)}/month   Jobs: {_money(est.jobs_total)}/month   "
        f"Total: {_money(est.total)}/month",
        "",
        *(f"- {n}" for n in est.notes),
    ]
    return "\n".join(out)


def _idle_per_worker_text(est: Estimate) -> str:
    per = est.idle_by_worker()
    if not per:
        return "Idle per worker: no workers."
    shared = est.fixed_total - sum(per.values())
    lo, hi = min(per.values()), max(per.values())
    spread = f"${hi:.4f}" if abs(hi - lo) < 1e-9 else f"${lo:.4f}..${hi:.4f}"
    return (
        f"Idle per worker: {spread}/month each ({len(per)} workers, ECR storage of kept "
        f"images); shared by the stack: ${shared:.4f}/month"
    )


def format_comparison(rows: Sequence[ComparisonRow]) -> str:
    table = _table(
        ["jobs/month", "serverless $/mo", "of which idle", f"{rows[0].ec2_instance} always-on",
         "instance busy", "cheaper"],
        [[f"{r.jobs_per_month:,}", _money(r.serverless), _money(r.serverless_idle),
          _money(r.ec2_monthly), f"{r.ec2_utilisation:.1%}", r.cheaper] for r in rows],
        {0, 1, 2, 3, 4},
    )
    return (
        f"{table}\n- The instance column is the instance alone (compute, 20 GB gp3, public "
        "IPv4): no queue, API, retries or scaling, so it is a lower bound for running the "
        "same jobs on EC2. 'instance busy' is the share of its vCPU-hours the jobs need."
    )


def comparison_json(rows: Sequence[ComparisonRow]) -> list[dict[str, Any]]:
    return [{**asdict(r), "cheaper": r.cheaper} for r in rows]


def usage_from_args(
    model: StackCostModel,
    jobs: Mapping[str, float] | float,
    durations: Mapping[str, float] | float,
    *,
    startup_seconds: float = 30.0,
    jobs_per_task: float = 1.0,
    **kwargs: Any,
) -> Usage:
    """Per-worker usage from a global figure (split evenly / applied to all) or per worker.
    ``jobs_per_task``: jobs a warm task runs back to back (1 for sparse jobs; a burst of n
    jobs on a worker capped at c tasks comes to about n / c)."""
    names = [w.name for w in model.workers]
    unknown = [n for n in (list(jobs) if isinstance(jobs, Mapping) else [])
               + (list(durations) if isinstance(durations, Mapping) else []) if n not in names]
    if unknown:
        raise KeyError(f"unknown worker(s) {sorted(set(unknown))}; workers: {names}")
    per: dict[str, WorkerUsage] = {}
    for n in names:
        j = jobs.get(n, 0.0) if isinstance(jobs, Mapping) else jobs / max(1, len(names))
        d = durations.get(n, 60.0) if isinstance(durations, Mapping) else durations
        per[n] = WorkerUsage(jobs_per_month=j, duration_seconds=d,
                             startup_seconds=startup_seconds, jobs_per_task=jobs_per_task)
    return Usage(workers=per, **kwargs)
