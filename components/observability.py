"""``Observability``: alarms to the failure topic and one dashboard (prod; ``alarms`` switch).

Alarms: Errors and Throttles of every control-plane Lambda, the API's 5XX rate and p99
latency. The DLQ depth alarm belongs to the stack's launch queue (``JobQueue``). Every alarm
notifies the platform's failure topic, where the same people already get job failures.

The dashboard shows what AWS measures by itself: launch queue depth (and its DLQ), API
requests/errors/latency, Lambda errors and throttles, tasks in the cluster (Container
Insights, when enabled), plus job transitions counted by Logs Insights from the control-plane
and worker logs (``JobStore`` writes one ``job_transition`` line per state change, see
``jobcontract.logs``; at a log level above INFO there are none to count). No custom metrics:
they would cost $0.30 per metric-month each and need code on the hot path.

Every child is named in ``nodes`` (``ObservabilityNodes``: the alarms, the dashboard).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from components.alarms import ALARM_PERIOD_SECONDS, metric_alarm
from components.aws_rules import AwsConstraintError
from components.naming import node_resources
from jobcontract.logs import TRANSITION_EVENT, LogField

if TYPE_CHECKING:
    from components.platform import BatchPlatform
    from components.python_function import PythonFunction

PERIOD_SECONDS = ALARM_PERIOD_SECONDS  # the dashboard charts what the alarms watch
CONTAINER_INSIGHTS_NAMESPACE = "ECS/ContainerInsights"
# AWS rule: each Container Insights metric for ECS exists only for the dimension sets listed
# here; a chart on any other set stays empty. RunningTaskCount and PendingTaskCount are per
# service only, and a RunTask cluster has no services: its cluster-level count is TaskCount.
# CloudWatch User Guide, "Amazon ECS Container Insights metrics":
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Container-Insights-metrics-ECS.html
_CLUSTER = frozenset({"ClusterName"})
_SERVICE = frozenset({"ServiceName", "ClusterName"})
_FAMILY = frozenset({"TaskDefinitionFamily", "ClusterName"})
_USAGE = (_FAMILY, _SERVICE, _CLUSTER)
CONTAINER_INSIGHTS_DIMENSIONS: dict[str, tuple[frozenset[str], ...]] = {
    "ContainerInstanceCount": (_CLUSTER,),
    "CpuUtilized": _USAGE,
    "CpuReserved": _USAGE,
    "DeploymentCount": (_SERVICE,),
    "DesiredTaskCount": (_SERVICE,),
    "MemoryUtilized": _USAGE,
    "MemoryReserved": _USAGE,
    "NetworkRxBytes": _USAGE,
    "NetworkTxBytes": _USAGE,
    "PendingTaskCount": (_SERVICE,),
    "RunningTaskCount": (_SERVICE,),
    "ServiceCount": (_CLUSTER,),
    "StorageReadBytes": _USAGE,
    "StorageWriteBytes": _USAGE,
    "TaskCount": (_CLUSTER,),
    "TaskSetCount": (_SERVICE,),
}


@dataclass(frozen=True)
class ObservabilityArgs:
    """Arguments of ``Observability``."""

    platform: BatchPlatform
    """Required. Its failure topic receives the alarms; its Lambdas are watched."""
    api_name: pulumi.Input[str]
    """Required. REST API name (the ``ApiName`` dimension of AWS/ApiGateway metrics)."""
    api_stage: pulumi.Input[str]
    """Required. Stage name (the ``Stage`` dimension)."""
    queues: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Label -> queue name, for the queue-depth widget (the stack's launch queue). Default {}."""
    dlqs: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Label -> dead-letter queue name, for the queue-depth widget. Default {}."""
    worker_log_groups: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Worker name -> its tasks' log group: workers write RUNNING/SUCCEEDED/FAILED, so the
    transitions widget reads these next to the control plane's. Default {}."""
    api_5xx_rate: float = 0.05
    """Alarm when more than this share of requests fail with 5XX. Default 0.05 (5 %)."""
    api_p99_latency_ms: float = 3000.0
    """Alarm when p99 latency exceeds this many ms. Default 3000."""
    evaluation_periods: int = 3
    """Consecutive 5-minute periods before an alarm fires. Default 3."""


@dataclass(frozen=True)
class ObservabilityNodes:
    """The children of an ``Observability`` (SST's ``nodes``)."""

    # One typed field per child, then ``resources``: every component's nodes class has this
    # shape (duplicates pairs them), only the children differ.
    alarms: tuple[aws.cloudwatch.MetricAlarm, ...]
    """Errors and Throttles of each control-plane Lambda, then the API's 5XX rate and p99."""
    dashboard: aws.cloudwatch.Dashboard

    def resources(self) -> list[pulumi.Resource]:
        return node_resources(self)


