"""Run every benchmark, print a summary table and write ``bench/RESULTS.md``.

Each benchmark runs as its own process (``python -m bench.<name>``) so none inherits
another's imports, environment or warm caches; its output is shown as it runs, and its
last ``RESULT:`` line (see ``bench.common``) becomes a row of the summary. ``./dev bench``
runs this module.

    python -m bench.run_all [--only requests_per_job,idle_cost] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import PROJECT_ROOT, RESULT_PREFIX

RESULTS_FILE = Path(__file__).with_name("RESULTS.md")


@dataclass(frozen=True)
class Benchmark:
    number: int
    module: str
    title: str
    args: tuple[str, ...] = ()


BENCHMARKS = (
    Benchmark(1, "requests_per_job", "Billable AWS requests per job (local pipeline)"),
    Benchmark(2, "handler_imports", "Handler cold import time vs bare `import boto3`"),
    Benchmark(3, "launcher_throughput", "Launcher dispatch throughput (moto, one core)"),
    Benchmark(4, "program_scaling", "Program evaluation under mocks, 3 -> 30 workers"),
    Benchmark(5, "idle_cost", "Dev stack idle monthly cost (estimator)"),
    # Issue 10 (dispatch). Bursts sized to stay near two minutes each on two cores; the
    # issue's full 300-job burst: python -m bench.dispatch_drain --jobs 300 --timeout 600.
    # Drain and mixed model a 3-s Fargate start-up per task (bench.dispatch_run).
    Benchmark(
        6,
        "dispatch_drain",
        "Drain a burst on one worker, cap 5, reuse off",
        ("--jobs", "100", "--timeout", "200"),
    ),
    Benchmark(
        7,
        "dispatch_reuse",
        "The same burst with warm reuse on",
        ("--jobs", "100", "--timeout", "110"),
    ),
    Benchmark(
        8,
        "dispatch_mixed",
        "3 workers under a stack vCPU cap below their caps' sum",
        ("--jobs-per-worker", "30", "--timeout", "200"),
    ),
    # Issue 11 (array jobs): the fan-out's cost, and 10,000 items as one array job vs as
    # 10,000 single jobs (tasks started, billed task-seconds per item, 30-s start-up).
    Benchmark(9, "array_fanout", "Array jobs: fan-out cost, and one array vs single jobs"),
)


@dataclass(frozen=True)
class Outcome:
    bench: Benchmark
    results: list[dict[str, object]]
    returncode: int
    seconds: float
    tail: str  # last lines of output, for benchmarks that print no RESULT line

    @property
    def command(self) -> str:
        return f"python -m bench.{self.bench.module}"


def run_one(bench: Benchmark, timeout: float) -> Outcome:
    path = PROJECT_ROOT / "bench" / f"{bench.module}.py"
    if not path.exists():
        missing: dict[str, object] = {
            "name": bench.title,
            "figure": None,
            "unit": "",
            "target": "",
            "ok": None,
            "detail": f"bench/{bench.module}.py does not exist yet",
        }
        return Outcome(bench, [missing], 0, 0.0, "")
    print(f"\n=== {bench.number}. {bench.title}: python -m bench.{bench.module} ===", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"bench.{bench.module}", *bench.args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        returncode = -9
    seconds = time.perf_counter() - start
    results = [json.loads(ln[len(RESULT_PREFIX) :]) for ln in lines if ln.startswith(RESULT_PREFIX)]
    if not results and bench.module == "handler_imports":
        results = _handler_imports_result(lines)
    if not results:
        results = [
            {
                "name": bench.title,
                "figure": None,
                "unit": "",
                "target": "",
                "ok": None if returncode == 0 else False,
                "detail": f"no RESULT line (exit {returncode}); see its output",
            }
        ]
    return Outcome(bench, results, returncode, seconds, "\n".join(lines[-40:]))


def _handler_imports_result(lines: list[str]) -> list[dict[str, object]]:
    """bench/handler_imports.py (the handlers engineer's) prints a table, no RESULT line:
    read each handler's ratio to bare boto3 off its rows ``<module> <median ms> <x boto3>``."""
    ratios: dict[str, float] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("handlers."):
            try:
                ratios[parts[0]] = float(parts[2])
            except ValueError:
                continue
    if not ratios:
        return []
    worst = max(ratios, key=lambda m: ratios[m])
    return [
        {
            "name": "handler import time vs bare boto3 (worst handler)",
            "figure": ratios[worst],
            "unit": "x boto3",
            "target": "<= 1.2",
            "ok": ratios[worst] <= 1.2,
            "detail": ", ".join(
                f"{m.removeprefix('handlers.')} {r:.2f}x" for m, r in ratios.items()
            ),
        }
    ]


def _figure(result: dict[str, object]) -> str:
    figure = result.get("figure")
    if figure is None:
        return "not measured"
    return f"{figure} {result.get('unit', '')}".strip()


def _verdict(result: dict[str, object]) -> str:
    ok = result.get("ok")
    return "-" if ok is None else ("met" if ok else "MISSED")


def summary_rows(outcomes: list[Outcome]) -> list[list[str]]:
    rows = []
    for o in outcomes:
        for r in o.results:
            rows.append(
                [
                    str(o.bench.number),
                    str(r.get("name", o.bench.title)),
                    _figure(r),
                    str(r.get("target", "")),
                    _verdict(r),
                    str(r.get("detail", "")),
                    o.command,
                ]
            )
    return rows


def print_summary(rows: list[list[str]]) -> None:
    headers = ["#", "benchmark", "figure", "target", "verdict", "detail"]
    cols = [[r[i] for r in rows] for i in range(len(headers))]
    widths = [
        min(60, max(len(h), *(len(c) for c in col))) for h, col in zip(headers, cols, strict=True)
    ]
    print("\n=== Summary ===")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c[:w].ljust(w) for c, w in zip(r, widths, strict=False)))


