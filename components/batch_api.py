"""``BatchApi``: the public REST API, built from the one OpenAPI document ``openapi.yaml``.

What it makes:
- a REGIONAL API Gateway REST API whose body is ``openapi.yaml`` with the API handler's
  invoke ARN filled in: Lambda proxy integration, request validation at the edge, an API key
  required on every method, gateway error responses in the API's own error shape;
- a deployment that is replaced whenever the rendered document, the integration or the
  resource policy changes (``triggers`` = their hash), and a stage pointing at it, with
  stage-wide throttling (``MethodSettings "*/*"``) and JSON access logs to its own log group;
- a usage plan (throttle + quota from the stack config), one API key attached to it;
- with ``api.allowedIps``: a resource policy allowing ``execute-api:Invoke`` only from those
  CIDRs, embedded in the body as ``x-amazon-apigateway-policy`` (a body update would wipe a
  policy attached separately). Without it there is no resource policy: the API key and usage
  plan are the gate, and an "allow everyone" policy would add nothing but a redeploy on every
  change;
- the Lambda permission for API Gateway, scoped to this API's stage;
- with access logs on (the default): API Gateway's CloudWatch role and the account setting
  pointing at it (``aws.apigateway.Account``), so every stack deploys alone in a fresh account;
  all of it is retained on ``pulumi destroy`` so no stack's destroy breaks another's logs (see
  ``BatchApi._cloudwatch_role``). ``api.manageCloudWatchRole: false`` opts out when the account
  setting is owned elsewhere (it must then already be set in the account and region).

Idle cost: nothing (REST APIs bill $3.50 per million requests; log storage by volume).

Usage::

    api = BatchApi("api", BatchApiArgs(platform=platform))
    pulumi.export("apiUrl", api.url)
    pulumi.export("apiKey", pulumi.Output.secret(api.api_key_value))
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pulumi
import pulumi_aws as aws
import yaml

from components import aws_rules, iam
from components.naming import node_resources
from jobcontract import API_CONFIG_PK, API_CONFIG_URL, Table

if TYPE_CHECKING:
    from components.config import StackConfig
    from components.control_plane import ControlPlane
    from components.python_function import PythonFunction

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.yaml"
INVOKE_ARN_PLACEHOLDER = "{{API_HANDLER_INVOKE_ARN}}"
# AWS rule: the REST API's resource policy travels in the imported body. PutRestApi in
# overwrite mode replaces the API definition *including its policy*, so a policy attached
# beside the body (aws.apigateway.RestApiPolicy) is silently wiped by the next body update
# (pulumi/pulumi-aws#4296, hashicorp/terraform-provider-aws#49672).
POLICY_EXTENSION = "x-amazon-apigateway-policy"
# API Gateway expands "execute-api:/*" to this API's arn:...:execute-api:<region>:<acct>:<id>/*
# on import (the API's own id is not known before the API exists).
THIS_API = "execute-api:"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# API Gateway's catch-all method of a resource: "will catch any HTTP method that wasn't
# explicitly declared" (API Gateway developer guide, x-amazon-apigateway-any-method object).
# Every resource has one, integrated with the handler, which answers 405 + Allow; without it
# API Gateway answers an undeclared method as an unknown route (MISSING_AUTHENTICATION_TOKEN).
ANY_METHOD = "x-amazon-apigateway-any-method"
# What API Gateway's account-wide CloudWatch role needs (the AWS-managed
# AmazonAPIGatewayPushToCloudWatchLogs policy, but limited to this account's log groups).
APIGW_LOGS_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
)
# AWS rule: an IAM role name is at most 64 characters; with name_prefix AWS (the provider)
# appends 26 unique ones, so the prefix is at most 38 (terraform-provider-aws validates 1-38).
ROLE_NAME_PREFIX_MAX = 38
CLOUDWATCH_ROLE_SUFFIX = "-apigw-logs-"
# One JSON object per request (CloudWatch Logs Insights parses it without a pattern).
ACCESS_LOG_FORMAT: Mapping[str, str] = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "apiKeyId": "$context.identity.apiKeyId",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "latency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integrationStatus",
    "errorMessage": "$context.error.message",
    "errorType": "$context.error.responseType",
}


class ApiPlatform(Protocol):
    """What ``BatchApi`` reads of the platform (``BatchPlatform`` is one)."""

    @property
    def config(self) -> StackConfig: ...
    @property
    def name_prefix(self) -> str: ...
    @property
    def log_retention_days(self) -> int: ...
    @property
    def jobs_table(self) -> aws.dynamodb.Table: ...
    @property
    def functions(self) -> ControlPlane: ...


@dataclass(frozen=True, kw_only=True)
class BatchApiArgs:
    """Arguments of ``BatchApi``. Throttle, quota, allow-list and the CloudWatch-role switch
    come from the stack config (``platform.config.api``)."""

    platform: ApiPlatform
    """The shared platform: its config, table, log retention and API handler. Required."""
    handler: PythonFunction | None = None
    """The Lambda behind every route. Default ``None``: ``platform.functions.api``."""
    stage_name: str | None = None
    """Stage (first path segment of the URL). Default ``None``: ``api.stageName`` (``v1``)."""
    document_path: str | None = None
    """The OpenAPI document. Default ``None``: ``components/openapi.yaml``."""
    access_logs: bool = True
    """JSON access logs to the API's own log group. Default ``True``. API Gateway writes them
    with the account-wide CloudWatch role: this component sets it (unless
    ``api.manageCloudWatchRole: false``, when the account must already have it)."""


def cloudwatch_role_name_prefix(name_prefix: str) -> str:
    """``<stack prefix>-apigw-logs-``, the stack prefix cut so AWS's unique suffix still fits:
    a retained role never blocks the next one (same stack re-created, or another stack)."""
    room = ROLE_NAME_PREFIX_MAX - len(CLOUDWATCH_ROLE_SUFFIX)
    return name_prefix[:room].rstrip("-") + CLOUDWATCH_ROLE_SUFFIX


def load_openapi(path: Path | str = OPENAPI_PATH) -> dict[str, Any]:
    """The OpenAPI document as data (placeholders intact): documentation and contract."""
    doc = yaml.safe_load(Path(path).read_text())
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3."):
        raise ValueError(f"{path}: not an OpenAPI 3 document")
    return doc


def render_openapi(
    invoke_arn: str,
    path: Path | str = OPENAPI_PATH,
    resource_policy: Mapping[str, Any] | None = None,
) -> str:
    """The document as API Gateway imports it: JSON, the handler's invoke ARN filled in, and
    the resource policy (if any) as ``x-amazon-apigateway-policy``."""
    doc = load_openapi(path)
    if resource_policy is not None:
        doc[POLICY_EXTENSION] = dict(resource_policy)
    placeholders = 0

    def fill(value: Any) -> Any:
        nonlocal placeholders
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if value == INVOKE_ARN_PLACEHOLDER:
            placeholders += 1
            return invoke_arn
        return value

    rendered = fill(doc)
    check_document(rendered)
    if placeholders == 0:
        raise ValueError(f"{path}: no {INVOKE_ARN_PLACEHOLDER} placeholder to fill")
    return json.dumps(rendered, sort_keys=True, separators=(",", ":"))


def operations(doc: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, METHOD, operation) for every operation of the document."""
    ops: list[tuple[str, str, dict[str, Any]]] = []
    for path, item in (doc.get("paths") or {}).items():
        for method in HTTP_METHODS:
            if method in item:
                ops.append((path, method.upper(), item[method]))
    return ops


