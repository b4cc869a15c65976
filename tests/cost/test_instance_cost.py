"""cost.instance_cost: GPU worker idle cost ($0: scale to zero) and one job's cost on the
cheapest accepted type, by hand-checked arithmetic, and read from the mocked GPU program."""

from __future__ import annotations

import pytest

from components.offline import run_program, stack_config
from cost import instance_cost as ic
from cost.prices import PriceBookError
from tests.infra.gpu_program import program

PRICES = ic.load_gpu_prices()


def test_every_gpu_type_the_worker_may_use_has_a_sourced_price() -> None:
    from components.instance_rules import GPU_INSTANCE_TYPES

    assert set(GPU_INSTANCE_TYPES) <= set(PRICES.on_demand)
    assert all(s.startswith("https://") for s in PRICES.sources.values())
    assert PRICES.on_demand["g4dn.xlarge"] == 0.526 and PRICES.on_demand["g6.xlarge"] == 0.8048


def test_the_management_fee_is_sourced_and_matches_its_worked_example() -> None:
    import json

    from cost.prices import PRICES_FILE

    section = json.loads(PRICES_FILE.read_text())["gpu_instance_hour"]
    example = section["managed_instances_fee_example"]
    assert example["source"] == section["managed_instances_fee_share"]["source"]
    assert example["source"] == "https://aws.amazon.com/ecs/pricing/" and example["checked"]
    # ECS pricing page example: c6a.2xlarge, $0.037 per instance-hour on $0.306 on-demand.
    assert (example["value"], example["on_demand"]) == (0.037, 0.306)
    assert PRICES.fee_share == 0.1209 == round(0.037 / 0.306, 4)


def test_a_fee_share_that_disagrees_with_its_example_is_refused(tmp_path) -> None:
    import json

    from cost.prices import PRICES_FILE

    data = json.loads(PRICES_FILE.read_text())
    data["gpu_instance_hour"]["managed_instances_fee_share"]["value"] = 0.05
    bad = tmp_path / "prices.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(PriceBookError, match="does not match its example"):
        ic.load_gpu_prices(bad)


def test_g_families_pay_their_own_share_and_others_the_general_one() -> None:
    """AWS prices the charge per type: the G families at 7.8 % of on-demand since 2026-07-01
    (cost/prices.json evidence), a family not listed (p5) at the general 12.09 %."""
    assert PRICES.fee_share_of("g6e.2xlarge") == 0.078
    assert PRICES.fee("g5.xlarge") == pytest.approx(1.006 * 0.078)  # $0.078468
    assert PRICES.fee_share_of("p5.48xlarge") == 0.1209
    assert PRICES.fee("p5.48xlarge") == pytest.approx(55.04 * 0.1209)  # $6.654336


def test_a_family_share_that_disagrees_with_its_price_rows_is_refused(tmp_path) -> None:
    import json

    from cost.prices import PRICES_FILE

    data = json.loads(PRICES_FILE.read_text())
    data["gpu_instance_hour"]["managed_instances_fee_share_by_family"]["value"]["g6"] = 0.12
    bad = tmp_path / "prices.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(PriceBookError, match=r"g6 share 0\.12 does not match its example"):
        ic.load_gpu_prices(bad)


def test_one_job_alone_on_demand_by_hand() -> None:
    # 10 min on g4dn.xlarge on-demand, 180 s start-up, 300 s idle tail:
    #   billed 180 + 600 + 300 = 1080 s
    #   hourly: EC2 $0.526 + management (G family) 0.078 x $0.526 = $0.041028 -> $0.567028
    #   one job: $0.567028 x 1080 / 3600 = $0.1701084; warm: x 600 / 3600 = $0.09450467
    spec = ic.InstanceWorkerSpec("w", ("g6.xlarge", "g4dn.xlarge", "g5.xlarge"), 0.0, 300)
    c = ic.job_cost(spec, 10, PRICES)
    assert c.instance_type == "g4dn.xlarge" and c.dearest_type == "g5.xlarge"
    assert c.billed_seconds == 1080
    assert c.fee_hourly == pytest.approx(0.041028)
    assert c.hourly == pytest.approx(0.567028)
    assert c.cost == pytest.approx(0.1701084)
    assert c.cost_warm == pytest.approx(0.09450467)
    assert c.dearest_cost == pytest.approx(1.006 * 1.078 * 1080 / 3600)  # $0.3253404
    assert any("management charge, 7.80% of on-demand" in n for n in c.notes)


