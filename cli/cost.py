"""``batchctl cost``: what a stack costs idle and per job, from its own program and config.

The stack is evaluated offline (``__main__.py`` under Pulumi mocks), so the estimate always
follows the declared workers and the stack's config; no AWS account is needed. GPU workers on
ECS Managed Instances (``InstanceWorker``) get their own lines (``cost.instance_cost``): idle
cost per month and one job's cost (``--duration-seconds``), EC2 plus the management charge.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

DEFAULT_VOLUMES = (100, 1_000, 10_000)


def _per_worker(
    values: Sequence[str] | None, flag: str, default: float
) -> float | dict[str, float]:
    """``["500"]`` -> 500.0 (global); ``["alt=200", "meta=30"]`` -> per worker."""
    if not values:
        return default
    per: dict[str, float] = {}
    total: float | None = None
    for raw in values:
        name, sep, number = raw.partition("=")
        text = number if sep else name
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{flag} wants N or WORKER=N, got {raw!r}") from None
        if value < 0:
            raise ValueError(f"{flag} must not be negative, got {raw!r}")
        if sep:
            per[name] = value
        else:
            total = value
    if per and total is not None:
        raise ValueError(f"give {flag} either once globally or per worker, not both")
    return per if per else (total if total is not None else default)


def add_parser(subparsers: Any) -> None:
    """Register ``cost`` on the CLI's subparsers (called by cli/main.py)."""
    p = subparsers.add_parser(
        "cost",
        help="estimate a stack's monthly cost (idle + per job) and compare with EC2",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure(p)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", default="dev", help="stack whose Pulumi.<stack>.yaml to use")
    p.add_argument(
        "--jobs-per-month",
        action="append",
        metavar="N|WORKER=N",
        help="job volume: once globally (split evenly) or per worker; default 1000",
    )
    p.add_argument(
        "--duration-seconds",
        action="append",
        metavar="S|WORKER=S",
        help="run time of one job, globally or per worker; default 60",
    )
    p.add_argument(
        "--startup-seconds",
        type=float,
        default=30.0,
        help="billed image pull + start per task (the clock starts at the pull)",
    )
    p.add_argument(
        "--jobs-per-task",
        type=float,
        default=1.0,
        help="jobs a warm task runs back to back (warm reuse): 1 for sparse jobs, "
        "about jobs-in-a-burst / max-tasks for batches; default 1",
    )
    p.add_argument(
        "--status-polls", type=int, default=3, help="client GET /jobs/{id} calls per job (billed)"
    )
    p.add_argument(
        "--image-gb",
        type=float,
        default=None,
        help="compressed size of one worker image (default: the price book's "
        "measured seed-worker image)",
    )
    p.add_argument(
        "--gpu-image-gb",
        type=float,
        default=None,
        help="compressed size of one GPU worker (InstanceWorker) image; default: the price "
        "book's estimate (several GB: CUDA libraries and the model)",
    )
    p.add_argument(
        "--image-changed-share",
        type=float,
        default=None,
        help="share of an image that is new on each push (ECR stores shared layers "
        "once per repository; default: the price book's)",
    )
    p.add_argument(
        "--spot-discount",
        type=float,
        default=None,
        help="Fargate Spot discount as a fraction (default: the price book's)",
    )
    p.add_argument(
        "--free-tier", action="store_true", help="apply the always-free allowances (off by default)"
    )
    p.add_argument(
        "--compare-ec2",
        default="t4g.medium",
        metavar="INSTANCE",
        help="always-on instance for the side-by-side comparison",
    )
    p.add_argument(
        "--volumes",
        default=",".join(str(v) for v in DEFAULT_VOLUMES),
        help="job volumes for the comparison, comma-separated",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _evaluate(stack: str) -> tuple[Any, Any]:
    """The stack's cost model and its mocked graph, from one evaluation of its program."""
    from components.offline import evaluate_stack, stack_config
    from cost.model import model_from_graph

    graph = evaluate_stack(stack)
    return model_from_graph(graph, stack=stack, config=stack_config(stack)), graph


def _importable_cost_package() -> None:
    """An editable install made before ``cost/`` joined the packages cannot import it; the
    package sits next to ``cli/`` in the checkout, so look there (``./dev`` reinstalls)."""
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("cost") is None:
        sys.path.append(str(Path(__file__).resolve().parent.parent))


def run(args: argparse.Namespace) -> int:
    _importable_cost_package()
    from cost import instance_cost
    from cost.estimator import (
        compare_ec2,
        comparison_json,
        estimate,
        format_comparison,
        format_estimate,
        usage_from_args,
    )
    from cost.model import JobProfile
    from cost.prices import PriceBookError, load_prices

    try:
        jobs = _per_worker(args.jobs_per_month, "--jobs-per-month", 1000.0)
        durations = _per_worker(args.duration_seconds, "--duration-seconds", 60.0)
        volumes = tuple(int(v) for v in str(args.volumes).split(",") if v.strip())
    except ValueError as exc:
        print(f"batchctl cost: {exc}", file=sys.stderr)
        return 2
    try:
        prices = load_prices()
        model, graph = _evaluate(args.stack)
        minutes = (
            {k: v / 60 for k, v in durations.items()}
            if isinstance(durations, dict)
            else durations / 60
        )
        gpu = instance_cost.report(
            graph.resources if graph is not None else [],
            minutes,
            instance_cost.load_gpu_prices(),
        )
        usage = usage_from_args(
            model,
            jobs,
            durations,
            startup_seconds=args.startup_seconds,
            jobs_per_task=args.jobs_per_task,
            profile=JobProfile(status_polls=args.status_polls),
            image_gb=args.image_gb,
            image_changed_share=args.image_changed_share,
            gpu_image_gb=args.gpu_image_gb,
            apply_free_tier=args.free_tier,
            spot_discount=args.spot_discount,
        )
        est = estimate(model, usage, prices)
        rows = compare_ec2(model, usage, volumes, args.compare_ec2, prices) if volumes else []
    except (FileNotFoundError, KeyError, PriceBookError, ValueError) as exc:
        print(f"batchctl cost: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "estimate": est.to_json(),
                    "comparison": comparison_json(rows),
                    "model": asdict(model),
                    "gpu_workers": {
                        name: {
                            **asdict(job),
                            "idle_monthly": idle,
                            "image_storage_monthly": est.idle_by_worker().get(name, 0.0),
                        }
                        for name, (job, idle) in gpu.items()
                    },
                },
                indent=2,
            )
        )
        return 0
    print(format_estimate(est))
    if gpu:
        print()
        print(
            instance_cost.summary(
                gpu, None if isinstance(minutes, dict) else minutes, est.idle_by_worker()
            )
        )
    if rows:
        print()
        print(f"Serverless vs an always-on {args.compare_ec2} (same job mix and duration):")
        print(format_comparison(rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m cli.cost``) for when cli/main.py is not wired yet."""
    parser = argparse.ArgumentParser(prog="batchctl cost", description=__doc__)
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
