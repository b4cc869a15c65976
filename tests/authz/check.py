"""The authorization check: every AWS call of a recorded trace, and every call AWS services make
on the stack's behalf, evaluated against the exact policies the stack graph generates.

- ``StackPolicies`` reads a ``StackGraph`` (``components.offline.evaluate_stack``): which role
  each function and worker runs as, the identity, trust and resource policies (bucket, queue,
  topic, KMS key, Lambda permissions), and the calls AWS makes for the stack (ECS pulling the
  image, writing logs and reading secrets with the execution role; Scheduler's RunTask and
  PassRole; the SQS event source mapping polling with the launcher's role; API Gateway and
  EventBridge invoking functions; API Gateway writing access logs; every role assumption).
- ``requests_for`` maps one call to the IAM requests it needs, from ``actions.json`` (the data
  table: action, resource kind, condition keys, and where each row comes from).
- ``check`` evaluates them (``tests.authz.engine``) and returns one ``Problem`` per call that
  is unmapped or denied, naming the call, the principal and what is missing.

A trace recorded against one stack's resources (the local pipeline provisions dev's names)
is re-bound to another stack's by logical name (``rebind``), so one trace proves both stacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from components.offline import MockResource, StackGraph
from tests.authz.engine import Decision, Policy, Request, evaluate, with_root_delegation

TABLE_FILE = Path(__file__).with_name("actions.json")
MANAGED_POLICIES_FILE = Path(__file__).with_name("aws_managed_policies.json")
FUNCTION_ENTRY_MODULES = ("api", "launcher", "reconciler", "sweep")
EXAMPLE_TASK_ID = "0123456789abcdef0123456789abcdef"  # stands for any task id in ARNs


def action_table() -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = json.loads(TABLE_FILE.read_text())
    return {k: v for k, v in table.items() if not k.startswith("_")}


@dataclass(frozen=True)
class Principal:
    """Who makes a call: a stack function (``kind="function"``, name = handler module), a
    worker's task role (``"task"``), a role by ARN (``"role"``) or an AWS service."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Call:
    """One API call: ``service:Operation`` with its parameters, as made (or as AWS makes it)."""

    service: str
    operation: str
    params: Mapping[str, Any]
    principal: Principal
    region: str = "us-east-1"
    error: str | None = None  # the error code the call got, if any
    origin: str = "trace"  # "trace" or what synthesized it

    @property
    def key(self) -> str:
        return f"{self.service}:{self.operation}"

    def describe(self) -> str:
        brief = {k: v for k, v in self.params.items() if k not in ("Item", "Message", "Body")}
        text = json.dumps(brief, default=str, sort_keys=True)
        return f"{self.key} by {self.principal} ({self.origin}) {text[:300]}"


@dataclass(frozen=True)
class Problem:
    call: Call
    message: str

    def __str__(self) -> str:
        return f"{self.call.describe()}: {self.message}"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# --- the stack's policies ----------------------------------------------------------------------