class Observability(pulumi.ComponentResource):
    """Alarms and the dashboard of one stack."""

    alarms: list[aws.cloudwatch.MetricAlarm]
    dashboard: aws.cloudwatch.Dashboard

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:Observability", name, None, opts)
        # Our rule: more than one period, so one noisy 5 minutes does not page anyone.
        if not 1 <= args.evaluation_periods <= 12:
            raise ValueError(f"evaluation_periods {args.evaluation_periods}: 1..12")
        self._name = name
        self._args = args
        fns = args.platform.functions
        functions: dict[str, PythonFunction] = {
            "api": fns.api,
            "launcher": fns.launcher,
            "reconciler": fns.reconciler,
            "sweep": fns.sweep,
        }
        self.alarms = []
        self._lambda_alarms(functions)
        self._api_alarms()
        self._dashboard(functions)
        self.register_outputs(
            {"dashboard": self.dashboard.dashboard_name, "alarm_count": len(self.alarms)}
        )

    @property
    def nodes(self) -> ObservabilityNodes:
        """Every child of this component, by role."""
        # One argument per field, as every component's nodes (duplicates pairs their shape).
        return ObservabilityNodes(tuple(self.alarms), self.dashboard)

    # --- steps ----------------------------------------------------------------------------

    def _alarm(self, suffix: str, **alarm: Any) -> None:
        """One alarm named ``<name>-<suffix>`` (``<prefix>-<suffix>`` in CloudWatch), to the
        platform's failure topic."""
        self.alarms.append(
            metric_alarm(
                f"{self._name}-{suffix}",
                name=f"{self._args.platform.name_prefix}-{suffix}",
                topic_arn=self._args.platform.failure_topic.arn,
                opts=pulumi.ResourceOptions(parent=self),
                **alarm,
            )
        )

    def _lambda_alarms(self, functions: Mapping[str, PythonFunction]) -> None:
        """Errors and Throttles of each control-plane Lambda: one in 5 minutes fires."""
        for key, fn in functions.items():
            for metric in ("Errors", "Throttles"):
                self._alarm(
                    f"{key}-{metric.lower()}",
                    description=f"Lambda {fn.function_name}: {metric} in 5 minutes",
                    namespace="AWS/Lambda",
                    metric_name=metric,
                    dimensions={"FunctionName": fn.function.name},
                    statistic="Sum",
                    threshold=1,
                    comparison_operator="GreaterThanOrEqualToThreshold",
                )

    def _api_alarms(self) -> None:
        """The API's 5XX rate and p99 latency, over ``evaluation_periods`` periods."""
        args = self._args
        api = {
            "namespace": "AWS/ApiGateway",
            "dimensions": {"ApiName": args.api_name, "Stage": args.api_stage},
            "evaluation_periods": args.evaluation_periods,
            "comparison_operator": "GreaterThanThreshold",
        }
        self._alarm(
            "api-5xx-rate",
            description=f"API: more than {args.api_5xx_rate:.0%} of requests fail (5XX)",
            metric_name="5XXError",
            statistic="Average",  # 5XXError is 0/1 per request: the average is the rate
            threshold=args.api_5xx_rate,
            **api,
        )
        self._alarm(
            "api-p99-latency",
            description=f"API: p99 latency above {args.api_p99_latency_ms:.0f} ms",
            metric_name="Latency",
            extended_statistic="p99",
            threshold=args.api_p99_latency_ms,
            **api,
        )

    def _dashboard(self, functions: Mapping[str, PythonFunction]) -> None:
        args, platform = self._args, self._args.platform
        body = pulumi.Output.all(
            region=platform.region,
            cluster=platform.cluster.name,
            api_name=args.api_name,
            stage=args.api_stage,
            functions=pulumi.Output.all(*[fn.function.name for fn in functions.values()]),
            log_groups=pulumi.Output.all(
                *[fn.log_group.name for fn in functions.values()],
                *[group for _, group in sorted(args.worker_log_groups.items())],
            ),
            queues=pulumi.Output.from_input(dict(args.queues)),
            dlqs=pulumi.Output.from_input(dict(args.dlqs)),
        ).apply(lambda v: json.dumps(_dashboard_body(v, platform.config.container_insights)))
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{self._name}-dashboard",
            dashboard_name=platform.name_prefix,
            dashboard_body=body,
            opts=pulumi.ResourceOptions(parent=self),
        )