def test_spot_share_blends_with_the_estimated_discount() -> None:
    # All Spot on g6.xlarge: EC2 $0.8048 x (1 - 0.6) = $0.32192, plus the management charge
    # on the on-demand price (Spot instances pay it too): 0.078 x $0.8048 = $0.0627744.
    spec = ic.InstanceWorkerSpec("w", ("g6.xlarge",), 1.0, 0)
    c = ic.job_cost(spec, 0.5, PRICES)  # 30 s run + 180 s start-up = 210 s
    assert c.hourly == pytest.approx(0.32192 + 0.0627744)
    assert c.billed_seconds == 210
    assert c.cost == pytest.approx(0.3846944 * 210 / 3600)  # $0.02244051
    warm = ic.job_cost(ic.InstanceWorkerSpec("w", ("g6.xlarge",), 1.0, 0), 0.2, PRICES)
    assert warm.cost_warm == pytest.approx(warm.hourly * 60 / 3600)  # EC2's one-minute minimum


def test_idle_is_zero_when_scaling_to_zero_and_an_always_on_instance_when_never() -> None:
    assert ic.idle_cost(ic.InstanceWorkerSpec("w", ("g6.xlarge",), 1.0, 300), PRICES) == 0.0
    never = ic.InstanceWorkerSpec("w", ("g6.xlarge", "g4dn.xlarge"), 0.0, -1)
    # One g4dn.xlarge on-demand all month: ($0.526 + 7.8 %) x 730 h = $413.93044
    assert ic.idle_cost(never, PRICES) == pytest.approx(0.567028 * 730)
    with pytest.raises(PriceBookError, match="keeps instances running"):
        ic.idle_cost(never)


def test_unknown_type_and_empty_worker_are_errors() -> None:
    with pytest.raises(PriceBookError, match="no GPU instance price"):
        ic.job_cost(ic.InstanceWorkerSpec("w", ("x9.huge",), 0.0, 0), 1, PRICES)
    with pytest.raises(PriceBookError, match="no instance types"):
        ic.job_cost(ic.InstanceWorkerSpec("w", (), 0.0, 0), 1, PRICES)


@pytest.mark.parametrize(("stack", "spot"), [("dev", 1.0), ("prod", 0.7)])
def test_specs_from_the_gpu_program(stack: str, spot: float) -> None:
    graph = run_program(program, stack=stack, config=stack_config(stack))
    (spec,) = ic.instance_workers_from_graph(graph.resources)
    assert spec.name == "image-embedder" and spec.scale_in_after_seconds == 300
    assert spec.spot_share == pytest.approx(spot)
    assert {"g6.xlarge", "g5.xlarge", "g4dn.xlarge"} <= set(spec.instance_types)
    cost = ic.job_cost(spec, 5, PRICES)
    assert cost.instance_type == "g4dn.xlarge"  # the cheapest accepted single-GPU size
    text = ic.summary({spec.name: cost}, 5)
    assert "idle $0.00/month (scale to zero)" in text and "g4dn.xlarge" in text
    assert f"incl. ${cost.fee_hourly:.4f}/h management (estimate)," in text
    assert cost.fee_hourly > 0 and "ESTIMATE derived from" in text
    # What `batchctl cost` prints for a stack with this worker (report + summary).
    costs = ic.report(graph.resources, 5, PRICES)
    assert costs["image-embedder"] == (cost, 0.0)


def test_the_fargate_model_leaves_the_gpu_worker_to_the_instance_estimate() -> None:
    """An InstanceWorker's jobs run on EC2 instances: the Fargate per-job lines must not
    price them (nor take a share of the stack's jobs); ``instance_cost`` does."""
    from cost.model import model_from_graph

    graph = run_program(program, stack="dev", config=stack_config("dev"))
    names = {w.name for w in model_from_graph(graph, stack="dev").workers}
    assert "image-embedder" not in names
    assert {"content-analyzer", "image-embedder-cpu"} <= names
    assert [s.name for s in ic.instance_workers_from_graph(graph.resources)] == ["image-embedder"]