class StackPolicies:
    """Principals and policies of one stack graph."""

    def __init__(self, graph: StackGraph, account: str, region: str, partition: str = "aws"):
        self.graph = graph
        self.account = account
        self.region = region
        self.partition = partition

    # principals
    @cached_property
    def roles(self) -> dict[str, MockResource]:
        return {str(r.outputs["arn"]): r for r in self.graph.of_type("aws:iam/role:Role")}

    @cached_property
    def functions(self) -> dict[str, MockResource]:
        """Lambda functions by handler module (``handlers.api.handler`` -> ``api``)."""
        found = {}
        for r in self.graph.of_type("aws:lambda/function:Function"):
            module = str(r.inputs.get("handler", "")).removesuffix(".handler").split(".")[-1]
            found[module] = r
        return found

    @cached_property
    def task_definitions(self) -> dict[str, MockResource]:
        """Task definitions by family."""
        return {
            str(r.inputs["family"]): r
            for r in self.graph.of_type("aws:ecs/taskDefinition:TaskDefinition")
        }

    def worker_task_definition(self, worker: str) -> MockResource:
        for family, r in self.task_definitions.items():
            if family.endswith(f"-{worker}"):
                return r
        raise KeyError(f"no task definition for worker {worker!r}")

    def role_arn(self, principal: Principal) -> str:
        if principal.kind == "function":
            fn = self.functions.get(principal.name)
            if fn is None:
                raise KeyError(f"no function with handler module {principal.name!r}")
            return str(fn.inputs["role"])
        if principal.kind == "task":
            return str(self.worker_task_definition(principal.name).inputs["taskRoleArn"])
        if principal.kind == "role":
            return principal.name
        raise KeyError(f"{principal} is not a role")

    @staticmethod
    def _role_name(role_arn: str) -> str:
        return role_arn.rsplit("/", 1)[-1]

    def identity_policies(self, role_arn: str) -> list[Policy]:
        name = self._role_name(role_arn)
        role = self.roles.get(role_arn)
        if role is None:
            raise KeyError(f"role {role_arn} is not in the stack")
        policies = [
            Policy.parse(f"{r.name}", r.inputs["policy"])
            for r in self.graph.of_type("aws:iam/rolePolicy:RolePolicy")
            if r.inputs.get("role") in (name, role.outputs.get("id"))
        ]
        for inline in role.inputs.get("inlinePolicies") or []:
            if inline.get("policy"):
                policies.append(Policy.parse(f"{role.name}:{inline.get('name')}", inline["policy"]))
        attached = [
            r.inputs["policyArn"]
            for r in self.graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if r.inputs.get("role") in (name, role.outputs.get("id"))
        ] + list(role.inputs.get("managedPolicyArns") or [])
        for arn in attached:
            policies.append(self._managed_policy(str(arn)))
        return policies

    def _managed_policy(self, arn: str) -> Policy:
        for r in self.graph.of_type("aws:iam/policy:Policy"):
            if r.outputs.get("arn") == arn:
                return Policy.parse(r.name, r.inputs["policy"])
        managed = json.loads(MANAGED_POLICIES_FILE.read_text())
        document = managed.get(arn.split(":policy/", 1)[-1])
        if document is None:
            raise KeyError(f"managed policy {arn}: its document is not known to the check")
        return Policy.parse(arn, document["document"])

    def trust_policy(self, role_arn: str) -> Policy:
        role = self.roles[role_arn]
        return Policy.parse(f"{role.name}:trust", role.inputs["assumeRolePolicy"])

    # resource policies
    @cached_property
    def resource_policies(self) -> list[tuple[str, Policy]]:
        """(resource ARN prefix the policy governs, policy)."""
        found: list[tuple[str, Policy]] = []
        for r in self.graph.of_type("aws:s3/bucketPolicy:BucketPolicy"):
            found.append((f"arn:{self.partition}:s3:::{r.inputs['bucket']}", _policy(r)))
        for r in self.graph.of_type("aws:sqs/queuePolicy:QueuePolicy"):
            found.append((self.queue_arn(str(r.inputs["queueUrl"])), _policy(r)))
        for r in self.graph.of_type("aws:sns/topicPolicy:TopicPolicy"):
            found.append((str(r.inputs["arn"]), _policy(r)))
        for r in self.graph.of_type("aws:lambda/permission:Permission"):
            found.append((self.function_arn(str(r.inputs["function"])), _permission_policy(r)))
        return found

    def policies_on(self, resource_arn: str) -> list[Policy]:
        out = []
        for prefix, policy in self.resource_policies:
            if resource_arn == prefix or resource_arn.startswith((prefix + "/", prefix + ":")):
                out.append(policy)
        return out

    def key_policy(self, key_arn: str) -> Policy:
        for r in self.graph.of_type("aws:kms/key:Key"):
            if r.outputs.get("arn") == key_arn or r.outputs.get("id") == key_arn:
                return with_root_delegation(
                    Policy.parse(f"{r.name}:key-policy", r.inputs["policy"]), self.account
                )
        raise KeyError(f"KMS key {key_arn} is not in the stack (its key policy is unknown)")

    # names -> ARNs
    def queue_arn(self, url: str) -> str:
        parts = urlparse(url).path.strip("/").split("/")
        account, name = parts[-2], parts[-1]
        return f"arn:{self.partition}:sqs:{self.region}:{account}:{name}"

    def function_arn(self, name_or_arn: str) -> str:
        if name_or_arn.startswith("arn:"):
            return name_or_arn
        return f"arn:{self.partition}:lambda:{self.region}:{self.account}:function:{name_or_arn}"

    def table_arn(self, name: str) -> str:
        return f"arn:{self.partition}:dynamodb:{self.region}:{self.account}:table/{name}"

    def resource_tags(self, resource_arn: str) -> dict[str, str]:
        """Tags of a stack resource by ARN (queues today), for ``aws:ResourceTag/<key>``."""
        for r in self.graph.of_type("aws:sqs/queue:Queue"):
            if r.outputs.get("arn") == resource_arn:
                return {str(k): str(v) for k, v in (r.inputs.get("tags") or {}).items()}
        return {}

    def topic_key(self, topic_arn: str) -> str | None:
        for r in self.graph.of_type("aws:sns/topic:Topic"):
            if r.outputs.get("arn") == topic_arn:
                key = r.inputs.get("kmsMasterKeyId")
                return None if not key or str(key).startswith("alias/aws/") else str(key)
        return None

    def task_definition_for(self, arn: str) -> MockResource | None:
        family = arn.rsplit("/", 1)[-1].split(":")[0]
        return self.task_definitions.get(family)

    def cluster_arn(self) -> str:
        return str(self.graph.of_type("aws:ecs/cluster:Cluster")[0].outputs["arn"])

    # --- calls AWS makes on the stack's behalf -------------------------------------------------
    def service_calls(self) -> list[Call]:
        calls: list[Call] = []
        calls += self._ecs_agent_calls()
        calls += self._scheduler_calls()
        calls += self._event_source_calls()
        calls += self._invocations()
        calls += self._function_logs()
        calls += self._api_access_logs()
        calls += self._model_calls()
        calls += self._role_assumptions()
        return calls

    def _service_call(
        self, key: str, params: Mapping[str, Any], principal: Principal, origin: str
    ) -> Call:
        service, _, operation = key.rpartition(":")
        return Call(service, operation, params, principal, self.region, origin=origin)

    def _ecs_agent_calls(self) -> list[Call]:
        calls = []
        for family, td in self.task_definitions.items():
            execution = Principal("role", str(td.inputs["executionRoleArn"]))
            for container in _json(td.inputs["containerDefinitions"]):
                image = str(container["image"])
                repo = image.split("/", 1)[1].split("@")[0].split(":")[0]
                registry_account = image.split(".", 1)[0]
                repo_arn = (
                    f"arn:{self.partition}:ecr:{self.region}:{registry_account}:repository/{repo}"
                )
                origin = f"ECS starting a task of {family}"
                calls.append(
                    self._service_call(
                        "service:ecs-agent:PullImage", {"repository": repo_arn}, execution, origin
                    )
                )
                options = (container.get("logConfiguration") or {}).get("options") or {}
                if options.get("awslogs-group"):
                    prefix = options.get("awslogs-stream-prefix", "ecs")
                    stream = f"{prefix}/{container['name']}/{EXAMPLE_TASK_ID}"
                    log_arn = self._log_stream_arn(options["awslogs-group"], stream)
                    calls.append(
                        self._service_call(
                            "service:ecs-agent:WriteLogs", {"logStream": log_arn}, execution, origin
                        )
                    )
                for secret in container.get("secrets") or []:
                    value_from = str(secret["valueFrom"])
                    if ":ssm:" in value_from:
                        calls.append(
                            self._service_call(
                                "service:ecs-agent:ReadParameter",
                                {"parameter": value_from},
                                execution,
                                origin,
                            )
                        )
                    else:
                        arn = ":".join(value_from.split(":")[:7])
                        calls.append(
                            self._service_call(
                                "service:ecs-agent:ReadSecret", {"SecretId": arn}, execution, origin
                            )
                        )
        return calls

    def _log_stream_arn(self, group: str, stream: str) -> str:
        base = f"arn:{self.partition}:logs:{self.region}:{self.account}"
        return f"{base}:log-group:{group}:log-stream:{stream}"

    def _scheduler_calls(self) -> list[Call]:
        calls = []
        for schedule in self.graph.of_type("aws:scheduler/schedule:Schedule"):
            target = schedule.inputs["target"]
            role = Principal("role", str(target["roleArn"]))
            ecs = target.get("ecsParameters") or {}
            origin = f"EventBridge Scheduler running schedule {schedule.inputs.get('name')}"
            params = {
                "cluster": target["arn"],
                "taskDefinition": ecs["taskDefinitionArn"],
                "tags": [{"key": k, "value": v} for k, v in (ecs.get("tags") or {}).items()],
            }
            calls.append(self._service_call("service:scheduler:RunTask", params, role, origin))
            dlq = (target.get("deadLetterConfig") or {}).get("arn")
            if dlq:
                calls.append(
                    self._service_call(
                        "service:scheduler:SendToDeadLetterQueue", {"QueueArn": dlq}, role, origin
                    )
                )
        return calls

    def _event_source_calls(self) -> list[Call]:
        calls = []
        for esm in self.graph.of_type("aws:lambda/eventSourceMapping:EventSourceMapping"):
            fn_arn = self.function_arn(str(esm.inputs["functionName"]))
            fn = next(
                f
                for f in self.functions.values()
                if self.function_arn(str(f.outputs["name"])) == fn_arn
            )
            role = Principal("role", str(fn.inputs["role"]))
            origin = f"Lambda event source mapping {esm.name}"
            calls.append(
                self._service_call(
                    "service:lambda-esm:PollQueue",
                    {"QueueArn": esm.inputs["eventSourceArn"]},
                    role,
                    origin,
                )
            )
        return calls

    def _invocations(self) -> list[Call]:
        """API Gateway invoking the API handler, EventBridge rules invoking their targets."""
        calls = []
        for stage in self.graph.of_type("aws:apigateway/stage:Stage"):
            source = f"{stage.outputs['executionArn']}/POST/jobs"
            fn = self.functions["api"]
            calls.append(
                self._service_call(
                    "service:invoke:InvokeFunction",
                    {
                        "FunctionName": self.function_arn(str(fn.outputs["name"])),
                        "SourceArn": source,
                        "SourceAccount": self.account,
                    },
                    Principal("service", "apigateway.amazonaws.com"),
                    "API Gateway calling the API handler",
                )
            )
        for target in self.graph.of_type("aws:cloudwatch/eventTarget:EventTarget"):
            rule = next(
                r
                for r in self.graph.of_type("aws:cloudwatch/eventRule:EventRule")
                if r.outputs.get("name") == target.inputs["rule"]
                or r.inputs.get("name") == target.inputs["rule"]
            )
            calls.append(
                self._service_call(
                    "service:invoke:InvokeFunction",
                    {
                        "FunctionName": self.function_arn(str(target.inputs["arn"])),
                        "SourceArn": rule.outputs["arn"],
                        "SourceAccount": self.account,
                    },
                    Principal("service", "events.amazonaws.com"),
                    f"EventBridge rule {rule.inputs.get('name')}",
                )
            )
        return calls

    def _function_logs(self) -> list[Call]:
        calls = []
        for module, fn in self.functions.items():
            group = (
                (fn.inputs.get("loggingConfig") or {}).get("logGroup")
            ) or f"/aws/lambda/{fn.outputs['name']}"
            arn = self._log_stream_arn(group, "2026/12/01/[$LATEST]0123456789abcdef")
            calls.append(
                self._service_call(
                    "service:lambda:WriteLogs",
                    {"logStream": arn},
                    Principal("function", module),
                    f"Lambda writing logs of {module}",
                )
            )
        return calls

    def _api_access_logs(self) -> list[Call]:
        calls = []
        accounts = self.graph.of_type("aws:apigateway/account:Account")
        for stage in self.graph.of_type("aws:apigateway/stage:Stage"):
            settings = _json(stage.inputs.get("accessLogSettings") or {}) or {}
            destination = settings.get("destinationArn")
            if not destination:
                continue
            if not accounts:
                continue  # the account setting is owned outside this stack (stated in README)
            role = Principal("role", str(accounts[0].inputs["cloudwatchRoleArn"]))
            group = str(destination).split(":log-group:", 1)[1]
            arn = self._log_stream_arn(group, "0123456789abcdef")
            calls.append(
                self._service_call(
                    "service:apigateway:WriteAccessLogs",
                    {"logStream": arn},
                    role,
                    "API Gateway writing access logs",
                )
            )
        return calls

    def _model_calls(self) -> list[Call]:
        """The Bedrock call a worker's task role makes on AWS (offline runs use no model)."""
        calls = []
        for family, td in self.task_definitions.items():
            for container in _json(td.inputs["containerDefinitions"]):
                env = {e["name"]: e["value"] for e in container.get("environment") or []}
                if env.get("BATCH_MODEL_BACKEND") != "bedrock" or not env.get("BATCH_MODEL_ID"):
                    continue
                worker = env.get("BATCH_WORKER_NAME", family)
                calls.append(
                    Call(
                        "bedrock-runtime",
                        "Converse",
                        {"modelId": env["BATCH_MODEL_ID"]},
                        Principal("task", worker),
                        self.region,
                        origin=f"worker {worker} calling its model on AWS",
                    )
                )
        return calls

    def _role_assumptions(self) -> list[Call]:
        """Every role the stack's services assume, with the source keys each service sends."""
        calls = []
        cluster = self.cluster_arn()
        task_arn = cluster.replace(":cluster/", ":task/") + f"/{EXAMPLE_TASK_ID}"
        for td in self.task_definitions.values():
            calls.append(
                self._assume(
                    str(td.inputs["taskRoleArn"]),
                    "ecs-tasks.amazonaws.com",
                    {"aws:SourceAccount": self.account, "aws:SourceArn": task_arn},
                    "ECS task role",
                )
            )
            # ECS documents no source keys for the execution role.
            calls.append(
                self._assume(
                    str(td.inputs["executionRoleArn"]),
                    "ecs-tasks.amazonaws.com",
                    {},
                    "ECS execution role",
                )
            )
        for fn in self.functions.values():
            calls.append(
                self._assume(
                    str(fn.inputs["role"]), "lambda.amazonaws.com", {}, "Lambda execution role"
                )
            )
        for schedule in self.graph.of_type("aws:scheduler/schedule:Schedule"):
            group = schedule.inputs.get("groupName") or "default"
            base = f"arn:{self.partition}:scheduler:{self.region}:{self.account}"
            group_arn = f"{base}:schedule-group/{group}"
            calls.append(
                self._assume(
                    str(schedule.inputs["target"]["roleArn"]),
                    "scheduler.amazonaws.com",
                    {"aws:SourceAccount": self.account, "aws:SourceArn": group_arn},
                    "Scheduler execution role",
                )
            )
        for account in self.graph.of_type("aws:apigateway/account:Account"):
            calls.append(
                self._assume(
                    str(account.inputs["cloudwatchRoleArn"]),
                    "apigateway.amazonaws.com",
                    {},
                    "API Gateway CloudWatch role",
                )
            )
        return calls

    def _assume(self, role_arn: str, service: str, context: Mapping[str, str], origin: str) -> Call:
        return Call(
            "service:sts",
            "AssumeRole",
            {"RoleArn": role_arn, **context},
            Principal("service", service),
            self.region,
            origin=origin,
        )