def cost_table() -> str:
    """The estimator's dev table (1,000 jobs/month, 60 s) and the EC2 comparison."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli.cost", "--stack", "dev"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.stdout if proc.returncode == 0 else f"(batchctl cost failed: {proc.stderr})"


def write_markdown(rows: list[list[str]], cost: str | None) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    md = [
        "# Benchmark results",
        "",
        f"Generated by `python -m bench.run_all` (`./dev bench`) on {now}, "
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{_cpus()} CPU(s), load average {load:.1f} when the run ended (timings on a busy "
        "machine are noisy; CPU-time figures less so). Figures vary by machine; targets are "
        "from issue 5 (benchmarks 1-5) and issue 10 (6-8).",
        "",
        "| # | benchmark | figure | target | verdict | detail | reproduce |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5].replace('|', '/')} | `{r[6]}` |"
            for r in rows
        ),
        "",
    ]
    if cost:
        md += [
            "## Estimator: dev stack, 1,000 jobs/month of 60 s",
            "",
            "`python -m cli.cost --stack dev` (`batchctl cost --stack dev`):",
            "",
            "```",
            cost.rstrip(),
            "```",
            "",
        ]
    kept = kept_sections(RESULTS_FILE.read_text() if RESULTS_FILE.exists() else "")
    if kept:
        md += [kept.rstrip(), ""]
    RESULTS_FILE.write_text("\n".join(md))
    print(f"\nwrote {RESULTS_FILE.relative_to(PROJECT_ROOT)}")


# Hand-kept: before/after figures of a change, measured figures with their conditions.
KEPT_HEADINGS = ("## Dispatch (issue 10)", "## Array jobs (issue 11)")


def kept_sections(text: str) -> str:
    """The hand-kept sections of the previous RESULTS.md (each from its heading to the next
    ``## `` heading), so regenerating the table does not drop them."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() in KEPT_HEADINGS:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("## "):
                j += 1
            out += lines[i:j]
            i = j
        else:
            i += 1
    return "\n".join(out)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated module names")
    parser.add_argument("--timeout", type=float, default=900.0, help="per benchmark, seconds")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args(argv)
    only = {m.strip() for m in args.only.split(",") if m.strip()}
    chosen = [b for b in BENCHMARKS if not only or b.module in only]
    outcomes = [run_one(b, args.timeout) for b in chosen]
    rows = summary_rows(outcomes)
    print_summary(rows)
    if not args.no_write:
        write_markdown(rows, cost_table() if not only or "idle_cost" in only else None)
    missed = any(r[4] == "MISSED" for r in rows)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
