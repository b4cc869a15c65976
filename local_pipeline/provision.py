"""Translate an evaluated stack graph (``components.offline.StackGraph``) into moto resources.

The local pipeline must run the stack the user would deploy, not a hand-kept copy of it, so
every table, queue, bucket, topic, task definition and worker registration is created from
the inputs the real ``__main__.py`` declared under Pulumi mocks. The mocks invent ARNs, URLs
and ids; moto hands out its own. :class:`Substitutions` records mock value -> moto value for
every resource created, and every later input (redrive policies, registration items, Lambda
environments, schedule targets) passes through it before use, so nothing mocked leaks into
the running pipeline.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.offline import MockResource, StackGraph
from jobcontract import ECS_TASK_STATE_CHANGE, Env, JobField, Table
from jobcontract.registration import WorkerRegistration

log = logging.getLogger("local_pipeline.provision")

REGION = "us-east-1"
T_TABLE = "aws:dynamodb/table:Table"
T_TABLE_ITEM = "aws:dynamodb/tableItem:TableItem"
T_QUEUE = "aws:sqs/queue:Queue"
T_INVOKE_CONFIG = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
T_BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
T_TOPIC = "aws:sns/topic:Topic"
T_TOPIC_SUB = "aws:sns/topicSubscription:TopicSubscription"
T_CLUSTER = "aws:ecs/cluster:Cluster"
T_TASK_DEF = "aws:ecs/taskDefinition:TaskDefinition"
T_SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
T_LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
T_FUNCTION = "aws:lambda/function:Function"
T_ESM = "aws:lambda/eventSourceMapping:EventSourceMapping"
T_SCHEDULE = "aws:scheduler/schedule:Schedule"
T_EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
T_EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"

_SUBNET_RE = re.compile(r"\bsubnet-[0-9a-f]{8,17}\b")
_SG_RE = re.compile(r"\bsg-[0-9a-f]{8,17}\b")
_ID_RE = re.compile(r"(subnet|sg|vpc|vpce)-[0-9a-f]{8,17}")
# Lambda runtime settings that make no sense for an in-process handler.
_LAMBDA_ONLY_ENV = frozenset({"AWS_LAMBDA_EXEC_WRAPPER", "POWERTOOLS_SERVICE_NAME"})


class ProvisionError(RuntimeError):
    """The graph declares something the local pipeline cannot reproduce in moto."""


class Substitutions:
    """Mock output value -> moto value, applied to every string nested in a value.

    Longest mock values are replaced first, so a queue URL is rewritten before any shorter
    value that happens to be part of it (its queue name)."""

    def __init__(self) -> None:
        self._pairs: dict[str, str] = {}

    def add(self, mock: Any, real: Any) -> None:
        """Record a pair. Only distinctive values (ARNs, URLs, ``subnet-``/``sg-`` ids) are
        taken: a bare name would also match inside unrelated strings."""
        if not (isinstance(mock, str) and isinstance(real, str)) or mock == real:
            return
        if mock.startswith(("arn:", "https://", "http://")) or _ID_RE.fullmatch(mock):
            self._pairs[mock] = real

    def mapping(self) -> dict[str, str]:
        return dict(self._pairs)

    def apply(self, value: Any) -> Any:
        if isinstance(value, str):
            for mock in sorted(self._pairs, key=len, reverse=True):
                if mock in value:
                    value = value.replace(mock, self._pairs[mock])
            return value
        if isinstance(value, dict):
            return {k: self.apply(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.apply(v) for v in value]
        return value


@dataclass(frozen=True)
class LocalFunction:
    """One Lambda function of the stack, to be called in-process."""

    logical_name: str
    name: str
    handler: str  # as declared, e.g. "handlers.api.handler"
    env: dict[str, str]  # its environment variables, moto values substituted
    timeout_seconds: int
    mock_arn: str

    @property
    def role(self) -> str:
        """The handler module's own name (``api``, ``launcher``, ``reconciler``, ``sweep``)."""
        module = self.handler.replace("/", ".").rsplit(".", 1)[0]
        return module.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class EventSource:
    """An SQS -> Lambda event source mapping, to be emulated by a poller."""

    queue_url: str
    queue_arn: str
    function: str  # logical name of the LocalFunction
    batch_size: int
    report_batch_item_failures: bool
    # The mapping's scalingConfig.maximumConcurrency (Lambda's own floor is 2 concurrent
    # invocations per mapping when it is unset): how many batches run at once.
    max_concurrency: int = 2


