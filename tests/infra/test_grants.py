"""Grants on the resource accessed (components/grants.py, JobQueue.grant_send/_consume):
what each grant writes into a role's policy, under Pulumi mocks."""

from __future__ import annotations

from typing import Any

import pulumi_aws as aws
import pytest

from components import grants
from components.aws_rules import AwsConstraintError
from components.job_queue import JobQueue, JobQueueArgs
from components.offline import StackGraph, run_program
from tests.infra.policies import role_policy

pytestmark = pytest.mark.xdist_group("pulumi")

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/ai-batch-dev"


def _policy_of(grant: Any, **queue_args: Any) -> StackGraph:
    """A queue, one role whose one policy is what ``grant(queue, grantee)`` granted."""

    def program() -> None:
        queue = JobQueue(
            "q",
            JobQueueArgs(name_prefix="ai-batch-dev", consumer_timeout_seconds=60, **queue_args),
        )
        grantee = grants.Grantee("producer")
        grant(queue, grantee)
        role = aws.iam.Role("r", assume_role_policy="{}")
        aws.iam.RolePolicy("p", role=role.id, policy=grantee.document())

    return run_program(program)


def _by_sid(graph: StackGraph) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in role_policy(graph, "p")}


def test_a_new_enqueuer_is_one_line() -> None:
    graph = _policy_of(lambda q, g: q.grant_send(g, sid="Enqueue"))
    queue = graph.named("aws:sqs/queue:Queue", "q-queue").outputs["arn"]
    dlq = graph.named("aws:sqs/queue:Queue", "q-dlq").outputs["arn"]
    statements = _by_sid(graph)
    assert set(statements) == {"Enqueue", "NeverIntoDeadLetters"}  # SSE-SQS: no key grant
    assert statements["Enqueue"]["Action"] == ["sqs:GetQueueAttributes", "sqs:SendMessage"]
    assert statements["Enqueue"]["Resource"] == [queue]
    deny = statements["NeverIntoDeadLetters"]
    assert deny["Effect"] == "Deny" and deny["Resource"] == [dlq]


def test_a_queue_with_a_customer_key_grants_the_key_too() -> None:
    send = _by_sid(
        _policy_of(lambda q, g: q.grant_send(g, sid="Enqueue"), kms_master_key_id=KEY_ARN)
    )
    assert send["EnqueueKey"]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert send["EnqueueKey"]["Resource"] == [KEY_ARN]
    consume = _by_sid(
        _policy_of(lambda q, g: q.grant_consume(g, sid="Consume"), kms_master_key_id=KEY_ARN)
    )
    assert consume["ConsumeKey"]["Action"] == ["kms:Decrypt"]  # a consumer only decrypts
    assert "sqs:ReceiveMessage" in consume["Consume"]["Action"]


def test_a_key_alias_cannot_be_granted() -> None:
    with pytest.raises(AwsConstraintError, match="key ARN"):
        _policy_of(lambda q, g: q.grant_send(g, sid="E"), kms_master_key_id="alias/mine")


def _statements(build: Any) -> list[dict[str, Any]]:
    def program() -> None:
        grantee = grants.Grantee("g")
        build(grantee)
        role = aws.iam.Role("r", assume_role_policy="{}")
        aws.iam.RolePolicy("p", role=role.id, policy=grantee.document())

    return role_policy(run_program(program), "p")