def check_document(doc: Mapping[str, Any]) -> None:
    """Refuse a document that would deploy an open or unintegrated method, or a resource
    without its catch-all ``ANY`` method (``ANY_METHOD``)."""
    schemes = (doc.get("components") or {}).get("securitySchemes") or {}
    key_schemes = {
        name
        for name, s in schemes.items()
        if s.get("type") == "apiKey" and s.get("in") == "header" and s.get("name") == "x-api-key"
    }
    if not key_schemes:
        raise ValueError("OpenAPI document: no apiKey security scheme on header x-api-key")
    catch_alls = []
    for path, item in (doc.get("paths") or {}).items():
        if ANY_METHOD not in (item or {}):
            raise ValueError(
                f"OpenAPI document: {path} has no {ANY_METHOD}; its undeclared methods would be "
                "answered as an unknown route instead of 405"
            )
        catch_alls.append((path, "ANY", item[ANY_METHOD]))
    for path, method, op in [*operations(doc), *catch_alls]:
        security = op.get("security", doc.get("security")) or []
        if not any(set(req) & key_schemes for req in security):
            raise ValueError(f"OpenAPI document: {method} {path} does not require the API key")
        integration = op.get("x-amazon-apigateway-integration") or {}
        if integration.get("type") != "aws_proxy":
            raise ValueError(f"OpenAPI document: {method} {path} has no Lambda proxy integration")


