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
  ``components.api_logs``). ``api.manageCloudWatchRole: false`` opts out when the account
  setting is owned elsewhere (it must then already be set in the account and region).

Idle cost: nothing (REST APIs bill $3.50 per million requests; log storage by volume).

Usage::

    api = BatchApi("api", BatchApiArgs(platform=platform))
    pulumi.export("apiUrl", api.url)
    pulumi.export("apiKey", pulumi.Output.secret(api.api_key_value))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pulumi
import pulumi_aws as aws

from components import aws_rules
from components.api_document import (
    OPENAPI_PATH,
    THIS_API,
    check_document,
    deployment_hash,
    ip_allow_policy,
    load_openapi,
    render_openapi,
)
from components.api_logs import ACCESS_LOG_FORMAT, UNMANAGED_ROLE_WARNING, cloudwatch_setting
from components.naming import node_resources
from jobcontract import API_CONFIG_PK, API_CONFIG_URL, Table

if TYPE_CHECKING:
    from components.config import StackConfig
    from components.control_plane import ControlPlane
    from components.python_function import PythonFunction


class ApiPlatform(Protocol):
    """What ``BatchApi`` reads of the platform (``BatchPlatform`` is one)."""

    # One read-only property per need: the shape of every such Protocol (duplicates pairs them).
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


@dataclass(frozen=True)
class _Settings:
    """A ``BatchApiArgs`` checked against AWS's rules, at preview."""

    handler: PythonFunction
    stage_name: str
    rate: float
    burst: int
    quota_limit: int
    quota_period: str
    allowed_ips: tuple[str, ...]
    document: Path
    access_logs: bool
    manage_cloudwatch_role: bool


def _settings(args: BatchApiArgs) -> _Settings:
    platform = args.platform
    cfg = platform.config.api
    stage_name = args.stage_name or cfg.stage_name
    # AWS rule: API Gateway stage names are 1-128 characters of [A-Za-z0-9_-].
    if not (1 <= len(stage_name) <= 128 and stage_name.replace("-", "").replace("_", "").isalnum()):
        raise aws_rules.AwsConstraintError("stage_name", stage_name, "1-128 of [A-Za-z0-9_-]")
    rate, burst = aws_rules.throttle(cfg.throttle.rate_limit, cfg.throttle.burst_limit)
    quota_limit, quota_period = aws_rules.quota(cfg.quota.limit, cfg.quota.period)
    allowed_ips = aws_rules.cidrs(cfg.allowed_ips, "api.allowedIps")
    document = Path(args.document_path) if args.document_path else OPENAPI_PATH
    check_document(load_openapi(document))  # fail at preview, before any Output resolves
    # One keyword per field (duplicates pairs the shape with other keyword calls).
    return _Settings(
        handler=args.handler if args.handler is not None else platform.functions.api,
        stage_name=stage_name,
        rate=rate,
        burst=burst,
        quota_limit=quota_limit,
        quota_period=quota_period,
        allowed_ips=allowed_ips,
        document=document,
        access_logs=args.access_logs,
        manage_cloudwatch_role=cfg.manage_cloudwatch_role,
    )