def _policy(resource: MockResource) -> Policy:
    return Policy.parse(resource.name, resource.inputs["policy"])


def _permission_policy(permission: MockResource) -> Policy:
    """An ``aws.lambda.Permission`` as the statement Lambda adds to the function's policy."""
    i = permission.inputs
    statement: dict[str, Any] = {
        "Sid": permission.name,
        "Effect": "Allow",
        "Principal": {"Service": i["principal"]}
        if "amazonaws.com" in str(i["principal"])
        else {"AWS": i["principal"]},
        "Action": i.get("action", "lambda:InvokeFunction"),
        "Resource": "*",
    }
    conditions: dict[str, dict[str, str]] = {}
    if i.get("sourceArn"):
        conditions["ArnLike"] = {"AWS:SourceArn": i["sourceArn"]}
    if i.get("sourceAccount"):
        conditions["StringEquals"] = {"AWS:SourceAccount": i["sourceAccount"]}
    if conditions:
        statement["Condition"] = conditions
    return Policy(f"{permission.name}:lambda-permission", {"Statement": [statement]})


# --- calls -> IAM requests ----------------------------------------------------------------------
@dataclass(frozen=True)
class Needed:
    request: Request
    kind: str  # "identity", "kms" or "trust"
    row: str


_KEY_EQ = re.compile(r"(#?\w+)\s*=\s*(:\w+)")