def deployment_hash(body: str, policy: str) -> str:
    """What a deployment is a snapshot of: any change to it needs a new deployment."""
    return hashlib.sha256(f"{body}\n--policy--\n{policy}".encode()).hexdigest()


def ip_allow_policy(execution_arn: str, cidrs: tuple[str, ...]) -> str:
    """Resource policy: Invoke allowed, and denied from any source outside ``cidrs``.
    ``execution_arn`` is the API's execution ARN, or ``THIS_API`` inside the imported body."""
    resource = f"{execution_arn}/*"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AllowInvoke",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "execute-api:Invoke",
                    "Resource": resource,
                },
                {
                    "Sid": "DenyOutsideAllowList",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "execute-api:Invoke",
                    "Resource": resource,
                    "Condition": {"NotIpAddress": {"aws:SourceIp": list(cidrs)}},
                },
            ],
        },
        sort_keys=True,
    )


@dataclass(frozen=True)
class BatchApiNodes:
    """The children of a ``BatchApi`` (SST's ``nodes``)."""

    rest_api: aws.apigateway.RestApi
    invoke_permission: aws.lambda_.Permission
    """API Gateway's permission to invoke the handler (from this API's stage only)."""
    deployment: aws.apigateway.Deployment
    stage: aws.apigateway.Stage
    stage_throttle: aws.apigateway.MethodSettings
    usage_plan: aws.apigateway.UsagePlan
    api_key: aws.apigateway.ApiKey
    usage_plan_key: aws.apigateway.UsagePlanKey
    endpoint_item: aws.dynamodb.TableItem
    access_log_group: aws.cloudwatch.LogGroup | None
    cloudwatch_role: aws.iam.Role | None
    cloudwatch_policy: aws.iam.RolePolicy | None
    cloudwatch_account: aws.apigateway.Account | None
    """The account setting and its role (access logs, unless opted out)."""

    def resources(self) -> list[pulumi.Resource]:
        return node_resources(self)


