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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from components.aws_rules import AwsConstraintError
from jobcontract.logs import TRANSITION_EVENT, LogField

if TYPE_CHECKING:
    from components.platform import BatchPlatform
    from components.python_function import PythonFunction

PERIOD_SECONDS = 300
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


class Observability(pulumi.ComponentResource):
    """Alarms and the dashboard of one stack."""

    alarms: list[aws.cloudwatch.MetricAlarm]
    dashboard: aws.cloudwatch.Dashboard

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:Observability", name, None, opts)
        platform = args.platform
        prefix = platform.name_prefix
        topic = [platform.failure_topic.arn]
        child = pulumi.ResourceOptions(parent=self)
        # Our rule: more than one period, so one noisy 5 minutes does not page anyone.
        if not 1 <= args.evaluation_periods <= 12:
            raise ValueError(f"evaluation_periods {args.evaluation_periods}: 1..12")
        self.alarms = []
        fns = platform.functions
        functions: dict[str, PythonFunction] = {
            "api": fns.api,
            "launcher": fns.launcher,
            "reconciler": fns.reconciler,
            "sweep": fns.sweep,
        }
        for key, fn in functions.items():
            for metric in ("Errors", "Throttles"):
                self.alarms.append(
                    aws.cloudwatch.MetricAlarm(
                        f"{name}-{key}-{metric.lower()}",
                        name=f"{prefix}-{key}-{metric.lower()}",
                        alarm_description=f"Lambda {fn.function_name}: {metric} in 5 minutes",
                        namespace="AWS/Lambda",
                        metric_name=metric,
                        dimensions={"FunctionName": fn.function.name},
                        statistic="Sum",
                        period=PERIOD_SECONDS,
                        evaluation_periods=1,
                        threshold=1,
                        comparison_operator="GreaterThanOrEqualToThreshold",
                        treat_missing_data="notBreaching",
                        alarm_actions=topic,
                        opts=child,
                    )
                )
        api_dims = {"ApiName": args.api_name, "Stage": args.api_stage}
        self.alarms.append(
            aws.cloudwatch.MetricAlarm(
                f"{name}-api-5xx-rate",
                name=f"{prefix}-api-5xx-rate",
                alarm_description=f"API: more than {args.api_5xx_rate:.0%} of requests fail (5XX)",
                namespace="AWS/ApiGateway",
                metric_name="5XXError",
                dimensions=api_dims,
                statistic="Average",  # 5XXError is 0/1 per request: the average is the rate
                period=PERIOD_SECONDS,
                evaluation_periods=args.evaluation_periods,
                threshold=args.api_5xx_rate,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=topic,
                opts=child,
            )
        )
        self.alarms.append(
            aws.cloudwatch.MetricAlarm(
                f"{name}-api-p99-latency",
                name=f"{prefix}-api-p99-latency",
                alarm_description=f"API: p99 latency above {args.api_p99_latency_ms:.0f} ms",
                namespace="AWS/ApiGateway",
                metric_name="Latency",
                dimensions=api_dims,
                extended_statistic="p99",
                period=PERIOD_SECONDS,
                evaluation_periods=args.evaluation_periods,
                threshold=args.api_p99_latency_ms,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=topic,
                opts=child,
            )
        )

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
        ).apply(lambda v: json.dumps(_dashboard(v, platform.config.container_insights)))
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=prefix, dashboard_body=body, opts=child
        )
        self.register_outputs(
            {"dashboard": self.dashboard.dashboard_name, "alarm_count": len(self.alarms)}
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


def _dashboard(v: Mapping[str, Any], container_insights: bool) -> dict[str, Any]:
    region = v["region"]
    queue_metrics: list[list[Any]] = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q, {"label": w}]
        for w, q in sorted(v["queues"].items())
    ] + [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q, {"label": f"{w} DLQ"}]
        for w, q in sorted(v["dlqs"].items())
    ]
    api = ["AWS/ApiGateway", "ApiName", v["api_name"], "Stage", v["stage"]]
    lambda_metrics: list[list[Any]] = []
    for fn in v["functions"]:
        lambda_metrics.append(["AWS/Lambda", "Errors", "FunctionName", fn])
        lambda_metrics.append(["AWS/Lambda", "Throttles", "FunctionName", fn])
    widgets = [
        _metric_widget(
            "Queue depth (visible messages)", region, queue_metrics, stat="Maximum", x=0, y=0
        ),
        _metric_widget(
            "API requests and errors",
            region,
            [
                [api[0], "Count", *api[1:]],
                [api[0], "4XXError", *api[1:]],
                [api[0], "5XXError", *api[1:]],
            ],
            x=12,
            y=0,
        ),
        _metric_widget(
            "API latency (ms)",
            region,
            [
                [api[0], "Latency", *api[1:], {"stat": "p50"}],
                [api[0], "Latency", *api[1:], {"stat": "p99"}],
            ],
            stat="p99",
            x=0,
            y=6,
        ),
        _metric_widget("Lambda errors and throttles", region, lambda_metrics, x=12, y=6),
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
    widgets.append(
        {
            "type": "log",
            "x": 12,
            "y": 12,
            "width": 12,
            "height": 6,
            "properties": {
                "title": "Job transitions by status (control-plane and worker logs)",
                "region": region,
                "view": "bar",
                "query": transitions_query(v["log_groups"]),
            },
        }
    )
    return {"widgets": widgets}


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
