"""BatchApi under Pulumi mocks: body from openapi.yaml, keys, throttling, logs, redeploys."""

from __future__ import annotations

import json
import logging
from typing import Any

import pulumi
import pytest
import yaml

from components.api_document import INVOKE_ARN_PLACEHOLDER, operations
from components.api_logs import ACCESS_LOG_FORMAT, cloudwatch_role_name_prefix
from components.aws_rules import AwsConstraintError
from components.batch_api import BatchApi, BatchApiArgs
from components.config import StackConfig, parse_config
from components.offline import PROJECT_ROOT, StackGraph, run_program
from components.python_function import PythonFunction, PythonFunctionArgs
from tests.infra.test_fargate_worker import fake_platform, stack_config

REST_API = "aws:apigateway/restApi:RestApi"
DEPLOYMENT = "aws:apigateway/deployment:Deployment"
STAGE = "aws:apigateway/stage:Stage"


def run_api(config: StackConfig, **overrides: Any) -> StackGraph:
    def program() -> None:
        platform = fake_platform(config)
        handler = PythonFunction(
            "api-handler",
            PythonFunctionArgs(
                handler="handlers.api.handler", timeout=10, name_prefix=config.name_prefix
            ),
        )
        api = BatchApi("api", BatchApiArgs(platform=platform, handler=handler, **overrides))
        pulumi.export("url", api.url)
        pulumi.export("api_key_id", api.api_key_id)
        pulumi.export("api_key", api.api_key_value)

    return run_program(program, stack=config.stack)


def body_of(graph: StackGraph) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(graph.named(REST_API, "api-rest-api").inputs["body"])
    return doc


@pytest.fixture(scope="module")
def graph() -> StackGraph:
    return run_api(
        stack_config(
            api={
                "throttle": {"rateLimit": 7, "burstLimit": 15},
                "quota": {"limit": 1234, "period": "WEEK"},
                "allowedIps": ["203.0.113.0/24", "2001:db8::/32"],
            },
            logRetentionDays=30,
        )
    )


@pytest.fixture(scope="module")
def plain_graph() -> StackGraph:
    return run_api(stack_config())


