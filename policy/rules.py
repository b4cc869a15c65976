"""The security checklist as pure functions over resource properties.

Both the Pulumi policy pack (``policy/__main__.py``) and the tests
(``tests/security/test_checklist.py``, over the mocked ``StackGraph``) run THESE functions,
so the checklist that gates ``pulumi preview --policy-pack policy`` and the one the test
suite proves cannot drift. Nothing here imports pulumi or pulumi-policy. The secret-name rule
is the worker components' own (``components.worker.validation.looks_secret``, stdlib only), so
a name the component refuses is the name the pack flags; run from ``policy/`` by the engine,
the pack finds it through the repository root (this folder's parent).

Properties use Pulumi's wire (camelCase) names, as the policy engine and the mocks see them.
A value the engine does not know yet during preview arrives as :data:`UNKNOWN`; a check never
reports a violation on an unknown value (``pulumi up`` re-runs the pack with known values).

Rules are taken from cdk-nag (AwsSolutions, Serverless packs) and Pulumi's AWS policies where
they fit a scale-to-zero pipeline; our own fill the gaps (Scheduler retry + DLQ, LeadingKeys,
public IP in private mode). Deliberate departures are listed in :data:`DEPARTURES`, one line
each, and the rules that touch them encode the exception explicitly.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Protocol

try:
    # The one secret-name rule, shared with the worker components (stdlib only, no Pulumi).
    from components.worker.validation import looks_secret
except ModuleNotFoundError:  # the pack runs from policy/: the repository root is its parent
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from components.worker.validation import looks_secret


class _Unknown:
    """A value not known during preview (the pack maps the engine's sentinels to this)."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def mandatory(self) -> bool:
        """HIGH and above block a deployment; lower ones are advisory."""
        return self in (Severity.HIGH, Severity.CRITICAL)


@dataclass(frozen=True)
class RuleContext:
    """What a rule may depend on beyond one resource: the stack and whether it is production."""

    stack: str = "dev"
    production: bool = False


class StackResource(Protocol):
    """What a stack rule reads of a resource (``MockResource`` and the pack's adapter fit)."""

    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def props(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Resource:
    """A plain ``StackResource``: ``props`` are the resource's inputs merged with its outputs."""

    type: str
    name: str
    props: Mapping[str, Any]


@dataclass(frozen=True)
class Violation:
    rule_id: str
    resource: str  # "<type> <logical name>" or "" for the stack
    message: str

    def __str__(self) -> str:
        where = f" [{self.resource}]" if self.resource else ""
        return f"{self.rule_id}{where}: {self.message}"


ResourceCheck = Callable[[str, Mapping[str, Any], RuleContext], list[str]]
StackCheck = Callable[[Sequence[StackResource], RuleContext], list[Violation]]


@dataclass(frozen=True)
class ResourceRule:
    """A rule over one resource's inputs."""

    id: str
    description: str
    severity: Severity
    resource_types: frozenset[str]
    func: ResourceCheck
    references: tuple[str, ...] = ()

    def check(
        self, resource_type: str, inputs: Mapping[str, Any], context: RuleContext | None = None
    ) -> list[str]:
        """Violation messages of ``inputs`` (empty when compliant or not applicable)."""
        if resource_type not in self.resource_types:
            return []
        return self.func(resource_type, inputs, context or RuleContext())


@dataclass(frozen=True)
class StackRule:
    """A rule over the whole resource graph (relations: policies, log groups, DLQs...)."""

    id: str
    description: str
    severity: Severity
    func: StackCheck
    references: tuple[str, ...] = ()
    resource_types: frozenset[str] = field(default_factory=frozenset)

    def check(
        self, resources: Sequence[StackResource], context: RuleContext | None = None
    ) -> list[Violation]:
        return self.func(resources, context or RuleContext())


# --- resource type tokens ------------------------------------------------------------------

T_TABLE: Final = "aws:dynamodb/table:Table"
T_BUCKETS: Final = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
T_BUCKET_SSE: Final = frozenset(
    {
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketServerSideEncryptionConfigurationV2:"
        "BucketServerSideEncryptionConfigurationV2",
    }
)
T_BUCKET_PAB: Final = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
T_BUCKET_POLICY: Final = "aws:s3/bucketPolicy:BucketPolicy"
T_QUEUE: Final = "aws:sqs/queue:Queue"
T_QUEUE_POLICY: Final = "aws:sqs/queuePolicy:QueuePolicy"
T_TOPIC: Final = "aws:sns/topic:Topic"
T_TOPIC_POLICY: Final = "aws:sns/topicPolicy:TopicPolicy"
T_REPO: Final = "aws:ecr/repository:Repository"
T_REPO_LIFECYCLE: Final = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
T_LOG_GROUP: Final = "aws:cloudwatch/logGroup:LogGroup"
T_SECRET: Final = "aws:secretsmanager/secret:Secret"
T_FUNCTION: Final = "aws:lambda/function:Function"
T_TASK_DEF: Final = "aws:ecs/taskDefinition:TaskDefinition"
T_ECS_SERVICE: Final = "aws:ecs/service:Service"
T_SCHEDULE: Final = "aws:scheduler/schedule:Schedule"
T_EVENT_TARGET: Final = "aws:cloudwatch/eventTarget:EventTarget"
T_INVOKE_CONFIG: Final = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
T_REST_API: Final = "aws:apigateway/restApi:RestApi"
T_STAGE: Final = "aws:apigateway/stage:Stage"
T_METHOD: Final = "aws:apigateway/method:Method"
T_METHOD_SETTINGS: Final = "aws:apigateway/methodSettings:MethodSettings"
T_USAGE_PLAN: Final = "aws:apigateway/usagePlan:UsagePlan"
T_ROLE: Final = "aws:iam/role:Role"
T_ROLE_POLICY: Final = "aws:iam/rolePolicy:RolePolicy"
T_POLICY: Final = "aws:iam/policy:Policy"
T_USER_POLICY: Final = "aws:iam/userPolicy:UserPolicy"
T_ROLE_POLICY_ATTACHMENT: Final = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
T_SECURITY_GROUP: Final = "aws:ec2/securityGroup:SecurityGroup"
T_SG_RULE: Final = "aws:ec2/securityGroupRule:SecurityGroupRule"
T_SG_INGRESS: Final = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
T_VPC_ENDPOINT: Final = "aws:ec2/vpcEndpoint:VpcEndpoint"
T_KMS_KEY: Final = "aws:kms/key:Key"
T_IAM_POLICY_HOLDERS: Final = frozenset({T_ROLE, T_ROLE_POLICY, T_POLICY, T_USER_POLICY})

# --- deliberate departures from common rule packs (why, in one line each) -----------------

DEPARTURES: Final[dict[str, str]] = {
    "AwsSolutions-APIG4/COG4 (IAM or Cognito authorizer)": (
        "callers are scripts and CI, not end users: an API key per stack plus a usage plan "
        "(throttle + quota) and an optional IP allow-list; rule apigw-api-key-required."
    ),
    "AwsSolutions-APIG3 (WAF on the stage)": (
        "a web ACL costs $5+/month idle, which breaks scale-to-zero; throttling, quotas and "
        "the IP allow-list bound abuse instead."
    ),
    "AwsSolutions-VPC / NAT in public mode": (
        "public mode gives tasks a public IP and an egress-only, ingress-free security group "
        "instead of a NAT gateway ($33/month per AZ); private mode has no public IP "
        "(rule no-public-ip-in-private-mode)."
    ),
    "Customer-managed KMS keys (AwsSolutions-SNS2/SQS2 with CMK, log group kmsKeyId)": (
        "AWS-owned/AWS-managed keys encrypt at rest at no fixed cost; a CMK is $1/month each. "
        "The encryption rules accept AWS-owned/managed keys explicitly."
    ),
    "AwsSolutions-S1 (server access logs)": (
        "a log bucket per stack adds storage cost and noise for results that are already "
        "addressed per job; CloudTrail data events can be enabled per account if needed."
    ),
    "AwsSolutions-SMG4 (secret rotation)": (
        "the only secrets are third-party tokens (Slack webhook, Notion) that AWS cannot "
        "rotate; they are injected by ARN, never as plain environment."
    ),
    "Serverless LambdaTracing / APIGWXrayEnabled (X-Ray)": (
        "tracing is paid per trace; structured JSON logs carry the job id end to end."
    ),
    "AwsSolutions-ECS4 (Container Insights)": (
        "paid custom metrics; a config switch (containerInsights), off by default."
    ),
    "AwsSolutions-DDB3 (PITR) / deletion protection outside production": (
        "dev stacks are disposable; rules dynamodb-pitr-in-production and "
        "deletion-protection-in-production require both in production stacks."
    ),
}

# Resource "*" is allowed only for actions AWS does not let you scope to a resource.
RESOURCE_STAR_ALLOWED_ACTIONS: Final = frozenset(
    {
        "ecr:getauthorizationtoken",  # registry-wide token, no resource-level permissions
        "cloudwatch:putmetricdata",  # no resource type; scope with cloudwatch:namespace
        "xray:puttracesegments",
        "xray:puttelemetryrecords",
        "ecs:listtasks",  # takes container-instance ARNs only
        "bedrock:listfoundationmodels",
        "sts:getcalleridentity",
        "ec2:describenetworkinterfaces",
        "logs:describeloggroups",  # authorized on "*" only (API Gateway's CloudWatch role)
    }
)

# Runtimes we accept as "current" (AWS deprecation schedule: python3.12 until 2028-10).
CURRENT_LAMBDA_RUNTIMES: Final = frozenset({"python3.12", "python3.13", "python3.14"})
# CloudWatch Logs: the allowed retentionInDays values (AWS rule).
LOG_RETENTION_VALUES: Final = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
     2922, 3288, 3653}
)  # fmt: skip
# Managed policies a role may carry (everything else is written inline, least privilege).
MANAGED_POLICY_ALLOWED: Final = frozenset(
    {
        # API Gateway's account-wide CloudWatch role (managed only when config says so).
        "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
    }
)