def _leading_keys(call: Call) -> list[str]:
    p = call.params
    key = p.get("Key") or p.get("Item") or {}
    pk = key.get("pk") if isinstance(key, Mapping) else None
    if isinstance(pk, Mapping):
        return [str(next(iter(pk.values())))]
    if call.operation == "Query":
        names = p.get("ExpressionAttributeNames") or {}
        values = p.get("ExpressionAttributeValues") or {}
        match = _KEY_EQ.search(str(p.get("KeyConditionExpression", "")))
        if match and match.group(2) in values:
            _ = names.get(match.group(1), match.group(1))
            return [str(next(iter(values[match.group(2)].values())))]
    return []


def _resources(kind: str, call: Call, stack: StackPolicies) -> list[str]:
    p = call.params
    part, region, account = stack.partition, call.region, stack.account
    if kind == "star":
        return ["*"]
    if kind == "dynamodb-table-or-index":
        arn = stack.table_arn(str(p["TableName"]))
        return [f"{arn}/index/{p['IndexName']}" if p.get("IndexName") else arn]
    if kind == "sqs-queue":
        return [str(p["QueueArn"]) if "QueueArn" in p else stack.queue_arn(str(p["QueueUrl"]))]
    if kind == "ecs-task-definition":
        td = str(p["taskDefinition"])
        if not td.startswith("arn:"):
            family, _, rev = td.partition(":")
            td = f"arn:{part}:ecs:{region}:{account}:task-definition/{family}:{rev or '1'}"
        return [td]
    if kind == "ecs-tasks":
        tasks = _as_list(p.get("tasks") or p.get("task"))
        cluster = str(p.get("cluster", ""))
        name = cluster.rsplit("/", 1)[-1]
        return [
            t if str(t).startswith("arn:") else f"arn:{part}:ecs:{region}:{account}:task/{name}/{t}"
            for t in tasks
        ]
    if kind == "ecs-new-task":
        return [str(p["cluster"]).replace(":cluster/", ":task/") + f"/{EXAMPLE_TASK_ID}"]
    if kind == "s3-object":
        return [f"arn:{part}:s3:::{p['Bucket']}/{p['Key']}"]
    if kind == "s3-bucket":
        return [f"arn:{part}:s3:::{p['Bucket']}"]
    if kind == "sns-topic":
        return [str(p["TopicArn"])]
    if kind == "topic-kms-key":
        key = stack.topic_key(str(p["TopicArn"]))
        return [key] if key else []
    if kind == "secret":
        return [str(p["SecretId"])]
    if kind == "ssm-parameter":
        return [str(p["parameter"])]
    if kind == "ecr-repository":
        return [str(p["repository"])]
    if kind == "log-stream":
        return [str(p["logStream"])]
    if kind == "lambda-function":
        return [str(p["FunctionName"])]
    if kind == "role":
        return [str(p["RoleArn"])]
    if kind == "task-definition-roles":
        td = stack.task_definition_for(str(p["taskDefinition"]))
        if td is None:
            raise KeyError(f"task definition {p['taskDefinition']} is not in the stack")
        roles = [td.inputs.get("taskRoleArn"), td.inputs.get("executionRoleArn")]
        for override in [p.get("overrides") or {}]:
            roles += [override.get("taskRoleArn"), override.get("executionRoleArn")]
        return [str(r) for r in roles if r]
    if kind == "bedrock-model":
        return _model_arns(str(p["modelId"]), region, account, part)
    raise KeyError(f"resource kind {kind!r} has no resolver")


