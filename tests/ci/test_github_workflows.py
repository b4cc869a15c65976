"""Supply-chain checks of every GitHub Actions workflow in the repository, offline.

For each workflow file (anything under a ``.github/workflows/`` directory, or any YAML file in
the repository shaped like a workflow, e.g. a template the project ships):

- zizmor (``--offline``, auditor persona, so also the findings the default persona hides)
  reports nothing. A real false positive is silenced in the workflow itself with zizmor's
  inline ``# zizmor: ignore[<audit>]`` comment followed by the reason;
- check-jsonschema accepts it against its vendored GitHub-workflow schema (no download);
- every ``uses:`` is pinned to a full 40-hex commit SHA with the version in a trailing comment
  (``uses: actions/checkout@<sha> # v4.4.0``), a local ``./`` action and ``docker://`` exempt,
  and every ``actions/checkout`` sets ``persist-credentials: false``.

The last tests feed deliberately bad workflows to the same checker functions, so a checker that
silently stopped reporting would fail here rather than pass everything.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin/ (not resolved: that would leave the venv)
# Hidden directories (.git, .venv, tool caches) are not walked, except these two.
HIDDEN_WALKED = {".github", ".ci"}
SKIP_DIRS = {"node_modules", "__pycache__", "local-state"}

SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[^@\s]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^v?\d+(\.\d+)*([-+][0-9A-Za-z.-]+)?$")
USES_LINE = re.compile(
    r"^\s*(?:-\s+)?uses:\s*(?P<q>['\"]?)(?P<ref>[^'\"\s#]+)(?P=q)\s*(?:#\s*(?P<comment>.*?))?\s*$"
)

# Any accidental download by a checker fails fast on loopback instead of reaching out.
OFFLINE_ENV = {
    **os.environ,
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
}
for _var in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN"):
    OFFLINE_ENV.pop(_var, None)


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_LOADER)


def _is_workflow(doc: Any) -> bool:
    # YAML 1.1 reads the key `on` as True.
    return isinstance(doc, dict) and "jobs" in doc and ("on" in doc or True in doc)


def workflow_files(root: Path = ROOT) -> list[Path]:
    found: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d for d in dirnames
            if d not in SKIP_DIRS and (not d.startswith(".") or d in HIDDEN_WALKED)
        ]
        here = Path(dirpath)
        for name in filenames:
            if not name.endswith((".yml", ".yaml")):
                continue
            path = here / name
            if here.name == "workflows" and here.parent.name == ".github":
                found.add(path)
                continue
            try:
                if _is_workflow(_load(path)):
                    found.add(path)
            except yaml.YAMLError:
                continue  # not YAML we can read: not a workflow of ours
    return sorted(found)


WORKFLOWS = workflow_files()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=ROOT, capture_output=True, text=True, timeout=120, env=OFFLINE_ENV
    )


def zizmor_findings(path: Path) -> list[str]:
    """zizmor's findings for one workflow, as ``audit-name: message at line N``."""
    result = _run(
        str(BIN / "zizmor"), "--offline", "--persona", "auditor", "--format", "json",
        "--no-progress", str(path),
    )
    # 0: no findings; 10-14: findings (by highest severity); anything else: zizmor itself failed.
    if result.returncode not in (0, 10, 11, 12, 13, 14):
        raise RuntimeError(f"zizmor failed ({result.returncode}): {result.stderr[-2000:]}")
    findings: list[str] = []
    for finding in json.loads(result.stdout or "[]"):
        where = [
            loc["concrete"]["location"]["start_point"]["row"] + 1
            for loc in finding["locations"]
            if loc["symbolic"]["kind"] == "Primary"
        ]
        findings.append(f"{finding['ident']}: {finding['desc']} at line(s) {where}")
    if result.returncode and not findings:
        raise RuntimeError(f"zizmor exited {result.returncode} with no findings: {result.stderr}")
    return findings


def schema_errors(path: Path) -> list[str]:
    """check-jsonschema's errors against its vendored (offline) GitHub-workflow schema."""
    result = _run(
        str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
        "--output-format", "json", str(path),
    )
    report = json.loads(result.stdout)
    errors = [
        f"{e['path']}: {e.get('best_deep_match', e)['message']}" for e in report["errors"]
    ] + [f"parse error: {e['message']}" for e in report.get("parse_errors", [])]
    if result.returncode != 0 and not errors:
        raise RuntimeError(f"check-jsonschema failed: {result.stdout}{result.stderr}")
    return errors


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for job in (doc.get("jobs") or {}).values():
        steps += [s for s in (job or {}).get("steps") or [] if isinstance(s, dict)]
    return steps


def _parsed_uses(doc: dict[str, Any]) -> list[str]:
    uses = [str(s["uses"]) for s in _steps(doc) if "uses" in s]
    uses += [  # reusable workflows: jobs.<id>.uses
        str(job["uses"]) for job in (doc.get("jobs") or {}).values()
        if isinstance(job, dict) and "uses" in job
    ]
    return uses