_SECRET_VALUE_RES: Final = (
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"xox[abposr]-[0-9A-Za-z-]{10,}"),  # Slack token
    re.compile(r"hooks\.slack\.com/services/"),  # Slack webhook URL (the URL is the secret)
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bsecret_[0-9A-Za-z]{20,}"),  # Notion integration token
    re.compile(r"\bntn_[0-9A-Za-z]{20,}"),  # Notion token (new format)
    re.compile(r"\bgh[pousr]_[0-9A-Za-z]{30,}"),  # GitHub token
    re.compile(r"\bsk-[0-9A-Za-z_-]{20,}"),  # common API key shape
)


# --- helpers -------------------------------------------------------------------------------


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def _get(obj: Any, *path: str | int) -> Any:
    """Nested lookup tolerant of missing keys (None) and unknowns (UNKNOWN)."""
    cur = obj
    for key in path:
        if cur is UNKNOWN:
            return UNKNOWN
        if isinstance(key, int):
            if isinstance(cur, Sequence) and not isinstance(cur, str) and key < len(cur):
                cur = cur[key]
            else:
                return None
        elif isinstance(cur, Mapping) and key in cur:
            cur = cur[key]
        else:
            return None
    return cur


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Mapping)) or value is UNKNOWN:
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    return [value]


def parse_json(value: Any) -> Any:
    """A JSON document given as text or already parsed; UNKNOWN stays UNKNOWN, bad text None."""
    if value is UNKNOWN or value is None:
        return value
    if isinstance(value, str):
        if value == "":
            return None
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def policy_statements(document: Any) -> list[Mapping[str, Any]] | None:
    """Statements of an IAM policy document (text or parsed); None when unknown/unparsable."""
    doc = parse_json(document)
    if doc is UNKNOWN or not isinstance(doc, Mapping):
        return None
    stmts = doc.get("Statement")
    return [s for s in _as_list(stmts) if isinstance(s, Mapping)]


def _lower_set(values: Any) -> set[str]:
    return {str(v).lower() for v in _as_list(values) if isinstance(v, str)}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _falsy_explicit(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.lower() == "false")


def _label(resource: StackResource) -> str:
    return f"{resource.type} {resource.name}"


def _ids_of(resource: StackResource) -> set[str]:
    """Every identifier another resource might use to point at this one."""
    out: set[str] = set()
    for key in ("id", "arn", "url", "bucket", "name", "repository", "repositoryUrl"):
        value = resource.props.get(key)
        if isinstance(value, str) and value:
            out.add(value)
    return out


def _of_type(resources: Iterable[StackResource], *types: str) -> list[StackResource]:
    wanted = set(types)
    return [r for r in resources if r.type in wanted]


