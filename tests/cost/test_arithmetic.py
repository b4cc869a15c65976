"""The estimator's arithmetic, against figures worked out by hand in the comments.

Prices are the ones in cost/prices.json (us-east-1): a price change there must show up
here as a failing expectation to re-derive, never silently.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from cost.estimator import (
    Line,
    compare_ec2,
    ec2_monthly,
    estimate,
    fargate_billed_seconds,
    fargate_task_cost,
    idle_poll_requests,
    job_item_write_units,
    read_units,
    spot_blend,
    sqs_requests,
    usage_from_args,
    write_units,
)
from cost.model import (
    JobProfile,
    LambdaSpec,
    QueueSpec,
    ScheduleSpec,
    StackCostModel,
    Usage,
    WorkerSpec,
    WorkerUsage,
    invocations_per_month,
)
from cost.prices import PRICES_FILE, PriceBookError, load_prices

PRICES = load_prices()


def test_price_book_carries_the_figures_the_arithmetic_assumes() -> None:
    assert PRICES.region == "us-east-1"
    assert PRICES["fargate_arm_vcpu_hour"] == 0.03238
    assert PRICES["fargate_arm_gb_hour"] == 0.00356
    assert PRICES["fargate_x86_vcpu_hour"] == 0.04048
    assert PRICES["fargate_x86_gb_hour"] == 0.004445
    assert PRICES["dynamodb_wru_million"] == 0.625  # after the 1 Nov 2024 cut
    assert PRICES["dynamodb_rru_million"] == 0.125
    assert PRICES["lambda_arm_gb_second"] == 0.0000133334
    assert PRICES["sqs_fifo_million"] == 0.50
    assert PRICES["apigw_rest_million"] == 3.50


def test_every_figure_has_a_source_and_a_date(tmp_path: Path) -> None:
    doc = json.loads(PRICES_FILE.read_text())
    for key, entry in doc["prices"].items():
        assert entry["source"].startswith("https://"), key
        assert entry["checked"], key
    del doc["prices"]["sqs_fifo_million"]["source"]
    broken = tmp_path / "prices.json"
    broken.write_text(json.dumps(doc))
    with pytest.raises(PriceBookError, match="sqs_fifo_million"):
        load_prices(broken)


def test_one_arm_on_demand_job_of_one_minute() -> None:
    # 1 vCPU, 2 GB, arm64, on-demand, 60 s billed:
    #   vCPU   1 x $0.03238/h x 60/3600 = $0.000539667
    #   memory 2 x $0.00356/h x 60/3600 = $0.000118667
    #   total  ($0.03238 + $0.00712) / 60 = $0.0395 / 60 = $0.000658333
    worker = WorkerSpec("w", cpu_units=1024, memory_mib=2048, arch="arm64", spot_share=0.0)
    billed = fargate_billed_seconds(60, 0)
    assert billed == 60
    assert fargate_task_cost(worker, billed, PRICES, 0.7) == pytest.approx(0.0395 / 60)


@pytest.mark.parametrize(
    ("duration", "startup", "billed"),
    [
        (10, 0, 60),  # one-minute minimum
        (10, 30, 60),  # pull time counts, still under the minimum
        (45, 30, 75),  # the clock starts at the image pull
        (59.2, 0, 60),
        (60.2, 0, 61),  # per second, rounded up
        (3600, 30, 3630),
    ],
)
def test_billed_seconds_minimum_and_rounding(duration: float, startup: float, billed: int) -> None:
    assert fargate_billed_seconds(duration, startup) == billed


def test_short_job_costs_the_full_minute() -> None:
    worker = WorkerSpec("w", cpu_units=512, memory_mib=1024, arch="arm64")
    ten_seconds = fargate_task_cost(worker, fargate_billed_seconds(10, 0), PRICES, 0.7)
    one_minute = fargate_task_cost(worker, 60, PRICES, 0.7)
    # 0.5 vCPU x 0.03238 + 1 GB x 0.00356 = $0.01975/h -> /60 = $0.000329167
    assert ten_seconds == one_minute == pytest.approx(0.01975 / 60)


def test_spot_share_blends_the_price() -> None:
    # Half the tasks at full price, half at 70 % off: 0.5 + 0.5 x 0.3 = 0.65
    assert spot_blend(1.0, 0.5, 0.7) == pytest.approx(0.65)
    assert spot_blend(2.0, 1.0, 0.7) == pytest.approx(0.6)
    assert spot_blend(2.0, 0.0, 0.7) == pytest.approx(2.0)
    # x86, 1 vCPU, 2 GB, one hour, 75 % Spot at 70 % off:
    #   on-demand hourly 0.04048 + 2 x 0.004445 = 0.04937
    #   blend 0.25 + 0.75 x 0.3 = 0.475  ->  0.04937 x 0.475 = 0.02345075
    worker = WorkerSpec("w", 1024, 2048, arch="x86_64", spot_share=0.75)
    assert fargate_task_cost(worker, 3600, PRICES, 0.7) == pytest.approx(0.02345075)
    with pytest.raises(ValueError, match="spot share"):
        spot_blend(1.0, 1.5, 0.7)


def test_ephemeral_storage_beyond_20_gb_is_billed() -> None:
    # 1 vCPU/2 GB arm64 + 50 GiB ephemeral for an hour: 0.0395 + 30 x 0.000111 = 0.04283
    worker = WorkerSpec("w", 1024, 2048, ephemeral_gib=50)
    assert fargate_task_cost(worker, 3600, PRICES, 0.7) == pytest.approx(0.04283)


@pytest.mark.parametrize(
    ("payload", "requests"),
    [(1, 1), (200, 1), (65_536, 1), (65_537, 2), (262_144, 4), (1_048_576, 16)],
)
def test_sqs_bills_each_64_kb_chunk(payload: int, requests: int) -> None:
    assert sqs_requests(payload) == requests


def test_dynamodb_request_units() -> None:
    assert write_units(0.2) == 1
    assert write_units(1.0) == 1
    assert write_units(1.5) == 2  # 1 KB units, rounded up
    assert read_units(3.9) == 1
    assert read_units(4.1) == 2  # 4 KB units
    assert read_units(4.1, consistent=False) == 1.0
    # A status change on a 1 KB item in 4 ALL-projecting GSIs: table 1 + 4 index writes
    # + 2 more because status is in two index keys (delete + put) = 7
    assert job_item_write_units(1.0, 4, changes_status=True) == 7
    assert job_item_write_units(1.0, 4, changes_status=False) == 5
    assert job_item_write_units(1.5, 4, changes_status=True) == 14
    assert job_item_write_units(1.0, 0, changes_status=True) == 1


def test_idle_event_source_polling() -> None:
    # 5 pollers x (3600 s / 20 s) = 900 requests an hour x 730 h = 657,000 a month
    assert idle_poll_requests(5, 20, 730) == 657_000
    assert idle_poll_requests(2, 20, 730) == 262_800


@pytest.mark.parametrize(
    ("expression", "per_month"),
    [
        ("rate(5 minutes)", 8_760),  # 730 h x 12
        ("rate(1 hour)", 730),
        ("rate(2 days)", 730 / 48),
        ("cron(0 3 * * ? *)", 730 / 24),  # once a day
        ("cron(0/15 * ? * MON-FRI *)", 96 * 5 / 7 * 730 / 24),
        ("cron(0 0 1 * ? *)", 1),  # first of the month
        ("at(2027-01-01T00:00:00)", 0),
    ],
)
def test_schedule_invocations(expression: str, per_month: float) -> None:
    assert invocations_per_month(expression) == pytest.approx(per_month)


def test_bad_schedule_expression_is_refused() -> None:
    with pytest.raises(ValueError, match="Scheduler expression"):
        invocations_per_month("every five minutes")


def _model(**kw: object) -> StackCostModel:
    base = StackCostModel(
        stack="t",
        workers=(WorkerSpec("a", 1024, 2048, "arm64", 0.0, kept_images=0),),
        lambdas=(
            LambdaSpec("api", "api", 256),
            LambdaSpec("launcher", "launcher", 256),
            LambdaSpec("reconciler", "reconciler", 256),
            LambdaSpec("sweep", "sweep", 256),
        ),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_public_mode_with_nothing_polled_costs_nothing_idle() -> None:
    est = estimate(_model(), Usage(image_gb=0.0))
    assert est.fixed_total == 0.0
    assert est.jobs_total == 0.0


def test_private_network_fixed_costs() -> None:
    # One NAT gateway: 730 h x $0.045 = $32.85
    nat = estimate(_model(nat_gateways=1, public_ip=False), Usage(image_gb=0.0))
    assert nat.fixed_total == pytest.approx(32.85)
    # Three interface endpoints in two AZs: 6 AZ-hours/h x 730 x $0.01 = $43.80
    ep = estimate(_model(interface_endpoint_azs=6, public_ip=False), Usage(image_gb=0.0))
    assert ep.fixed_total == pytest.approx(43.80)


def test_observability_and_secrets_fixed_costs() -> None:
    # 8 alarms x $0.10 + 1 dashboard x $3 + 2 secrets x $0.40 = $4.60
    est = estimate(_model(alarms=8, dashboards=1, secrets=2), Usage(image_gb=0.0))
    assert est.fixed_total == pytest.approx(4.60)
    # Free tier: 10 alarms and 3 dashboards are free; secrets are not.
    free = estimate(_model(alarms=8, dashboards=1, secrets=2),
                    Usage(image_gb=0.0, apply_free_tier=True))
    assert free.fixed_total == pytest.approx(0.80)


def test_ecr_storage_counts_shared_layers_once_per_repository() -> None:
    model = _model(workers=(WorkerSpec("a", 256, 512, kept_images=5),
                            WorkerSpec("b", 256, 512, kept_images=5)))
    # Nothing shared: 2 workers x 5 images x 0.2 GB = 2 GB x $0.10 = $0.20
    assert estimate(model, Usage(image_gb=0.2, image_changed_share=1.0)).fixed_total == (
        pytest.approx(0.20))
    # Half of each push new: per worker 0.2 + 4 x 0.1 = 0.6 GB; 1.2 GB x $0.10 = $0.12
    assert estimate(model, Usage(image_gb=0.2, image_changed_share=0.5)).fixed_total == (
        pytest.approx(0.12))
    # Identical pushes: one image per repository, 0.4 GB x $0.10 = $0.04
    assert estimate(model, Usage(image_gb=0.2, image_changed_share=0.0)).fixed_total == (
        pytest.approx(0.04))
    # No kept image, no storage.
    none_kept = _model(workers=(WorkerSpec("a", 256, 512, kept_images=0),))
    assert estimate(none_kept, Usage(image_gb=0.2, image_changed_share=0.5)).fixed_total == 0


def test_image_size_defaults_come_from_the_price_book() -> None:
    prices = load_prices()
    model = _model(workers=(WorkerSpec("a", 256, 512, kept_images=3),))
    size, share = prices.assumption("worker_image_gb"), prices.assumption("image_changed_share")
    expected = size * (1 + 2 * share) * prices["ecr_storage_gb_month"]
    assert estimate(model, Usage()).fixed_total == pytest.approx(expected)


@pytest.mark.parametrize("usage", [Usage(image_changed_share=1.5), Usage(image_gb=-1.0)])
def test_impossible_image_figures_are_refused(usage: Usage) -> None:
    model = _model(workers=(WorkerSpec("a", 256, 512, kept_images=3),))
    with pytest.raises(ValueError, match="image"):
        estimate(model, usage)


def test_idle_polling_and_the_free_tier_flag() -> None:
    queues = tuple(QueueSpec(f"q{i}.fifo", max_concurrency=10) for i in range(3))
    model = _model(queues=queues)
    # 3 queues x 657,000 = 1,971,000 requests x $0.50/M = $0.9855
    paid = estimate(model, Usage(image_gb=0.0))
    assert paid.fixed_total == pytest.approx(0.9855)
    # Free tier: the first 1,000,000 requests are free -> 971,000 x $0.50/M = $0.4855
    free = estimate(model, Usage(image_gb=0.0, apply_free_tier=True))
    assert free.fixed_total == pytest.approx(0.4855)
    # Without maximum concurrency AWS may keep as few as 2 pollers: 3 x 262,800 x 0.5e-6
    lean = estimate(_model(queues=tuple(QueueSpec(q.name, None) for q in queues)),
                    Usage(image_gb=0.0))
    assert lean.fixed_total == pytest.approx(0.3942)


def test_sweep_schedule_is_a_fixed_cost() -> None:
    model = _model(schedules=(ScheduleSpec("sweep", "rate(5 minutes)", "lambda"),))
    profile = JobProfile(sweep_ms=100, lambda_log_kb=1.0, sweep_reads_per_run=1.0)
    est = estimate(model, Usage(image_gb=0.0, profile=profile))
    # 8,760 runs: requests 8,760 x $0.2/M          = $0.001752
    #   compute 8,760 x 0.25 GB x 0.1 s = 219 GB-s x $0.0000133334 = $0.00292001
    #   reads 8,760 RRU x $0.125/M                 = $0.001095
    #   logs 8,760 KB / 1,048,576 KB/GB x $0.50    = $0.004177
    #   scheduler: 8,760 is inside the $0 tier of 14 M
    expected = 0.001752 + 219 * 0.0000133334 + 0.001095 + 8760 / 1048576 * 0.5
    assert est.fixed_total == pytest.approx(expected)
    assert est.jobs_total == 0.0


def _line_cost(lines: tuple[Line, ...], service: str, item_part: str) -> float:
    return sum(ln.cost for ln in lines if ln.service == service and item_part in ln.item)


def test_per_job_lines_for_a_thousand_jobs() -> None:
    profile = JobProfile(status_polls=3, api_ms=60, launcher_ms=250, esm_batch_fill=1.0,
                         item_kb=1.0, heartbeat_seconds=60, progress_writes=2,
                         launcher_record_writes=1, reconciler_writes=1)
    usage = Usage(workers={"a": WorkerUsage(1000, duration_seconds=90, startup_seconds=30)},
                  profile=profile, image_gb=0.0)
    est = estimate(_model(), usage)
    lines = est.lines
    # API Gateway: 1,000 x (1 submit + 3 polls) = 4,000 x $3.50/M = $0.014
    assert _line_cost(lines, "API Gateway", "REST") == pytest.approx(0.014)
    # API Lambda: 4,000 requests x $0.2/M = $0.0008;
    #   4,000 x 0.25 GB x 0.06 s = 60 GB-s x $0.0000133334 = $0.000800004
    assert _line_cost(lines, "Lambda", "api requests") == pytest.approx(0.0008)
    assert _line_cost(lines, "Lambda", "api compute") == pytest.approx(60 * 0.0000133334)
    # SQS: send 1 + receive 1 + delete 1 per job = 3,000 x $0.50/M = $0.0015
    assert _line_cost(lines, "SQS", "FIFO") == pytest.approx(0.0015)
    # Fargate: 120 s billed x 1,000 = 33.33 task-hours x (0.03238 + 2 x 0.00356) = $1.316667
    fargate = _line_cost(lines, "Fargate", "")
    assert fargate == pytest.approx(1000 * 120 / 3600 * 0.0395)
    # Public IPv4 for the same 33.33 hours x $0.005 = $0.166667
    assert _line_cost(lines, "VPC", "public IPv4") == pytest.approx(1000 * 120 / 3600 * 0.005)
    # DynamoDB writes per job (1 KB item, 4 GSIs; a status change costs 7, any other 5):
    #   put 5 + DISPATCHED 7 + task ARN 5 + RUNNING 7 + SUCCEEDED 7
    #   + (1 heartbeat (90 s / 60 s) + 2 progress + 1 reconciler) x 5 = 20
    #   = 51 WRU -> 51,000 x $0.625/M = $0.031875
    assert _line_cost(lines, "DynamoDB", "writes") == pytest.approx(0.031875)
    # S3: 1,000 PUT x $0.005/1000 = $0.005
    assert _line_cost(lines, "S3", "PUT") == pytest.approx(0.005)
    assert est.workers[0].cost_per_job == pytest.approx(est.jobs_total / 1000)
    assert est.total == pytest.approx(est.fixed_total + est.jobs_total)


def test_spot_share_lowers_fargate_in_the_estimate() -> None:
    usage = Usage(workers={"a": WorkerUsage(100, 60, 0)}, image_gb=0.0)
    on_demand = _line_cost(estimate(_model(), usage).lines, "Fargate", "")
    spot_model = _model(workers=(WorkerSpec("a", 1024, 2048, spot_share=1.0, kept_images=0),))
    spot = _line_cost(estimate(spot_model, usage).lines, "Fargate", "")
    # 100 one-minute jobs: $0.0395/60 x 100 = $0.0658333; all Spot at 70 % off -> x 0.3
    assert on_demand == pytest.approx(0.0395 / 60 * 100)
    assert spot == pytest.approx(on_demand * 0.3)
    override = Usage(workers=usage.workers, image_gb=0.0, spot_discount=0.5)
    assert _line_cost(estimate(spot_model, override).lines, "Fargate", "") == pytest.approx(
        on_demand * 0.5
    )


def test_free_tier_spends_lambda_allowance_once_across_lines() -> None:
    usage = Usage(workers={"a": WorkerUsage(10_000, 60, 0)}, image_gb=0.0,
                  apply_free_tier=True)
    est = estimate(_model(), usage)
    lambda_requests = sum(ln.quantity for ln in est.lines if ln.free_pool == "lambda_requests")
    covered = sum(ln.free_quantity for ln in est.lines if ln.free_pool == "lambda_requests")
    assert covered == pytest.approx(min(lambda_requests, 1_000_000))
    assert _line_cost(est.lines, "Lambda", "requests") == 0.0  # 60,000 requests < 1 M
    paid = estimate(_model(), replace(usage, apply_free_tier=False))
    assert paid.total > est.total


def test_ec2_always_on_instance() -> None:
    # t4g.medium: 730 h x $0.0336 = $24.528 + 20 GB gp3 x $0.08 = $1.60 + IPv4 $3.65 = $29.778
    assert ec2_monthly(PRICES, "t4g.medium") == pytest.approx(29.778)
    assert ec2_monthly(PRICES, "t4g.medium", public_ip=False) == pytest.approx(26.128)
    with pytest.raises(PriceBookError, match="known"):
        ec2_monthly(PRICES, "x9.huge")


def test_comparison_scales_jobs_and_reports_utilisation() -> None:
    model = _model()
    usage = usage_from_args(model, 1, 120, startup_seconds=30, image_gb=0.0)
    rows = compare_ec2(model, usage, volumes=(100, 1_000, 10_000))
    assert [r.jobs_per_month for r in rows] == [100, 1_000, 10_000]
    # Job costs scale with volume: the job part of 10,000 is 10x that of 1,000.
    jobs = [r.serverless - r.serverless_idle for r in rows]
    assert jobs[2] == pytest.approx(10 * jobs[1], rel=1e-6)
    # 10,000 jobs x 120 s x 1 vCPU = 333.3 vCPU-hours of 2 x 730 = 22.8 %
    assert rows[2].ec2_utilisation == pytest.approx(10_000 * 120 / 3600 / (2 * 730))
    assert all(r.cheaper == "serverless" for r in rows)


def test_usage_from_args_splits_global_volume_and_refuses_unknown_workers() -> None:
    model = _model(workers=(WorkerSpec("a", 256, 512), WorkerSpec("b", 256, 512)))
    usage = usage_from_args(model, 1000, 30)
    assert {n: wu.jobs_per_month for n, wu in usage.workers.items()} == {"a": 500, "b": 500}
    usage = usage_from_args(model, {"a": 10}, {"b": 300})
    assert usage.workers["a"].jobs_per_month == 10
    assert usage.workers["b"].duration_seconds == 300
    with pytest.raises(KeyError, match="zz"):
        usage_from_args(model, {"zz": 1}, 60)
