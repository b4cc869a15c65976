"""The deployed graph as a reviewable record: every resource of the dev and prod stacks with
its type, logical name, parent, earlier names (``aliases``) and the inputs that would make
Pulumi replace it, IAM and resource policy documents in full.

``tests/infra/test_inventory.py`` compares the program against the committed baselines in
``tests/infra/baselines/<stack>.json``. After an intentional graph change, regenerate them
in the same commit::

    ./dev inventory --update          # or: python -m tests.infra.inventory --update

Without ``--update`` the command prints the differences and exits 1 when there are any.

Which inputs force a replacement comes from the AWS provider's resource reference (the
arguments documented as "Changing this forces a new resource to be created", e.g.
https://www.pulumi.com/registry/packages/aws/api-docs/iam/rolepolicy/ for ``name``,
``namePrefix`` and ``role``). Policy documents do not force a replacement, but they are what
a least-privilege review reads, so they are recorded whole.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from components.offline import MockResource, StackGraph, evaluate_stack

BASELINES = Path(__file__).resolve().parent / "baselines"
STACKS = ("dev", "prod")

_NAMES = ("name", "namePrefix")
# Inputs that force a new resource, per type (AWS provider reference, "forces new resource").
REPLACE_ON: dict[str, tuple[str, ...]] = {
    "aws:apigateway/account:Account": (),
    "aws:apigateway/apiKey:ApiKey": ("value",),
    "aws:apigateway/deployment:Deployment": ("restApi", "triggers", "variables"),
    "aws:apigateway/methodSettings:MethodSettings": ("restApi", "stageName", "methodPath"),
    "aws:apigateway/restApi:RestApi": (),
    "aws:apigateway/stage:Stage": ("restApi", "stageName"),
    "aws:apigateway/usagePlan:UsagePlan": (),
    "aws:apigateway/usagePlanKey:UsagePlanKey": ("keyId", "keyType", "usagePlanId"),
    "aws:cloudwatch/dashboard:Dashboard": ("dashboardName",),
    "aws:cloudwatch/eventRule:EventRule": (*_NAMES, "eventBusName"),
    "aws:cloudwatch/eventTarget:EventTarget": ("rule", "targetId", "eventBusName"),
    "aws:cloudwatch/logGroup:LogGroup": (*_NAMES, "logGroupClass"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("name",),
    "aws:dynamodb/table:Table": ("name", "hashKey", "rangeKey"),
    "aws:dynamodb/tableItem:TableItem": ("tableName", "hashKey", "rangeKey"),
    "aws:ec2/securityGroup:SecurityGroup": (*_NAMES, "description", "vpcId"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ("vpcId", "serviceName", "vpcEndpointType"),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": ("repository",),
    "aws:ecr/repository:Repository": ("name", "encryptionConfigurations"),
    "aws:ecs/cluster:Cluster": ("name",),
    "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders": ("clusterName",),
    # Every argument of a task definition forces a new revision; the container definitions
    # are recorded without image digests and environment values (they change with code).
    "aws:ecs/taskDefinition:TaskDefinition": (
        "family",
        "cpu",
        "memory",
        "networkMode",
        "requiresCompatibilities",
        "runtimePlatform",
        "executionRoleArn",
        "taskRoleArn",
        "volumes",
    ),
    "aws:iam/role:Role": (*_NAMES, "path"),
    "aws:iam/rolePolicy:RolePolicy": (*_NAMES, "role"),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ("role", "policyArn"),
    "aws:iam/instanceProfile:InstanceProfile": (*_NAMES, "path"),
    "aws:kms/key:Key": ("customerMasterKeySpec", "keyUsage"),
    "aws:lambda/eventSourceMapping:EventSourceMapping": ("eventSourceArn", "startingPosition"),
    "aws:lambda/function:Function": ("name", "packageType"),
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": ("functionName", "qualifier"),
    "aws:lambda/permission:Permission": (
        "action",
        "function",
        "principal",
        "sourceArn",
        "statementId",
        "qualifier",
    ),
    "aws:s3/bucket:Bucket": ("bucket", "bucketPrefix", "objectLockEnabled"),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": ("bucket",),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ("bucket",),
    "aws:s3/bucketPolicy:BucketPolicy": ("bucket",),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ("bucket",),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "bucket",
    ),
    "aws:scheduler/schedule:Schedule": (*_NAMES, "groupName"),
    "aws:secretsmanager/secret:Secret": (*_NAMES,),
    "aws:secretsmanager/secretVersion:SecretVersion": ("secretId",),
    "aws:sns/topic:Topic": (*_NAMES, "fifoTopic"),
    "aws:sns/topicPolicy:TopicPolicy": ("arn",),
    "aws:sns/topicSubscription:TopicSubscription": ("topic", "protocol", "endpoint"),
    "aws:sqs/queue:Queue": (*_NAMES, "fifoQueue"),
    "aws:sqs/queuePolicy:QueuePolicy": ("queueUrl",),
    "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy": ("queueUrl",),
    "docker:index/image:Image": ("imageName",),
}
# Inputs holding a policy document (JSON text): recorded parsed, whole.
POLICY_INPUTS = ("policy", "assumeRolePolicy", "redriveAllowPolicy")


def _document(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _containers(value: Any) -> list[dict[str, Any]]:
    """Container definitions without what changes with the code (digest, env values)."""
    out = []
    for c in _document(value) or []:
        image = str(c.get("image", ""))
        out.append(
            {
                "name": c.get("name"),
                "image": image.split("@", 1)[0].rsplit(":", 1)[0] if "@" in image else image,
                "environment": sorted(e["name"] for e in c.get("environment") or []),
                "secrets": sorted(s["name"] for s in c.get("secrets") or []),
            }
        )
    return out


def record(r: MockResource) -> dict[str, Any]:
    """One resource's inventory entry."""
    entry: dict[str, Any] = {"type": r.type, "name": r.name, "parent": r.parent}
    if r.aliases:
        entry["aliases"] = list(r.aliases)
    if not r.custom:
        return entry
    if r.type not in REPLACE_ON:
        raise KeyError(
            f"{r.type} ({r.name}) has no row in tests/infra/inventory.py REPLACE_ON: add the "
            "inputs its provider documents as forcing a new resource"
        )
    replace = {k: r.inputs[k] for k in REPLACE_ON[r.type] if k in r.inputs}
    if r.type == "aws:ecs/taskDefinition:TaskDefinition":
        replace["containerDefinitions"] = _containers(r.inputs.get("containerDefinitions"))
    if r.type == "docker:index/image:Image" and "imageName" in replace:
        # The tag is a hash of the image's sources: it changes with the code, by design.
        replace["imageName"] = str(replace["imageName"]).rsplit(":", 1)[0]
    if r.type == "aws:dynamodb/tableItem:TableItem":
        item = _document(r.inputs.get("item")) or {}
        replace["key"] = item.get(str(r.inputs.get("hashKey")))
    entry["replace_on"] = replace
    docs = {k: _document(r.inputs[k]) for k in POLICY_INPUTS if r.inputs.get(k)}
    inline = [
        {"name": p.get("name"), "policy": _document(p.get("policy"))}
        for p in r.inputs.get("inlinePolicies") or []
        if p.get("policy")
    ]
    if inline:
        docs["inlinePolicies"] = inline
    if docs:
        entry["policies"] = docs
    return entry