def policy_violations(path: Path) -> list[str]:
    """The pinning and checkout rules, read from the file's lines (comments matter here)."""
    problems: list[str] = []
    seen: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not re.match(r"^\s*(-\s+)?uses:", line):
            continue
        match = USES_LINE.match(line)
        if match is None:
            problems.append(f"line {number}: cannot read the uses: line {line.strip()!r}")
            continue
        ref, comment = match["ref"], match["comment"]
        seen.append(ref)
        if ref.startswith(("./", "docker://")):
            continue
        if not SHA_PIN.match(ref):
            problems.append(f"line {number}: {ref} is not pinned to a full 40-hex commit SHA")
        elif not comment or not VERSION_COMMENT.match(comment.split()[0]):
            problems.append(f"line {number}: {ref} has no trailing version comment (# vX.Y.Z)")
    doc = _load(path)
    # Every `uses:` the YAML parser sees must have been read above (no flow-style escapes).
    for ref in _parsed_uses(doc):
        if ref not in seen:
            problems.append(f"uses: {ref} is not on a line of its own, so it cannot be checked")
    for step in _steps(doc):
        checkout = str(step.get("uses", "")).startswith("actions/checkout@")
        if checkout and (step.get("with") or {}).get("persist-credentials") is not False:
            problems.append(f"{step['uses']}: checkout without persist-credentials: false")
    return problems


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def test_the_repository_has_workflows() -> None:
    assert ROOT / ".github" / "workflows" / "ci.yml" in WORKFLOWS


@pytest.mark.xdist_group("workflow")
@pytest.mark.parametrize("path", WORKFLOWS, ids=_ids(WORKFLOWS))
def test_zizmor_finds_nothing(path: Path) -> None:
    assert zizmor_findings(path) == []


@pytest.mark.xdist_group("workflow")
@pytest.mark.parametrize("path", WORKFLOWS, ids=_ids(WORKFLOWS))
def test_valid_against_the_github_workflow_schema(path: Path) -> None:
    assert schema_errors(path) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=_ids(WORKFLOWS))
def test_actions_pinned_by_sha_with_version_and_no_persisted_token(path: Path) -> None:
    assert policy_violations(path) == []


def test_one_sha_one_version_across_workflows() -> None:
    versions: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            match = USES_LINE.match(line)
            if match and SHA_PIN.match(match["ref"]) and match["comment"]:
                versions.setdefault(match["ref"], set()).add(match["comment"].split()[0])
    assert {ref: v for ref, v in versions.items() if len(v) > 1} == {}


# --- each checker reports what it is for --------------------------------------------------------

CHECKOUT_SHA = "actions/checkout@11d5960a326750d5838078e36cf38b85af677262"
GOOD = f"""\
name: good
on: push
permissions: {{}}
jobs:
  build:
    name: build
    runs-on: ubuntu-latest
    permissions:
      contents: read  # checkout
    steps:
      - uses: {CHECKOUT_SHA} # v4.4.0
        with:
          persist-credentials: false
      - uses: ./.github/actions/local
      - uses: docker://alpine:3
      - run: echo ok
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "workflow.yml"
    path.write_text(text)
    return path


def test_a_compliant_workflow_passes_the_policy(tmp_path: Path) -> None:
    assert policy_violations(_write(tmp_path, GOOD)) == []


def test_policy_reports_tag_pins_missing_versions_and_persisted_credentials(
    tmp_path: Path,
) -> None:
    bad = GOOD.replace(f"{CHECKOUT_SHA} # v4.4.0", "actions/checkout@v4").replace(
        "      - run: echo ok\n",
        "      - uses: actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065\n"
        "      - {uses: actions/cache@v4}\n",
    ).replace("        with:\n          persist-credentials: false\n", "")
    problems = policy_violations(_write(tmp_path, bad))
    assert any("actions/checkout@v4 is not pinned" in p for p in problems), problems
    assert any("setup-python" in p and "no trailing version comment" in p for p in problems)
    assert any("actions/cache@v4" in p and "cannot be checked" in p for p in problems)
    assert any("persist-credentials" in p for p in problems), problems


@pytest.mark.xdist_group("workflow")
def test_zizmor_reports_tag_pins_persisted_credentials_and_injection(tmp_path: Path) -> None:
    bad = GOOD.replace(f"{CHECKOUT_SHA} # v4.4.0", "actions/checkout@v4").replace(
        "        with:\n          persist-credentials: false\n", ""
    ).replace("on: push", "on: pull_request").replace(
        "echo ok", 'echo "${{ github.event.pull_request.title }}"'
    )
    findings = " ".join(zizmor_findings(_write(tmp_path, bad)))
    for audit in ("unpinned-uses", "artipacked", "template-injection"):
        assert audit in findings, findings


@pytest.mark.xdist_group("workflow")
def test_schema_reports_an_invalid_key(tmp_path: Path) -> None:
    assert schema_errors(_write(tmp_path, GOOD)) == []
    runs_on = "    runs-on: ubuntu-latest\n"
    bad = GOOD.replace(runs_on, runs_on + "    runs_on: x\n")  # a typo the runner would reject
    errors = schema_errors(_write(tmp_path, bad))
    assert any("runs_on" in e for e in errors), errors