def _model_arns(model_id: str, region: str, account: str, partition: str) -> list[str]:
    """Bedrock authorizes an inference-profile call on the profile and on the foundation model
    in the Region the profile routes to (Bedrock user guide, inference profile prerequisites:
    https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-prereq.html)."""
    if model_id.startswith("arn:"):
        return [model_id]
    for prefix in ("us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca."):
        if model_id.startswith(prefix):
            base = model_id[len(prefix) :]
            return [
                f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{model_id}",
                f"arn:{partition}:bedrock:{region}::foundation-model/{base}",
            ]
    return [f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}"]


def _context(keys: Iterable[str] | Mapping[str, str], call: Call) -> dict[str, Any]:
    ctx: dict[str, Any] = {"aws:SecureTransport": True}  # the SDKs call AWS over HTTPS
    if isinstance(keys, Mapping):
        for key, value in keys.items():
            ctx[key] = str(call.params.get("Key", "")) if value == "<key>" else value
        return ctx
    p = call.params
    for key in keys:
        if key == "dynamodb:LeadingKeys":
            ctx[key] = _leading_keys(call)
        elif key == "ecs:cluster" and p.get("cluster"):
            ctx[key] = str(p["cluster"])
        elif key == "ecs:task-definition" and p.get("taskDefinition"):
            ctx[key] = str(p["taskDefinition"])
        elif key == "ecs:capacity-provider" and p.get("capacityProviderStrategy"):
            ctx[key] = [s["capacityProvider"] for s in p["capacityProviderStrategy"]]
        elif key in ("aws:SourceArn", "aws:SourceAccount") and p.get(key.split(":")[1]):
            ctx[key] = str(p[key.split(":")[1]])
        elif key in ("aws:SourceArn", "aws:SourceAccount") and p.get(key):
            ctx[key] = str(p[key])
    return ctx