def _metric_widget(
    title: str, region: str, metrics: list[list[Any]], *, stat: str = "Sum", x: int, y: int
) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": region,
            "stat": stat,
            "period": PERIOD_SECONDS,
            "view": "timeSeries",
            "metrics": metrics or [[{"expression": "TIME_SERIES(0)", "label": "none yet"}]],
        },
    }


def _dashboard_body(v: Mapping[str, Any], container_insights: bool) -> dict[str, Any]:
    """The dashboard's widgets, from the resolved names in ``v`` (see ``_dashboard``)."""
    region = v["region"]
    widgets = [
        _queue_widget(v["queues"], v["dlqs"], region),
        *_api_widgets(v["api_name"], v["stage"], region),
        _lambda_widget(v["functions"], region),
    ]
    if container_insights:
        widgets.append(
            _metric_widget(
                "Running tasks",
                region,
                [container_insights_metric("TaskCount", {"ClusterName": v["cluster"]})],
                stat="Maximum",
                x=0,
                y=12,
            )
        )
    widgets.append(_transitions_widget(v["log_groups"], region))
    return {"widgets": widgets}


def _queue_widget(
    queues: Mapping[str, str], dlqs: Mapping[str, str], region: str
) -> dict[str, Any]:
    depth = ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName")
    metrics: list[list[Any]] = [[*depth, q, {"label": w}] for w, q in sorted(queues.items())] + [
        [*depth, q, {"label": f"{w} DLQ"}] for w, q in sorted(dlqs.items())
    ]
    return _metric_widget(
        "Queue depth (visible messages)", region, metrics, stat="Maximum", x=0, y=0
    )


def _api_widgets(api_name: str, stage: str, region: str) -> list[dict[str, Any]]:
    dims = ["ApiName", api_name, "Stage", stage]
    gateway = "AWS/ApiGateway"
    requests = [[gateway, metric, *dims] for metric in ("Count", "4XXError", "5XXError")]
    latency: list[list[Any]] = [
        [gateway, "Latency", *dims, {"stat": stat}] for stat in ("p50", "p99")
    ]
    return [
        _metric_widget("API requests and errors", region, requests, x=12, y=0),
        _metric_widget("API latency (ms)", region, latency, stat="p99", x=0, y=6),
    ]


def _lambda_widget(functions: list[str], region: str) -> dict[str, Any]:
    metrics: list[list[Any]] = [
        ["AWS/Lambda", metric, "FunctionName", fn]
        for fn in functions
        for metric in ("Errors", "Throttles")
    ]
    return _metric_widget("Lambda errors and throttles", region, metrics, x=12, y=6)


def _transitions_widget(log_groups: list[str], region: str) -> dict[str, Any]:
    return {
        "type": "log",
        "x": 12,
        "y": 12,
        "width": 12,
        "height": 6,
        "properties": {
            "title": "Job transitions by status (control-plane and worker logs)",
            "region": region,
            "view": "bar",
            "query": transitions_query(log_groups),
        },
    }


def container_insights_metric(metric: str, dimensions: Mapping[str, str]) -> list[Any]:
    """One dashboard metric row of Container Insights, refused unless AWS publishes that metric
    for exactly these dimensions (see ``CONTAINER_INSIGHTS_DIMENSIONS``)."""
    documented = CONTAINER_INSIGHTS_DIMENSIONS.get(metric, ())
    if frozenset(dimensions) not in documented:
        sets = " or ".join("+".join(sorted(d)) for d in documented) or "none (unknown metric)"
        raise AwsConstraintError(
            f"{CONTAINER_INSIGHTS_NAMESPACE} {metric} dimensions", sorted(dimensions), sets
        )
    row: list[Any] = [CONTAINER_INSIGHTS_NAMESPACE, metric]
    for name, value in dimensions.items():
        row += [name, value]
    return row


def transitions_query(log_groups: list[str]) -> str:
    """Logs Insights query counting job transitions by the status entered, built from the
    names the one logger writes (``jobcontract.logs``), so query and lines cannot drift."""
    sources = " | ".join(f"SOURCE '{g}'" for g in log_groups)
    return (
        f'{sources} | filter {LogField.EVENT} = "{TRANSITION_EVENT}"'
        f" and ispresent({LogField.JOB_ID}) and ispresent({LogField.STATUS})"
        f" | stats count(*) as transitions by {LogField.STATUS}"
    )
