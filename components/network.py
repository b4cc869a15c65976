"""Where a stack's tasks run: the subnets (the stack's own, or the default VPC's default
subnets in public mode), the tasks' security group (no inbound, HTTPS out only) and, in
private mode, the free S3 and DynamoDB gateway endpoints. ``BatchPlatform`` makes it once per
stack; workers, the launcher and the scheduler read it from the platform."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import NetworkConfig

# Egress the tasks need: HTTPS to AWS APIs (ECR, S3, DynamoDB, Bedrock, Logs, Secrets
# Manager) and to whatever URLs a job names (images to describe, pages to read). DNS goes to
# the VPC resolver, which security groups do not filter. Port 80 is deliberately closed:
# workers fetch over TLS only.
TASK_EGRESS_PORT = 443


@dataclass(frozen=True)
class TaskNetwork:
    """The network of a stack's tasks."""

    vpc_id: pulumi.Output[str]
    subnet_ids: pulumi.Output[list[str]]
    security_group: aws.ec2.SecurityGroup
    security_group_ids: pulumi.Output[list[str]]
    vpc_endpoints: tuple[aws.ec2.VpcEndpoint, ...]
    """The S3 and DynamoDB gateway endpoints (private mode only)."""


def task_network(
    parent: pulumi.Resource,
    name: str,
    net: NetworkConfig,
    name_prefix: str,
    region: pulumi.Output[str],
) -> TaskNetwork:
    """The subnets, the security group and the endpoints, children of ``parent``."""
    child = pulumi.ResourceOptions(parent=parent)
    vpc_id, subnet_ids = _subnets(parent, net)
    security_group = _security_group(name, name_prefix, vpc_id, child)
    endpoints: tuple[aws.ec2.VpcEndpoint, ...] = ()
    if net.mode == "private":
        endpoints = _gateway_endpoints(name, name_prefix, vpc_id, region, net, child)
    return TaskNetwork(
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        security_group=security_group,
        security_group_ids=pulumi.Output.all(security_group.id).apply(list),
        vpc_endpoints=endpoints,
    )


def _subnets(
    parent: pulumi.Resource, net: NetworkConfig
) -> tuple[pulumi.Output[str], pulumi.Output[list[str]]]:
    """The VPC and the subnets: the configured ones, else the default VPC's default subnets."""
    invoke = pulumi.InvokeOptions(parent=parent)
    if net.subnet_ids:
        subnet_ids = pulumi.Output.from_input(list(net.subnet_ids))
        if net.vpc_id:
            return pulumi.Output.from_input(net.vpc_id), subnet_ids
        first = aws.ec2.get_subnet_output(id=net.subnet_ids[0], opts=invoke)
        return first.vpc_id, subnet_ids
    # Public mode without subnets: the default VPC and its default (public) subnets.
    vpc = aws.ec2.get_vpc_output(default=True, opts=invoke)
    default_subnets: pulumi.Output[list[str]] = vpc.id.apply(
        lambda vpc_id: (
            aws.ec2.get_subnets_output(
                filters=[
                    aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc_id]),
                    aws.ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]),
                ],
                opts=invoke,
            ).ids
        )
    )
    return vpc.id, default_subnets


def _security_group(
    name: str, name_prefix: str, vpc_id: pulumi.Output[str], child: pulumi.ResourceOptions
) -> aws.ec2.SecurityGroup:
    return aws.ec2.SecurityGroup(
        f"{name}-tasks",
        # A prefix, not a fixed name: a replacement (e.g. new description) is created
        # before the old group is deleted, and two groups cannot share a name.
        name_prefix=f"{name_prefix}-tasks-",
        description=f"{name_prefix} Fargate tasks: no inbound, HTTPS out only",
        vpc_id=vpc_id,
        ingress=[],  # nothing connects to a batch task
        egress=[_https_out("IPv4", "0.0.0.0/0"), _https_out("IPv6", "::/0")],
        opts=child,
    )


def _https_out(family: str, cidr: str) -> aws.ec2.SecurityGroupEgressArgs:
    """One egress rule: HTTPS to anywhere, over IPv4 or IPv6."""
    ipv6 = family == "IPv6"
    return aws.ec2.SecurityGroupEgressArgs(
        description=f"HTTPS to AWS APIs and job URLs ({family})",
        protocol="tcp",
        from_port=TASK_EGRESS_PORT,
        to_port=TASK_EGRESS_PORT,
        cidr_blocks=None if ipv6 else [cidr],
        ipv6_cidr_blocks=[cidr] if ipv6 else None,
    )


def _gateway_endpoints(
    name: str,
    name_prefix: str,
    vpc_id: pulumi.Output[str],
    region: pulumi.Output[str],
    net: NetworkConfig,
    child: pulumi.ResourceOptions,
) -> tuple[aws.ec2.VpcEndpoint, ...]:
    # Gateway endpoints are free and keep S3 (image layers, results) and DynamoDB
    # traffic off any NAT. Everything else a task calls (ECR API, CloudWatch Logs,
    # Secrets Manager, Bedrock) must be reachable through the subnets' existing NAT
    # gateway (about $33/month per AZ + $0.045/GB) or interface endpoints (about
    # $7.30/month per AZ each + $0.01/GB) - neither is created here.
    return tuple(
        aws.ec2.VpcEndpoint(
            f"{name}-{service}-endpoint",
            vpc_id=vpc_id,
            service_name=pulumi.Output.concat("com.amazonaws.", region, ".", service),
            vpc_endpoint_type="Gateway",
            route_table_ids=list(net.route_table_ids),
            tags={"Name": f"{name_prefix}-{service}"},
            opts=child,
        )
        for service in ("s3", "dynamodb")
    )