def test_body_is_the_openapi_document_with_the_handler_integrated(graph: StackGraph) -> None:
    body = body_of(graph)
    assert body["openapi"].startswith("3.0")
    handler = graph.named("aws:lambda/function:Function", "api-handler-function").outputs
    ops = operations(body)
    assert {(p, m) for p, m, _ in ops} == {
        ("/jobs", "POST"),
        ("/jobs", "GET"),
        ("/jobs/{id}", "GET"),
        ("/jobs/{id}/cancel", "POST"),
        ("/workers", "GET"),
        ("/uploads", "POST"),
    }
    for path, method, op in ops:
        integration = op["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy", (path, method)
        assert integration["httpMethod"] == "POST"
        assert integration["uri"] == handler["invokeArn"]
    assert INVOKE_ARN_PLACEHOLDER not in json.dumps(body)


def test_every_method_requires_the_api_key(graph: StackGraph) -> None:
    body = body_of(graph)
    scheme = body["components"]["securitySchemes"]["api_key"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    assert body["x-amazon-apigateway-api-key-source"] == "HEADER"
    for path, method, op in operations(body):
        assert {"api_key": []} in op["security"], (path, method)
    assert graph.named(REST_API, "api-rest-api").inputs["apiKeySource"] == "HEADER"


def test_request_validation_at_the_edge(graph: StackGraph) -> None:
    body = body_of(graph)
    validators = body["x-amazon-apigateway-request-validators"]
    assert validators["all"] == {"validateRequestBody": True, "validateRequestParameters": True}
    assert body["x-amazon-apigateway-request-validator"] == "all"
    create = body["paths"]["/jobs"]["post"]
    assert create["x-amazon-apigateway-request-validator"] == "all"
    assert create["requestBody"]["required"] is True


def test_regional_endpoint(graph: StackGraph) -> None:
    rest = graph.named(REST_API, "api-rest-api").inputs
    assert rest["endpointConfiguration"]["types"] == "REGIONAL"
    assert rest["name"] == "ai-batch-dev-api"


def test_usage_plan_throttle_and_quota_from_config(graph: StackGraph) -> None:
    plan = graph.named("aws:apigateway/usagePlan:UsagePlan", "api-usage-plan").inputs
    assert plan["throttleSettings"] == {"rateLimit": 7, "burstLimit": 15}
    assert plan["quotaSettings"] == {"limit": 1234, "period": "WEEK"}
    rest_id = graph.named(REST_API, "api-rest-api").outputs["id"]
    assert plan["apiStages"] == [{"apiId": rest_id, "stage": "v1"}]
    key = graph.named("aws:apigateway/apiKey:ApiKey", "api-key").outputs
    link = graph.named("aws:apigateway/usagePlanKey:UsagePlanKey", "api-usage-plan-key").inputs
    assert link["keyId"] == key["id"]
    assert link["keyType"] == "API_KEY"
    assert (
        link["usagePlanId"]
        == graph.named("aws:apigateway/usagePlan:UsagePlan", "api-usage-plan").outputs["id"]
    )


def test_stage_wide_throttling(graph: StackGraph) -> None:
    settings = graph.named("aws:apigateway/methodSettings:MethodSettings", "api-stage-throttle")
    assert settings.inputs["methodPath"] == "*/*"
    assert settings.inputs["stageName"] == "v1"
    assert settings.inputs["settings"]["throttlingRateLimit"] == 7
    assert settings.inputs["settings"]["throttlingBurstLimit"] == 15
    assert settings.inputs["settings"]["dataTraceEnabled"] is False


def test_json_access_logs_with_retention(graph: StackGraph) -> None:
    stage = graph.named(STAGE, "api-stage").inputs
    group = graph.named("aws:cloudwatch/logGroup:LogGroup", "api-access-logs")
    assert group.inputs["retentionInDays"] == 30
    settings = stage["accessLogSettings"]
    assert settings["destinationArn"] == group.outputs["arn"]
    fmt = json.loads(settings["format"])
    assert fmt == dict(ACCESS_LOG_FORMAT)
    for field in ("requestId", "ip", "status", "latency", "httpMethod", "resourcePath"):
        assert fmt[field].startswith("$context."), field


def test_stage_uses_the_deployment(graph: StackGraph) -> None:
    stage = graph.named(STAGE, "api-stage").inputs
    deployment = graph.named(DEPLOYMENT, "api-deployment").outputs
    assert stage["deployment"] == deployment["id"]
    assert stage["stageName"] == "v1"
    names = [r.name for r in graph.resources]
    # Registration order mirrors the dependency order: body (with policy), deployment, stage.
    assert names.index("api-rest-api") < names.index("api-deployment")
    assert names.index("api-deployment") < names.index("api-stage")
    assert "api-rest-api" in graph.named(DEPLOYMENT, "api-deployment").depends_on


def test_resource_policy_with_allow_list(graph: StackGraph) -> None:
    # AWS rule: PutRestApi (overwrite) replaces the policy with the body's; a separate
    # RestApiPolicy would be wiped by the next body update, so the policy is in the body,
    # with API Gateway's own shorthand for "this API" (expanded on import).
    assert graph.of_type("aws:apigateway/restApiPolicy:RestApiPolicy") == []
    rest = graph.named(REST_API, "api-rest-api").inputs
    policy = json.loads(rest["body"])["x-amazon-apigateway-policy"]
    assert "policy" not in rest
    statements = {s["Sid"]: s for s in policy["Statement"]}
    resource = "execute-api:/*"
    assert statements["AllowInvoke"]["Effect"] == "Allow"
    assert statements["AllowInvoke"]["Resource"] == resource
    deny = statements["DenyOutsideAllowList"]
    assert deny["Effect"] == "Deny"
    assert deny["Action"] == "execute-api:Invoke"
    assert deny["Resource"] == resource
    assert deny["Condition"] == {
        "NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:db8::/32"]}
    }


