"""What a stack is made of, as far as its bill is concerned.

``StackCostModel`` is a plain, typed description (workers, Lambdas, polled queues, alarms,
endpoints, schedules, ...) so the estimator's arithmetic can be tested without Pulumi.
``model_from_graph`` reads it off the resources a program registers under mocks
(``components.offline.evaluate_stack``), so the estimate follows the stack's own config and
declared workers instead of a second, hand-maintained description.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobcontract import WorkerField
from jobcontract.managed_instances import COMPUTE_MANAGED_INSTANCES

if TYPE_CHECKING:  # the estimator itself must not need Pulumi
    from components.offline import MockResource, StackGraph

ARM64 = "arm64"
X86_64 = "x86_64"
DAYS_PER_MONTH = 730 / 24  # AWS bills a month as 730 hours


@dataclass(frozen=True)
class WorkerSpec:
    """One FargateWorker: the task size and where its tasks run."""

    name: str
    cpu_units: int  # ECS cpu units, 1024 = 1 vCPU
    memory_mib: int
    arch: str = ARM64  # "arm64" | "x86_64"
    spot_share: float = 0.0  # share of tasks placed on FARGATE_SPOT, 0..1
    ephemeral_gib: int = 20  # 20 GiB is included in the Fargate price
    kept_images: int = 5  # ECR lifecycle: images kept per repository
    # Warm reuse (issue 10): seconds a task that finished a job waits for the next one
    # before it exits (registration ``reuse_idle_seconds``); 0 = one job per task.
    reuse_idle_seconds: float = 0.0

    @property
    def vcpu(self) -> float:
        return self.cpu_units / 1024

    @property
    def memory_gb(self) -> float:
        return self.memory_mib / 1024


@dataclass(frozen=True)
class InstanceWorkerImages:
    """An InstanceWorker (ECS Managed Instances) as far as the Fargate estimate sees it: its
    image repository only. Its EC2 time is priced by ``cost.instance_cost``."""

    name: str
    kept_images: int = 5  # ECR lifecycle: images kept in its repository


@dataclass(frozen=True)
class LambdaSpec:
    """One Lambda function; ``role`` says what drives its invocations."""

    name: str
    role: str  # "api" | "launcher" | "reconciler" | "sweep" | "other"
    memory_mb: int
    arch: str = ARM64
    provisioned_concurrency: int = 0


@dataclass(frozen=True)
class QueueSpec:
    """A queue a Lambda event source mapping polls (DLQs are not polled)."""

    name: str
    max_concurrency: int | None  # ScalingConfig.MaximumConcurrency, None when unset


@dataclass(frozen=True)
class ScheduleSpec:
    """An EventBridge Scheduler schedule: the sweep's tick or a worker's cron job."""

    name: str
    expression: str
    target: str  # "lambda" | "ecs"
    worker: str | None = None  # the worker a scheduled ECS task runs
    via: str = "scheduler"  # "scheduler" (billed per invocation) | "rule" (EventBridge rule: free)
    tasks_per_run: int = 1  # an array schedule: its own task (exits at once) + one per shard

    @property
    def invocations_per_month(self) -> float:
        return invocations_per_month(self.expression)


@dataclass(frozen=True)
class StackCostModel:
    """Everything in a stack that costs money, read off the program or written by hand."""

    stack: str
    workers: tuple[WorkerSpec, ...]
    lambdas: tuple[LambdaSpec, ...] = ()
    instance_workers: tuple[InstanceWorkerImages, ...] = ()  # GPU workers: their images
    queues: tuple[QueueSpec, ...] = ()
    schedules: tuple[ScheduleSpec, ...] = ()
    alarms: int = 0
    dashboards: int = 0
    secrets: int = 0
    interface_endpoint_azs: int = 0  # sum over interface endpoints of their AZ (subnet) count
    nat_gateways: int = 0
    public_ip: bool = True  # tasks get a public IPv4 (public network mode)
    log_retention_days: int = 14
    reconciler_events_per_task: int = 1  # 1 when the ECS rule matches STOPPED only
    pitr: bool = False
    gsi_count: int = 4
    container_insights: bool = False  # paid CloudWatch metrics, not priced here (noted)
    job_ttl_days: int = 30  # DynamoDB TTL on finished jobs: how long items are stored
    results_expiry_days: int = 30  # S3 lifecycle expiry of results

    def worker(self, name: str) -> WorkerSpec:
        for w in self.workers:
            if w.name == name:
                return w
        raise KeyError(f"no worker {name!r}; workers: {[w.name for w in self.workers]}")

    def lambdas_with_role(self, role: str) -> tuple[LambdaSpec, ...]:
        return tuple(fn for fn in self.lambdas if fn.role == role)


@dataclass(frozen=True)
class JobProfile:
    """The AWS work one job causes, besides its Fargate time.

    Request counts are the ones ``bench/requests_per_job.py`` measured in the local pipeline
    (2026-11-23, 8 per job): api PutItem + SendMessage; launcher 2 UpdateItem (claim, task
    ARN; no read: the claim's conflict carries the item) + free ECS calls; worker RUNNING and
    SUCCEEDED transitions + result PutObject (plus one heartbeat per interval on longer jobs);
    reconciler nothing on a clean exit 0 (a GetItem, and a ``notified_at`` write, only when a
    sink reports the outcome: failures, or Notion); the mapping's receive + delete.
    """

    item_kb: float = 1.0  # job item size (input inline up to 64 KB: raise this for big inputs)
    message_bytes: int = 200  # SQS message body: {"job_id", "attempt"}
    status_polls: int = 3  # client GET /jobs/{id} per job (billed: API GW, Lambda, a read)
    result_downloads: int = 1  # presigned S3 GET of the result by the client
    result_kb: float = 4.0
    heartbeat_seconds: int = 60  # worker heartbeat period (each one is a job-item write)
    progress_writes: float = 0.0  # progress writes besides heartbeats (throttled to them)
    launcher_record_writes: float = 1.0  # task ARN recorded after RunTask
    reconciler_writes: float = 0.0  # notified_at: only when a sink reports the outcome
    esm_batch_fill: float = 1.0  # messages per launcher batch (1 = worst case, low volume)
    # Lambda billed duration per invocation (ms).
    api_ms: float = 60.0
    launcher_ms: float = 250.0  # ecs.RunTask is the slow call
    reconciler_ms: float = 60.0
    sweep_ms: float = 150.0
    # Reads (request units) per job.
    api_reads: float = 0.0  # worker registration: cached per Lambda instance
    launcher_reads: float = 0.0  # none: the conditional claim returns the item
    worker_reads: float = 0.0  # the RUNNING claim returns the item
    reconciler_reads: float = 0.0  # a clean exit 0 is trusted (SUCCEEDED recorded)
    sweep_reads_per_run: float = 1.0  # two empty GSI queries, 0.5 RRU each
    # Log bytes ingested.
    worker_log_kb: float = 8.0
    lambda_log_kb: float = 1.0  # START/END/REPORT + a few JSON lines per invocation
    api_access_log_kb: float = 0.7


@dataclass(frozen=True)
class WorkerUsage:
    """Volume and duration for one worker over a month."""

    jobs_per_month: float
    duration_seconds: float  # the worker's own run time per job
    startup_seconds: float = 30.0  # image pull + ENI + start: billed, the clock starts at pull
    # Warm reuse: jobs one task runs back to back (1 when jobs come further apart than the
    # worker's idle window; a burst of n jobs on a cap of c tasks: about n / c).
    jobs_per_task: float = 1.0


@dataclass(frozen=True)
class Usage:
    """The month being priced: per-worker volume plus global knobs."""

    workers: Mapping[str, WorkerUsage] = field(default_factory=dict)
    profile: JobProfile = field(default_factory=JobProfile)
    # Image sizes: None takes the price book's measured assumptions (worker_image_gb,
    # image_changed_share). ECR stores a repository's unique layers once: the kept images of
    # one worker share their base layers, so only the changed share is paid per extra image.
    image_gb: float | None = None  # compressed size of one image (stored, and pulled per task)
    image_changed_share: float | None = None  # of image_gb, new on each push
    gpu_image_gb: float | None = None  # one InstanceWorker image (CUDA + model: several GB)
    apply_free_tier: bool = False
    spot_discount: float | None = None  # None: the price book's figure


# --- schedules ------------------------------------------------------------------------

_RATE_RE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_DOW = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}


def _expand(fld: str, lo: int, hi: int, names: Mapping[str, int] | None = None) -> set[int]:
    """Values an EventBridge cron field selects (``*``, ``?``, ``L``, lists, ranges, steps)."""
    if fld in ("*", "?", "L"):
        return set(range(lo, hi + 1)) if fld != "L" else {hi}
    out: set[int] = set()
    for part in fld.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        part = part.split("#", 1)[0].rstrip("LW") or "*"

        def val(text: str) -> int:
            return names[text.upper()] if names and text.upper() in names else int(text)

        if part == "*":
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = val(a), val(b)
        else:
            start = val(part)
            end = hi if step > 1 else start
        out.update(range(start, end + 1, step))
    return out


def invocations_per_month(expression: str) -> float:
    """Runs per 730-hour month of a Scheduler ``rate()``, ``cron()`` or ``at()`` expression."""
    expr = expression.strip()
    m = _RATE_RE.match(expr)
    if m:
        n, unit = int(m.group(1)), m.group(2).rstrip("s")
        minutes = {"minute": 1, "hour": 60, "day": 1440}[unit] * n
        return 730 * 60 / minutes
    if expr.startswith("at("):
        return 0.0  # one-time: not a monthly cost
    if expr.startswith("cron(") and expr.endswith(")"):
        fields = expr[5:-1].split()
        if len(fields) != 6:
            raise ValueError(f"cron expression needs 6 fields: {expression!r}")
        minute, hour, dom, month, dow, _year = fields
        per_day = len(_expand(minute, 0, 59)) * len(_expand(hour, 0, 23))
        months = len(_expand(month, 1, 12, _MONTHS)) / 12
        if dom not in ("*", "?"):
            days = min(len(_expand(dom, 1, 31)), DAYS_PER_MONTH)
        elif dow not in ("*", "?"):
            days = len(_expand(dow, 1, 7, _DOW)) / 7 * DAYS_PER_MONTH
        else:
            days = DAYS_PER_MONTH
        return per_day * days * months
    raise ValueError(f"not a Scheduler expression: {expression!r}")


# --- reading a mocked program ----------------------------------------------------------

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
TABLE_ITEM = "aws:dynamodb/tableItem:TableItem"
TABLE = "aws:dynamodb/table:Table"
FUNCTION = "aws:lambda/function:Function"
ESM = "aws:lambda/eventSourceMapping:EventSourceMapping"
PROVISIONED = "aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig"
QUEUE = "aws:sqs/queue:Queue"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
SECRET = "aws:secretsmanager/secret:Secret"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
NAT = "aws:ec2/natGateway:NatGateway"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
REPOSITORY = "aws:ecr/repository:Repository"
SCHEDULE = "aws:scheduler/schedule:Schedule"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"

_ROLES = ("launcher", "reconciler", "sweep", "api")


def _attr(item: Mapping[str, Any], key: str) -> Any:
    """A registration attribute in plain or DynamoDB-typed JSON (``{"S": ...}``)."""
    value = item.get(key)
    if isinstance(value, dict) and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag in ("S", "BOOL"):
            return inner
        if tag == "N":
            return float(inner)
        if tag == "NULL":
            return None
    return value


def spot_share_of(strategy: Iterable[Mapping[str, Any]]) -> float:
    """Share of tasks on FARGATE_SPOT for a capacity provider strategy.

    ECS places ``base`` tasks first (on-demand bases matter only for long-running services;
    a job is one task), then splits by weight. One task per RunTask: weights decide.
    """
    weights: dict[str, float] = {}
    for entry in strategy:
        provider = str(entry.get("capacityProvider") or entry.get("capacity_provider") or "")
        weights[provider] = weights.get(provider, 0.0) + float(entry.get("weight", 0) or 0)
    total = sum(weights.values())
    if total <= 0:
        # All-zero weights: ECS uses the provider with a base; treat the first as the only one.
        first = next(iter(weights), "FARGATE")
        return 1.0 if first == "FARGATE_SPOT" else 0.0
    return weights.get("FARGATE_SPOT", 0.0) / total


def _registrations(graph: StackGraph) -> dict[str, dict[str, Any]]:
    regs: dict[str, dict[str, Any]] = {}
    for res in graph.of_type(TABLE_ITEM):
        raw = res.inputs.get("item")
        try:
            item = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
        except (TypeError, ValueError):
            continue
        if _attr(item, "kind") != "worker" and not str(_attr(item, "pk") or "").startswith(
            "worker#"
        ):
            continue
        name = str(_attr(item, "name") or str(_attr(item, "pk")).removeprefix("worker#"))
        regs[name] = item
    return regs


def _family_of(task_definition_arn: str) -> str:
    return task_definition_arn.rsplit("/", 1)[-1].split(":", 1)[0]


def _workers(graph: StackGraph, config: Mapping[str, str]) -> tuple[WorkerSpec, ...]:
    regs = _registrations(graph)
    task_defs = {
        str(r.outputs.get("family") or r.inputs.get("family")): r
        for r in graph.of_type(TASK_DEFINITION)
    }
    kept = _kept_images(graph)
    default_spot = _config_float(config, "spotShare")
    workers: list[WorkerSpec] = []
    for name, item in sorted(regs.items()):
        if _attr(item, WorkerField.COMPUTE) == COMPUTE_MANAGED_INSTANCES:
            continue  # EC2 instances, not Fargate tasks: priced by cost.instance_cost
        td_arn = str(_attr(item, "task_definition") or "")
        td = task_defs.get(_family_of(td_arn)) if td_arn else None
        if td is None:  # fall back to a family that names the worker
            td = next((r for fam, r in task_defs.items() if name in fam), None)
        cpu = _attr(item, "cpu") or (td.inputs.get("cpu") if td else None)
        memory = _attr(item, "memory") or (td.inputs.get("memory") if td else None)
        arch = _attr(item, "architecture")
        if not arch and td is not None:
            arch = (td.inputs.get("runtimePlatform") or {}).get("cpuArchitecture")
        strategy_raw = _attr(item, "capacity_strategy")
        if strategy_raw:
            strategy = json.loads(strategy_raw) if isinstance(strategy_raw, str) else strategy_raw
            spot = spot_share_of(strategy)
        else:
            spot = default_spot if default_spot is not None else 0.0
        ephemeral = 20
        if td is not None and td.inputs.get("ephemeralStorage"):
            ephemeral = int(td.inputs["ephemeralStorage"].get("sizeInGib", 20))
        workers.append(
            WorkerSpec(
                name=name,
                cpu_units=int(float(cpu or 256)),
                memory_mib=int(float(memory or 512)),
                arch=ARM64 if str(arch or ARM64).upper() in ("ARM64", "ARM") else X86_64,
                spot_share=spot,
                ephemeral_gib=ephemeral,
                kept_images=_kept_for(kept, name),
                reuse_idle_seconds=float(_attr(item, "reuse_idle_seconds") or 0),
            )
        )
    if not workers:  # no registrations: read task definitions alone
        for fam, td in sorted(task_defs.items()):
            arch = (td.inputs.get("runtimePlatform") or {}).get("cpuArchitecture", "ARM64")
            workers.append(
                WorkerSpec(
                    name=fam,
                    cpu_units=int(float(td.inputs.get("cpu") or 256)),
                    memory_mib=int(float(td.inputs.get("memory") or 512)),
                    arch=ARM64 if str(arch).upper() == "ARM64" else X86_64,
                    spot_share=default_spot or 0.0,
                )
            )
    return tuple(workers)


def _instance_workers(graph: StackGraph) -> tuple[InstanceWorkerImages, ...]:
    """The InstanceWorkers of the stack (registrations with Managed Instances compute)."""
    kept = _kept_images(graph)
    return tuple(
        InstanceWorkerImages(name, _kept_for(kept, name))
        for name, item in sorted(_registrations(graph).items())
        if _attr(item, WorkerField.COMPUTE) == COMPUTE_MANAGED_INSTANCES
    )


def _kept_for(kept: Mapping[str, int], worker: str) -> int:
    """Images kept for ``worker``: the lifecycle policy of its own repository (named
    ``<prefix>-<worker>``), not of one whose name merely contains it (``<worker>-cpu``)."""
    for key, count in kept.items():
        repository, _, policy = key.partition(" ")
        if repository == worker or repository.endswith(f"-{worker}"):
            return count
        if policy == f"{worker}-repo-lifecycle":
            return count
    return 5


def _kept_images(graph: StackGraph) -> dict[str, int]:
    """Images each ECR lifecycle policy keeps (``countNumber``), by its repository input."""
    kept: dict[str, int] = {}
    for pol in graph.of_type(LIFECYCLE):
        try:
            doc = json.loads(pol.inputs.get("policy") or "{}")
        except ValueError:
            continue
        counts = [
            int(rule.get("selection", {}).get("countNumber", 0))
            for rule in doc.get("rules", [])
            if rule.get("selection", {}).get("countType") == "imageCountMoreThan"
        ]
        if counts:
            kept[f"{pol.inputs.get('repository') or ''} {pol.name}"] = max(counts)
    return kept


def _role_of(res: MockResource) -> str:
    text = f"{res.name} {res.inputs.get('name', '')}".lower()
    for role in _ROLES:
        if role in text:
            return role
    return "other"


def _lambdas(graph: StackGraph) -> tuple[LambdaSpec, ...]:
    provisioned: dict[str, int] = {}
    for pc in graph.of_type(PROVISIONED):
        fn = str(pc.inputs.get("functionName") or "")
        provisioned[fn] = int(pc.inputs.get("provisionedConcurrentExecutions") or 0)
    out: list[LambdaSpec] = []
    for res in graph.of_type(FUNCTION):
        archs = res.inputs.get("architectures") or ["x86_64"]
        physical = str(res.outputs.get("name") or res.inputs.get("name") or res.name)
        pc_count = next((n for fn, n in provisioned.items() if fn and fn in physical), 0)
        out.append(
            LambdaSpec(
                name=res.name,
                role=_role_of(res),
                memory_mb=int(res.inputs.get("memorySize") or 128),
                arch=ARM64 if archs[0] == "arm64" else X86_64,
                provisioned_concurrency=pc_count,
            )
        )
    return tuple(out)


def _queues(graph: StackGraph) -> tuple[QueueSpec, ...]:
    out: list[QueueSpec] = []
    for esm in graph.of_type(ESM):
        source = str(esm.inputs.get("eventSourceArn") or "")
        if ":sqs:" not in source and "sqs" not in esm.name:
            continue
        scaling = esm.inputs.get("scalingConfig") or {}
        max_c = scaling.get("maximumConcurrency")
        out.append(
            QueueSpec(
                name=source.rsplit(":", 1)[-1] or esm.name,
                max_concurrency=int(max_c) if max_c else None,
            )
        )
    return tuple(out)


def _schedules(graph: StackGraph, workers: Iterable[WorkerSpec]) -> tuple[ScheduleSpec, ...]:
    names = [w.name for w in workers]
    out: list[ScheduleSpec] = []
    for sch in graph.of_type(SCHEDULE):
        if str(sch.inputs.get("state", "ENABLED")).upper() == "DISABLED":
            continue
        target = sch.inputs.get("target") or {}
        arn = str(target.get("arn") or "")
        is_ecs = ":ecs:" in arn or bool(target.get("ecsParameters"))
        worker = None
        if is_ecs:
            td = str((target.get("ecsParameters") or {}).get("taskDefinitionArn") or "")
            text = f"{td} {sch.name} {sch.inputs.get('name', '')}"
            worker = next((n for n in sorted(names, key=len, reverse=True) if n in text), None)
        out.append(
            ScheduleSpec(
                name=sch.name,
                expression=str(sch.inputs.get("scheduleExpression") or "rate(1 day)"),
                target="ecs" if is_ecs else "lambda",
                worker=worker,
                tasks_per_run=_tasks_per_run(target) if is_ecs else 1,
            )
        )
    for rule in graph.of_type(EVENT_RULE):
        expression = rule.inputs.get("scheduleExpression")
        if expression and str(rule.inputs.get("state", "ENABLED")).upper() != "DISABLED":
            out.append(
                ScheduleSpec(
                    name=rule.name, expression=str(expression), target="lambda", via="rule"
                )
            )
    return tuple(out)


def _tasks_per_run(target: Mapping[str, Any]) -> int:
    """Tasks one run of an ECS schedule starts: 1, or for an array schedule
    (``BATCH_SCHEDULED_ARRAY`` in its overrides) its own task plus one per shard (the
    default shard size when the request names none: the schema's cap is not known here)."""
    from jobcontract import arrays
    from jobcontract.scheduled import ScheduledRequest

    try:
        overrides = json.loads(str(target.get("input") or "{}"))
        (container,) = overrides["containerOverrides"]
        env = {e["name"]: e["value"] for e in container.get("environment") or []}
    except (ValueError, KeyError, TypeError):
        return 1
    array = ScheduledRequest.from_env(env).array
    if not array:
        return 1
    items = array.get("items")
    total = (
        len(items)
        if isinstance(items, list)
        else int((array.get("manifest") or {}).get("items") or 0)
    )
    size, parallelism = array.get("shard_size"), array.get("parallelism")
    if size is None and parallelism:
        size = math.ceil(total / int(parallelism))
    return 1 + math.ceil(total / int(size or arrays.DEFAULT_SHARD_SIZE))


def _config_value(config: Mapping[str, str], key: str) -> str | None:
    for full, value in config.items():
        if full.split(":", 1)[-1] == key:
            return value
    return None


def _config_float(config: Mapping[str, str], key: str) -> float | None:
    value = _config_value(config, key)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number / 100 if number > 1 else number  # "70" or "0.7"


def _config_json(config: Mapping[str, str], key: str) -> dict[str, Any]:
    value = _config_value(config, key)
    try:
        doc = json.loads(value) if value else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _config_int(config: Mapping[str, str], key: str, default: int) -> int:
    value = _config_value(config, key)
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _public_ip(graph: StackGraph, config: Mapping[str, str]) -> bool:
    for fn in graph.of_type(FUNCTION):
        env = ((fn.inputs.get("environment") or {}).get("variables")) or {}
        flag = env.get("BATCH_ASSIGN_PUBLIC_IP")
        if flag is not None:
            return str(flag).upper() == "ENABLED"
    mode = _config_value(config, "networkMode")
    return (mode or "public") == "public"


def _reconciler_events(graph: StackGraph) -> int:
    """ECS emits ~6 task state changes per task; a rule on STOPPED only sees one."""
    for rule in graph.of_type(EVENT_RULE):
        pattern = str(rule.inputs.get("eventPattern") or "")
        if "ECS Task State Change" in pattern:
            return 1 if "STOPPED" in pattern else 6
    return 1


def model_from_graph(
    graph: StackGraph, *, stack: str = "dev", config: Mapping[str, str] | None = None
) -> StackCostModel:
    """Read a ``StackCostModel`` off the resources a program registered under mocks."""
    cfg = dict(config or {})
    workers = _workers(graph, cfg)
    endpoints_azs = sum(
        max(1, len(ep.inputs.get("subnetIds") or []))
        for ep in graph.of_type(ENDPOINT)
        if str(ep.inputs.get("vpcEndpointType", "Gateway")) == "Interface"
    )
    retention = [
        int(lg.inputs["retentionInDays"])
        for lg in graph.of_type(LOG_GROUP)
        if lg.inputs.get("retentionInDays")
    ]
    tables = graph.of_type(TABLE)
    pitr = any((t.inputs.get("pointInTimeRecovery") or {}).get("enabled") for t in tables)
    gsis = max((len(t.inputs.get("globalSecondaryIndexes") or []) for t in tables), default=4)
    return StackCostModel(
        stack=stack,
        workers=workers,
        instance_workers=_instance_workers(graph),
        lambdas=_lambdas(graph),
        queues=_queues(graph),
        schedules=_schedules(graph, workers),
        alarms=len(graph.of_type(ALARM)),
        dashboards=len(graph.of_type(DASHBOARD)),
        secrets=len(graph.of_type(SECRET)),
        interface_endpoint_azs=endpoints_azs,
        nat_gateways=len(graph.of_type(NAT)),
        public_ip=_public_ip(graph, cfg),
        log_retention_days=max(retention) if retention else 14,
        reconciler_events_per_task=_reconciler_events(graph),
        pitr=bool(pitr),
        gsi_count=gsis,
        container_insights=any(
            str(setting.get("value", "")).startswith("enabled")
            for cluster in graph.of_type("aws:ecs/cluster:Cluster")
            for setting in cluster.inputs.get("settings") or []
            if setting.get("name") == "containerInsights"
        ),
        job_ttl_days=_config_int(cfg, "jobTtlDays", 30),
        results_expiry_days=int(_config_json(cfg, "results").get("expireDays", 30)),
    )


def model_from_stack(
    stack: str = "dev", overrides: Mapping[str, str] | None = None
) -> StackCostModel:
    """Evaluate ``__main__.py`` for ``stack`` under mocks and read its cost model."""
    from components.offline import evaluate_stack, stack_config

    graph = evaluate_stack(stack, overrides)
    return model_from_graph(graph, stack=stack, config=stack_config(stack, overrides))


def ceil_div(numerator: float, denominator: float) -> int:
    return max(1, math.ceil(numerator / denominator))