@dataclass(frozen=True)
class LocalSchedule:
    """An EventBridge Scheduler schedule, run on demand (moto never fires schedules)."""

    logical_name: str
    name: str
    expression: str
    target_arn: str  # cluster ARN for an ECS target, function ARN for a Lambda target
    input: str | None
    ecs_parameters: dict[str, Any] | None
    function: str | None  # logical name of the LocalFunction for a Lambda target
    component: str | None = None  # the declaring component (e.g. the ScheduledTask's name)


@dataclass
class Provisioned:
    """What was created in moto, with moto's names, plus what the runtime emulation needs."""

    endpoint: str
    substitutions: Substitutions
    tables: dict[str, str] = field(default_factory=dict)  # logical -> table name
    jobs_table: str = ""
    buckets: dict[str, str] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)  # logical -> moto ARN
    queues: dict[str, str] = field(default_factory=dict)  # logical -> moto URL
    queue_arns: dict[str, str] = field(default_factory=dict)  # moto URL -> moto ARN
    cluster_arns: dict[str, str] = field(default_factory=dict)
    task_definitions: dict[str, str] = field(default_factory=dict)  # logical -> moto ARN
    log_groups: list[str] = field(default_factory=list)
    workers: dict[str, WorkerRegistration] = field(default_factory=dict)  # registrations
    functions: dict[str, LocalFunction] = field(default_factory=dict)
    event_sources: list[EventSource] = field(default_factory=list)
    schedules: list[LocalSchedule] = field(default_factory=list)
    ecs_event_functions: list[str] = field(default_factory=list)
    # A function's asynchronous on-failure destination: logical name -> moto queue URL.
    on_failure: dict[str, str] = field(default_factory=dict)
    subnets: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)

    def function_by_role(self, role: str) -> LocalFunction:
        found = [f for f in self.functions.values() if f.role == role]
        if len(found) != 1:
            roles = sorted(f.role for f in self.functions.values())
            raise ProvisionError(f"expected one {role!r} Lambda in the stack, have {roles}")
        return found[0]

    def handler_env(self) -> dict[str, str]:
        """The union of every Lambda's environment: the handlers run in one process."""
        merged: dict[str, str] = {}
        for fn in self.functions.values():
            for key, value in fn.env.items():
                if key in merged and merged[key] != value:
                    log.warning("Lambda env %s differs between functions; using %r", key, value)
                merged[key] = value
        return merged

    def schedule(self, name: str) -> LocalSchedule:
        for s in self.schedules:
            if name in (s.name, s.logical_name, s.component):
                return s
        known = sorted(s.component or s.logical_name for s in self.schedules)
        raise KeyError(f"no schedule named {name!r}; the stack has {known}")


def _json(value: Any) -> Any:
    """Inputs that Pulumi passes as JSON text arrive as str; accept both forms."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "[{":
            return json.loads(text)
    return value


def _attr_text(value: Any) -> str:
    """An SQS attribute value: numbers arrive from the engine as floats (360.0 -> "360")."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v)


def _physical(resource: MockResource, *keys: str) -> str:
    for key in keys:
        value = resource.inputs.get(key) or resource.outputs.get(key)
        if isinstance(value, str) and value:
            return value
    raise ProvisionError(f"{resource.type} {resource.name!r} has none of {keys}")


