"""The reconciler's on-failure destination under mocks: the queue, its TLS-only policy, the
event invoke config, the two roles' statements and (prod) the depth alarm."""

from __future__ import annotations

import json

from components import failed_events
from components.offline import StackGraph
from jobcontract import Env
from tests.infra.policies import as_list, role_policy

QUEUE = "aws:sqs/queue:Queue"
POLICY = "aws:sqs/queuePolicy:QueuePolicy"
INVOKE_CONFIG = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
NAME = "platform-control-reconciler-failed"


def _queue_arn(graph: StackGraph) -> str:
    return str(graph.named(QUEUE, NAME).outputs["arn"])


def _sqs_statements(graph: StackGraph, role: str) -> list[dict[str, object]]:
    """Every statement of ``role``'s policy that names the failed-events queue."""
    arn = _queue_arn(graph)
    stmts = role_policy(graph, f"platform-control-{role}-policy")
    return [s for s in stmts if arn in as_list(s["Resource"])]


def test_a_standard_encrypted_queue_kept_14_days(dev_platform: StackGraph) -> None:
    q = dev_platform.named(QUEUE, NAME).inputs
    assert q["name"] == "ai-batch-dev-reconciler-failed"
    assert not q.get("fifoQueue")  # AWS: an on-failure destination must be a standard queue
    assert q["sqsManagedSseEnabled"] is True
    assert q["messageRetentionSeconds"] == 1_209_600
    sweep = dev_platform.named("aws:lambda/function:Function", "platform-control-sweep-function")
    assert q["visibilityTimeoutSeconds"] == sweep.inputs["timeout"]


def test_the_queue_denies_requests_without_tls(dev_platform: StackGraph) -> None:
    q = dev_platform.named(QUEUE, NAME)
    pol = dev_platform.named(POLICY, f"{NAME}-tls-only").inputs
    assert pol["queueUrl"] == q.outputs["url"]
    (stmt,) = json.loads(pol["policy"])["Statement"]
    assert stmt["Effect"] == "Deny" and stmt["Resource"] == [q.outputs["arn"]]
    assert stmt["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_reconciler_failures_go_to_the_queue(dev_platform: StackGraph) -> None:
    (config,) = dev_platform.of_type(INVOKE_CONFIG)
    inputs = config.inputs
    reconciler = dev_platform.named(
        "aws:lambda/function:Function", "platform-control-reconciler-function"
    )
    assert inputs["functionName"] == reconciler.outputs["name"]
    assert inputs["destinationConfig"]["onFailure"]["destination"] == _queue_arn(dev_platform)
    assert "onSuccess" not in inputs["destinationConfig"]
    assert inputs["maximumRetryAttempts"] == failed_events.RETRY_ATTEMPTS == 2
    assert inputs["maximumEventAgeInSeconds"] == 21_600
    # The reconciler has no alias (only the API may be provisioned): EventBridge invokes the
    # unqualified function, which the config without a qualifier covers.
    assert not inputs.get("qualifier")


def test_only_the_reconciler_sends_and_only_the_sweep_takes(dev_platform: StackGraph) -> None:
    arn = _queue_arn(dev_platform)
    (send,) = _sqs_statements(dev_platform, "reconciler")
    assert send == {
        "Action": ["sqs:SendMessage"],
        "Effect": "Allow",
        "Resource": [arn],
        "Sid": "RecordFailedEvents",
    }
    (take,) = _sqs_statements(dev_platform, "sweep")
    assert take["Effect"] == "Allow" and take["Resource"] == [arn]
    assert sorted(as_list(take["Action"])) == ["sqs:DeleteMessage", "sqs:ReceiveMessage"]
    for role in ("api", "launcher"):
        assert _sqs_statements(dev_platform, role) == [], role


def test_the_sweep_is_told_the_queue_url(dev_platform: StackGraph) -> None:
    sweep = dev_platform.named("aws:lambda/function:Function", "platform-control-sweep-function")
    env = sweep.inputs["environment"]["variables"]
    assert env[Env.FAILED_EVENTS_URL] == dev_platform.named(QUEUE, NAME).outputs["url"]


def test_prod_alarms_on_the_queue_depth_dev_does_not(
    dev_platform: StackGraph, prod_platform: StackGraph
) -> None:
    alarm = prod_platform.named(ALARM, f"{NAME}-depth").inputs
    assert alarm["dimensions"] == {"QueueName": "ai-batch-prod-reconciler-failed"}
    assert alarm["metricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["threshold"] == 0
    assert not [a for a in dev_platform.of_type(ALARM) if a.name == f"{NAME}-depth"]