def test_no_resource_policy_without_allow_list(plain_graph: StackGraph) -> None:
    assert plain_graph.of_type("aws:apigateway/restApiPolicy:RestApiPolicy") == []
    body = json.loads(plain_graph.named(REST_API, "api-rest-api").inputs["body"])
    assert "x-amazon-apigateway-policy" not in body


def test_allow_list_change_redeploys(graph: StackGraph, plain_graph: StackGraph) -> None:
    # The deployment is a snapshot of body + policy: a different allow-list is a new one.
    with_list = graph.named(DEPLOYMENT, "api-deployment").inputs["triggers"]
    without = plain_graph.named(DEPLOYMENT, "api-deployment").inputs["triggers"]
    assert with_list["redeployment"] != without["redeployment"]


def test_lambda_permission_scoped_to_this_api(graph: StackGraph) -> None:
    perm = graph.named("aws:lambda/permission:Permission", "api-invoke-handler").inputs
    rest = graph.named(REST_API, "api-rest-api").outputs
    assert perm["principal"] == "apigateway.amazonaws.com"
    assert perm["action"] == "lambda:InvokeFunction"
    assert perm["sourceArn"] == f"{rest['executionArn']}/v1/*"


ACCOUNT = "aws:apigateway/account:Account"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
CLOUDWATCH = ("api-cloudwatch-role", "api-cloudwatch-logs", "api-cloudwatch-account-setting")
# AWS's documented policy for this role (AmazonAPIGatewayPushToCloudWatchLogs, v1).
PUSH_TO_CLOUDWATCH_LOGS_ACTIONS = {
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
}


