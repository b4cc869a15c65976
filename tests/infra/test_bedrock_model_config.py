"""A stack on a cross-Region inference profile: the task roles get the profile and the model
only through it (AWS rules in components/iam.py); config parsing is in test_config.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.offline import StackGraph, evaluate_stack
from components.seed_workers import SEED_WORKERS
from jobcontract import Env
from tests.infra.policies import as_list, identity_policies

PROFILE = "us.amazon.nova-lite-v1:0"


@pytest.fixture(scope="module")
def profile_graph() -> StackGraph:
    return evaluate_stack("dev", {"bedrockModelId": PROFILE})


def invoking_statements(graph: StackGraph) -> list[list[dict[str, Any]]]:
    return [
        [s for s in stmts if "bedrock:InvokeModel" in as_list(s["Action"])]
        for _, stmts in identity_policies(graph)
        if any("bedrock:InvokeModel" in as_list(s["Action"]) for s in stmts)
    ]


def test_a_stack_on_a_profile_grants_the_profile_and_the_model_only_through_it(
    profile_graph: StackGraph,
) -> None:
    profile_arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{PROFILE}"
    per_worker = invoking_statements(profile_graph)
    assert len(per_worker) == len(SEED_WORKERS)
    for stmts in per_worker:
        by_sid = {s["Sid"]: s for s in stmts}
        assert by_sid["InvokeInferenceProfile"]["Resource"] == [profile_arn]
        via = by_sid["InvokeModelThroughProfile"]
        assert via["Resource"] == ["arn:aws:bedrock:*::foundation-model/amazon.nova-lite-v1:0"]
        assert via["Condition"] == {"StringEquals": {"bedrock:InferenceProfileArn": profile_arn}}
    task_defs = profile_graph.of_type("aws:ecs/taskDefinition:TaskDefinition")
    assert len(task_defs) == len(SEED_WORKERS)
    for task_def in task_defs:
        (container,) = json.loads(task_def.inputs["containerDefinitions"])
        env = {e["name"]: e["value"] for e in container["environment"]}
        assert env[Env.MODEL_ID] == PROFILE  # the worker calls the profile, as granted


def test_a_stack_on_a_profile_passes_the_security_checklist(profile_graph: StackGraph) -> None:
    from policy import rules

    violations = rules.check_graph(profile_graph.resources, rules.context_for("dev"))
    assert violations == [], "\n".join(str(v) for v in violations)
