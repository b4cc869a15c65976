"""``PythonFunction``: one Lambda function with its own role and its own log group.

The code is a zip of the ``.py`` files under ``handlers/`` and ``jobcontract/`` only (no tests,
no caches, no third-party packages: boto3 comes with the runtime). The function's physical
name is fixed (``<project>-<stack>-<name>``) so its log group name is known before it exists,
and the role can be limited to that one log group instead of AWS's managed
``AWSLambdaBasicExecutionRole`` (which allows writing to every log group).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components import aws_rules, iam
from components.aws_rules import AwsConstraintError
from components.naming import ChildNames, node_resources
from jobcontract import logs

REPO_ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("handlers", "jobcontract")
RUNTIME = "python3.13"
ARCHITECTURE = "arm64"  # Graviton: about 20 % cheaper per GB-second than x86_64
ALIAS_NAME = "live"
# AWS rule: Lambda function names are 1-64 characters of [A-Za-z0-9_-].
FUNCTION_NAME_MAX = 64


@dataclass(frozen=True)
class PythonFunctionArgs:
    """Arguments of ``PythonFunction``."""

    handler: str
    """Required. Dotted handler, e.g. ``handlers.api.handler``."""
    memory: int = 256
    """MB, 128..10240. Default 256."""
    timeout: int = 30
    """Seconds, 1..900. Default 30."""
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Environment variables (never secrets: pass a secret's ARN instead). Default {}."""
    log_retention_days: int = 14
    """Retention of the function's log group. Default 14."""
    policy_statements: Sequence[iam.Statement] = ()
    """What the function may do besides writing its own logs. Default: nothing."""
    reserved_concurrency: int | None = None
    """Reserved concurrent executions. Default None (unreserved: new accounts may have a
    regional limit as low as 10, and reserving would fail the deployment there)."""
    provisioned_concurrency: int = 0
    """Warm instances on the ``live`` alias. Default 0 (no alias, no idle cost)."""
    description: str = ""
    """Shown in the console. Default empty."""
    log_level: str = "INFO"
    """Application log level, Lambda's names (DEBUG, INFO, WARN, ERROR...; WARNING is read as
    WARN). Default INFO."""
    name_prefix: str | None = None
    """Prefix of the physical name. Default ``<project>-<stack>``."""
    short_name: str | None = None
    """The function's name after the prefix (``<prefix>-<short_name>``). Default: the
    resource's logical name."""
    previous_name: str | None = None
    """The logical name an existing stack has this function under, when it was renamed: its
    children keep their old names as aliases (``components.naming``). Default ``None``."""


def code_archive(packages: Sequence[str] = CODE_PACKAGES) -> pulumi.AssetArchive:
    """Zip of the packages' ``.py`` files, without tests and caches."""
    assets: dict[str, pulumi.Asset | pulumi.Archive] = {}
    for package in packages:
        root = REPO_ROOT / package
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(REPO_ROOT)
            parts = relative.parts
            if "__pycache__" in parts or any(
                p in ("tests", "test") or p.startswith("test_") for p in parts
            ):
                continue
            assets[relative.as_posix()] = pulumi.FileAsset(str(path))
    if not assets:
        raise FileNotFoundError(f"no Python files under {packages} in {REPO_ROOT}")
    return pulumi.AssetArchive(assets)


@dataclass(frozen=True)
class PythonFunctionNodes:
    """The children of a ``PythonFunction`` (SST's ``nodes``)."""

    # One typed field per child, then ``resources``: every component's nodes class has this
    # shape (duplicates pairs them), only the children differ.
    function: aws.lambda_.Function
    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    """The role's one inline policy."""
    log_group: aws.cloudwatch.LogGroup
    alias: aws.lambda_.Alias | None
    """The ``live`` alias, with provisioned concurrency only."""
    provisioned: aws.lambda_.ProvisionedConcurrencyConfig | None

    def resources(self) -> list[pulumi.Resource]:
        return node_resources(self)