def test_the_management_fee_is_labelled_an_estimate_while_the_price_book_says_it_is(
    tmp_path,
) -> None:
    """No official per-type GPU fee could be read (cost/prices.json evidence): the derived
    share is marked ``estimate`` and every summary line says so; a sourced figure (estimate
    false) drops the label."""
    import json

    from cost.prices import PRICES_FILE

    data = json.loads(PRICES_FILE.read_text())
    share = data["gpu_instance_hour"]["managed_instances_fee_share"]
    assert share["estimate"] is True and share["checked"] == "2026-12-03"
    spec = ic.InstanceWorkerSpec("w", ("g4dn.xlarge",), 0.0, 300)
    labelled = ic.summary({"w": ic.job_cost(spec, 10, PRICES)}, 10)
    assert "/h management (estimate)," in labelled and "ESTIMATE derived from" in labelled
    sourced = tmp_path / "prices.json"
    # g4dn pays its family's share: sourcing only the general share keeps its label.
    share["estimate"] = False
    sourced.write_text(json.dumps(data))
    still = ic.summary({"w": ic.job_cost(spec, 10, ic.load_gpu_prices(sourced))}, 10)
    assert "/h management (estimate)," in still and "ESTIMATE derived from" in still
    data["gpu_instance_hour"]["managed_instances_fee_share_by_family"]["estimate"] = False
    sourced.write_text(json.dumps(data))
    plain = ic.summary({"w": ic.job_cost(spec, 10, ic.load_gpu_prices(sourced))}, 10)
    assert "(estimate)" not in plain and "ESTIMATE" not in plain
    assert "/h management, " in plain and "management charge, 7.80%" in plain


def test_a_gpu_workers_images_are_in_the_idle_estimate_at_the_gpu_image_size() -> None:
    """The InstanceWorker's ECR repository is priced like any worker's, at the GPU image
    size: by hand, 3 kept images of 3.0 GB (estimate) with 40 % new per push:
    3.0 x (1 + 2 x 0.4) = 5.4 GB x $0.10 = $0.54/month; --gpu-image-gb 8: 14.4 GB, $1.44."""
    from cost.estimator import estimate
    from cost.model import Usage, model_from_graph
    from cost.prices import load_prices

    prices = load_prices()
    assert prices.assumption("gpu_worker_image_gb") == 3.0
    assert prices["ecr_storage_gb_month"] == 0.1
    graph = run_program(program, stack="dev", config=stack_config("dev"))
    model = model_from_graph(graph, stack="dev", config=stack_config("dev"))
    assert [(w.name, w.kept_images) for w in model.instance_workers] == [("image-embedder", 3)]
    est = estimate(model, Usage(image_changed_share=0.4), prices)
    (line,) = [ln for ln in est.lines if ln.service == "ECR" and ln.worker == "image-embedder"]
    assert line.fixed and line.footprint and line.quantity == pytest.approx(5.4)
    assert est.idle_by_worker()["image-embedder"] == pytest.approx(0.54)
    # The CPU fallback built from the same folder is a worker of its own, at the seed size.
    cpu_idle = est.idle_by_worker()["image-embedder-cpu"]
    assert cpu_idle == pytest.approx(0.07 * 1.8 * 0.1)
    bigger = estimate(model, Usage(image_changed_share=0.4, gpu_image_gb=8.0), prices)
    assert bigger.idle_by_worker()["image-embedder"] == pytest.approx(1.44)
    assert any("GPU worker images (image-embedder): 3 GB each (an ESTIMATE" in n for n in est.notes)
    text = ic.summary(ic.report(graph.resources, 5, PRICES), 5, est.idle_by_worker())
    assert "idle also pays $0.5400/month of ECR storage for its images" in text


def test_a_workers_kept_images_come_from_its_own_repository_not_one_containing_its_name() -> None:
    from cost.model import _kept_for

    kept = {
        "ai-batch-dev-image-embedder-cpu image-embedder-cpu-repo-lifecycle": 7,
        "ai-batch-dev-image-embedder image-embedder-repo-lifecycle": 2,
    }
    assert _kept_for(kept, "image-embedder") == 2 and _kept_for(kept, "image-embedder-cpu") == 7
    assert _kept_for(kept, "other") == 5  # no policy: the default


def test_every_gpu_on_demand_price_names_the_price_list_it_was_read_from() -> None:
    """Each EC2 figure is a Price List API value with its evidence and check date (not an
    entry from memory: p4d.24xlarge was 21.96 until checked against the list, 21.957642)."""
    import json

    from cost.prices import PRICES_FILE

    types = json.loads(PRICES_FILE.read_text())["gpu_instance_hour"]["types"]
    for name, entry in types.items():
        assert entry["estimate"] is False and entry["checked"] == "2026-12-04", name
        assert "AWS Price List API, AmazonEC2 us-east-1" in entry["evidence"], name
    assert PRICES.on_demand["p4d.24xlarge"] == 21.957642
