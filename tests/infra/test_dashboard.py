"""The prod dashboard's widgets read data that exists: the transitions query reads every log
group a transition is written to (control-plane Lambdas and worker tasks)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.offline import StackGraph

pytestmark = pytest.mark.xdist_group("pulumi")

DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"


def widgets(graph: StackGraph) -> dict[str, dict[str, Any]]:
    (dashboard,) = graph.of_type(DASHBOARD)
    body = json.loads(dashboard.inputs["dashboardBody"])
    return {w["properties"]["title"]: w for w in body["widgets"]}


def test_transitions_widget_reads_lambda_and_worker_log_groups(prod_graph: StackGraph) -> None:
    (widget,) = [w for t, w in widgets(prod_graph).items() if t.startswith("Job transitions")]
    sources = re.findall(r"SOURCE '([^']+)'", widget["properties"]["query"])
    lambdas = {
        fn.inputs["loggingConfig"]["logGroup"]
        for fn in prod_graph.of_type("aws:lambda/function:Function")
    }
    tasks = set()
    for task in prod_graph.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        for container in json.loads(task.inputs["containerDefinitions"]):
            tasks.add(container["logConfiguration"]["options"]["awslogs-group"])
    assert len(lambdas) == 4 and tasks
    assert sorted(sources) == sorted(lambdas | tasks)