def _key(entry: dict[str, Any]) -> str:
    return f"{entry['type']} {entry['parent'] or '-'}/{entry['name']}"


def inventory(graph: StackGraph) -> dict[str, dict[str, Any]]:
    """Inventory of a graph, keyed ``<type> <parent>/<name>`` (unique in a stack), sorted."""
    entries = [record(r) for r in graph.resources]
    keyed = {_key(e): e for e in entries}
    assert len(keyed) == len(entries), "two resources share type, parent and name"
    return dict(sorted(keyed.items()))


def baseline_path(stack: str) -> Path:
    return BASELINES / f"{stack}.json"


def load_baseline(stack: str) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(baseline_path(stack).read_text())
    return data


def dump(inv: dict[str, dict[str, Any]]) -> str:
    return json.dumps(inv, indent=1, sort_keys=True) + "\n"


def diff(baseline: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> list[str]:
    """Readable differences. A resource renamed with an alias to its baseline name (and a
    parent renamed likewise) is matched to its baseline entry, so a rename shows as one
    ``renamed`` line plus whatever else changed, not as a replacement."""
    lines: list[str] = []
    names: dict[tuple[str, str], list[str]] = {}
    for k, e in baseline.items():
        names.setdefault((e["type"], e["name"]), []).append(k)
    # (type, name) -> baseline key, where that pair is unique in the baseline
    by_name = {pair: keys[0] for pair, keys in names.items() if len(keys) == 1}
    renamed_parents = {a: e["name"] for e in current.values() for a in e.get("aliases", [])}
    matched: set[str] = set()
    for key, entry in current.items():
        old_key = key if key in baseline else None
        if old_key is None:  # the resource or its parent was renamed
            for alias in [entry["name"], *entry.get("aliases", [])]:
                old_key = by_name.get((entry["type"], alias))
                if old_key is not None:
                    break
        if old_key is None or old_key in matched:
            lines.append(f"+ added {key}")
            continue
        matched.add(old_key)
        old = baseline[old_key]
        if old_key != key:
            lines.append(f"~ renamed {old_key} -> {key} (aliases {entry.get('aliases', [])})")
        for field in sorted(set(old) | set(entry)):
            if field == "name" or (field == "aliases" and old_key != key):
                continue  # a rename's new aliases are on its "renamed" line
            before, after = old.get(field), entry.get(field)
            if field == "parent" and before is not None and renamed_parents.get(before) == after:
                continue
            if before != after:
                lines.append(f"~ {key} {field}:")
                lines.extend(_value_diff(before, after, "    "))
    for key in baseline:
        if key not in matched:
            lines.append(f"- removed {key}")
    return lines


def _value_diff(before: Any, after: Any, indent: str) -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for k in sorted(set(before) | set(after)):
            if before.get(k) != after.get(k):
                out.append(f"{indent}{k}:")
                out.extend(_value_diff(before.get(k), after.get(k), indent + "  "))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            if b != a:
                label = f"[{i}] {b.get('Sid', '')}" if isinstance(b, dict) else f"[{i}]"
                out.append(f"{indent}{label.rstrip()}:")
                out.extend(_value_diff(b, a, indent + "  "))
        return out
    return [
        f"{indent}- {json.dumps(before, sort_keys=True)}",
        f"{indent}+ {json.dumps(after, sort_keys=True)}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev inventory", description=__doc__.split("\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite the baselines")
    parser.add_argument("stacks", nargs="*", default=list(STACKS))
    args = parser.parse_args(argv)
    status = 0
    for stack in args.stacks:
        current = inventory(evaluate_stack(stack))
        path = baseline_path(stack)
        if args.update:
            BASELINES.mkdir(exist_ok=True)
            path.write_text(dump(current))
            print(f"{stack}: wrote {len(current)} resources to {path}")
            continue
        lines = diff(load_baseline(stack), current) if path.exists() else ["no baseline"]
        changed = sum(1 for line in lines if not line.startswith(" "))
        print(f"{stack}: {f'{changed} resources differ' if lines else 'no differences'}")
        print("\n".join(lines))
        status |= bool(lines)
    return status


if __name__ == "__main__":
    sys.exit(main())