def policy_documents(resource_type: str, inputs: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(label, document) of every identity policy a resource carries (not trust policies)."""
    docs: list[tuple[str, Any]] = []
    if resource_type in (T_ROLE_POLICY, T_POLICY, T_USER_POLICY):
        docs.append(("policy", inputs.get("policy")))
    if resource_type == T_ROLE:
        for i, inline in enumerate(_as_list(inputs.get("inlinePolicies"))):
            if isinstance(inline, Mapping) and inline.get("policy") is not None:
                docs.append((f"inlinePolicies[{i}] {inline.get('name', '')}", inline["policy"]))
    return docs


# --- encryption at rest --------------------------------------------------------------------


def _dynamodb_encryption(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    # DynamoDB always encrypts (AWS-owned key by default); we require SSE declared with the
    # AWS-managed key or a CMK so the table's encryption is explicit in code and reviewable.
    sse = inputs.get("serverSideEncryption")
    if sse is UNKNOWN or _get(sse, "enabled") is UNKNOWN:
        return []
    if not _truthy(_get(sse, "enabled")):
        return ["serverSideEncryption.enabled must be true (AWS-managed or customer KMS key)"]
    return []


def _sqs_encryption(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    managed, kms = inputs.get("sqsManagedSseEnabled"), inputs.get("kmsMasterKeyId")
    if managed is UNKNOWN or kms is UNKNOWN:
        return []
    if _truthy(managed) or (isinstance(kms, str) and kms):
        return []
    return ["SQS queue needs sqsManagedSseEnabled=true (SSE-SQS) or a kmsMasterKeyId"]


def _sns_encryption(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    # SNS is NOT encrypted by default; alias/aws/sns (AWS-managed) is accepted.
    kms = inputs.get("kmsMasterKeyId")
    if kms is UNKNOWN or (isinstance(kms, str) and kms):
        return []
    return ["SNS topic needs kmsMasterKeyId (e.g. alias/aws/sns)"]


def _ecr_encryption(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    # ECR always encrypts (AES256, AWS-owned) when encryptionConfigurations is absent.
    out = []
    for cfg in _as_list(inputs.get("encryptionConfigurations")):
        kind = _get(cfg, "encryptionType")
        if kind is UNKNOWN or kind is None:
            continue
        if kind not in ("AES256", "KMS", "KMS_DSSE"):
            out.append(f"encryptionType {kind!r} is not AES256/KMS/KMS_DSSE")
    return out


def _log_group_encryption(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    # CloudWatch Logs always encrypts log data at rest (AWS-owned key); a kmsKeyId, if given,
    # must be a key ARN (the service rejects aliases and ids here).
    key = inputs.get("kmsKeyId")
    if key is None or key is UNKNOWN or key == "":
        return []
    if not (isinstance(key, str) and key.startswith("arn:") and ":key/" in key):
        return [f"kmsKeyId must be a KMS key ARN, got {key!r}"]
    return []


def _secret_encryption(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    # Secrets Manager always encrypts (aws/secretsmanager by default); a kmsKeyId must be
    # a real reference, not an empty placeholder.
    key = inputs.get("kmsKeyId")
    if key is None or key is UNKNOWN:
        return []
    if not isinstance(key, str) or not key.strip():
        return ["kmsKeyId, when set, must name a KMS key (omit it for aws/secretsmanager)"]
    return []


def _kms_rotation(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    # A CMK exists only where AWS needs one (alarms -> encrypted topic); rotate it yearly.
    value = inputs.get("enableKeyRotation")
    if value is UNKNOWN or _truthy(value):
        return []
    return ["enableKeyRotation must be true"]


# --- production data protection -----------------------------------------------------------


def _dynamodb_pitr(_t: str, inputs: Mapping[str, Any], ctx: RuleContext) -> list[str]:
    if not ctx.production:
        return []
    enabled = _get(inputs, "pointInTimeRecovery", "enabled")
    if enabled is UNKNOWN or _truthy(enabled):
        return []
    return [f"stack {ctx.stack} is production: pointInTimeRecovery.enabled must be true"]


def _deletion_protection(t: str, inputs: Mapping[str, Any], ctx: RuleContext) -> list[str]:
    if not ctx.production:
        return []
    if t == T_TABLE:
        value = inputs.get("deletionProtectionEnabled")
        if value is UNKNOWN or _truthy(value):
            return []
        return [f"stack {ctx.stack} is production: deletionProtectionEnabled must be true"]
    if t in T_BUCKETS and _truthy(inputs.get("forceDestroy")):
        return [f"stack {ctx.stack} is production: forceDestroy would delete every result"]
    if t == T_REPO and _truthy(inputs.get("forceDelete")):
        return [f"stack {ctx.stack} is production: forceDelete would delete every image"]
    return []


# --- logs ----------------------------------------------------------------------------------


def _log_retention(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    days = inputs.get("retentionInDays")
    if days is UNKNOWN:
        return []
    if days in (None, 0, "0"):
        return ["retentionInDays is not set: logs would be kept (and billed) forever"]
    try:
        value = int(days)
    except (TypeError, ValueError):
        return [f"retentionInDays {days!r} is not a number"]
    if value not in LOG_RETENTION_VALUES:
        return [f"retentionInDays {value} is not a CloudWatch Logs value"]
    return []


# --- secrets in environment ----------------------------------------------------------------


def secret_env_findings(variables: Mapping[str, Any]) -> list[str]:
    """Names/values of plain environment variables that look like secrets."""
    out: list[str] = []
    for name, value in variables.items():
        if value is UNKNOWN:
            continue
        text = "" if value is None else str(value)
        if looks_secret(name) and text and not text.startswith("arn:"):
            out.append(f"{name} looks like a secret held in plain environment")
            continue
        for pattern in _SECRET_VALUE_RES:
            if pattern.search(text):
                out.append(f"value of {name} looks like a credential ({pattern.pattern[:24]}...)")
                break
    return out


def container_definitions(inputs: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    defs = parse_json(inputs.get("containerDefinitions"))
    if defs is UNKNOWN:
        return None
    return [d for d in _as_list(defs) if isinstance(d, Mapping)]


def _no_plaintext_secrets(t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    if t == T_FUNCTION:
        variables = _get(inputs, "environment", "variables")
        if not isinstance(variables, Mapping):
            return []
        return [f"Lambda environment: {m}" for m in secret_env_findings(variables)]
    out: list[str] = []
    for container in container_definitions(inputs) or []:
        env = {
            str(_get(e, "name")): _get(e, "value")
            for e in _as_list(container.get("environment"))
            if isinstance(e, Mapping)
        }
        cname = container.get("name", "?")
        out += [f"container {cname} environment: {m}" for m in secret_env_findings(env)]
        for s in _as_list(container.get("secrets")):
            ref = _get(s, "valueFrom")
            if isinstance(ref, str) and not ref.startswith("arn:"):
                out.append(f"container {cname} secret {_get(s, 'name')}: valueFrom is not an ARN")
    return out


def _ecs_container_logging(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    out = []
    for container in container_definitions(inputs) or []:
        driver = _get(container, "logConfiguration", "logDriver")
        if driver is UNKNOWN:
            continue
        if driver != "awslogs":
            out.append(f"container {container.get('name', '?')} has no awslogs log configuration")
    return out


# --- Lambda --------------------------------------------------------------------------------


def _lambda_runtime(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    runtime = inputs.get("runtime")
    if runtime is UNKNOWN or inputs.get("packageType") == "Image":
        return []
    if runtime not in CURRENT_LAMBDA_RUNTIMES:
        return [f"runtime {runtime!r} is not a current one ({sorted(CURRENT_LAMBDA_RUNTIMES)})"]
    return []


def _lambda_arm64(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    archs = inputs.get("architectures")
    if archs is UNKNOWN:
        return []
    if list(_as_list(archs)) != ["arm64"]:
        return [f"architectures {archs!r}: use ['arm64'] (about 20% cheaper per GB-second)"]
    return []


# --- ECR -----------------------------------------------------------------------------------


def _ecr_scan_on_push(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    scan = _get(inputs, "imageScanningConfiguration", "scanOnPush")
    if scan is UNKNOWN or _truthy(scan):
        return []
    return ["imageScanningConfiguration.scanOnPush must be true"]


# --- Scheduler -----------------------------------------------------------------------------


def _schedule_retry_dlq(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    target = inputs.get("target")
    if target is UNKNOWN:
        return []
    out = []
    retry = _get(target, "retryPolicy")
    if retry is not UNKNOWN and not isinstance(retry, Mapping):
        out.append("target.retryPolicy is missing (a missed run must be retried)")
    elif isinstance(retry, Mapping):
        attempts = retry.get("maximumRetryAttempts")
        if attempts is not UNKNOWN and (attempts is None or int(attempts) < 1):
            out.append("target.retryPolicy.maximumRetryAttempts must be >= 1")
    dlq = _get(target, "deadLetterConfig", "arn")
    if dlq is not UNKNOWN and not (isinstance(dlq, str) and dlq):
        out.append("target.deadLetterConfig.arn is missing (failed runs would vanish)")
    return out


# --- IAM -----------------------------------------------------------------------------------


def _statement_actions(stmt: Mapping[str, Any]) -> set[str]:
    return _lower_set(stmt.get("Action"))


def _iam_statements(t: str, inputs: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out: list[tuple[str, Mapping[str, Any]]] = []
    for label, doc in policy_documents(t, inputs):
        stmts = policy_statements(doc)
        for i, stmt in enumerate(stmts or []):
            out.append((f"{label} Statement[{i}] {stmt.get('Sid', '')}".rstrip(), stmt))
    return out


def _iam_no_wildcard_action(t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    out = []
    for label, stmt in _iam_statements(t, inputs):
        if stmt.get("Effect") != "Allow":
            continue
        if "NotAction" in stmt:
            out.append(f"{label}: Allow with NotAction grants everything else")
        for action in _statement_actions(stmt):
            if action == "*" or action.endswith(":*"):
                out.append(f"{label}: wildcard action {action!r}")
    return out


def _iam_resource_star(t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    out = []
    for label, stmt in _iam_statements(t, inputs):
        if stmt.get("Effect") != "Allow":
            continue
        if "NotResource" in stmt:
            out.append(f"{label}: Allow with NotResource")
        if "*" in [str(r) for r in _as_list(stmt.get("Resource"))]:
            extra = sorted(_statement_actions(stmt) - RESOURCE_STAR_ALLOWED_ACTIONS)
            if extra:
                out.append(f"{label}: Resource '*' for {extra} (AWS lets these be scoped)")
    return out


def _iam_passrole(t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    out = []
    for label, stmt in _iam_statements(t, inputs):
        if stmt.get("Effect") != "Allow":
            continue
        actions = _statement_actions(stmt)
        if not any(a in ("iam:passrole", "iam:*", "*") for a in actions):
            continue
        if "*" in [str(r) for r in _as_list(stmt.get("Resource"))]:
            out.append(f"{label}: iam:PassRole on Resource '*'")
        cond = stmt.get("Condition")
        keys = set()
        if isinstance(cond, Mapping):
            for op in cond.values():
                if isinstance(op, Mapping):
                    keys |= {str(k).lower() for k in op}
        if "iam:passedtoservice" not in keys:
            out.append(f"{label}: iam:PassRole without an iam:PassedToService condition")
    return out


def _iam_trust(t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    stmts = policy_statements(inputs.get("assumeRolePolicy"))
    if stmts is None:
        return []
    out = []
    for i, stmt in enumerate(stmts):
        if stmt.get("Effect") != "Allow":
            continue
        principal = stmt.get("Principal")
        if principal == "*" or not isinstance(principal, Mapping):
            out.append(f"assumeRolePolicy Statement[{i}]: principal {principal!r} is not a service")
            continue
        for kind, ids in principal.items():
            if kind != "Service":
                out.append(f"assumeRolePolicy Statement[{i}]: {kind} principal {ids!r}")
            elif any(not str(v).endswith(".amazonaws.com") for v in _as_list(ids)):
                out.append(f"assumeRolePolicy Statement[{i}]: service principal {ids!r}")
    return out


def _iam_managed_policies(t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    arns = (
        _as_list(inputs.get("managedPolicyArns"))
        if t == T_ROLE
        else _as_list(inputs.get("policyArn"))
    )
    out = []
    for arn in arns:
        if arn is UNKNOWN or not isinstance(arn, str):
            continue
        if arn.startswith("arn:aws:iam::aws:policy/") and arn not in MANAGED_POLICY_ALLOWED:
            out.append(f"AWS managed policy {arn} (broader than needed; write it inline)")
    return out


# --- network -------------------------------------------------------------------------------


def _sg_no_ingress(t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    # Tasks and Lambdas only call out; nothing ever connects in.
    if t == T_SECURITY_GROUP:
        out = []
        ingress = inputs.get("ingress")
        if ingress is not UNKNOWN and _as_list(ingress):
            out.append("security group has ingress rules")
        if not inputs.get("description") or inputs.get("description") == "Managed by Pulumi":
            out.append("security group needs a description of what it is for")
        return out
    if t == T_SG_RULE and inputs.get("type") == "ingress":
        return ["ingress security group rule"]
    if t == T_SG_INGRESS:
        return ["ingress security group rule"]
    return []


# --- API Gateway ---------------------------------------------------------------------------

HTTP_METHODS: Final = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _openapi_doc(body: Any) -> Any:
    if body is UNKNOWN or body is None:
        return body
    if isinstance(body, Mapping):
        return body
    doc = parse_json(body)
    if doc is not None:
        return doc
    try:  # YAML text (the pack runs where PyYAML is installed; json covers the mocks)
        import yaml

        return yaml.safe_load(str(body))
    except Exception:  # any parse failure is reported as a violation by the caller
        return None


def api_key_findings(doc: Mapping[str, Any]) -> list[str]:
    """Operations of an OpenAPI document that do not require an API Gateway API key."""
    schemes = _get(doc, "components", "securitySchemes") or _get(doc, "securityDefinitions")
    key_schemes = {
        name
        for name, s in (schemes or {}).items()
        if isinstance(s, Mapping)
        and s.get("type") == "apiKey"
        and s.get("in") == "header"
        and str(s.get("name", "")).lower() == "x-api-key"
    }
    global_security = doc.get("security")
    out = []
    paths = doc.get("paths")
    if not isinstance(paths, Mapping) or not paths:
        return ["OpenAPI body has no paths"]
    for path, item in paths.items():
        if not isinstance(item, Mapping):
            continue
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            security = op.get("security", global_security)
            # An empty requirement object ({}) in the list means "anonymous allowed".
            reqs = [r for r in _as_list(security) if isinstance(r, Mapping)]
            ok = bool(reqs) and all(any(k in key_schemes for k in r) for r in reqs)
            if not ok:
                out.append(f"{method.upper()} {path} does not require the x-api-key API key")
    return out


def _apigw_api_key(t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    # Departure (AwsSolutions-APIG4/COG4): API key + usage plan instead of an IAM authorizer.
    if t == T_METHOD:
        if inputs.get("httpMethod") == "OPTIONS":
            return []
        value = inputs.get("apiKeyRequired")
        return [] if value is UNKNOWN or _truthy(value) else ["apiKeyRequired must be true"]
    doc = _openapi_doc(inputs.get("body"))
    if doc is UNKNOWN:
        return []
    if doc is None:
        if inputs.get("body") is None:
            return []  # methods declared as Method resources are checked one by one
        return ["RestApi body is not a parsable OpenAPI document"]
    if not isinstance(doc, Mapping):
        return ["RestApi body is not an OpenAPI object"]
    return api_key_findings(doc)


def _apigw_request_validation(t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    doc = _openapi_doc(inputs.get("body"))
    if not isinstance(doc, Mapping):
        return []
    validators = doc.get("x-amazon-apigateway-request-validators")
    default = doc.get("x-amazon-apigateway-request-validator")
    if not isinstance(validators, Mapping) or default not in validators:
        return ["OpenAPI body has no default x-amazon-apigateway-request-validator"]
    chosen = validators[default]
    if not (
        _truthy(_get(chosen, "validateRequestBody"))
        and _truthy(_get(chosen, "validateRequestParameters"))
    ):
        return [f"request validator {default!r} must validate body and parameters"]
    return []


def _apigw_access_logs(_t: str, inputs: Mapping[str, Any], _c: RuleContext) -> list[str]:
    settings = inputs.get("accessLogSettings")
    if settings is UNKNOWN:
        return []
    dest, fmt = _get(settings, "destinationArn"), _get(settings, "format")
    out = []
    if not dest:
        out.append("stage has no accessLogSettings.destinationArn")
    if fmt is not UNKNOWN and fmt and not str(fmt).lstrip().startswith("{"):
        out.append("access log format is not JSON (structured logging)")
    elif not fmt:
        out.append("stage has no access log format")
    return out


# --- stack rules ---------------------------------------------------------------------------


def _denies_insecure_transport(document: Any, target_ids: set[str]) -> bool | None:
    """Whether a resource policy denies aws:SecureTransport=false on one of target_ids."""
    stmts = policy_statements(document)
    if stmts is None:
        return None
    for stmt in stmts:
        if stmt.get("Effect") != "Deny":
            continue
        principal = stmt.get("Principal")
        if not (principal == "*" or _get(principal, "AWS") == "*"):
            continue
        cond = _get(stmt, "Condition", "Bool", "aws:SecureTransport")
        if str(cond).lower() != "false" and cond != ["false"]:
            continue
        resources = {str(r) for r in _as_list(stmt.get("Resource"))}
        if (
            not target_ids
            or resources & target_ids
            or any(r.rstrip("*").rstrip("/") in target_ids for r in resources)
        ):
            return True
    return False


def _tls_only(
    resources: Sequence[StackResource],
    rule_id: str,
    data_types: Iterable[str],
    policy_type: str,
    link_key: str,
) -> list[Violation]:
    out = []
    policies = _of_type(resources, policy_type)
    for res in _of_type(resources, *data_types):
        ids = _ids_of(res)
        arn = res.props.get("arn")
        arn_ids = {arn, f"{arn}/*"} if isinstance(arn, str) else set()
        verdicts = [
            _denies_insecure_transport(p.props.get("policy"), arn_ids)
            for p in policies
            if p.props.get(link_key) in ids or p.props.get(link_key) is UNKNOWN
        ]
        if any(v is None for v in verdicts) or any(verdicts):
            continue
        out.append(Violation(rule_id, _label(res), "no resource policy denying non-TLS access"))
    return out


def _stack_s3_tls(resources: Sequence[StackResource], _c: RuleContext) -> list[Violation]:
    return _tls_only(resources, "s3-tls-only", T_BUCKETS, T_BUCKET_POLICY, "bucket")


def _stack_sqs_tls(resources: Sequence[StackResource], _c: RuleContext) -> list[Violation]:
    return _tls_only(resources, "sqs-tls-only", (T_QUEUE,), T_QUEUE_POLICY, "queueUrl")


def _stack_sns_tls(resources: Sequence[StackResource], _c: RuleContext) -> list[Violation]:
    return _tls_only(resources, "sns-tls-only", (T_TOPIC,), T_TOPIC_POLICY, "arn")


def _linked(
    resources: Sequence[StackResource], types: Iterable[str], key: str, target: StackResource
) -> list[StackResource]:
    ids = _ids_of(target)
    return [
        r
        for r in _of_type(resources, *types)
        if r.props.get(key) in ids or r.props.get(key) is UNKNOWN
    ]


def _stack_s3_encryption(resources: Sequence[StackResource], _c: RuleContext) -> list[Violation]:
    # S3 applies SSE-S3 to new objects by default since 2023; we still require the bucket's
    # encryption configuration in code (AES256 or aws:kms), so it cannot be weakened silently.
    out = []
    for bucket in _of_type(resources, *T_BUCKETS):
        inline = _get(
            bucket.props,
            "serverSideEncryptionConfiguration",
            "rule",
            "applyServerSideEncryptionByDefault",
            "sseAlgorithm",
        )
        configs = _linked(resources, T_BUCKET_SSE, "bucket", bucket)
        algos = [
            _get(c.props, "rules", 0, "applyServerSideEncryptionByDefault", "sseAlgorithm")
            for c in configs
        ] + ([inline] if inline else [])
        if any(a is UNKNOWN or a in ("AES256", "aws:kms", "aws:kms:dsse") for a in algos):
            continue
        out.append(
            Violation(
                "s3-encryption",
                _label(bucket),
                "no server-side encryption configuration (AES256 or aws:kms)",
            )
        )
    return out


PUBLIC_ACCESS_FLAGS: Final = (
    "blockPublicAcls",
    "blockPublicPolicy",
    "ignorePublicAcls",
    "restrictPublicBuckets",
)


def _stack_s3_public_access(resources: Sequence[StackResource], _c: RuleContext) -> list[Violation]:
    out = []
    for bucket in _of_type(resources, *T_BUCKETS):
        blocks = _linked(resources, (T_BUCKET_PAB,), "bucket", bucket)
        good = any(
            all(_truthy(b.props.get(f)) or b.props.get(f) is UNKNOWN for f in PUBLIC_ACCESS_FLAGS)
            for b in blocks
        )
        if not good:
            out.append(
                Violation(
                    "s3-block-public-access",
                    _label(bucket),
                    "needs a public access block with all four flags true",
                )
            )
        acl = bucket.props.get("acl")
        if isinstance(acl, str) and acl.startswith("public"):
            out.append(Violation("s3-block-public-access", _label(bucket), f"public ACL {acl}"))
    return out


def _stack_log_group_per_lambda(
    resources: Sequence[StackResource], _c: RuleContext
) -> list[Violation]:
    groups = {r.props.get("name") for r in _of_type(resources, T_LOG_GROUP)} | {
        r.props.get("arn") for r in _of_type(resources, T_LOG_GROUP)
    }
    out = []
    seen: dict[str, str] = {}
    for fn in _of_type(resources, T_FUNCTION):
        configured = _get(fn.props, "loggingConfig", "logGroup")
        name = fn.props.get("name")
        expected = configured or (f"/aws/lambda/{name}" if isinstance(name, str) else None)
        if expected is UNKNOWN or name is UNKNOWN:
            continue
        if expected is None or expected not in groups:
            out.append(
                Violation(
                    "lambda-own-log-group",
                    _label(fn),
                    f"no log group {expected!r} with retention in the stack",
                )
            )
        elif isinstance(expected, str):
            if expected in seen:
                out.append(
                    Violation(
                        "lambda-own-log-group",
                        _label(fn),
                        f"shares log group {expected} with {seen[expected]}",
                    )
                )
            seen[expected] = fn.name
    return out


def _stack_sqs_dlq(resources: Sequence[StackResource], _c: RuleContext) -> list[Violation]:
    queues = _of_type(resources, T_QUEUE)
    arns = {q.props.get("arn") for q in queues}
    dlq_targets: set[Any] = set()
    for q in queues:
        redrive = parse_json(q.props.get("redrivePolicy"))
        if isinstance(redrive, Mapping):
            dlq_targets.add(redrive.get("deadLetterTargetArn"))
    # A queue that is some other target's DLQ (the Scheduler's, an event target's, a Lambda's
    # on-failure destination) counts too.
    for r in resources:
        if r.type == T_SCHEDULE:
            dlq_targets.add(_get(r.props, "target", "deadLetterConfig", "arn"))
        if r.type in (T_EVENT_TARGET, T_FUNCTION):
            dlq_targets.add(_get(r.props, "deadLetterConfig", "arn"))
            dlq_targets.add(_get(r.props, "deadLetterConfig", "targetArn"))
        if r.type == T_INVOKE_CONFIG:  # a Lambda's asynchronous on-failure destination
            dlq_targets.add(_get(r.props, "destinationConfig", "onFailure", "destination"))
    out = []
    for q in queues:
        redrive = parse_json(q.props.get("redrivePolicy"))
        if redrive is UNKNOWN or q.props.get("arn") is UNKNOWN:
            continue
        if isinstance(redrive, Mapping):
            target = redrive.get("deadLetterTargetArn")
            count = redrive.get("maxReceiveCount")
            if target is not UNKNOWN and target not in arns:
                out.append(Violation("sqs-dlq", _label(q), f"DLQ {target} is not in the stack"))
            if not isinstance(count, int) or not 1 <= count <= 1000:
                out.append(Violation("sqs-dlq", _label(q), f"maxReceiveCount {count!r}"))
            continue
        if q.props.get("arn") in dlq_targets:
            continue
        out.append(Violation("sqs-dlq", _label(q), "neither has a DLQ nor is one"))
    return out


def _stack_ecr_lifecycle(resources: Sequence[StackResource], _c: RuleContext) -> list[Violation]:
    out = []
    for repo in _of_type(resources, T_REPO):
        policies = _linked(resources, (T_REPO_LIFECYCLE,), "repository", repo)
        if not policies:
            out.append(
                Violation(
                    "ecr-lifecycle-policy",
                    _label(repo),
                    "no lifecycle policy: untagged and old images pile up",
                )
            )
            continue
        doc = parse_json(policies[0].props.get("policy"))
        if doc is not UNKNOWN and not _as_list(_get(doc, "rules")):
            out.append(
                Violation("ecr-lifecycle-policy", _label(repo), "lifecycle policy has no rules")
            )
    return out


def _stack_apigw_throttling(resources: Sequence[StackResource], _c: RuleContext) -> list[Violation]:
    out = []
    stages = _of_type(resources, T_STAGE)
    settings = _of_type(resources, T_METHOD_SETTINGS)
    plans = _of_type(resources, T_USAGE_PLAN)
    for stage in stages:
        api, name = stage.props.get("restApi"), stage.props.get("stageName")
        stage_wide = [
            s
            for s in settings
            if (s.props.get("restApi") in (api, UNKNOWN))
            and (s.props.get("stageName") in (name, UNKNOWN))
            and s.props.get("methodPath") == "*/*"
        ]
        if not any(
            _positive(_get(s.props, "settings", "throttlingBurstLimit"))
            and _positive(_get(s.props, "settings", "throttlingRateLimit"))
            for s in stage_wide
        ):
            out.append(
                Violation(
                    "apigw-throttling",
                    _label(stage),
                    "no stage-wide (*/*) method settings with burst and rate limits",
                )
            )
        covering = [
            p
            for p in plans
            if any(
                _get(s, "apiId") in (api, UNKNOWN) and _get(s, "stage") in (name, UNKNOWN)
                for s in _as_list(p.props.get("apiStages"))
            )
        ]
        if not any(
            _positive(_get(p.props, "throttleSettings", "burstLimit"))
            and _positive(_get(p.props, "throttleSettings", "rateLimit"))
            for p in covering
        ):
            out.append(
                Violation(
                    "apigw-throttling",
                    _label(stage),
                    "no usage plan with throttle settings on this stage",
                )
            )
    return out


def _positive(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def network_mode(resources: Sequence[StackResource]) -> str:
    """``private`` when the stack has gateway VPC endpoints (only private mode creates them)."""
    for r in _of_type(resources, T_VPC_ENDPOINT):
        if r.props.get("vpcEndpointType") in (None, "Gateway"):
            return "private"
    return "public"


def _stack_no_public_ip(resources: Sequence[StackResource], _c: RuleContext) -> list[Violation]:
    # Departure: public mode assigns public IPs on purpose (no NAT, $0 fixed cost).
    if network_mode(resources) != "private":
        return []
    out = []
    for r in resources:
        if r.type == T_FUNCTION:
            value = _get(r.props, "environment", "variables", "BATCH_ASSIGN_PUBLIC_IP")
            if value is not None and value is not UNKNOWN and value != "DISABLED":
                out.append(
                    Violation(
                        "no-public-ip-in-private-mode", _label(r), f"BATCH_ASSIGN_PUBLIC_IP={value}"
                    )
                )
        if r.type == T_SCHEDULE:
            assign = _get(
                r.props, "target", "ecsParameters", "networkConfiguration", "assignPublicIp"
            )
            if _truthy(assign) or assign == "ENABLED":
                out.append(
                    Violation(
                        "no-public-ip-in-private-mode",
                        _label(r),
                        "scheduled task assigns a public IP",
                    )
                )
        if r.type == T_ECS_SERVICE:
            assign = _get(r.props, "networkConfiguration", "assignPublicIp")
            if _truthy(assign):
                out.append(
                    Violation(
                        "no-public-ip-in-private-mode", _label(r), "service assigns a public IP"
                    )
                )
    return out


# --- the checklist -------------------------------------------------------------------------

RESOURCE_RULES: Final[tuple[ResourceRule, ...]] = (
    ResourceRule(
        "dynamodb-encryption",
        "DynamoDB tables declare server-side encryption.",
        Severity.HIGH,
        frozenset({T_TABLE}),
        _dynamodb_encryption,
        ("Pulumi AWSGuard dynamodb-table-encryption-enabled",),
    ),
    ResourceRule(
        "sqs-encryption",
        "SQS queues are encrypted at rest (SSE-SQS or KMS).",
        Severity.HIGH,
        frozenset({T_QUEUE}),
        _sqs_encryption,
        ("AwsSolutions-SQS2",),
    ),
    ResourceRule(
        "sns-encryption",
        "SNS topics are encrypted at rest with KMS.",
        Severity.HIGH,
        frozenset({T_TOPIC}),
        _sns_encryption,
        ("AwsSolutions-SNS2",),
    ),
    ResourceRule(
        "ecr-encryption",
        "ECR repositories use AES256 (AWS-owned, the default) or KMS.",
        Severity.HIGH,
        frozenset({T_REPO}),
        _ecr_encryption,
        (),
    ),
    ResourceRule(
        "log-group-encryption",
        "Log groups are encrypted (AWS-owned key by default); a kmsKeyId is a key ARN.",
        Severity.MEDIUM,
        frozenset({T_LOG_GROUP}),
        _log_group_encryption,
        (),
    ),
    ResourceRule(
        "secret-encryption",
        "Secrets use aws/secretsmanager (default) or a named KMS key.",
        Severity.MEDIUM,
        frozenset({T_SECRET}),
        _secret_encryption,
        (),
    ),
    ResourceRule(
        "kms-key-rotation",
        "Customer managed KMS keys rotate automatically.",
        Severity.MEDIUM,
        frozenset({T_KMS_KEY}),
        _kms_rotation,
        ("AwsSolutions-KMS5",),
    ),
    ResourceRule(
        "dynamodb-pitr-in-production",
        "Production tables have point-in-time recovery.",
        Severity.MEDIUM,
        frozenset({T_TABLE}),
        _dynamodb_pitr,
        ("AwsSolutions-DDB3",),
    ),
    ResourceRule(
        "deletion-protection-in-production",
        "Production data stores cannot be deleted by a stray `pulumi destroy`.",
        Severity.MEDIUM,
        frozenset({T_TABLE, T_REPO, *T_BUCKETS}),
        _deletion_protection,
        (),
    ),
    ResourceRule(
        "log-retention",
        "Every log group has a retention period.",
        Severity.MEDIUM,
        frozenset({T_LOG_GROUP}),
        _log_retention,
        ("Serverless CloudWatchLogGroupRetentionPeriod",),
    ),
    ResourceRule(
        "no-plaintext-secrets",
        "No secret in a Lambda or container plain environment variable.",
        Severity.HIGH,
        frozenset({T_FUNCTION, T_TASK_DEF}),
        _no_plaintext_secrets,
        ("AwsSolutions-ECS2", "Pulumi AWSGuard lambda-environment-variable-secrets"),
    ),
    ResourceRule(
        "ecs-container-logging",
        "Every container logs to CloudWatch (awslogs).",
        Severity.MEDIUM,
        frozenset({T_TASK_DEF}),
        _ecs_container_logging,
        ("AwsSolutions-ECS7",),
    ),
    ResourceRule(
        "lambda-current-runtime",
        "Lambdas run a current Python runtime.",
        Severity.MEDIUM,
        frozenset({T_FUNCTION}),
        _lambda_runtime,
        ("AwsSolutions-L1",),
    ),
    ResourceRule(
        "lambda-arm64",
        "Lambdas run on arm64 (Graviton).",
        Severity.LOW,
        frozenset({T_FUNCTION}),
        _lambda_arm64,
        (),
    ),
    ResourceRule(
        "ecr-scan-on-push",
        "ECR repositories scan images on push.",
        Severity.MEDIUM,
        frozenset({T_REPO}),
        _ecr_scan_on_push,
        ("Pulumi AWSGuard ecr-image-scanning-enabled",),
    ),
    ResourceRule(
        "scheduler-retry-and-dlq",
        "Scheduler schedules retry failed invocations and keep a dead-letter queue.",
        Severity.MEDIUM,
        frozenset({T_SCHEDULE}),
        _schedule_retry_dlq,
        (),
    ),
    ResourceRule(
        "iam-no-wildcard-action",
        "No IAM Allow statement grants '*' or 'svc:*'.",
        Severity.HIGH,
        T_IAM_POLICY_HOLDERS,
        _iam_no_wildcard_action,
        ("AwsSolutions-IAM5", "Serverless IAMNoWildcardPermissions"),
    ),
    ResourceRule(
        "iam-no-resource-star",
        "Resource '*' only for actions AWS cannot scope (allow-listed).",
        Severity.HIGH,
        T_IAM_POLICY_HOLDERS,
        _iam_resource_star,
        ("AwsSolutions-IAM5",),
    ),
    ResourceRule(
        "iam-passrole-scoped",
        "iam:PassRole names roles and is conditioned on iam:PassedToService.",
        Severity.HIGH,
        T_IAM_POLICY_HOLDERS,
        _iam_passrole,
        (),
    ),
    ResourceRule(
        "iam-trust-service-only",
        "Roles are assumable by AWS services only.",
        Severity.HIGH,
        frozenset({T_ROLE}),
        _iam_trust,
        (),
    ),
    ResourceRule(
        "iam-no-managed-policies",
        "No broad AWS managed policies (allow-listed exceptions only).",
        Severity.MEDIUM,
        frozenset({T_ROLE, T_ROLE_POLICY_ATTACHMENT}),
        _iam_managed_policies,
        ("AwsSolutions-IAM4",),
    ),
    ResourceRule(
        "security-group-no-ingress",
        "Security groups allow no ingress and carry a description.",
        Severity.HIGH,
        frozenset({T_SECURITY_GROUP, T_SG_RULE, T_SG_INGRESS}),
        _sg_no_ingress,
        ("AwsSolutions-EC23",),
    ),
    ResourceRule(
        "apigw-api-key-required",
        "Every API method requires the API key.",
        Severity.HIGH,
        frozenset({T_REST_API, T_METHOD}),
        _apigw_api_key,
        ("AwsSolutions-APIG4 (departure: API key)",),
    ),
    ResourceRule(
        "apigw-request-validation",
        "The API validates requests at the edge.",
        Severity.LOW,
        frozenset({T_REST_API}),
        _apigw_request_validation,
        ("AwsSolutions-APIG2",),
    ),
    ResourceRule(
        "apigw-access-logging",
        "Stages write structured (JSON) access logs.",
        Severity.MEDIUM,
        frozenset({T_STAGE}),
        _apigw_access_logs,
        ("AwsSolutions-APIG1", "Serverless APIGWStructuredLogging"),
    ),
)

STACK_RULES: Final[tuple[StackRule, ...]] = (
    StackRule(
        "s3-encryption",
        "Every bucket has a server-side encryption configuration.",
        Severity.HIGH,
        _stack_s3_encryption,
        ("AwsSolutions-S3 (SSE)",),
    ),
    StackRule(
        "s3-block-public-access",
        "Every bucket blocks public access (all four flags).",
        Severity.HIGH,
        _stack_s3_public_access,
        ("AwsSolutions-S2",),
    ),
    StackRule(
        "s3-tls-only",
        "Every bucket policy denies requests not made over TLS.",
        Severity.HIGH,
        _stack_s3_tls,
        ("AwsSolutions-S10",),
    ),
    StackRule(
        "sqs-tls-only",
        "Every queue policy denies requests not made over TLS.",
        Severity.HIGH,
        _stack_sqs_tls,
        ("AwsSolutions-SQS4",),
    ),
    StackRule(
        "sns-tls-only",
        "Every topic policy denies publishing not made over TLS.",
        Severity.HIGH,
        _stack_sns_tls,
        ("AwsSolutions-SNS3",),
    ),
    StackRule(
        "sqs-dlq",
        "Every queue has a dead-letter queue or is one.",
        Severity.MEDIUM,
        _stack_sqs_dlq,
        ("AwsSolutions-SQS3", "Serverless SQSQueueDLQ"),
    ),
    StackRule(
        "lambda-own-log-group",
        "Every Lambda writes to its own log group declared in the stack.",
        Severity.MEDIUM,
        _stack_log_group_per_lambda,
        (),
    ),
    StackRule(
        "ecr-lifecycle-policy",
        "Every ECR repository has a lifecycle policy.",
        Severity.LOW,
        _stack_ecr_lifecycle,
        (),
    ),
    StackRule(
        "apigw-throttling",
        "Every stage is throttled stage-wide and by a usage plan.",
        Severity.MEDIUM,
        _stack_apigw_throttling,
        ("Serverless APIGWDefaultThrottling",),
    ),
    StackRule(
        "no-public-ip-in-private-mode",
        "In private network mode nothing gets a public IP.",
        Severity.HIGH,
        _stack_no_public_ip,
        (),
    ),
)

ALL_RULE_IDS: Final = tuple(r.id for r in RESOURCE_RULES) + tuple(r.id for r in STACK_RULES)


def check_resource(
    resource_type: str, inputs: Mapping[str, Any], context: RuleContext | None = None
) -> list[tuple[str, str]]:
    """(rule id, message) of every resource rule ``inputs`` violates."""
    return [
        (rule.id, msg)
        for rule in RESOURCE_RULES
        for msg in rule.check(resource_type, inputs, context)
    ]


class _GraphResource(Protocol):
    type: str
    name: str
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]


def check_graph(resources: Sequence[Any], context: RuleContext) -> list[Violation]:
    """Run the whole checklist over recorded resources (``MockResource``: type, name, inputs,
    outputs). Components (``custom=False``) are skipped: only cloud resources are checked."""
    cloud = [r for r in resources if getattr(r, "custom", True)]
    out: list[Violation] = []
    for r in cloud:
        for rule_id, msg in check_resource(r.type, r.inputs, context):
            out.append(Violation(rule_id, f"{r.type} {r.name}", msg))
    merged = [Resource(r.type, r.name, {**r.outputs, **r.inputs}) for r in cloud]
    for rule in STACK_RULES:
        out += rule.check(merged, context)
    return out


def urn_stack(urn: str) -> str:
    """``urn:pulumi:<stack>::<project>::<type>::<name>`` -> ``<stack>``."""
    parts = urn.split(":", 3)
    return parts[2] if len(parts) > 2 and parts[0] == "urn" else ""


def context_for(stack: str, production_stacks: Iterable[str] = ("prod",)) -> RuleContext:
    prod = {s.lower() for s in production_stacks}
    return RuleContext(stack=stack, production=stack.lower() in prod)
