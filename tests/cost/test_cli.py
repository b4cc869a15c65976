"""``batchctl cost``: argument handling and output, on a hand-built model (fast) and once on
the real dev stack."""

from __future__ import annotations

import argparse
import json

import pytest

import cli.cost as cost_cli
from components.offline import PROGRAM
from cost.model import LambdaSpec, QueueSpec, StackCostModel, WorkerSpec

MODEL = StackCostModel(
    stack="t",
    workers=(WorkerSpec("alt", 1024, 2048, spot_share=1.0), WorkerSpec("meta", 512, 1024)),
    lambdas=(LambdaSpec("api", "api", 256), LambdaSpec("launcher", "launcher", 256)),
    queues=(QueueSpec("alt.fifo", 10), QueueSpec("meta.fifo", 10)),
)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cost_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["cost", *argv])


@pytest.fixture
def hand_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost_cli, "_evaluate", lambda stack: (MODEL, None))


def test_per_worker_values() -> None:
    assert cost_cli._per_worker(None, "--x", 7.0) == 7.0
    assert cost_cli._per_worker(["500"], "--x", 7.0) == 500.0
    assert cost_cli._per_worker(["a=1", "b=2.5"], "--x", 7.0) == {"a": 1.0, "b": 2.5}
    for bad in (["a=x"], ["-1"], ["5", "a=1"]):
        with pytest.raises(ValueError, match="--x"):
            cost_cli._per_worker(bad, "--x", 7.0)


def test_json_output(hand_model: None, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(
        "--jobs-per-month",
        "alt=300",
        "--jobs-per-month",
        "meta=100",
        "--duration-seconds",
        "120",
        "--json",
        "--volumes",
        "100,1000",
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    workers = {w["name"]: w for w in out["estimate"]["workers"]}
    assert workers["alt"]["jobs_per_month"] == 300 and workers["meta"]["jobs_per_month"] == 100
    assert workers["alt"]["billed_seconds"] == 150  # 120 s + 30 s start-up
    monthly = out["estimate"]["monthly"]
    assert monthly["total"] == pytest.approx(monthly["idle"] + monthly["jobs"])
    assert [r["jobs_per_month"] for r in out["comparison"]] == [100, 1000]
    assert out["comparison"][0]["ec2_instance"] == "t4g.medium"
    assert out["estimate"]["free_tier_applied"] is False


def test_free_tier_flag_lowers_the_bill(
    hand_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    totals = []
    for extra in ((), ("--free-tier",)):
        args = _parse("--json", "--volumes", "", *extra)
        assert args.func(args) == 0
        totals.append(json.loads(capsys.readouterr().out)["estimate"]["monthly"]["idle"])
    # Two polled queues: 1,314,000 requests; free tier covers 1,000,000 of them.
    assert totals[0] - totals[1] == pytest.approx(1_000_000 * 0.5e-6, rel=1e-3)


def test_table_output_and_errors(hand_model: None, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse("--compare-ec2", "m7g.large")
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "Idle (fixed) monthly costs" in text and "m7g.large always-on" in text
    assert _parse("--compare-ec2", "x9.huge").func(_parse("--compare-ec2", "x9.huge")) == 2
    assert "x9.huge" in capsys.readouterr().err
    args = _parse("--jobs-per-month", "nobody=5")
    assert args.func(args) == 2
    assert "nobody" in capsys.readouterr().err
    args = _parse("--image-changed-share", "1.5")
    assert args.func(args) == 2
    assert "image changed share" in capsys.readouterr().err


def test_image_flags_price_ecr_storage(
    hand_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    def ecr(*extra: str) -> float:
        args = _parse("--json", "--volumes", "", *extra)
        assert args.func(args) == 0
        lines = json.loads(capsys.readouterr().out)["estimate"]["lines"]
        return sum(ln["cost"] for ln in lines if ln["service"] == "ECR")

    # MODEL: 2 workers, 5 kept images each. 1 GB images, nothing shared: 10 GB x $0.10.
    assert ecr("--image-gb", "1", "--image-changed-share", "1") == pytest.approx(1.0)
    # A quarter new per push: 2 x (1 + 4 x 0.25) = 4 GB x $0.10.
    assert ecr("--image-gb", "1", "--image-changed-share", "0.25") == pytest.approx(0.4)


@pytest.mark.skipif(not PROGRAM.exists(), reason="__main__.py has not landed yet")
def test_dev_stack_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse("--stack", "dev", "--json")
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    names = {w["name"] for w in out["estimate"]["workers"]}
    assert names >= {"image-alt-generator", "meta-desc-generator", "content-analyzer"}
    assert out["estimate"]["monthly"]["idle"] > 0  # polled queues and ECR cost something
    assert all(r["cheaper"] == "serverless" for r in out["comparison"])


@pytest.mark.skipif(not PROGRAM.exists(), reason="__main__.py has not landed yet")
def test_readme_shows_what_the_estimator_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's dev-stack estimate is the command's output, not a hand-kept copy."""
    args = _parse("--stack", "dev")
    assert args.func(args) == 0
    printed = capsys.readouterr().out.strip()
    readme = (PROGRAM.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### What a stack costs: `batchctl cost`", 1)[1]
    shown = section.split("```", 2)[1].strip()
    assert shown == printed, "README is stale: paste `batchctl cost --stack dev` into it"


def test_gpu_workers_get_idle_and_per_job_lines_with_the_management_charge(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from components.offline import run_program, stack_config
    from cost import instance_cost as ic
    from cost.model import model_from_graph
    from tests.infra.gpu_program import program

    graph = run_program(program, stack="dev", config=stack_config("dev"))
    model = model_from_graph(graph, stack="dev", config=stack_config("dev"))
    monkeypatch.setattr(cost_cli, "_evaluate", lambda stack: (model, graph))
    args = _parse("--duration-seconds", "600", "--json", "--volumes", "")
    assert args.func(args) == 0
    gpu = json.loads(capsys.readouterr().out)["gpu_workers"]["image-embedder"]
    expected = ic.job_cost(
        ic.instance_workers_from_graph(graph.resources)[0], 10, ic.load_gpu_prices()
    )
    assert gpu["idle_monthly"] == 0.0 and gpu["instance_type"] == "g4dn.xlarge"
    assert gpu["cost"] == pytest.approx(expected.cost) and gpu["fee_hourly"] > 0
    assert gpu["image_storage_monthly"] == pytest.approx(0.54)  # 3 x 3 GB images, 40 % new
    args = _parse("--duration-seconds", "600", "--volumes", "")
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "GPU workers (ECS Managed Instances), one job of 10 min:" in text
    assert "image-embedder: idle $0.00/month (scale to zero); one job $" in text
    assert "management charge, 7.80%" in text
    assert "/h management (estimate)," in text and "ESTIMATE derived from" in text
    assert "idle also pays $" in text and "of ECR storage for its images" in text
    assert "GPU image storage" in text  # the estimate's ECR line of the GPU worker