def test_grant_run_is_scoped_to_the_cluster_the_families_and_the_roles() -> None:
    roles = ["arn:aws:iam::123456789012:role/aibatch/ai-batch-dev/workers/w-task"]
    family = "arn:aws:ecs:us-east-1:123456789012:task-definition/ai-batch-dev-w:*"
    run, tag, passes = _statements(lambda g: grants.grant_run(g, CLUSTER, family, roles))
    assert run["Action"] == ["ecs:RunTask"] and run["Resource"] == [family]
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": CLUSTER}}
    assert tag["Resource"] == ["arn:aws:ecs:us-east-1:123456789012:task/ai-batch-dev/*"]
    assert tag["Condition"] == {"StringEquals": {"ecs:CreateAction": "RunTask"}}
    assert passes["Resource"] == roles
    assert passes["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


def test_bucket_and_table_grants_name_their_prefix_and_keys() -> None:
    bucket = grants.ResultsBucket("arn:aws:s3:::b")
    table = grants.JobsTable("arn:aws:dynamodb:us-east-1:123456789012:table/t")

    def build(g: grants.Grantee) -> None:
        bucket.grant_prefix(g, "inputs/", write=True, sid="W")
        table.grant_job_rows(g, "w", actions=("dynamodb:GetItem",), sid="Rows")
        table.grant_job_rows(g, actions=("dynamodb:PutItem",), sid="AnyJobRows")

    write, rows, any_rows = _statements(build)
    assert write["Action"] == ["s3:PutObject"] and write["Resource"] == ["arn:aws:s3:::b/inputs/*"]
    assert rows["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["job#w_*"]}}
    assert any_rows["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["job#*"]
    with pytest.raises(ValueError, match="read, write or both"):
        bucket.grant_prefix(grants.Grantee("g"), "inputs/", sid="Nothing")
    with pytest.raises(ValueError, match="literal prefix"):
        bucket.grant_prefix(grants.Grantee("g"), "inputs/*", read=True, sid="Star")


def test_the_failure_topic_grants_its_key_only_when_it_has_one() -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:t"
    (publish,) = _statements(lambda g: grants.FailureTopic(topic).grant_publish(g))
    assert publish["Action"] == ["sns:Publish"]
    _, key = _statements(lambda g: grants.FailureTopic(topic, KEY_ARN).grant_publish(g))
    assert key["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"] and key["Resource"] == [KEY_ARN]


def test_the_execution_role_grants_name_the_repository_the_log_group_and_each_value() -> None:
    repo = "arn:aws:ecr:us-east-1:123456789012:repository/ai-batch-dev/w"
    group = "arn:aws:logs:us-east-1:123456789012:log-group:/aibatch/w"
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:s-AbCdEf"
    param = "arn:aws:ssm:us-east-1:123456789012:parameter/p"

    def build(g: grants.Grantee) -> None:
        grants.Repository(repo).grant_pull(g)
        grants.LogGroup(group).grant_write(g, sid="Logs")
        grants.Secrets([secret]).grant_read(g, sid="S")
        grants.Parameters([param]).grant_read(g, sid="P")
        grants.Secrets().grant_read(g, sid="NoSecrets")  # none named: nothing granted
        grants.Parameters().grant_read(g, sid="NoParameters")

    token, pull, logs, read_secret, read_param = _statements(build)
    assert token["Action"] == ["ecr:GetAuthorizationToken"] and token["Resource"] == ["*"]
    assert "ecr:BatchGetImage" in pull["Action"] and pull["Resource"] == [repo]
    assert logs["Resource"] == [f"{group}:log-stream:*"]
    assert logs["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert read_secret["Action"] == ["secretsmanager:GetSecretValue"]
    assert read_secret["Resource"] == [secret]
    assert read_param["Action"] == ["ssm:GetParameters"] and read_param["Resource"] == [param]


def test_a_worker_execution_role_is_granted_by_its_resources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every worker's execution policy is what the grants write: narrow an action list on
    the grant target and each worker's policy follows (no statement written by hand)."""
    from components import iam
    from components.offline import stack_config
    from tests.infra.gpu_program import program

    monkeypatch.setattr(iam, "LOG_WRITE_ACTIONS", ("logs:PutLogEvents",))
    monkeypatch.setattr(iam, "ECR_PULL_ACTIONS", ("ecr:BatchGetImage",))
    graph = run_program(program, stack="dev", config=stack_config("dev"))
    for worker in ("content-analyzer", "image-embedder-cpu", "image-embedder"):
        statements = role_policy(graph, f"{worker}-exec-policy")
        logs = [s for s in statements if s.get("Sid") == "WriteOwnLogs"]
        assert [s["Action"] for s in logs] == [["logs:PutLogEvents"]], worker
        pulls = [s for s in statements if "ecr:BatchGetImage" in s["Action"]]
        assert [s["Action"] for s in pulls] == [["ecr:BatchGetImage"]], worker


# --- the worker roles are granted by the resources too -------------------------------------


def test_a_worker_task_role_is_granted_by_the_table_and_the_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker task roles (and the fallback worker's hand-over policy) hold what
    ``JobsTable.grant_job_rows`` writes with ``iam.WORKER_TABLE_ACTIONS``: change the action
    list, or the rows the grant scopes to, and every worker policy follows."""
    from components import iam
    from components.offline import stack_config
    from tests.infra.gpu_program import program

    narrower = ("dynamodb:GetItem", "dynamodb:UpdateItem")  # no PutItem
    assert set(narrower) < set(iam.WORKER_TABLE_ACTIONS)
    monkeypatch.setattr(iam, "WORKER_TABLE_ACTIONS", narrower)
    monkeypatch.setattr(grants, "job_pk_prefix", lambda worker: f"job#{worker}.v2_")
    graph = run_program(program, stack="dev", config=stack_config("dev"))

    def rows(policy: str, sid: str) -> dict[str, Any]:
        (statement,) = [s for s in role_policy(graph, policy) if s.get("Sid") == sid]
        return statement

    for policy, sid, worker in [
        ("content-analyzer-task-policy", "OwnJobRowsOnly", "content-analyzer"),
        ("image-embedder-cpu-task-policy", "OwnJobRowsOnly", "image-embedder-cpu"),
        ("image-embedder-task-policy", "OwnJobRowsOnly", "image-embedder"),  # InstanceWorker
        ("image-embedder-fallback-task-policy", "HandedOverJobRows", "image-embedder"),
    ]:
        statement = rows(policy, sid)
        assert statement["Action"] == sorted(narrower), policy
        keys = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        assert keys == [f"job#{worker}.v2_*"], policy


def test_a_drain_request_grant_is_send_only() -> None:
    """A worker task that frees its slot may send the launcher a drain request: SendMessage
    on the launch queue, nothing else on it, never into its DLQ."""
    graph = _policy_of(lambda q, g: q.grant_drain_request(g))
    queue = graph.named("aws:sqs/queue:Queue", "q-queue").outputs["arn"]
    dlq = graph.named("aws:sqs/queue:Queue", "q-dlq").outputs["arn"]
    statements = _by_sid(graph)
    assert set(statements) == {"RequestDrain", "NeverIntoDeadLetters"}
    assert statements["RequestDrain"]["Action"] == ["sqs:SendMessage"]
    assert statements["RequestDrain"]["Resource"] == [queue]
    deny = statements["NeverIntoDeadLetters"]
    assert deny["Effect"] == "Deny" and deny["Resource"] == [dlq]


def test_every_worker_task_role_may_request_a_drain_of_the_launch_queue_only() -> None:
    """Each worker's task role (Fargate and Managed Instances) holds the launch queue's
    drain-request grant: SendMessage on that one queue, no queue attributes."""
    from components.offline import stack_config
    from tests.infra.gpu_program import program

    graph = run_program(program, stack="dev", config=stack_config("dev"))
    (launch,) = [r for r in graph.of_type("aws:sqs/queue:Queue") if r.name.endswith("launch-queue")]
    for policy in ("content-analyzer-task-policy", "image-embedder-task-policy"):
        (drain,) = [s for s in role_policy(graph, policy) if s.get("Sid") == "RequestDrain"]
        assert drain["Action"] == ["sqs:SendMessage"], policy
        assert drain["Resource"] == [launch.outputs["arn"]], policy