class BatchApi(pulumi.ComponentResource):
    """The REST API from ``openapi.yaml``: stage, throttling, usage plan, API key, logs."""

    rest_api: aws.apigateway.RestApi
    deployment: aws.apigateway.Deployment
    stage: aws.apigateway.Stage
    usage_plan: aws.apigateway.UsagePlan
    api_key: aws.apigateway.ApiKey
    resource_policy: dict[str, Any] | None
    """The IP allow-list policy embedded in the body, or ``None`` (no ``api.allowedIps``)."""
    cloudwatch_account: aws.apigateway.Account | None
    """The account setting this stack writes (``None``: no access logs, or opted out)."""
    cloudwatch_role: aws.iam.Role | None
    access_log_group: aws.cloudwatch.LogGroup | None
    endpoint_item: aws.dynamodb.TableItem
    """The API's URL in the jobs table (``config#api``), for notification links."""
    url: pulumi.Output[str]
    api_key_id: pulumi.Output[str]
    api_key_value: pulumi.Output[str]

    def __init__(
        self, name: str, args: BatchApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:BatchApi", name, None, opts)
        platform = args.platform
        cfg = platform.config.api
        handler = args.handler if args.handler is not None else platform.functions.api
        stage_name = args.stage_name or cfg.stage_name
        # AWS rule: API Gateway stage names are 1-128 characters of [A-Za-z0-9_-].
        if not (
            1 <= len(stage_name) <= 128 and stage_name.replace("-", "").replace("_", "").isalnum()
        ):
            raise aws_rules.AwsConstraintError("stage_name", stage_name, "1-128 of [A-Za-z0-9_-]")
        rate, burst = aws_rules.throttle(cfg.throttle.rate_limit, cfg.throttle.burst_limit)
        quota_limit, quota_period = aws_rules.quota(cfg.quota.limit, cfg.quota.period)
        allowed_ips = aws_rules.cidrs(cfg.allowed_ips, "api.allowedIps")
        document = Path(args.document_path) if args.document_path else OPENAPI_PATH
        check_document(load_openapi(document))  # fail at preview, before any Output resolves
        prefix = platform.name_prefix
        child = pulumi.ResourceOptions(parent=self)

        # With api.allowedIps, the resource policy is part of the body (see POLICY_EXTENSION).
        policy_text = ip_allow_policy(THIS_API, allowed_ips) if allowed_ips else ""
        resource_policy = json.loads(policy_text) if policy_text else None
        body = pulumi.Output.from_input(handler.invoke_arn).apply(
            lambda arn: render_openapi(arn, document, resource_policy)
        )
        self.rest_api = aws.apigateway.RestApi(
            f"{name}-rest-api",
            name=f"{prefix}-api",
            description=f"AI batch pipeline API ({prefix}), from openapi.yaml",
            body=body,
            endpoint_configuration=aws.apigateway.RestApiEndpointConfigurationArgs(
                types="REGIONAL"
            ),
            api_key_source="HEADER",
            put_rest_api_mode="overwrite",
            opts=child,
        )

        self.resource_policy = resource_policy

        self._invoke_permission = handler.allow_invoke(
            f"{name}-invoke-handler",
            "apigateway.amazonaws.com",
            pulumi.Output.concat(self.rest_api.execution_arn, "/", stage_name, "/*"),
            opts=child,
        )

        # A deployment is a snapshot: it must be taken after the body (and policy) are in
        # place, and replaced whenever they change. Replacement creates the new one first
        # (Pulumi's default), the stage moves to it, then the old one is deleted.
        self.deployment = aws.apigateway.Deployment(
            f"{name}-deployment",
            rest_api=self.rest_api.id,
            description="snapshot of openapi.yaml + integration + resource policy",
            triggers={"redeployment": body.apply(lambda text: deployment_hash(text, policy_text))},
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.rest_api],
                replace_on_changes=["triggers"],
                delete_before_replace=False,
            ),
        )

        self.cloudwatch_account = None
        self.cloudwatch_role = None
        self._cloudwatch_policy: aws.iam.RolePolicy | None = None
        stage_deps: list[pulumi.Resource] = []
        # AWS rule: stage access logging needs API Gateway's account-wide CloudWatch role
        # (CreateStage fails with "CloudWatch Logs role ARN must be set in account settings to
        # enable logging"). So the stage waits for the setting on a first `pulumi up`.
        if args.access_logs and cfg.manage_cloudwatch_role:
            self.cloudwatch_account = self._cloudwatch_role(name, platform)
            stage_deps.append(self.cloudwatch_account)

        self.access_log_group = None
        access_logs = None
        if args.access_logs:
            # Opted out: the setting is owned elsewhere. No data source reads it (pulumi-aws has
            # no get-account function), so say at preview what the stage will need.
            if not cfg.manage_cloudwatch_role:
                pulumi.log.warn(
                    "api.manageCloudWatchRole is false: this stack does not set API Gateway's "
                    "CloudWatch role for its access logs and relies on the account/region "
                    "already having one (check: aws apigateway get-account -> cloudwatchRoleArn). "
                    "If it is unset, creating the stage fails with 'CloudWatch Logs role ARN "
                    "must be set in account settings to enable logging'; remove the key (default "
                    "true) to let this stack set it.",
                    resource=self,
                )
            self.access_log_group = aws.cloudwatch.LogGroup(
                f"{name}-access-logs",
                name=f"/aibatch/{prefix}/api-access",
                retention_in_days=aws_rules.log_retention(platform.log_retention_days),
                opts=child,
            )
            access_logs = aws.apigateway.StageAccessLogSettingsArgs(
                destination_arn=self.access_log_group.arn,
                format=json.dumps(dict(ACCESS_LOG_FORMAT), separators=(",", ":")),
            )
        self.stage = aws.apigateway.Stage(
            f"{name}-stage",
            rest_api=self.rest_api.id,
            deployment=self.deployment.id,
            stage_name=stage_name,
            description=f"{prefix} API stage",
            access_log_settings=access_logs,
            xray_tracing_enabled=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=stage_deps),
        )
        self._stage_throttle = aws.apigateway.MethodSettings(
            f"{name}-stage-throttle",
            rest_api=self.rest_api.id,
            stage_name=self.stage.stage_name,
            method_path="*/*",
            settings=aws.apigateway.MethodSettingsSettingsArgs(
                throttling_rate_limit=rate,
                throttling_burst_limit=burst,
                metrics_enabled=True,
                # Execution logs would also need the account role and can log bodies: off.
                logging_level="OFF",
                data_trace_enabled=False,
            ),
            opts=child,
        )

        self.usage_plan = aws.apigateway.UsagePlan(
            f"{name}-usage-plan",
            name=f"{prefix}-default",
            description="Throttle and quota per API key (from the stack config)",
            api_stages=[
                aws.apigateway.UsagePlanApiStageArgs(
                    api_id=self.rest_api.id, stage=self.stage.stage_name
                )
            ],
            throttle_settings=aws.apigateway.UsagePlanThrottleSettingsArgs(
                rate_limit=rate, burst_limit=burst
            ),
            quota_settings=aws.apigateway.UsagePlanQuotaSettingsArgs(
                limit=quota_limit, period=quota_period
            ),
            opts=child,
        )
        self.api_key = aws.apigateway.ApiKey(
            f"{name}-key",
            name=f"{prefix}-default",
            description="Default API key (value: `pulumi stack output api_key --show-secrets`)",
            enabled=True,
            opts=child,
        )
        self._usage_plan_key = aws.apigateway.UsagePlanKey(
            f"{name}-usage-plan-key",
            key_id=self.api_key.id,
            key_type="API_KEY",
            usage_plan_id=self.usage_plan.id,
            opts=child,
        )

        self.url = self.stage.invoke_url
        # Notification links (reconciler, launcher) need this URL; those Lambdas exist before
        # the API, so it reaches them through the jobs table instead of their environment.
        self.endpoint_item = aws.dynamodb.TableItem(
            f"{name}-endpoint",
            table_name=platform.jobs_table.name,
            hash_key=Table.PK,
            item=self.url.apply(
                lambda url: json.dumps(
                    {
                        Table.PK: {"S": API_CONFIG_PK},
                        API_CONFIG_URL: {"S": url},
                        "kind": {"S": "config"},
                    }
                )
            ),
            opts=child,
        )
        self.api_key_id = self.api_key.id
        self.api_key_value = pulumi.Output.secret(self.api_key.value)
        self.register_outputs(
            {"url": self.url, "api_key_id": self.api_key_id, "api_key_value": self.api_key_value}
        )

    @property
    def nodes(self) -> BatchApiNodes:
        """Every child of this API, by role."""
        return BatchApiNodes(
            self.rest_api,
            self._invoke_permission,
            self.deployment,
            self.stage,
            self._stage_throttle,
            self.usage_plan,
            self.api_key,
            self._usage_plan_key,
            self.endpoint_item,
            self.access_log_group,
            self.cloudwatch_role,
            self._cloudwatch_policy,
            self.cloudwatch_account,
        )

    def _cloudwatch_role(self, name: str, platform: ApiPlatform) -> aws.apigateway.Account:
        """API Gateway's CloudWatch role and the account setting pointing at it, for this stack.

        Why every stack with access logs writes the setting itself: it is ONE value per account
        and region, and CreateStage with access logging fails while it is unset, so a stack that
        relied on another stack's setting could not deploy alone (prod in its own account).

        Why the role, its policy and the setting are all ``retain_on_delete``: two stacks in one
        account/region (dev and prod) both write the setting, last writer wins, and either role
        serves both stacks' logs. Destroying one stack must not touch what the other uses:
        - the setting may point at this stack's role while the other stack still logs through
          it: deleting the role (or its policy) would silently stop the other stack's logs;
        - pulumi-aws 7 (terraform-provider-aws 6) resets the setting when an
          ``aws.apigateway.Account`` is deleted; the ``reset_on_delete`` switch of the 5.x
          provider is gone (hashicorp/terraform-provider-aws#42226; pulumi-aws 7.51's
          ``AccountArgs`` has only ``cloudwatch_role_arn`` and ``region``). Retained, destroy
          only forgets it (Pulumi's retainOnDelete: no provider Delete on destroy or replace).
        The role is named from a prefix AWS completes with a unique suffix, so the retained role
        never collides with the next `pulumi up` of the same stack or with another stack.

        Leftover after `pulumi destroy`: one IAM role with its inline policy (IAM is free); delete
        it by hand once ``aws apigateway get-account`` no longer names it. After a `pulumi refresh`
        a stack may see the other stack's role in the setting and write its own back: harmless.
        """
        # AWS rule: the CloudWatch role setting is one per account and region, and deleting the
        # role it names silently stops every API's logs there. Provider rule (pulumi-aws 7 /
        # terraform-provider-aws 6, hashicorp/terraform-provider-aws#42226): deleting an
        # aws.apigateway.Account resets the setting. Pulumi rule: retain_on_delete skips the
        # provider's Delete on destroy and on replace. So all three are retained.
        retained = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        account = aws.get_caller_identity_output().account_id
        region = aws.get_region_output().region
        partition = aws.get_partition_output().partition
        role = aws.iam.Role(
            f"{name}-cloudwatch-role",
            name_prefix=cloudwatch_role_name_prefix(platform.name_prefix),
            description=(
                f"API Gateway account setting (written by {platform.name_prefix}): API logs to "
                "CloudWatch Logs. Kept on destroy: the setting may still point here."
            ),
            # No aws:SourceAccount condition: API Gateway documents this trust without one, and
            # it checks the role by assuming it when the account setting is written, so a key
            # it does not send would fail `pulumi up`. Only this account can pass the role.
            assume_role_policy=iam.assume_role_policy("apigateway.amazonaws.com"),
            opts=retained,
        )
        self.cloudwatch_role = role
        # What AmazonAPIGatewayPushToCloudWatchLogs grants (API Gateway's documented policy for
        # this role), limited to this account's log groups in the stack's partition and region.
        policy = self._cloudwatch_policy = aws.iam.RolePolicy(
            f"{name}-cloudwatch-logs",
            role=role.id,
            policy=iam.policy_document(
                iam.Statement(
                    APIGW_LOGS_ACTIONS,
                    [
                        pulumi.Output.concat(
                            "arn:", partition, ":logs:", region, ":", account, ":log-group:*"
                        )
                    ],
                    sid="ApiGatewayLogs",
                ),
                iam.Statement(
                    iam.DESCRIBE_LOG_GROUPS_ACTIONS, ["*"], sid="ApiGatewayDescribeLogGroups"
                ),
            ),
            opts=retained,
        )
        return aws.apigateway.Account(
            f"{name}-cloudwatch-account-setting",
            cloudwatch_role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy], retain_on_delete=True),
        )