def committed_config(stack: str) -> StackConfig:
    """The settings of the committed ``Pulumi.<stack>.yaml``."""
    doc = yaml.safe_load((PROJECT_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    values = {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("ai-batch:")}
    return parse_config(values, project="ai-batch", stack=stack)


@pytest.fixture(scope="module", params=["dev", "prod"])
def committed(request: pytest.FixtureRequest) -> StackGraph:
    return run_api(committed_config(request.param))


def test_each_committed_stack_sets_the_account_cloudwatch_role_itself(
    committed: StackGraph,
) -> None:
    # A fresh account has no CloudWatch role setting and CreateStage with access logs fails
    # without one: each stack (prod in its own account too) must write it itself.
    stage = committed.named(STAGE, "api-stage")
    assert stage.inputs["accessLogSettings"]["destinationArn"]
    account = committed.named(ACCOUNT, "api-cloudwatch-account-setting")
    role = committed.named(ROLE, "api-cloudwatch-role")
    assert account.inputs["cloudwatchRoleArn"] == role.outputs["arn"]
    # First `pulumi up`: the role has its policy before the setting names it, and the stage
    # (with access logs) is created only after the setting.
    assert "api-cloudwatch-logs" in account.depends_on
    assert "api-cloudwatch-account-setting" in stage.depends_on


def test_destroy_keeps_the_role_its_policy_and_the_setting(committed: StackGraph) -> None:
    # The setting may point at this stack's role while another stack logs through it, and
    # deleting an aws.apigateway.Account resets the setting (pulumi-aws 7): all three stay.
    # Nothing else of the API outlives the stack.
    api_retained = {r.name for r in committed.resources if r.retain_on_delete}
    assert api_retained == set(CLOUDWATCH)
    assert committed.named(ACCOUNT, "api-cloudwatch-account-setting").retain_on_delete
    assert not committed.named(STAGE, "api-stage").retain_on_delete


def test_cloudwatch_role_name_never_collides() -> None:
    # Retained roles stay behind: a fixed name would make the next `pulumi up` of the same
    # stack (or another stack) fail with EntityAlreadyExists. AWS completes a prefix uniquely.
    prefixes = set()
    for stack in ("dev", "prod"):
        role = run_api(committed_config(stack)).named(ROLE, "api-cloudwatch-role").inputs
        assert "name" not in role
        assert role["namePrefix"] == f"ai-batch-{stack}-apigw-logs-"
        prefixes.add(role["namePrefix"])
    assert len(prefixes) == 2
    longest = "a" * 28  # the longest <project>-<stack> prefix the config accepts
    assert len(cloudwatch_role_name_prefix(longest)) <= 38  # AWS: name_prefix 1-38 characters
    assert cloudwatch_role_name_prefix(longest).endswith("-apigw-logs-")


def test_cloudwatch_role_trust_and_policy_in_the_stacks_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import components.offline

    monkeypatch.setattr(components.offline, "PARTITION", "aws-cn")
    managed = run_api(stack_config())
    role = managed.named(ROLE, "api-cloudwatch-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert trust["Action"] in ("sts:AssumeRole", ["sts:AssumeRole"])
    # As API Gateway documents it: it assumes the role to validate the setting, and an
    # undocumented condition key would make `pulumi up` fail there.
    assert "Condition" not in trust
    stmt, describe = json.loads(
        managed.named(ROLE_POLICY, "api-cloudwatch-logs").inputs["policy"]
    )["Statement"]
    assert all("*" not in a for a in stmt["Action"])
    # The ARN is built from the stack's partition (not a hard-coded arn:aws:).
    assert stmt["Resource"] == ["arn:aws-cn:logs:us-east-1:123456789012:log-group:*"]
    # AWS authorizes logs:DescribeLogGroups on "*" only: alone in its own statement.
    assert describe["Action"] in ("logs:DescribeLogGroups", ["logs:DescribeLogGroups"])
    assert describe["Resource"] in ("*", ["*"])
    # Exactly what AWS's AmazonAPIGatewayPushToCloudWatchLogs grants, no more, no less.
    describe_actions = (
        {describe["Action"]} if isinstance(describe["Action"], str) else set(describe["Action"])
    )
    assert set(stmt["Action"]) | describe_actions == PUSH_TO_CLOUDWATCH_LOGS_ACTIONS


def test_opt_out_writes_no_setting_and_says_what_the_stage_needs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # For an account whose setting is owned elsewhere: nothing account-wide is written, and
    # preview says that the setting must already exist (it cannot be read at preview).
    with caplog.at_level(logging.WARNING):
        graph = run_api(stack_config(api={"manageCloudWatchRole": False}))
    assert graph.of_type(ACCOUNT) == []
    assert [r.name for r in graph.resources if r.name in CLOUDWATCH] == []
    stage = graph.named(STAGE, "api-stage")
    assert stage.inputs["accessLogSettings"]["destinationArn"]
    assert not [d for d in stage.depends_on if "cloudwatch" in d]
    warnings = [r.getMessage() for r in caplog.records if "manageCloudWatchRole" in r.getMessage()]
    assert len(warnings) == 1
    assert "must be set in account settings" in warnings[0]
    assert "aws apigateway get-account" in warnings[0]


def test_no_access_logs_no_account_setting(caplog: pytest.LogCaptureFixture) -> None:
    # Without access logs nothing needs the role: no account-wide resource, no warning.
    for api in ({}, {"manageCloudWatchRole": False}):
        with caplog.at_level(logging.WARNING):
            graph = run_api(stack_config(api=api), access_logs=False)
        assert graph.of_type(ACCOUNT) == []
        assert "accessLogSettings" not in graph.named(STAGE, "api-stage").inputs
    assert not [r for r in caplog.records if "manageCloudWatchRole" in r.getMessage()]


def test_outputs_url_and_secret_key(graph: StackGraph) -> None:
    stage = graph.named(STAGE, "api-stage").outputs
    key = graph.named("aws:apigateway/apiKey:ApiKey", "api-key").outputs
    assert graph.exports["url"] == stage["invokeUrl"]
    assert graph.exports["api_key_id"] == key["id"]
    assert graph.exports["api_key"] == key["value"]


def test_api_key_value_is_a_secret_output() -> None:
    seen: dict[str, bool] = {}

    def program() -> None:
        config = stack_config()
        platform = fake_platform(config)
        handler = PythonFunction(
            "api-handler",
            PythonFunctionArgs(handler="handlers.api.handler", name_prefix=config.name_prefix),
        )
        api = BatchApi("api", BatchApiArgs(platform=platform, handler=handler))

        async def check() -> None:
            seen["secret"] = await api.api_key_value.is_secret()
            seen["id_secret"] = await api.api_key_id.is_secret()

        pulumi.Output.from_input(check())  # awaited while the program drains

    run_program(program)
    assert seen == {"secret": True, "id_secret": False}


def test_deployment_trigger_changes_with_the_document(tmp_path: Any) -> None:
    from components.api_document import OPENAPI_PATH

    changed = tmp_path / "openapi.yaml"
    changed.write_text(
        OPENAPI_PATH.read_text().replace("title: AI batch pipeline API", "title: Changed API")
    )
    a = run_api(stack_config())
    b = run_api(stack_config())
    c = run_api(stack_config(), document_path=str(changed))
    d = run_api(stack_config(api={"allowedIps": ["198.51.100.7/32"]}))

    def trigger(g: StackGraph) -> str:
        value: str = g.named(DEPLOYMENT, "api-deployment").inputs["triggers"]["redeployment"]
        return value

    assert trigger(a) == trigger(b)  # deterministic: no redeploy without a change
    assert trigger(c) != trigger(a)  # document changed
    assert trigger(d) != trigger(a)  # resource policy changed
    assert len(trigger(a)) == 64


def test_deployment_trigger_changes_with_the_integration() -> None:
    def program(function_name: str) -> StackGraph:
        def inner() -> None:
            config = stack_config()
            platform = fake_platform(config)
            handler = PythonFunction(
                function_name,
                PythonFunctionArgs(handler="handlers.api.handler", name_prefix="ai-batch-dev"),
            )
            BatchApi("api", BatchApiArgs(platform=platform, handler=handler))

        return run_program(inner)

    first = program("api-handler").named(DEPLOYMENT, "api-deployment").inputs["triggers"]
    second = program("api-handler-2").named(DEPLOYMENT, "api-deployment").inputs["triggers"]
    assert first != second


def test_document_without_api_key_is_refused(tmp_path: Any) -> None:
    from components.api_document import OPENAPI_PATH

    text = OPENAPI_PATH.read_text()
    # Drop the security requirement of one operation and the global default.
    open_doc = text.replace("security:\n  - api_key: []\n", "", 1).replace(
        "      operationId: listWorkers\n      summary: The registered workers, their limits and "
        "input schemas\n      security:\n        - api_key: []\n",
        "      operationId: listWorkers\n      summary: open\n",
    )
    assert open_doc != text
    path = tmp_path / "open.yaml"
    path.write_text(open_doc)
    with pytest.raises(ValueError, match="GET /workers does not require the API key"):
        run_api(stack_config(), document_path=str(path))


def test_invalid_stage_name_refused() -> None:
    with pytest.raises(AwsConstraintError):
        run_api(stack_config(), stage_name="v 1")


def test_security_checklist_passes(graph: StackGraph, plain_graph: StackGraph) -> None:
    from tests.infra.test_fargate_worker import checklist_violations

    assert checklist_violations(graph, "api-") == []
    assert checklist_violations(plain_graph, "api-", "prod") == []


def test_the_api_keys_description_names_the_programs_export(prod_graph: StackGraph) -> None:
    """The key's console description tells operators how to read it: the command must name
    an export the program has (it once said ``api_key`` while the export is ``apiKey``)."""
    (key,) = prod_graph.of_type("aws:apigateway/apiKey:ApiKey")
    named = key.inputs["description"].split("pulumi stack output ", 1)[1].split()[0]
    assert named in prod_graph.exports, (named, sorted(prod_graph.exports))
