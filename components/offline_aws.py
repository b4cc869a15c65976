"""What the offline mocks (``components.offline``) answer for AWS: provider calls (caller
identity, region, VPC lookups, ECR credentials, ...) and the computed outputs of each resource
type (ARNs, URLs, ids, image digests), fake but shaped as AWS returns them, and deterministic
(a digest of type and logical name), so every run of a program records the same graph."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"

# Fake network inventory of the "default VPC" the mocks answer with.
DEFAULT_VPC_ID = "vpc-0a1b2c3d4e5f60718"
DEFAULT_SUBNET_IDS = ("subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002")


def digest(*parts: str, length: int = 64) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def service_of(type_token: str) -> str:
    """``aws:sqs/queue:Queue`` -> ``sqs`` (the ARN service name where it differs)."""
    module = type_token.split(":")[1].split("/")[0]
    return {
        "lambda": "lambda",
        "cloudwatch": "events",
        "apigateway": "apigateway",
        "index": "aws",
    }.get(module, module)


# --- provider functions ------------------------------------------------------------------


def provider_answer(
    token: str, a: Mapping[str, Any], *, partition: str = PARTITION
) -> dict[str, Any]:
    """The result of one provider function call (``aws:index/getRegion:getRegion``, ...);
    ``partition`` is the one ``getPartition`` answers (``aws-cn`` for a China stack)."""
    answers = {**_account_answers(partition), **_lookup_answers(a)}
    if token not in answers:
        raise NotImplementedError(
            f"components.offline: no mocked answer for provider call {token}; "
            "add one in components/offline_aws.py provider_answer"
        )
    return answers[token]()


def _account_answers(partition: str) -> dict[str, Callable[[], dict[str, Any]]]:
    """Who and where: the caller, its region, partition and availability zones."""
    account, region = ACCOUNT_ID, REGION
    return {
        "aws:index/getCallerIdentity:getCallerIdentity": lambda: {
            "accountId": account,
            "arn": f"arn:aws:iam::{account}:user/offline",
            "userId": "AIDAOFFLINEUSER00000",
            "id": account,
        },
        "aws:index/getRegion:getRegion": lambda: {
            "name": region,
            "region": region,
            "id": region,
            "endpoint": f"ec2.{region}.amazonaws.com",
            "description": "US East (N. Virginia)",
        },
        "aws:index/getPartition:getPartition": lambda: {
            "partition": partition,
            "dnsSuffix": "amazonaws.com",
            "reverseDnsPrefix": "com.amazonaws",
            "id": partition,
        },
        "aws:index/getAvailabilityZones:getAvailabilityZones": lambda: {
            "names": [f"{region}a", f"{region}b", f"{region}c"],
            "zoneIds": ["use1-az1", "use1-az2", "use1-az4"],
            "id": region,
        },
    }


def _lookup_answers(a: Mapping[str, Any]) -> dict[str, Callable[[], dict[str, Any]]]:
    """Lookups whose answer depends on the call's arguments ``a``: the (default) VPC and its
    subnets, an ECR token, a policy document."""
    account, region = ACCOUNT_ID, REGION
    return {
        "aws:ec2/getVpc:getVpc": lambda: {
            "id": a.get("id") or DEFAULT_VPC_ID,
            "arn": f"arn:aws:ec2:{region}:{account}:vpc/{a.get('id') or DEFAULT_VPC_ID}",
            "cidrBlock": "172.31.0.0/16",
            "default": a.get("default", True),
            "mainRouteTableId": "rtb-0a1b2c3d4e5f60001",
            "ownerId": account,
            "state": "available",
        },
        "aws:ec2/getSubnets:getSubnets": lambda: {
            "ids": list(DEFAULT_SUBNET_IDS),
            "id": region,
            "filters": a.get("filters"),
        },
        "aws:ec2/getSubnet:getSubnet": lambda: {
            "id": a.get("id") or DEFAULT_SUBNET_IDS[0],
            "vpcId": DEFAULT_VPC_ID,
            "availabilityZone": f"{region}a",
        },
        "aws:ecr/getAuthorizationToken:getAuthorizationToken": lambda: {
            "authorizationToken": "QVdTOm9mZmxpbmUtdG9rZW4=",  # base64("AWS:offline-token")
            "userName": "AWS",
            "password": "offline-token",
            "proxyEndpoint": f"https://{account}.dkr.ecr.{region}.amazonaws.com",
            "expiresAt": "2099-01-01T00:00:00Z",
            "id": region,
        },
        "aws:iam/getPolicyDocument:getPolicyDocument": lambda: {
            "json": _policy_json(a),
            "minifiedJson": _policy_json(a),
            "id": digest(_policy_json(a), length=10),
        },
    }


def _policy_json(args: Mapping[str, Any]) -> str:
    statements = []
    for s in args.get("statements") or []:
        out: dict[str, Any] = {"Effect": s.get("effect", "Allow")}
        if s.get("sid"):
            out["Sid"] = s["sid"]
        if s.get("actions"):
            out["Action"] = s["actions"]
        if s.get("resources"):
            out["Resource"] = s["resources"]
        for p in s.get("principals") or []:
            out.setdefault("Principal", {})[p["type"]] = p["identifiers"]
        for c in s.get("conditions") or []:
            out.setdefault("Condition", {}).setdefault(c["test"], {})[c["variable"]] = c["values"]
        statements.append(out)
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


# --- resource outputs --------------------------------------------------------------------


@dataclass
class _Made:
    """One resource being made: what it was given, and the id and outputs made so far."""

    typ: str
    name: str
    physical: str
    inputs: Mapping[str, Any]
    rid: str = ""
    out: dict[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return digest(self.typ, self.name, length=10)

    @property
    def arn_base(self) -> str:
        return f"arn:aws:{service_of(self.typ)}:{REGION}:{ACCOUNT_ID}"


def outputs_for(
    typ: str, name: str, physical: str, inputs: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Physical id and the computed outputs AWS would return for one resource."""
    made = _Made(typ, name, physical, inputs, rid=physical)
    made.out["arn"] = f"{made.arn_base}:{typ.rsplit(':', 1)[-1].lower()}/{physical}"
    service = _SERVICES.get(typ.split("/")[0])
    if service is not None:
        service(made)
    return made.rid, made.out


