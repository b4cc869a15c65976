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

from components.config import StackConfig
from components.control_plane import ControlPlane, ControlPlaneArgs
from components.failure_topic import failure_topic
from components.naming import node_resources
from components.network import task_network
from components.results_bucket import results_bucket
from jobcontract import Table


@dataclass(frozen=True)
class BatchPlatformArgs:
    """Arguments of ``BatchPlatform``."""

    config: StackConfig
    """Required. The validated stack config (``components.config.load_config()``)."""


@dataclass(frozen=True)
class BatchPlatformNodes:
    """The children of a ``BatchPlatform`` (SST's ``nodes``); ``control_plane`` has ``nodes``
    of its own."""

    # One typed field per child, then ``resources``: every component's nodes class has this
    # shape (duplicates pairs them), only the children differ.
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

    # Typed attributes, as every component declares its own (duplicates pairs their shape).
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
        invoke = pulumi.InvokeOptions(parent=self)
        self.account_id = aws.get_caller_identity_output(opts=invoke).account_id
        self.region = aws.get_region_output(opts=invoke).region

        self._secret_resources: list[pulumi.CustomResource] = []
        self._network(name)
        self._cluster(name)
        self._table(name)
        self._bucket(name)
        self._topic(name)
        self._secrets(name)
        self._control_plane(name)
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
        # One argument per field, as every component's nodes (duplicates pairs their shape).
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

    def _network(self, name: str) -> None:
        network = task_network(self, name, self.config.network, self.name_prefix, self.region)
        self.vpc_id = network.vpc_id
        self.subnet_ids = network.subnet_ids
        self.security_group = network.security_group
        self.security_group_ids = network.security_group_ids
        self._vpc_endpoints = list(network.vpc_endpoints)

    def _control_plane(self, name: str) -> None:
        """The control-plane Lambdas and the launch queue, built from the pieces above."""
        self.functions = ControlPlane(
            f"{name}-control",
            ControlPlaneArgs(
                config=self.config,
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
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _cluster(self, name: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
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

    def _table(self, name: str) -> None:
        # Data that outlives a `pulumi destroy` when protect is on: Pulumi refuses to delete
        # it (protect) and leaves it in AWS if removed from the program (retain_on_delete).
        # The results bucket has the same options (components.results_bucket).
        protect = self.config.protect
        keep = pulumi.ResourceOptions(parent=self, protect=protect, retain_on_delete=protect)
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

    def _bucket(self, name: str) -> None:
        stored = results_bucket(
            self, name, self.name_prefix, self.config.results, self.config.protect
        )
        self.results_bucket = stored.bucket
        self._bucket_settings = list(stored.settings)

    def _topic(self, name: str) -> None:
        topic = failure_topic(self, name, self.config, self.account_id)
        self.failure_topic_key = topic.key
        self.failure_topic = topic.topic
        self._topic_policy = topic.policy
        self._failure_email = topic.email

    def _secrets(self, name: str) -> None:
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
