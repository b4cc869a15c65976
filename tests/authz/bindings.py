"""Binding a trace recorded against the test fixtures' moto resources
(``tests.fixtures.moto_server.create_pipeline_resources``) to a stack graph's names, so the
runtime and fault tests' calls are checked against the stack's real policies too."""

from __future__ import annotations

from components.offline import StackGraph
from tests.fixtures.moto_server import PipelineResources


def fixture_to_stack(res: PipelineResources, graph: StackGraph) -> dict[str, str]:
    """Fixture identifiers -> the stack's, by role (the table, the bucket, the topic, the
    cluster and its task ARNs, each worker's task definition family; every worker's queue and
    DLQ are the stack's one launch queue and its DLQ)."""
    table = graph.of_type("aws:dynamodb/table:Table")[0].outputs["name"]
    bucket = graph.of_type("aws:s3/bucket:Bucket")[0].outputs["bucket"]
    topic = graph.of_type("aws:sns/topic:Topic")[0].outputs["arn"]
    cluster = str(graph.of_type("aws:ecs/cluster:Cluster")[0].outputs["arn"])
    fixture_cluster = res.cluster_arn.rsplit("/", 1)[-1]
    mapping = {
        res.table_name: table,
        res.bucket: bucket,
        res.topic_arn: topic,
        res.cluster_arn: cluster,
        f":task/{fixture_cluster}/": f":task/{cluster.rsplit('/', 1)[-1]}/",
    }
    queues = {
        str(q.outputs["name"]): str(q.outputs["url"]) for q in graph.of_type("aws:sqs/queue:Queue")
    }
    families = {
        str(t.inputs["family"]): str(t.outputs["arnWithoutRevision"])
        for t in graph.of_type("aws:ecs/taskDefinition:TaskDefinition")
    }
    queue = next(url for name, url in queues.items() if name.endswith("-launch.fifo"))
    dlq = next(url for name, url in queues.items() if name.endswith("-launch-dlq.fifo"))
    for worker in res.workers.values():
        family = next(arn for fam, arn in families.items() if fam.endswith(f"-{worker.name}"))
        mapping[worker.queue_url] = queue
        mapping[worker.dlq_url] = dlq
        mapping[worker.task_definition_arn.rsplit(":", 1)[0]] = family
    return mapping