class PythonFunction(pulumi.ComponentResource):
    """One Lambda function (arm64, Python 3.13), its role and its log group."""

    # Typed attributes, as every component declares its own (duplicates pairs their shape).
    function: aws.lambda_.Function
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup
    alias: aws.lambda_.Alias | None
    policy: aws.iam.RolePolicy
    """The role's inline policy (own log group + ``policy_statements``)."""
    function_name: str
    """Physical name, known before deployment."""
    trust_policy: str
    """The role's trust policy document (Lambda may assume it)."""
    managed_policy_arns: tuple[str, ...]
    """Managed policies attached to the role: none (the inline policy is scoped to this
    function's own log group and grants, unlike ``AWSLambdaBasicExecutionRole``)."""
    invoke_arn: pulumi.Output[str]
    """What API Gateway integrates with: the ``live`` alias when provisioned, else the function."""
    target_arn: pulumi.Output[str]
    """What triggers and permissions point at (alias ARN when provisioned)."""

    def __init__(
        self,
        name: str,
        args: PythonFunctionArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("aibatch:index:PythonFunction", name, None, opts)
        prefix = args.name_prefix or f"{pulumi.get_project()}-{pulumi.get_stack()}".lower()
        self.function_name = _function_name(prefix, args.short_name or name)
        names = ChildNames(self, name, args.previous_name)
        level = _checked_log_level(name, args)
        self._log_group_and_role(names, args)
        self._function(names, args, level)
        self._live_alias(names, args)
        self.register_outputs(
            {
                "function_name": self.function.name,
                "function_arn": self.function.arn,
                "role_arn": self.role.arn,
                "log_group": self.log_group.name,
            }
        )

    @property
    def nodes(self) -> PythonFunctionNodes:
        """Every child of this function, by role."""
        # One argument per field, as every component's nodes (duplicates pairs their shape).
        return PythonFunctionNodes(
            self.function, self.role, self.policy, self.log_group, self.alias, self._provisioned
        )

    def allow_invoke(
        self,
        name: str,
        principal: str,
        source_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> aws.lambda_.Permission:
        """Let one AWS service principal invoke this function, from one source ARN only."""
        return aws.lambda_.Permission(
            name,
            action="lambda:InvokeFunction",
            function=self.function.name,
            qualifier=self.alias.name if self.alias is not None else None,
            principal=principal,
            source_arn=source_arn,
            opts=opts or pulumi.ResourceOptions(parent=self),
        )

    # --- steps ----------------------------------------------------------------------------

    def _log_group_and_role(self, names: ChildNames, args: PythonFunctionArgs) -> None:
        """The function's own log group, and its role with one inline policy: that log group
        plus the declared ``policy_statements``."""
        self.log_group = aws.cloudwatch.LogGroup(
            names.name("logs"),
            name=f"/aws/lambda/{self.function_name}",
            retention_in_days=args.log_retention_days,
            opts=names.opts("logs"),
        )
        self.trust_policy = iam.assume_role_policy("lambda.amazonaws.com")
        self.managed_policy_arns = ()
        self.role = aws.iam.Role(
            names.name("role"),
            assume_role_policy=self.trust_policy,
            description=f"Lambda {self.function_name}: own log group + declared grants only",
            opts=names.opts("role"),
        )
        self.policy = aws.iam.RolePolicy(
            names.name("policy"),
            role=self.role.id,
            policy=iam.policy_document(
                iam.log_group_write(self.log_group.arn, sid="OwnLogGroup"),
                *args.policy_statements,
            ),
            opts=names.opts("policy"),
        )

    def _function(self, names: ChildNames, args: PythonFunctionArgs, level: str) -> None:
        self.function = aws.lambda_.Function(
            names.name("function"),
            name=self.function_name,
            description=args.description,
            runtime=RUNTIME,
            architectures=[ARCHITECTURE],
            handler=args.handler,
            code=code_archive(),
            memory_size=args.memory,
            timeout=args.timeout,
            role=self.role.arn,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(args.environment))
            if args.environment
            else None,
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="JSON",
                log_group=self.log_group.name,
                application_log_level=level,
                system_log_level="WARN",
            ),
            reserved_concurrent_executions=args.reserved_concurrency,
            # provisioned concurrency needs a published version
            publish=args.provisioned_concurrency > 0,
            # The log group and the role's policy exist before the first invocation can log.
            opts=names.opts("function", depends_on=[self.log_group, self.policy]),
        )
        self.invoke_arn = self.function.invoke_arn
        self.target_arn = self.function.arn

    def _live_alias(self, names: ChildNames, args: PythonFunctionArgs) -> None:
        """With provisioned concurrency: the ``live`` alias and its warm instances, which
        API Gateway, triggers and permissions then point at instead of the function."""
        self.alias = None
        self._provisioned: aws.lambda_.ProvisionedConcurrencyConfig | None = None
        if args.provisioned_concurrency <= 0:
            return
        self.alias = aws.lambda_.Alias(
            names.name("alias"),
            name=ALIAS_NAME,
            function_name=self.function.name,
            function_version=self.function.version,
            opts=names.opts("alias"),
        )
        self._provisioned = aws.lambda_.ProvisionedConcurrencyConfig(
            names.name("provisioned"),
            function_name=self.function.name,
            qualifier=self.alias.name,
            provisioned_concurrent_executions=args.provisioned_concurrency,
            opts=names.opts("provisioned"),
        )
        self.invoke_arn = self.alias.invoke_arn
        self.target_arn = self.alias.arn


def _checked_log_level(name: str, args: PythonFunctionArgs) -> str:
    """Check the arguments against Lambda's rules (at preview); returns the log level as
    Lambda names it."""
    aws_rules.lambda_memory(args.memory, f"{name}.memory")
    aws_rules.lambda_timeout(args.timeout, f"{name}.timeout")
    aws_rules.log_retention(args.log_retention_days, f"{name}.log_retention_days")
    aws_rules.provisioned_concurrency(
        args.provisioned_concurrency, f"{name}.provisioned_concurrency"
    )
    if args.reserved_concurrency is not None and args.reserved_concurrency < max(
        args.provisioned_concurrency, 0
    ):
        # AWS rule: provisioned concurrency cannot exceed the function's reserved concurrency.
        raise AwsConstraintError(
            f"{name}.reserved_concurrency",
            args.reserved_concurrency,
            f">= provisioned concurrency ({args.provisioned_concurrency})",
        )
    # AWS rule: application_log_level is one of Lambda's names (TRACE..FATAL, "WARN" not
    # "WARNING"), and applies only with the JSON log format; jobcontract.logs holds them.
    level = logs.level_name(args.log_level)
    if level is None:
        raise AwsConstraintError(f"{name}.log_level", args.log_level, "/".join(logs.LEVELS))
    return level


def _function_name(prefix: str, name: str) -> str:
    full = f"{prefix}-{name}"
    if len(full) > FUNCTION_NAME_MAX or not all(c.isalnum() or c in "-_" for c in full):
        raise AwsConstraintError(
            "function name", full, f"1-{FUNCTION_NAME_MAX} characters of [A-Za-z0-9_-]"
        )
    return full