def _ddb_plain(item: Mapping[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {k: deserializer.deserialize(v) for k, v in item.items()}


class Provisioner:
    """Creates the graph's resources in the moto server at ``endpoint``."""

    def __init__(self, graph: StackGraph, endpoint: str) -> None:
        import boto3

        self.graph = graph
        self.endpoint = endpoint
        session = boto3.session.Session(  # type: ignore[attr-defined]
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        self._session = session
        self.subs = Substitutions()
        self.result = Provisioned(endpoint=endpoint, substitutions=self.subs)

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self.endpoint)

    def run(self) -> Provisioned:
        """Create everything, dependencies first (the graph's order is not guaranteed)."""
        self._network()
        for r in self.graph.of_type(T_TABLE):
            self._table(r)
        for typ in T_BUCKETS:
            for r in self.graph.of_type(typ):
                self._bucket(r)
        for r in self.graph.of_type(T_TOPIC):
            self._topic(r)
        for r in self.graph.of_type(T_LOG_GROUP):
            self._log_group(r)
        for r in self.graph.of_type(T_CLUSTER):
            self._cluster(r)
        self._queues(self.graph.of_type(T_QUEUE))
        for r in self.graph.of_type(T_TOPIC_SUB):
            self._subscription(r)
        for r in self.graph.of_type(T_TASK_DEF):
            self._task_definition(r)
        for r in self.graph.of_type(T_TABLE_ITEM):
            self._table_item(r)
        for r in self.graph.of_type(T_FUNCTION):
            self._function(r)
        for r in self.graph.of_type(T_ESM):
            self._event_source(r)
        for r in self.graph.of_type(T_INVOKE_CONFIG):
            self._on_failure(r)
        for r in self.graph.of_type(T_SCHEDULE):
            self._schedule(r)
        self._ecs_event_rules()
        return self.result

    # --- network ---------------------------------------------------------------------------
    def _network(self) -> None:
        """One VPC with a subnet per subnet id and a group per security group the stack uses.

        moto ECS workarounds (OFFLINE-AWS-NOTES): DNS hostnames on, security groups given."""
        ec2 = self.client("ec2")
        vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        strings = [s for r in self.graph.resources for s in _walk_strings(r.inputs)]
        subnet_ids = sorted({m for s in strings for m in _SUBNET_RE.findall(s)})
        for index, mock_id in enumerate(subnet_ids or ["subnet-local"]):
            real = ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.0.{index}.0/24")["Subnet"]
            self.subs.add(mock_id, real["SubnetId"])
            self.result.subnets.append(real["SubnetId"])
        declared = {str(r.outputs.get("id")): r for r in self.graph.of_type(T_SECURITY_GROUP)}
        group_ids = sorted(set(declared) | {m for s in strings for m in _SG_RE.findall(s)})
        for index, mock_id in enumerate(group_ids):
            r = declared.get(mock_id)
            name = str(r.inputs.get("name") or r.name) if r else f"local-group-{index}"
            description = str(r.inputs.get("description") or name) if r else name
            real_id = ec2.create_security_group(
                GroupName=name, Description=description, VpcId=vpc_id
            )["GroupId"]
            self.subs.add(mock_id, real_id)
            self.result.security_groups.append(real_id)

    # --- storage and messaging -------------------------------------------------------------
    def _table(self, r: MockResource) -> None:
        i = r.inputs
        name = _physical(r, "name")
        if i.get("keySchemas"):  # pulumi-aws 7 form: [{attributeName, keyType}]
            key_schema = [
                {"AttributeName": k["attributeName"], "KeyType": k["keyType"]}
                for k in i["keySchemas"]
            ]
        else:
            key_schema = [{"AttributeName": i["hashKey"], "KeyType": "HASH"}]
            if i.get("rangeKey"):
                key_schema.append({"AttributeName": i["rangeKey"], "KeyType": "RANGE"})
        hash_key = next(k["AttributeName"] for k in key_schema if k["KeyType"] == "HASH")
        kwargs: dict[str, Any] = {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": key_schema,
            "AttributeDefinitions": [
                {"AttributeName": a["name"], "AttributeType": a["type"]}
                for a in i.get("attributes") or []
            ],
        }
        indexes = [self._gsi(g) for g in i.get("globalSecondaryIndexes") or []]
        if indexes:
            kwargs["GlobalSecondaryIndexes"] = indexes
        ddb = self.client("dynamodb")
        created = ddb.create_table(**kwargs)["TableDescription"]
        ttl = i.get("ttl") or {}
        if ttl.get("enabled") and ttl.get("attributeName"):
            # moto records TTL but never expires items (OFFLINE-AWS-NOTES): harmless locally.
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["attributeName"]},
            )
        self.subs.add(r.outputs.get("arn"), created["TableArn"])
        self.result.tables[r.name] = name
        if hash_key == Table.PK:
            self.result.jobs_table = name

    @staticmethod
    def _gsi(g: Mapping[str, Any]) -> dict[str, Any]:
        keys = g.get("keySchemas")  # pulumi-aws 7 form: [{attributeName, keyType}]
        if keys:
            schema = [{"AttributeName": k["attributeName"], "KeyType": k["keyType"]} for k in keys]
        else:
            schema = [{"AttributeName": g["hashKey"], "KeyType": "HASH"}]
            if g.get("rangeKey"):
                schema.append({"AttributeName": g["rangeKey"], "KeyType": "RANGE"})
        projection: dict[str, Any] = {"ProjectionType": g.get("projectionType", "ALL")}
        if g.get("nonKeyAttributes"):
            projection["NonKeyAttributes"] = list(g["nonKeyAttributes"])
        return {"IndexName": g["name"], "KeySchema": schema, "Projection": projection}

    def _bucket(self, r: MockResource) -> None:
        name = _physical(r, "bucket")
        self.client("s3").create_bucket(Bucket=name)
        self.result.buckets[r.name] = name

    def _topic(self, r: MockResource) -> None:
        mock_arn = str(r.outputs["arn"])
        name = str(r.inputs.get("name") or mock_arn.rsplit(":", 1)[-1])
        attributes = {"FifoTopic": "true"} if r.inputs.get("fifoTopic") else {}
        arn = self.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
        self.subs.add(mock_arn, arn)
        self.result.topics[r.name] = arn

    def _log_group(self, r: MockResource) -> None:
        name = _physical(r, "name")
        self.client("logs").create_log_group(logGroupName=name)
        self.result.log_groups.append(name)

    def _cluster(self, r: MockResource) -> None:
        name = _physical(r, "name")
        arn = self.client("ecs").create_cluster(
            clusterName=name, capacityProviders=["FARGATE", "FARGATE_SPOT"]
        )["cluster"]["clusterArn"]
        self.subs.add(r.outputs.get("arn"), arn)
        self.subs.add(r.outputs.get("id"), arn)
        self.result.cluster_arns[r.name] = arn

    def _queues(self, queues: Iterable[MockResource]) -> None:
        """Create every queue first, then set redrive policies (a DLQ must exist first)."""
        sqs = self.client("sqs")
        pending: list[tuple[str, Any]] = []
        for r in queues:
            i = r.inputs
            mock_url = str(r.outputs.get("url") or r.outputs.get("id"))
            name = str(i.get("name") or mock_url.rsplit("/", 1)[-1])
            attributes: dict[str, str] = {}
            for key, attr in (
                ("fifoQueue", "FifoQueue"),
                ("contentBasedDeduplication", "ContentBasedDeduplication"),
                ("visibilityTimeoutSeconds", "VisibilityTimeout"),
                ("messageRetentionSeconds", "MessageRetentionPeriod"),
                ("delaySeconds", "DelaySeconds"),
                ("receiveWaitTimeSeconds", "ReceiveMessageWaitTimeSeconds"),
                ("maxMessageSize", "MaximumMessageSize"),
                ("deduplicationScope", "DeduplicationScope"),
                ("fifoThroughputLimit", "FifoThroughputLimit"),
            ):
                if i.get(key) is not None:
                    attributes[attr] = _attr_text(i[key])
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            self.subs.add(mock_url, url)
            self.subs.add(r.outputs.get("arn"), arn)
            self.result.queues[r.name] = url
            self.result.queue_arns[url] = arn
            if i.get("redrivePolicy"):
                pending.append((url, i["redrivePolicy"]))
        for url, policy in pending:
            policy_text = policy if isinstance(policy, str) else json.dumps(policy)
            sqs.set_queue_attributes(
                QueueUrl=url, Attributes={"RedrivePolicy": self.subs.apply(policy_text)}
            )

    def _subscription(self, r: MockResource) -> None:
        i = self.subs.apply(r.inputs)
        if i.get("protocol") != "sqs":
            log.info("skipping %s subscription %s (unreachable locally)", i.get("protocol"), r.name)
            return
        self.client("sns").subscribe(
            TopicArn=i["topic"],
            Protocol="sqs",
            Endpoint=i["endpoint"],
            Attributes={"RawMessageDelivery": str(bool(i.get("rawMessageDelivery"))).lower()},
        )

    # --- compute ---------------------------------------------------------------------------
    def _task_definition(self, r: MockResource) -> None:
        i = self.subs.apply(r.inputs)
        containers = _json(i["containerDefinitions"])
        for c in containers:
            # moto workaround: run_task needs a memory value on every container definition.
            c.setdefault("memory", int(i.get("memory") or 512))
        kwargs: dict[str, Any] = {
            "family": i["family"],
            "containerDefinitions": containers,
            "networkMode": i.get("networkMode", "awsvpc"),
            "requiresCompatibilities": i.get("requiresCompatibilities") or ["FARGATE"],
        }
        for key, wire in (("cpu", "cpu"), ("memory", "memory")):
            if i.get(key) is not None:
                kwargs[wire] = str(i[key])
        for key in ("executionRoleArn", "taskRoleArn"):
            if i.get(key):
                kwargs[key] = i[key]
        platform = i.get("runtimePlatform")
        if platform:
            kwargs["runtimePlatform"] = {
                k: v
                for k, v in platform.items()
                if k in ("cpuArchitecture", "operatingSystemFamily")
            }
        arn = self.client("ecs").register_task_definition(**kwargs)["taskDefinition"][
            "taskDefinitionArn"
        ]
        self.subs.add(r.outputs.get("arn"), arn)
        self.subs.add(r.outputs.get("arnWithoutRevision"), arn.rsplit(":", 1)[0])
        self.result.task_definitions[r.name] = arn

    def _table_item(self, r: MockResource) -> None:
        i = self.subs.apply(r.inputs)
        table = str(i["tableName"])
        item = _json(i["item"])
        self.client("dynamodb").put_item(TableName=table, Item=item)
        plain = _ddb_plain(item)
        if plain.get(JobField.KIND) == Table.KIND_WORKER:
            registration = WorkerRegistration.from_item(plain)
            self.result.workers[registration.name] = registration

    def _function(self, r: MockResource) -> None:
        i = r.inputs
        variables = dict(((i.get("environment") or {}).get("variables")) or {})
        env = {
            k: str(v) for k, v in self.subs.apply(variables).items() if k not in _LAMBDA_ONLY_ENV
        }
        name = _physical(r, "name")
        self.result.functions[r.name] = LocalFunction(
            logical_name=r.name,
            name=name,
            handler=str(i.get("handler") or ""),
            env=env,
            timeout_seconds=int(i.get("timeout") or 3),
            mock_arn=str(r.outputs.get("arn") or ""),
        )

    def _function_named(self, ref: Any) -> str | None:
        """The logical name of the function a mocked name or ARN refers to."""
        ref = str(ref or "")
        for logical, fn in self.result.functions.items():
            if ref and (ref in (fn.name, fn.mock_arn) or ref.startswith(fn.mock_arn + ":")):
                return logical
        return None

    def _event_source(self, r: MockResource) -> None:
        i = r.inputs
        function = self._function_named(i.get("functionName"))
        queue_arn = self.subs.apply(str(i.get("eventSourceArn") or ""))
        urls = [u for u, a in self.result.queue_arns.items() if a == queue_arn]
        if function is None or not urls:
            log.info("skipping event source %s (not an SQS -> stack Lambda mapping)", r.name)
            return
        self.result.event_sources.append(
            EventSource(
                queue_url=urls[0],
                queue_arn=queue_arn,
                function=function,
                batch_size=int(i.get("batchSize") or 10),
                report_batch_item_failures="ReportBatchItemFailures"
                in (i.get("functionResponseTypes") or []),
                max_concurrency=int((i.get("scalingConfig") or {}).get("maximumConcurrency") or 2),
            )
        )

    def _on_failure(self, r: MockResource) -> None:
        """An event invoke config's SQS on-failure destination (the reconciler's)."""
        function = self._function_named(r.inputs.get("functionName"))
        destination = ((r.inputs.get("destinationConfig") or {}).get("onFailure") or {}).get(
            "destination"
        )
        arn = self.subs.apply(str(destination or ""))
        urls = [u for u, a in self.result.queue_arns.items() if a == arn]
        if function is not None and urls:
            self.result.on_failure[function] = urls[0]

    def _schedule(self, r: MockResource) -> None:
        target = r.inputs.get("target") or {}
        mock_target_arn = str(target.get("arn") or "")
        function = self._function_named(mock_target_arn)
        substituted = self.subs.apply(target)
        self.result.schedules.append(
            LocalSchedule(
                logical_name=r.name,
                name=_physical(r, "name"),
                expression=str(r.inputs.get("scheduleExpression") or ""),
                target_arn=str(substituted.get("arn") or ""),
                input=substituted.get("input"),
                ecs_parameters=substituted.get("ecsParameters"),
                function=function,
                component=r.parent,
            )
        )

    def _ecs_event_rules(self) -> None:
        """Functions targeted by a rule on ECS Task State Change (the reconciler)."""
        rules = {
            str(r.outputs.get("name") or r.outputs.get("id") or r.name): r
            for r in self.graph.of_type(T_EVENT_RULE)
            if ECS_TASK_STATE_CHANGE in str(r.inputs.get("eventPattern") or "")
        }
        rule_names = set(rules) | {r.name for r in rules.values()}
        for t in self.graph.of_type(T_EVENT_TARGET):
            if str(t.inputs.get("rule")) in rule_names:
                function = self._function_named(t.inputs.get("arn"))
                if function and function not in self.result.ecs_event_functions:
                    self.result.ecs_event_functions.append(function)


def provision(graph: StackGraph, endpoint: str) -> Provisioned:
    """Create the stack's resources in the moto server at ``endpoint``."""
    result = Provisioner(graph, endpoint).run()
    if not result.jobs_table:
        raise ProvisionError(f"the stack declares no table keyed on {Table.PK!r} (jobs table)")
    env = result.handler_env()
    if env.get(Env.JOBS_TABLE) not in (None, result.jobs_table):
        raise ProvisionError(
            f"Lambda env {Env.JOBS_TABLE}={env.get(Env.JOBS_TABLE)!r} names no created table"
        )
    return result