# One function per service group, each a ``match`` over its types: the cases share a shape
# because each is a row of the outputs table (the ARN format AWS documents for that type).
def _data(m: _Made) -> None:
    """Queues, tables, buckets, topics and secrets."""
    acct, region, out, physical = ACCOUNT_ID, REGION, m.out, m.physical
    match m.typ:
        case "aws:sqs/queue:Queue":
            out["arn"] = f"{m.arn_base}:{physical}"
            out["url"] = f"https://sqs.{region}.amazonaws.com/{acct}/{physical}"
            m.rid = out["url"]
        case "aws:dynamodb/table:Table":
            out["arn"] = f"{m.arn_base}:table/{physical}"
            out["streamArn"] = f"{out['arn']}/stream/2026-01-01T00:00:00.000"
        case "aws:s3/bucket:Bucket" | "aws:s3/bucketV2:BucketV2":
            out["arn"] = f"arn:aws:s3:::{physical}"
            out["bucket"] = physical
            out["bucketDomainName"] = f"{physical}.s3.amazonaws.com"
            out["bucketRegionalDomainName"] = f"{physical}.s3.{region}.amazonaws.com"
            out["region"] = region
        case "aws:sns/topic:Topic":
            out["arn"] = f"arn:aws:sns:{region}:{acct}:{physical}"
            m.rid = out["arn"]
        case "aws:sns/topicSubscription:TopicSubscription":
            out["arn"] = f"{m.inputs.get('topic')}:{digest(m.typ, m.name, length=8)}"
            m.rid = out["arn"]
        case "aws:secretsmanager/secret:Secret":
            out["arn"] = f"arn:aws:secretsmanager:{region}:{acct}:secret:{physical}-{m.short[:6]}"
            m.rid = out["arn"]


