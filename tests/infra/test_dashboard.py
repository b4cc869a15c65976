"""The prod dashboard's widgets read data that exists: the transitions query reads every log
group a transition is written to (control-plane Lambdas and worker tasks), and Container
Insights is charted only by dimensions AWS publishes the metric for."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.aws_rules import AwsConstraintError
from components.observability import (
    CONTAINER_INSIGHTS_DIMENSIONS,
    CONTAINER_INSIGHTS_NAMESPACE,
    container_insights_metric,
)
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


def test_container_insights_widgets_chart_metrics_aws_publishes(prod_graph: StackGraph) -> None:
    """Container Insights publishes each ECS metric for some dimension sets only (the table in
    components/observability.py, from the CloudWatch User Guide): a chart on another set is
    empty. This cluster runs standalone tasks (RunTask), so a per-service metric is empty too."""
    rows = [
        row
        for widget in widgets(prod_graph).values()
        if widget["type"] == "metric"
        for row in widget["properties"]["metrics"]
        if row[0] == CONTAINER_INSIGHTS_NAMESPACE
    ]
    assert rows, "prod enables Container Insights: the dashboard should chart it"
    for row in rows:
        metric, rest = row[1], [part for part in row[2:] if isinstance(part, str)]
        dimensions = frozenset(rest[0::2])
        assert dimensions in CONTAINER_INSIGHTS_DIMENSIONS[metric], row
        assert "ServiceName" not in dimensions  # no ECS services here, only RunTask tasks
    (running,) = widgets(prod_graph)["Running tasks"]["properties"]["metrics"]
    assert running[1:3] == ["TaskCount", "ClusterName"]
    assert running[3] == prod_graph.exports["clusterName"]


@pytest.mark.parametrize(
    ("metric", "dimensions"),
    [
        ("RunningTaskCount", {"ClusterName": "c"}),  # per service only
        ("TaskCount", {"ClusterName": "c", "ServiceName": "s"}),  # per cluster only
        ("NoSuchMetric", {"ClusterName": "c"}),
    ],
)
def test_undocumented_container_insights_metric_is_refused(
    metric: str, dimensions: dict[str, str]
) -> None:
    with pytest.raises(AwsConstraintError) as info:
        container_insights_metric(metric, dimensions)
    assert metric in info.value.key


def test_documented_container_insights_metric_row() -> None:
    assert container_insights_metric("TaskCount", {"ClusterName": "c"}) == [
        CONTAINER_INSIGHTS_NAMESPACE,
        "TaskCount",
        "ClusterName",
        "c",
    ]