def _applies(when: str | None, call: Call, stack: StackPolicies) -> bool:
    if when is None:
        return True
    if when == "tags":
        return bool(call.params.get("tags"))
    if when == "missing-object":
        return call.error in ("NoSuchKey", "NotFound", "404")
    if when == "topic-kms":
        return stack.topic_key(str(call.params.get("TopicArn"))) is not None
    raise KeyError(f"unknown condition {when!r} in actions.json")


def requests_for(call: Call, stack: StackPolicies, table: Mapping[str, Any]) -> list[Needed]:
    row = table.get(call.key)
    if row is None:
        raise LookupError(
            f"no row for {call.key} in {TABLE_FILE.name}: add what IAM authorizes for it"
        )
    if call.principal.kind == "service":
        caller, account = f"service:{call.principal.name}", stack.account
    else:
        caller, account = stack.role_arn(call.principal), stack.account
    needed = []
    for entry in [*row["authorize"], *row.get("implied", [])]:
        if not _applies(entry.get("when"), call, stack):
            continue
        context = _context(entry.get("context", []), call)
        kind = "identity"
        if entry["action"] == "sts:AssumeRole":
            kind = "trust"
        elif entry["resource"] == "topic-kms-key":
            kind = "kms"
        for resource in _resources(entry["resource"], call, stack):
            tagged = dict(context)
            if entry["resource"] == "sqs-queue":  # SQS authorizes queue actions on their tags
                tags = stack.resource_tags(resource)
                tagged.update({f"aws:ResourceTag/{k}": v for k, v in tags.items()})
            request = Request(caller, entry["action"], resource, tagged, account)
            needed.append(Needed(request, kind, call.key))
    return needed