def _iam(m: _Made) -> None:
    acct, out, physical = ACCOUNT_ID, m.out, m.physical
    match m.typ:
        case "aws:iam/role:Role":
            # AWS rule: a role's ARN carries its path (IAM User Guide, "IAM identifiers").
            out["arn"] = f"arn:aws:iam::{acct}:role{m.inputs.get('path') or '/'}{physical}"
            out["name"] = physical
            out["uniqueId"] = f"AROA{m.short.upper()}"
        case "aws:iam/policy:Policy":
            out["arn"] = f"arn:aws:iam::{acct}:policy/{physical}"
        case "aws:iam/rolePolicy:RolePolicy":
            m.rid = f"{m.inputs.get('role')}:{physical}"
            out.pop("arn")


def _invoke_arn(function_arn: str) -> str:
    """API Gateway's integration URI of a Lambda function (or alias) ARN."""
    return (
        f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    )


def _lambda(m: _Made) -> None:
    acct, region, out, physical = ACCOUNT_ID, REGION, m.out, m.physical
    match m.typ:
        case "aws:lambda/function:Function":
            out["arn"] = f"arn:aws:lambda:{region}:{acct}:function:{physical}"
            out["invokeArn"] = _invoke_arn(out["arn"])
            out["qualifiedArn"] = f"{out['arn']}:1"
            out["qualifiedInvokeArn"] = out["invokeArn"].replace(out["arn"], out["qualifiedArn"])
            out["version"] = "1"
            out["name"] = physical
        case "aws:lambda/alias:Alias":
            fn = m.inputs.get("functionName", physical)
            out["arn"] = f"arn:aws:lambda:{region}:{acct}:function:{fn}:{physical}"
            out["invokeArn"] = _invoke_arn(out["arn"])
        case "aws:lambda/eventSourceMapping:EventSourceMapping":
            m.rid = f"{digest(m.typ, m.name, length=8)}-0000-4000-8000-{m.short}00"
            out["uuid"] = m.rid
            fn = str(m.inputs.get("functionName", ""))
            out["functionArn"] = (
                fn if fn.startswith("arn:") else f"arn:aws:lambda:{region}:{acct}:function:{fn}"
            )


def _containers(m: _Made) -> None:
    """ECS clusters and task definitions, ECR repositories, Docker images."""
    acct, region, out, physical = ACCOUNT_ID, REGION, m.out, m.physical
    match m.typ:
        case "aws:ecs/cluster:Cluster":
            out["arn"] = f"arn:aws:ecs:{region}:{acct}:cluster/{physical}"
        case "aws:ecs/taskDefinition:TaskDefinition":
            out["arn"] = f"arn:aws:ecs:{region}:{acct}:task-definition/{physical}:1"
            out["arnWithoutRevision"] = f"arn:aws:ecs:{region}:{acct}:task-definition/{physical}"
            out["revision"] = 1
        case "aws:ecr/repository:Repository":
            out["arn"] = f"arn:aws:ecr:{region}:{acct}:repository/{physical}"
            out["repositoryUrl"] = f"{acct}.dkr.ecr.{region}.amazonaws.com/{physical}"
            out["registryId"] = acct
        case "docker:index/image:Image":
            image = str(m.inputs.get("imageName") or physical)
            repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
            out.pop("arn")
            out["imageName"] = image
            out["repoDigest"] = f"{repo}@sha256:{digest(m.typ, m.name, image)}"
            m.rid = out["repoDigest"]


