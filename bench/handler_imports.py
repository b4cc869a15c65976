"""Cold-start import cost of each Lambda handler next to a bare ``import boto3``.

Each measurement runs in a fresh interpreter (``python -c``), so nothing is cached in
``sys.modules``; the figure is the median of N runs. The API handler should stay within
1.2x of bare boto3 (it needs boto3 anyway; everything else it imports must be cheap).

    python bench/handler_imports.py [--runs N] [--check]

``--check`` exits 1 when ``handlers.api`` exceeds the 1.2x budget.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = (
    "boto3",
    "handlers.api",
    "handlers.launcher",
    "handlers.reconciler",
    "handlers.sweep",
    "handlers.notify",
)
BUDGET = 1.2
SNIPPET = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def measure(module: str, runs: int) -> float:
    """Median import seconds of ``module`` in fresh interpreters."""
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", SNIPPET.format(module=module)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(float(out.stdout.strip()))
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.runs > 1:  # warm the OS file cache equally for every module first
        for module in MODULES:
            measure(module, 1)
    results = {module: measure(module, args.runs) for module in MODULES}
    base = results["boto3"]
    print(f"{'module':<22}{'median ms':>12}{'x boto3':>10}   (runs={args.runs})")
    for module, seconds in results.items():
        print(f"{module:<22}{seconds * 1000:>12.1f}{seconds / base:>10.2f}")
    ratio = results["handlers.api"] / base
    verdict = "within" if ratio <= BUDGET else "OVER"
    print(f"handlers.api is {ratio:.2f}x bare boto3: {verdict} the {BUDGET}x budget")
    return 1 if args.check and ratio > BUDGET else 0


if __name__ == "__main__":
    sys.exit(main())