def decide(needed: Needed, stack: StackPolicies) -> Decision:
    r = needed.request
    if needed.kind == "trust":
        return evaluate(r, [], [stack.trust_policy(r.resource)], resource_policy_required=True)
    identity = [] if r.principal.startswith("service:") else stack.identity_policies(r.principal)
    if needed.kind == "kms":
        return evaluate(r, identity, [stack.key_policy(r.resource)], resource_policy_required=True)
    return evaluate(r, identity, stack.policies_on(r.resource))


# AWS rule: TransactWriteItems has no IAM action of its own: each operation in it is
# authorized as its single-item action on its own item (Put -> PutItem, Update -> UpdateItem,
# Delete -> DeleteItem, ConditionCheck -> ConditionCheckItem), with that item's LeadingKeys
# (Service Authorization Reference for Amazon DynamoDB; DynamoDB developer guide,
# "Using IAM with DynamoDB transactions"). BatchGetItem is authorized as dynamodb:BatchGetItem
# with the LeadingKeys of every key it reads.
TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def item_calls(call: Call) -> list[Call]:
    """A call as the per-item requests IAM evaluates for it (itself for most calls)."""
    if call.service == "dynamodb" and call.operation == "TransactWriteItems":
        parts = []
        for entry in call.params.get("TransactItems") or []:
            for kind, params in entry.items():
                op = TRANSACT_ITEM_ACTIONS[kind]
                parts.append(replace(call, operation=op, params=params))
        return parts
    if call.service == "dynamodb" and call.operation == "TransactGetItems":
        # Each Get of a TransactGetItems is authorized as GetItem on its item (same source).
        return [
            replace(call, operation="GetItem", params=entry["Get"])
            for entry in call.params.get("TransactItems") or []
        ]
    if call.service == "dynamodb" and call.operation == "BatchGetItem":
        return [
            replace(call, params={"TableName": table, "Key": key})
            for table, request in (call.params.get("RequestItems") or {}).items()
            for key in request.get("Keys") or []
        ]
    return [call]


