"""JobQueue under Pulumi mocks: FIFO names, dedup, redrive, TLS-only, trigger, DLQ alarm.

(The stack declares one, the launch queue, in ControlPlane; here it stands alone.)"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from components.aws_rules import AwsConstraintError
from components.job_queue import JobQueue, JobQueueArgs
from components.offline import StackGraph, run_program

QUEUE = "aws:sqs/queue:Queue"
POLICY = "aws:sqs/queuePolicy:QueuePolicy"


def _program(**overrides: Any) -> Any:
    def program() -> None:
        role = aws.iam.Role(
            "launcher-role",
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )
        fn = aws.lambda_.Function(
            "launcher", role=role.arn, runtime="python3.13", handler="x.handler", timeout=60
        )
        topic = aws.sns.Topic("failures")
        args: dict[str, Any] = {
            "name_prefix": "ai-batch-dev",
            "consumer_timeout_seconds": 60,
            "max_concurrency": 7,
            "alarm_topic_arn": topic.arn,
        }
        args.update(overrides)
        q = JobQueue("summarize", JobQueueArgs(**args))
        q.trigger(fn, depends_on=[role])
        pulumi.export("queue_url", q.queue.url)

    return program


def _graph(**overrides: Any) -> StackGraph:
    return run_program(_program(**overrides))


@pytest.fixture(scope="module")
def graph() -> StackGraph:
    return _graph()


def test_fifo_names_and_deduplication(graph: StackGraph) -> None:
    queue = graph.named(QUEUE, "summarize-queue").inputs
    dlq = graph.named(QUEUE, "summarize-dlq").inputs
    assert queue["name"] == "ai-batch-dev-summarize.fifo"
    assert dlq["name"] == "ai-batch-dev-summarize-dlq.fifo"
    for q in (queue, dlq):
        assert q["fifoQueue"] is True
        assert q["contentBasedDeduplication"] is False
        assert q["sqsManagedSseEnabled"] is True
    assert dlq["messageRetentionSeconds"] == 1_209_600
    assert queue["messageRetentionSeconds"] < dlq["messageRetentionSeconds"]


def test_visibility_timeout_is_six_times_consumer_timeout(graph: StackGraph) -> None:
    fn_timeout = graph.named("aws:lambda/function:Function", "launcher").inputs["timeout"]
    queue = graph.named(QUEUE, "summarize-queue").inputs
    assert queue["visibilityTimeoutSeconds"] == 6 * fn_timeout


def test_redrive_to_dlq_and_allow_policy(graph: StackGraph) -> None:
    queue = graph.named(QUEUE, "summarize-queue").inputs
    dlq = graph.named(QUEUE, "summarize-dlq")
    redrive = json.loads(queue["redrivePolicy"])
    assert redrive == {"deadLetterTargetArn": dlq.outputs["arn"], "maxReceiveCount": 20}
    allow = graph.named(
        "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy", "summarize-dlq-redrive-allow"
    )
    assert allow.inputs["queueUrl"] == dlq.outputs["url"]
    body = json.loads(allow.inputs["redriveAllowPolicy"])
    assert body["redrivePermission"] == "byQueue"
    assert body["sourceQueueArns"] == [graph.named(QUEUE, "summarize-queue").outputs["arn"]]


def test_both_queues_deny_non_tls(graph: StackGraph) -> None:
    for suffix in ("queue", "dlq"):
        q = graph.named(QUEUE, f"summarize-{suffix}")
        pol = graph.named(POLICY, f"summarize-{suffix}-tls-only").inputs
        assert pol["queueUrl"] == q.outputs["url"]
        (stmt,) = json.loads(pol["policy"])["Statement"]
        assert stmt["Effect"] == "Deny"
        assert stmt["Resource"] == [q.outputs["arn"]]
        assert stmt["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_event_source_mapping(graph: StackGraph) -> None:
    esm = graph.named("aws:lambda/eventSourceMapping:EventSourceMapping", "summarize-trigger")
    assert esm.inputs["eventSourceArn"] == graph.named(QUEUE, "summarize-queue").outputs["arn"]
    assert esm.inputs["functionName"].endswith(
        ":function:" + graph.named("aws:lambda/function:Function", "launcher").outputs["name"]
    )
    assert esm.inputs["batchSize"] == 10
    assert esm.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm.inputs["scalingConfig"] == {"maximumConcurrency": 7}
    assert "maximumBatchingWindowInSeconds" not in esm.inputs


def test_no_policy_on_the_consumer_role(graph: StackGraph) -> None:
    """The consumer's owner grants queue.grant_consume in the consumer's own policy (the
    launcher's, in ControlPlane): the queue adds no per-queue policy to any role."""
    assert graph.of_type("aws:iam/rolePolicy:RolePolicy") == []
    esm = graph.named("aws:lambda/eventSourceMapping:EventSourceMapping", "summarize-trigger")
    assert "launcher-role" in esm.depends_on


def test_one_trigger_per_queue() -> None:
    def program() -> None:
        role = aws.iam.Role("r", assume_role_policy="{}")
        fn = aws.lambda_.Function("f", role=role.arn, runtime="python3.13", handler="x.h")
        q = JobQueue("q", JobQueueArgs(name_prefix="ai-batch-dev", consumer_timeout_seconds=60))
        q.trigger(fn)
        q.trigger(fn)

    with pytest.raises(ValueError, match="already triggers"):
        run_program(program)


def test_dlq_alarm_targets_topic(graph: StackGraph) -> None:
    alarm = graph.named("aws:cloudwatch/metricAlarm:MetricAlarm", "summarize-dlq-depth").inputs
    topic_arn = graph.named("aws:sns/topic:Topic", "failures").outputs["arn"]
    assert alarm["metricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["namespace"] == "AWS/SQS"
    assert alarm["dimensions"] == {"QueueName": "ai-batch-dev-summarize-dlq.fifo"}
    assert alarm["threshold"] == 0
    assert alarm["comparisonOperator"] == "GreaterThanThreshold"
    assert alarm["alarmActions"] == [topic_arn]
    assert alarm["okActions"] == [topic_arn]  # and says so when the DLQ drains


def test_no_alarm_without_topic() -> None:
    graph = _graph(alarm_topic_arn=None)
    assert graph.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") == []


def test_kms_key_replaces_sqs_managed_sse() -> None:
    graph = _graph(kms_master_key_id="alias/batch")
    queue = graph.named(QUEUE, "summarize-queue").inputs
    assert queue["kmsMasterKeyId"] == "alias/batch"
    assert "sqsManagedSseEnabled" not in queue


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"batch_size": 11}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_concurrency": 1}, "max_concurrency"),
        ({"max_concurrency": 1001}, "max_concurrency"),
        ({"max_receive_count": 0}, "max_receive_count"),
        ({"consumer_timeout_seconds": 7201}, "launcher timeout"),
        ({"message_retention_seconds": 1_209_600}, "message_retention_seconds"),
        ({"message_retention_seconds": 59}, "message_retention_seconds"),
        ({"name_prefix": "x" * 80}, "queue name"),
    ],
)
def test_invalid_args_are_refused(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(AwsConstraintError) as info:
        _graph(**overrides)
    assert info.value.key == key


def test_security_checklist_passes(graph: StackGraph) -> None:
    from tests.infra.test_fargate_worker import checklist_violations

    assert checklist_violations(graph, "summarize") == []
