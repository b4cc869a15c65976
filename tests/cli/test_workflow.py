"""The user's GitHub Actions workflow: the properties the README promises, checked offline."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def _steps(job: dict[str, Any], uses_prefix: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(uses_prefix)]


def test_triggers_and_jobs(workflow: dict[str, Any]) -> None:
    assert set(workflow["on"]) == {"pull_request", "push"}
    assert workflow["on"]["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    assert any(s.get("run", "").strip() == "./dev test" for s in jobs["test"]["steps"])
    assert jobs["preview"]["needs"] == "test" and jobs["deploy-dev"]["needs"] == "test"
    assert "pull_request" in jobs["preview"]["if"]
    assert "refs/heads/main" in jobs["deploy-dev"]["if"]


def test_preview_runs_for_each_stack_with_pr_comment_and_policy_pack(
    workflow: dict[str, Any],
) -> None:
    job = workflow["jobs"]["preview"]
    assert job["environment"] == "preview"  # the OIDC sub claim the README's trust policy names
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    (pulumi,) = _steps(job, "pulumi/actions@")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["stack-name"].endswith("/${{ matrix.stack }}")
    assert "'policy'" in pulumi["with"]["policyPacks"]
    assert job["permissions"]["pull-requests"] == "write"
    assert _steps(job, "docker/setup-qemu-action")[0]["with"]["platforms"] == "arm64"


def test_main_deploys_dev_only(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["deploy-dev"]
    assert job["environment"] == "dev"
    (pulumi,) = _steps(job, "pulumi/actions@")
    assert pulumi["with"]["command"] == "up"
    assert pulumi["with"]["stack-name"].endswith("/dev")
    assert job["concurrency"]["cancel-in-progress"] is False


def test_aws_access_is_oidc_only(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {}  # least privilege: none by default, each job asks
    text = WORKFLOW.read_text()
    assert not re.search(r"aws-access-key-id|aws-secret-access-key|AWS_SECRET_ACCESS_KEY", text)
    for name in ("preview", "deploy-dev"):
        job = workflow["jobs"][name]
        assert job["permissions"]["id-token"] == "write"
        (creds,) = _steps(job, "aws-actions/configure-aws-credentials@")
        assert creds["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
        (pulumi,) = _steps(job, "pulumi/actions@")
        assert pulumi["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