@dataclass(frozen=True)
class BatchApiNodes:
    """The children of a ``BatchApi`` (SST's ``nodes``)."""

    # One typed field per child, then ``resources``: every component's nodes class has this
    # shape (duplicates pairs them), only the children differ.
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

    # Typed attributes, as every component declares its own (duplicates pairs their shape).
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
        settings = _settings(args)
        self._name = name
        self._platform = args.platform
        body, policy_text = self._rest_api(settings)
        self._invoke_permission = settings.handler.allow_invoke(
            f"{name}-invoke-handler",
            "apigateway.amazonaws.com",
            pulumi.Output.concat(self.rest_api.execution_arn, "/", settings.stage_name, "/*"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._deployment(body, policy_text)
        self._account_setting(settings)
        self._stage(settings, self._access_logs(settings))
        self._usage_plan(settings)
        self._endpoint()
        self.api_key_id = self.api_key.id
        self.api_key_value = pulumi.Output.secret(self.api_key.value)
        self.register_outputs(
            {"url": self.url, "api_key_id": self.api_key_id, "api_key_value": self.api_key_value}
        )

    @property
    def nodes(self) -> BatchApiNodes:
        """Every child of this API, by role."""
        # One argument per field, as every component's nodes (duplicates pairs their shape).
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

    # --- steps ----------------------------------------------------------------------------

    def _rest_api(self, settings: _Settings) -> tuple[pulumi.Output[str], str]:
        """The REST API whose body is the rendered document; returns the body and the
        resource policy's text (``""`` without ``api.allowedIps``), what a deployment is of."""
        prefix = self._platform.name_prefix
        # With api.allowedIps the resource policy is in the body (api_document.POLICY_EXTENSION).
        ips = settings.allowed_ips
        policy_text = ip_allow_policy(THIS_API, ips) if ips else ""
        resource_policy = json.loads(policy_text) if policy_text else None
        document = settings.document
        body = pulumi.Output.from_input(settings.handler.invoke_arn).apply(
            lambda arn: render_openapi(arn, document, resource_policy)
        )
        self.rest_api = aws.apigateway.RestApi(
            f"{self._name}-rest-api",
            name=f"{prefix}-api",
            description=f"AI batch pipeline API ({prefix}), from openapi.yaml",
            body=body,
            endpoint_configuration=aws.apigateway.RestApiEndpointConfigurationArgs(
                types="REGIONAL"
            ),
            api_key_source="HEADER",
            put_rest_api_mode="overwrite",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.resource_policy = resource_policy
        return body, policy_text

    def _deployment(self, body: pulumi.Output[str], policy_text: str) -> None:
        # A deployment is a snapshot: it must be taken after the body (and policy) are in
        # place, and replaced whenever they change. Replacement creates the new one first
        # (Pulumi's default), the stage moves to it, then the old one is deleted.
        self.deployment = aws.apigateway.Deployment(
            f"{self._name}-deployment",
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

    def _account_setting(self, settings: _Settings) -> None:
        """API Gateway's CloudWatch role and the account setting (``components.api_logs``),
        when this stack writes them."""
        self.cloudwatch_account = None
        self.cloudwatch_role = None
        self._cloudwatch_policy: aws.iam.RolePolicy | None = None
        if settings.access_logs and settings.manage_cloudwatch_role:
            setting = cloudwatch_setting(self, self._name, self._platform.name_prefix)
            self.cloudwatch_role = setting.role
            self._cloudwatch_policy = setting.policy
            self.cloudwatch_account = setting.account

    def _access_logs(self, settings: _Settings) -> aws.apigateway.StageAccessLogSettingsArgs | None:
        """The access log group and the stage's settings for it (``None``: no access logs)."""
        self.access_log_group = None
        if not settings.access_logs:
            return None
        # Opted out: the setting is owned elsewhere. No data source reads it (pulumi-aws has
        # no get-account function), so say at preview what the stage will need.
        if not settings.manage_cloudwatch_role:
            pulumi.log.warn(UNMANAGED_ROLE_WARNING, resource=self)
        self.access_log_group = aws.cloudwatch.LogGroup(
            f"{self._name}-access-logs",
            name=f"/aibatch/{self._platform.name_prefix}/api-access",
            retention_in_days=aws_rules.log_retention(self._platform.log_retention_days),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return aws.apigateway.StageAccessLogSettingsArgs(
            destination_arn=self.access_log_group.arn,
            format=json.dumps(dict(ACCESS_LOG_FORMAT), separators=(",", ":")),
        )

    def _stage(
        self,
        settings: _Settings,
        access_logs: aws.apigateway.StageAccessLogSettingsArgs | None,
    ) -> None:
        """The stage on the deployment, and its stage-wide throttle (``MethodSettings */*``)."""
        # AWS rule: stage access logging needs API Gateway's account-wide CloudWatch role
        # (CreateStage fails with "CloudWatch Logs role ARN must be set in account settings to
        # enable logging"). So the stage waits for the setting on a first `pulumi up`.
        stage_deps = [self.cloudwatch_account] if self.cloudwatch_account is not None else []
        self.stage = aws.apigateway.Stage(
            f"{self._name}-stage",
            rest_api=self.rest_api.id,
            deployment=self.deployment.id,
            stage_name=settings.stage_name,
            description=f"{self._platform.name_prefix} API stage",
            access_log_settings=access_logs,
            xray_tracing_enabled=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=stage_deps),
        )
        self._stage_throttle = aws.apigateway.MethodSettings(
            f"{self._name}-stage-throttle",
            rest_api=self.rest_api.id,
            stage_name=self.stage.stage_name,
            method_path="*/*",
            settings=aws.apigateway.MethodSettingsSettingsArgs(
                throttling_rate_limit=settings.rate,
                throttling_burst_limit=settings.burst,
                metrics_enabled=True,
                # Execution logs would also need the account role and can log bodies: off.
                logging_level="OFF",
                data_trace_enabled=False,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.url = self.stage.invoke_url

    def _usage_plan(self, settings: _Settings) -> None:
        """The usage plan (throttle + quota per key) and the one API key on it."""
        prefix = self._platform.name_prefix
        child = pulumi.ResourceOptions(parent=self)
        self.usage_plan = aws.apigateway.UsagePlan(
            f"{self._name}-usage-plan",
            name=f"{prefix}-default",
            description="Throttle and quota per API key (from the stack config)",
            api_stages=[
                aws.apigateway.UsagePlanApiStageArgs(
                    api_id=self.rest_api.id, stage=self.stage.stage_name
                )
            ],
            throttle_settings=aws.apigateway.UsagePlanThrottleSettingsArgs(
                rate_limit=settings.rate, burst_limit=settings.burst
            ),
            quota_settings=aws.apigateway.UsagePlanQuotaSettingsArgs(
                limit=settings.quota_limit, period=settings.quota_period
            ),
            opts=child,
        )
        self.api_key = aws.apigateway.ApiKey(
            f"{self._name}-key",
            name=f"{prefix}-default",
            description="Default API key (value: `pulumi stack output apiKey --show-secrets`)",
            enabled=True,
            opts=child,
        )
        self._usage_plan_key = aws.apigateway.UsagePlanKey(
            f"{self._name}-usage-plan-key",
            key_id=self.api_key.id,
            key_type="API_KEY",
            usage_plan_id=self.usage_plan.id,
            opts=child,
        )

    def _endpoint(self) -> None:
        # Notification links (reconciler, launcher) need this URL; those Lambdas exist before
        # the API, so it reaches them through the jobs table instead of their environment.
        self.endpoint_item = aws.dynamodb.TableItem(
            f"{self._name}-endpoint",
            table_name=self._platform.jobs_table.name,
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
            opts=pulumi.ResourceOptions(parent=self),
        )
