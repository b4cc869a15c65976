"""``BatchPlatform``: what every worker shares, declared once per stack.

Network (public or private mode), the ECS cluster with FARGATE and FARGATE_SPOT, the jobs
table, the results bucket, the failure topic (+ optional notification secrets) and the
control-plane Lambdas (``ControlPlane``). Workers (``FargateWorker``) and the API
(``BatchApi``) take the platform as their one dependency.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import iam
from components.config import StackConfig
from components.control_plane import ControlPlane, ControlPlaneArgs
from components.naming import node_resources
from jobcontract import Table

# Egress the tasks need: HTTPS to AWS APIs (ECR, S3, DynamoDB, Bedrock, Logs, Secrets
# Manager) and to whatever URLs a job names (images to describe, pages to read). DNS goes to
# the VPC resolver, which security groups do not filter. Port 80 is deliberately closed:
# workers fetch over TLS only.
TASK_EGRESS_PORT = 443
# Service principals allowed to publish to the failure topic (CloudWatch alarm actions).
ALARM_PUBLISHERS = ("cloudwatch.amazonaws.com",)


@dataclass(frozen=True)
class BatchPlatformArgs:
    """Arguments of ``BatchPlatform``."""

    config: StackConfig
    """Required. The validated stack config (``components.config.load_config()``)."""


@dataclass(frozen=True)
class BatchPlatformNodes:
    """The children of a ``BatchPlatform`` (SST's ``nodes``); ``control_plane`` has ``nodes``
    of its own."""

    security_group: aws.ec2.SecurityGroup
    vpc_endpoints: tuple[aws.ec2.VpcEndpoint, ...]
    """The S3 and DynamoDB gateway endpoints (private mode only)."""
    cluster: aws.ecs.Cluster
    capacity_providers: aws.ecs.ClusterCapacityProviders
    jobs_table: aws.dynamodb.Table
    results_bucket: aws.s3.Bucket
    results_bucket_settings: tuple[pulumi.CustomResource, ...]
    """Public access block, ownership, encryption, lifecycle and the TLS-only policy."""
    failure_topic_key: aws.kms.Key | None
    failure_topic: aws.sns.Topic
    failure_topic_policy: aws.sns.TopicPolicy
    failure_email: aws.sns.TopicSubscription | None
    secrets: tuple[pulumi.CustomResource, ...]
    """The notification secrets and their values."""
    control_plane: ControlPlane

    def resources(self) -> list[pulumi.Resource]:
        return node_resources(self)


class BatchPlatform(pulumi.ComponentResource):
    """Shared infrastructure of the pipeline (see the module docstring)."""

    config: StackConfig
    name_prefix: str
    cluster: aws.ecs.Cluster
    capacity_providers: aws.ecs.ClusterCapacityProviders
    jobs_table: aws.dynamodb.Table
    results_bucket: aws.s3.Bucket
    failure_topic: aws.sns.Topic
    failure_topic_key: aws.kms.Key | None
    slack_webhook_secret: aws.secretsmanager.Secret | None
    notion_secret: aws.secretsmanager.Secret | None
    security_group: aws.ec2.SecurityGroup
    subnet_ids: pulumi.Output[list[str]]
    security_group_ids: pulumi.Output[list[str]]
    vpc_id: pulumi.Output[str]
    assign_public_ip: bool
    functions: ControlPlane
    log_retention_days: int
    alarms_enabled: bool
    protect: bool
    account_id: pulumi.Output[str]
    region: pulumi.Output[str]

    def __init__(
        self, name: str, args: BatchPlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:BatchPlatform", name, None, opts)
        cfg = args.config
        self.config = cfg
        self.name_prefix = cfg.name_prefix
        self.log_retention_days = cfg.log_retention_days
        self.alarms_enabled = cfg.alarms
        self.protect = cfg.protect
        self.assign_public_ip = cfg.network.assign_public_ip
        child = pulumi.ResourceOptions(parent=self)
        # Data that outlives a `pulumi destroy` when protect is on: Pulumi refuses to delete
        # it (protect) and leaves it in AWS if removed from the program (retain_on_delete).
        keep = pulumi.ResourceOptions(
            parent=self, protect=cfg.protect, retain_on_delete=cfg.protect
        )

        invoke = pulumi.InvokeOptions(parent=self)
        self.account_id = aws.get_caller_identity_output(opts=invoke).account_id
        self.region = aws.get_region_output(opts=invoke).region

        self._vpc_endpoints: list[aws.ec2.VpcEndpoint] = []
        self._bucket_settings: list[pulumi.CustomResource] = []
        self._secret_resources: list[pulumi.CustomResource] = []
        self._network(name, child)
        self._cluster(name, child)
        self._table(name, keep)
        self._bucket(name, child, keep)
        self._topic(name, child)
        self._secrets(name, child)

        self.functions = ControlPlane(
            f"{name}-control",
            ControlPlaneArgs(
                config=cfg,
                jobs_table=self.jobs_table,
                results_bucket=self.results_bucket,
                cluster=self.cluster,
                failure_topic=self.failure_topic,
                failure_topic_key=self.failure_topic_key,
                subnet_ids=self.subnet_ids,
                security_group_ids=self.security_group_ids,
                region=self.region,
                account_id=self.account_id,
                slack_webhook_secret=self.slack_webhook_secret,
                notion_secret=self.notion_secret,
            ),
            opts=child,
        )
        self.register_outputs(
            {
                "cluster_arn": self.cluster.arn,
                "jobs_table": self.jobs_table.name,
                "results_bucket": self.results_bucket.bucket,
                "failure_topic_arn": self.failure_topic.arn,
                "subnet_ids": self.subnet_ids,
                "security_group_ids": self.security_group_ids,
            }
        )

    @property
    def nodes(self) -> BatchPlatformNodes:
        """Every child of this platform, by role."""
        return BatchPlatformNodes(
            self.security_group,
            tuple(self._vpc_endpoints),
            self.cluster,
            self.capacity_providers,
            self.jobs_table,
            self.results_bucket,
            tuple(self._bucket_settings),
            self.failure_topic_key,
            self.failure_topic,
            self._topic_policy,
            self._failure_email,
            tuple(self._secret_resources),
            self.functions,
        )

    # --- what workers and the scheduler ask for ---------------------------------------------

    def network_configuration(self) -> pulumi.Output[dict[str, Any]]:
        """ECS ``awsvpcConfiguration`` (camelCase, as RunTask and Scheduler take it)."""
        public_ip = "ENABLED" if self.assign_public_ip else "DISABLED"
        return pulumi.Output.all(self.subnet_ids, self.security_group_ids).apply(
            lambda ids: {
                "subnets": list(ids[0]),
                "securityGroups": list(ids[1]),
                "assignPublicIp": public_ip,
            }
        )

    def capacity_provider_strategy(self) -> list[dict[str, Any]]:
        """The stack's Spot/on-demand split (AWS: at least one provider with weight > 0)."""
        shares = self.config.capacity_strategy()
        assert shares and all(s.weight > 0 for s in shares)
        return [
            {"capacityProvider": s.capacity_provider, "weight": s.weight, "base": s.base}
            for s in shares
        ]

    # --- pieces ---------------------------------------------------------------------------

    def _network(self, name: str, child: pulumi.ResourceOptions) -> None:
        net = self.config.network
        invoke = pulumi.InvokeOptions(parent=self)
        if net.subnet_ids:
            self.subnet_ids = pulumi.Output.from_input(list(net.subnet_ids))
            if net.vpc_id:
                self.vpc_id = pulumi.Output.from_input(net.vpc_id)
            else:
                first = aws.ec2.get_subnet_output(id=net.subnet_ids[0], opts=invoke)
                self.vpc_id = first.vpc_id
        else:
            # Public mode without subnets: the default VPC and its default (public) subnets.
            vpc = aws.ec2.get_vpc_output(default=True, opts=invoke)
            self.vpc_id = vpc.id
            self.subnet_ids = vpc.id.apply(
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

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-tasks",
            # A prefix, not a fixed name: a replacement (e.g. new description) is created
            # before the old group is deleted, and two groups cannot share a name.
            name_prefix=f"{self.name_prefix}-tasks-",
            description=f"{self.name_prefix} Fargate tasks: no inbound, HTTPS out only",
            vpc_id=self.vpc_id,
            ingress=[],  # nothing connects to a batch task
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    description="HTTPS to AWS APIs and job URLs (IPv4)",
                    protocol="tcp",
                    from_port=TASK_EGRESS_PORT,
                    to_port=TASK_EGRESS_PORT,
                    cidr_blocks=["0.0.0.0/0"],
                ),
                aws.ec2.SecurityGroupEgressArgs(
                    description="HTTPS to AWS APIs and job URLs (IPv6)",
                    protocol="tcp",
                    from_port=TASK_EGRESS_PORT,
                    to_port=TASK_EGRESS_PORT,
                    ipv6_cidr_blocks=["::/0"],
                ),
            ],
            opts=child,
        )
        self.security_group_ids = pulumi.Output.all(self.security_group.id).apply(list)

        if net.mode == "private":
            # Gateway endpoints are free and keep S3 (image layers, results) and DynamoDB
            # traffic off any NAT. Everything else a task calls (ECR API, CloudWatch Logs,
            # Secrets Manager, Bedrock) must be reachable through the subnets' existing NAT
            # gateway (about $33/month per AZ + $0.045/GB) or interface endpoints (about
            # $7.30/month per AZ each + $0.01/GB) - neither is created here.
            for service in ("s3", "dynamodb"):
                endpoint = aws.ec2.VpcEndpoint(
                    f"{name}-{service}-endpoint",
                    vpc_id=self.vpc_id,
                    service_name=pulumi.Output.concat("com.amazonaws.", self.region, ".", service),
                    vpc_endpoint_type="Gateway",
                    route_table_ids=list(net.route_table_ids),
                    tags={"Name": f"{self.name_prefix}-{service}"},
                    opts=child,
                )
                self._vpc_endpoints.append(endpoint)

    def _cluster(self, name: str, child: pulumi.ResourceOptions) -> None:
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=self.name_prefix,
            settings=[
                aws.ecs.ClusterSettingArgs(
                    name="containerInsights",
                    value="enabled" if self.config.container_insights else "disabled",
                )
            ],
            opts=child,
        )
        # AWS rule: RunTask with a capacity provider strategy fails unless the providers are
        # attached to the cluster; whatever can start a task depends on this resource.
        self.capacity_providers = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity",
            cluster_name=self.cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            default_capacity_provider_strategies=[
                aws.ecs.ClusterCapacityProvidersDefaultCapacityProviderStrategyArgs(
                    capacity_provider=s["capacityProvider"], weight=s["weight"], base=s["base"]
                )
                for s in self.capacity_provider_strategy()
            ],
            opts=child,
        )

    def _table(self, name: str, keep: pulumi.ResourceOptions) -> None:
        key_attributes = [Table.PK]
        for _index, hash_key, range_key in Table.INDEXES:
            for attr in (hash_key, range_key):
                if attr not in key_attributes:
                    key_attributes.append(attr)
        self.jobs_table = aws.dynamodb.Table(
            f"{name}-jobs",
            name=f"{self.name_prefix}-jobs",
            billing_mode="PAY_PER_REQUEST",
            hash_key=Table.PK,
            attributes=[aws.dynamodb.TableAttributeArgs(name=a, type="S") for a in key_attributes],
            global_secondary_indexes=[
                aws.dynamodb.TableGlobalSecondaryIndexArgs(
                    name=index,
                    key_schemas=[
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name=hash_key, key_type="HASH"
                        ),
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name=range_key, key_type="RANGE"
                        ),
                    ],
                    projection_type="ALL",
                )
                for index, hash_key, range_key in Table.INDEXES
            ],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=Table.TTL_ATTRIBUTE, enabled=True),
            # KMS with the AWS managed key (aws/dynamodb): encryption visible in CloudTrail.
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(
                enabled=self.config.point_in_time_recovery
            ),
            deletion_protection_enabled=self.config.protect,
            opts=keep,
        )

    def _bucket(
        self, name: str, child: pulumi.ResourceOptions, keep: pulumi.ResourceOptions
    ) -> None:
        results = self.config.results
        # Bucket names are global: AWS appends a unique suffix to the prefix. Emptied on
        # destroy unless protected.
        self.results_bucket = aws.s3.Bucket(
            f"{name}-results",
            bucket_prefix=f"{self.name_prefix}-results-",
            force_destroy=not self.config.protect,
            opts=keep,
        )
        bucket_id = self.results_bucket.id
        public_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-results-public-access",
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-results-ownership",
            bucket=bucket_id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-results-encryption",
            bucket=bucket_id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"  # SSE-S3: no KMS request charges per object
                    ),
                )
            ],
            opts=child,
        )
        lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-results-lifecycle",
            bucket=bucket_id,
            rules=[
                _expire_rule("expire-results", "results/", results.expire_days),
                _expire_rule("expire-inputs", "inputs/", results.inputs_expire_days),
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="abort-incomplete-uploads",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=1
                    ),
                ),
            ],
            opts=child,
        )
        arn = self.results_bucket.arn
        tls_only = aws.s3.BucketPolicy(
            f"{name}-results-tls-only",
            bucket=bucket_id,
            policy=iam.policy_document(
                iam.deny_insecure_transport(["s3:*"], [arn, pulumi.Output.concat(arn, "/*")])
            ),
            # S3 rejects a bucket policy while the public access block is being changed.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_block]),
        )
        self._bucket_settings = [public_block, ownership, encryption, lifecycle, tls_only]

    def _topic(self, name: str, child: pulumi.ResourceOptions) -> None:
        topic_name = f"{self.name_prefix}-job-failures"
        self.failure_topic_key = None
        if self.config.alarms:
            # CloudWatch alarms cannot publish to a topic encrypted with the AWS managed key
            # (alias/aws/sns): its key policy cannot grant cloudwatch.amazonaws.com. Alarms
            # need a customer managed key ($1/month) whose policy does.
            self.failure_topic_key = aws.kms.Key(
                f"{name}-topic-key",
                description=f"{topic_name}: SNS encryption usable by CloudWatch alarms",
                enable_key_rotation=True,
                deletion_window_in_days=30 if self.config.protect else 7,
                policy=self.account_id.apply(_topic_key_policy),
                opts=child,
            )
            kms_key_id: pulumi.Input[str] = self.failure_topic_key.arn
        else:
            kms_key_id = "alias/aws/sns"
        self.failure_topic = aws.sns.Topic(
            f"{name}-failures", name=topic_name, kms_master_key_id=kms_key_id, opts=child
        )
        statements = [
            iam.deny_insecure_transport(["sns:Publish"], [self.failure_topic.arn]),
            iam.Statement(
                ["sns:Publish"],
                [self.failure_topic.arn],
                {"StringEquals": {"aws:SourceAccount": self.account_id}},
                sid="CloudWatchAlarms",
                principals={"Service": list(ALARM_PUBLISHERS)},
            ),
        ]
        self._topic_policy = aws.sns.TopicPolicy(
            f"{name}-failures-policy",
            arn=self.failure_topic.arn,
            policy=iam.policy_document(*statements),
            opts=child,
        )
        email = self.config.notifications.email
        self._failure_email: aws.sns.TopicSubscription | None = None
        if email:
            self._failure_email = aws.sns.TopicSubscription(
                f"{name}-failures-email",
                topic=self.failure_topic.arn,
                protocol="email",
                endpoint=email,
                opts=child,
            )

    def _secrets(self, name: str, child: pulumi.ResourceOptions) -> None:
        notes = self.config.notifications
        # Recovery window 0 outside protected stacks: a deleted secret's name is otherwise
        # blocked for 7-30 days, which breaks a destroy/up cycle in dev.
        recovery = 30 if self.config.protect else 0
        self.slack_webhook_secret = None
        self.notion_secret = None
        if notes.slack_webhook is not None:
            self.slack_webhook_secret = self._secret(
                f"{name}-slack-webhook",
                "slack-webhook",
                "Slack incoming-webhook URL for job failure notifications",
                notes.slack_webhook,
                recovery,
            )
        if notes.notion_token is not None and notes.notion_database_id is not None:
            database_id = notes.notion_database_id
            self.notion_secret = self._secret(
                f"{name}-notion",
                "notion",
                'Notion {"token", "database_id"} for job failure pages',
                # Still a secret: apply on a secret Output yields a secret Output.
                notes.notion_token.apply(
                    lambda token: json.dumps({"token": token, "database_id": database_id})
                ),
                recovery,
            )

    def _secret(
        self,
        resource_name: str,
        secret_name: str,
        description: str,
        value: pulumi.Input[str],
        recovery_days: int,
    ) -> aws.secretsmanager.Secret:
        """A Secrets Manager secret holding a value from secret config (never plain env)."""
        child = pulumi.ResourceOptions(parent=self)
        secret = aws.secretsmanager.Secret(
            resource_name,
            name=f"{self.name_prefix}/{secret_name}",
            description=description,
            recovery_window_in_days=recovery_days,
            opts=child,
        )
        version = aws.secretsmanager.SecretVersion(
            f"{resource_name}-value", secret_id=secret.id, secret_string=value, opts=child
        )
        self._secret_resources += [secret, version]
        return secret

    @property
    def secret_arns(self) -> list[pulumi.Output[str]]:
        """ARNs of the notification secrets that exist (what the reconciler may read)."""
        return [s.arn for s in (self.slack_webhook_secret, self.notion_secret) if s is not None]


def _expire_rule(
    rule_id: str, prefix: str, days: int
) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
    return aws.s3.BucketLifecycleConfigurationRuleArgs(
        id=rule_id,
        status="Enabled",
        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
    )


def _topic_key_policy(account_id: str) -> str:
    """Key policy: the account administers the key (AWS's default key policy statement,
    without which the key becomes unmanageable), CloudWatch alarms of this account may
    encrypt for the topic."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministersKey",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",  # in a key policy "*" means this key
                },
                {
                    "Sid": "CloudWatchAlarmsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Resource": "*",  # in a key policy "*" means this key
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                },
            ],
        }
    )