def check(
    calls: Iterable[Call], stack: StackPolicies, table: Mapping[str, Any] | None = None
) -> list[Problem]:
    """Every problem: unmapped calls and denied requests (an empty list = all authorized)."""
    table = table if table is not None else action_table()
    problems = []
    for call in (part for whole in calls for part in item_calls(whole)):
        try:
            needed = requests_for(call, stack, table)
        except (LookupError, KeyError) as exc:
            problems.append(Problem(call, str(exc)))
            continue
        for item in needed:
            decision = decide(item, stack)
            if not decision.allowed:
                r = item.request
                problems.append(
                    Problem(
                        call,
                        f"DENIED {r.action} on {r.resource} for {r.principal} "
                        f"with context {dict(r.context)}: {decision.reason} "
                        f"{list(decision.matched)}",
                    )
                )
    return problems


# --- re-binding a trace to another stack --------------------------------------------------------
def _identifiers(resource: MockResource) -> list[str]:
    values = []
    for key in ("arn", "name", "url", "id", "bucket", "arnWithoutRevision", "executionArn"):
        value = resource.outputs.get(key)
        if isinstance(value, str) and len(value) > 6:
            values.append(value)
    return values


def rebind_map(source: StackGraph, target: StackGraph) -> dict[str, str]:
    """Identifier strings of ``source`` resources -> those of the same logical resource in
    ``target`` (same type, same logical name)."""
    by_key = {(r.type, r.name): r for r in target.resources if r.custom}
    mapping: dict[str, str] = {}
    for r in source.resources:
        other = by_key.get((r.type, r.name))
        if other is None or not r.custom:
            continue
        for key in ("arn", "name", "url", "id", "bucket", "arnWithoutRevision", "executionArn"):
            a, b = r.outputs.get(key), other.outputs.get(key)
            if isinstance(a, str) and isinstance(b, str) and len(a) > 6 and a != b:
                mapping[a] = b
    return mapping


def _substitute(value: Any, pairs: Sequence[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
        return value
    if isinstance(value, Mapping):
        # Keys too: BatchGetItem's RequestItems is keyed by table name.
        return {_substitute(k, pairs): _substitute(v, pairs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_substitute(v, pairs) for v in value]
    return value


def rebind(calls: Iterable[Call], mapping: Mapping[str, str]) -> list[Call]:
    pairs = sorted(mapping.items(), key=lambda kv: -len(kv[0]))  # longest first
    return [
        replace(
            c,
            params=_substitute(c.params, pairs),
            principal=replace(c.principal, name=_substitute(c.principal.name, pairs)),
        )
        for c in calls
    ]


# --- one entry point for a trace ------------------------------------------------------------
def problems_in_stacks(
    calls: Sequence[Call],
    recorded_in: StackGraph,
    stacks: Mapping[str, StackGraph],
    account: str,
    region: str,
) -> list[str]:
    """Every problem of ``calls`` (recorded against ``recorded_in``'s names) in each stack, plus
    the calls AWS makes for that stack; one line each, ``[stack] call: message``."""
    report: list[str] = []
    for name, graph in stacks.items():
        policies = StackPolicies(graph, account, region)
        bound = (
            list(calls) if graph is recorded_in else rebind(calls, rebind_map(recorded_in, graph))
        )
        report += [f"[{name}] {p}" for p in check([*bound, *policies.service_calls()], policies)]
    return list(dict.fromkeys(report))