# _containers' shape again (see the note above _data): other types, other ARN formats.
def _monitoring(m: _Made) -> None:
    """Log groups, event rules, alarms, dashboards and schedules."""
    acct, region, out, physical = ACCOUNT_ID, REGION, m.out, m.physical
    match m.typ:
        case "aws:cloudwatch/logGroup:LogGroup":
            out["arn"] = f"arn:aws:logs:{region}:{acct}:log-group:{physical}"
        case "aws:cloudwatch/eventRule:EventRule":
            out["arn"] = f"arn:aws:events:{region}:{acct}:rule/{physical}"
        case "aws:cloudwatch/metricAlarm:MetricAlarm":
            out["arn"] = f"arn:aws:cloudwatch:{region}:{acct}:alarm:{physical}"
        case "aws:cloudwatch/dashboard:Dashboard":
            out.pop("arn")
            out["dashboardArn"] = f"arn:aws:cloudwatch::{acct}:dashboard/{physical}"
        case "aws:scheduler/schedule:Schedule":
            group = m.inputs.get("groupName", "default")
            out["arn"] = f"arn:aws:scheduler:{region}:{acct}:schedule/{group}/{physical}"


def _apigateway(m: _Made) -> None:
    acct, region, out, name = ACCOUNT_ID, REGION, m.out, m.name
    api = m.inputs.get("restApi", "api")
    match m.typ:
        case "aws:apigateway/restApi:RestApi":
            m.rid = m.short
            out["arn"] = f"arn:aws:apigateway:{region}::/restapis/{m.rid}"
            out["executionArn"] = f"arn:aws:execute-api:{region}:{acct}:{m.rid}"
            out["rootResourceId"] = digest("root", name, length=10)
            out["createdDate"] = "2026-01-01T00:00:00Z"
        case "aws:apigateway/stage:Stage":
            stage = m.inputs.get("stageName", m.physical)
            out["arn"] = f"arn:aws:apigateway:{region}::/restapis/{api}/stages/{stage}"
            out["executionArn"] = f"arn:aws:execute-api:{region}:{acct}:{api}/{stage}"
            out["invokeUrl"] = f"https://{api}.execute-api.{region}.amazonaws.com/{stage}"
        case "aws:apigateway/deployment:Deployment":
            m.rid = m.short
            out.pop("arn")
            out["executionArn"] = f"arn:aws:execute-api:{region}:{acct}:{api}/"
            out["invokeUrl"] = f"https://{api}.execute-api.{region}.amazonaws.com/"
        case "aws:apigateway/apiKey:ApiKey":
            m.rid = m.short
            out["arn"] = f"arn:aws:apigateway:{region}::/apikeys/{m.rid}"
            out.setdefault("value", digest("key", name, length=40))
        case "aws:apigateway/usagePlan:UsagePlan":
            m.rid = m.short
            out["arn"] = f"arn:aws:apigateway:{region}::/usageplans/{m.rid}"


def _ec2(m: _Made) -> None:
    acct, region, out, name = ACCOUNT_ID, REGION, m.out, m.name
    match m.typ:
        case "aws:ec2/securityGroup:SecurityGroup":
            m.rid = f"sg-{digest(m.typ, name, length=17)}"
            out["arn"] = f"arn:aws:ec2:{region}:{acct}:security-group/{m.rid}"
            out["ownerId"] = acct
        case "aws:ec2/vpcEndpoint:VpcEndpoint":
            m.rid = f"vpce-{digest(m.typ, name, length=17)}"
            out["arn"] = f"arn:aws:ec2:{region}:{acct}:vpc-endpoint/{m.rid}"
            out["prefixListId"] = f"pl-{digest('pl', name, length=8)}"


# Provider package and module of a type token (``aws:sqs``) -> the outputs of its types;
# a type not matched there keeps the default ARN and its physical name as id.
_SERVICES: dict[str, Callable[[_Made], None]] = {
    "aws:sqs": _data,
    "aws:dynamodb": _data,
    "aws:s3": _data,
    "aws:sns": _data,
    "aws:secretsmanager": _data,
    "aws:iam": _iam,
    "aws:lambda": _lambda,
    "aws:ecs": _containers,
    "aws:ecr": _containers,
    "docker:index": _containers,
    "aws:cloudwatch": _monitoring,
    "aws:scheduler": _monitoring,
    "aws:apigateway": _apigateway,
    "aws:ec2": _ec2,
}
