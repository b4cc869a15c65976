"""``FargateWorker``: everything one AI worker needs. Declaring one is all it takes to add a worker.

What it makes, for a worker ``<name>`` whose code lives in ``workers/<name>/`` (``Dockerfile``
required):
- an ECR repository (scan on push, AES256, lifecycle policy keeping the last N images) and the
  image built from ``workers/<name>/Dockerfile`` (build context: the repository root, so the
  image can copy ``workers/runtime`` and ``jobcontract``) for the task's CPU architecture,
  pushed with pulumi-docker; the task definition pins it **by digest**;
- a log group with the platform's retention; a Fargate task definition (``awsvpc``, runtime
  platform, validated cpu/memory pair, ``stopTimeout`` 120 s so a Spot interruption can save
  progress, read-only root filesystem with a writable ``/tmp``, secrets through ``secrets``);
- an execution role (pull from its repository, write its log group, read only its secrets) and
  a task role (only its own job rows via ``dynamodb:LeadingKeys``, only its own S3 prefixes,
  plus the statements it declares, e.g. ``bedrock:InvokeModel`` on named models);
- its registration: the ``worker#<name>`` item in the jobs table (what the API and launcher
  read), whose ``queue_url`` / ``dlq_url`` are the stack's one launch queue
  (``ControlPlane.launch_queue``, ``<prefix>-launch.fifo``): a worker has no queue, trigger or
  DLQ alarm of its own. It adds no policy to the control-plane roles: ``ControlPlane`` grants
  once per stack (RunTask on ``<prefix>-*`` families in this cluster, PassRole on the roles
  under this stack's path ``/aibatch/<prefix>/workers/``, SendMessage on the launch queue), so
  their policies do not grow with the number of workers. Both roles live under that path
  (changing a role's path replaces the role; the logical names stay the same).

Idle cost: only the ECR storage of the kept images (``ecr.keepImages``, default 3; about
$0.013/month for a seed-sized image, see ``batchctl cost``); nothing polls, alarms or runs for a
worker until a job arrives. A task costs Fargate per-second pricing (ARM and Spot are the cheap
corner); with warm reuse (``reuse_idle_seconds``) a task that finished a job takes the next one
of its worker instead of a new task paying its start-up and one-minute minimum again.

Usage (in ``__main__.py``)::

    FargateWorker("image-alt-generator", FargateWorkerArgs(
        platform=platform, description="Alt text for images", cpu=1024, memory=2048,
        secrets={"OPENAI_KEY": "arn:aws:secretsmanager:...:secret:openai-AbCdEf"},
        policy_statements=iam.bedrock_invoke(model_id, region, account_id)))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

import jobcontract
from components import aws_rules, iam
from components.aws_rules import AwsConstraintError
from components.config import StackConfig
from components.job_queue import JobQueue
from jobcontract import Env, WorkerField
from jobcontract.schema import SchemaError, check_schema

if TYPE_CHECKING:
    from components.platform import BatchPlatform

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT_SCHEMA: Mapping[str, Any] = {"type": "object"}
INPUT_SCHEMA_FILE = "input_schema.json"  # in the worker folder, read by default
REGISTRATION_CREATED_AT = "1970-01-01T00:00:00.000000Z"  # fixed: the item must not churn
MAX_INPUT_SCHEMA_BYTES = 32 * 1024  # our rule: the registration item stays far below 400 KB
REUSE_IDLE_RANGE = (0, 3600)  # our rule: an idle task costs Fargate time; an hour is plenty
TIMEOUT_RANGE = (60, 86_400)  # our rule: the sweep fails longer runs; split day-long work
MAX_ATTEMPTS_RANGE = (1, 10)
STOP_TIMEOUT_SECONDS = jobcontract.TASK_STOP_TIMEOUT_SECONDS  # the runtime sizes model calls by it

# Environment keys the component sets itself (or the launcher sets per run): not overridable.
RESERVED_ENV = frozenset(
    {
        Env.STACK,
        Env.JOBS_TABLE,
        Env.RESULTS_BUCKET,
        Env.WORKER_NAME,
        Env.WORKER_TIMEOUT_SECONDS,
        Env.WORKER_MAX_ATTEMPTS,
        Env.JOB_TTL_DAYS,
        Env.JOB_ID,
        Env.JOB_ATTEMPT,
        Env.SCHEDULED_INPUT,
        Env.TASK_ARN,
        Env.REUSE_IDLE_SECONDS,
    }
)
# With a read-only root filesystem, point caches and temp files at the writable /tmp volume.
READONLY_ROOT_ENV: Mapping[str, str] = {
    "TMPDIR": "/tmp",
    "XDG_CACHE_HOME": "/tmp/.cache",
    "PYTHONDONTWRITEBYTECODE": "1",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_WORDS = frozenset(
    {"KEY", "TOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PWD", "CREDENTIAL",
     "CREDENTIALS", "APIKEY", "PRIVATE", "AUTH"}
)  # fmt: skip
_POINTER_SUFFIXES = ("_ARN", "_NAME")
# A worker reads and writes its own job rows (conditional updates); it never deletes or queries.
WORKER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
SSM_READ_ACTIONS = ("ssm:GetParameters",)
TAG_AT_LAUNCH_ACTIONS = ("ecs:TagResource",)  # names of a secret, not the secret itself
# AWS rule: ECS secrets valueFrom is a Secrets Manager secret ARN (optionally with
# ":json-key:version-stage:version-id") or an SSM parameter ARN (or name in the same region;
# we require the ARN so the execution role can be scoped to it).
_SECRET_ARN = re.compile(
    r"^arn:(aws[a-z-]*):secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+(:.*)?$"
)
_SSM_ARN = re.compile(r"^arn:(aws[a-z-]*):ssm:[a-z0-9-]+:\d{12}:parameter/[A-Za-z0-9/_.-]+$")
# AWS rule: IAM role names are at most 64 characters; ECS family names at most 255 of
# [A-Za-z0-9_-]; ECR repository names are lowercase [a-z0-9._/-], 2..256 characters.
_ROLE_NAME_MAX = 64
_FAMILY = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_ECR_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


@dataclass(frozen=True, kw_only=True)
class FargateWorkerArgs:
    """Arguments of ``FargateWorker``. Only ``platform`` is required."""

    platform: BatchPlatform
    """The shared platform (cluster, table, bucket, control-plane functions). Required."""
    description: str = ""
    """One line shown by ``GET /workers``. Default ``""``. Example: ``"Alt text for images"``."""
    source_dir: str | None = None
    """Folder holding the worker's ``Dockerfile`` (relative to the repository root or
    absolute). Default ``workers/<name>``."""
    cpu: int = 1024
    """Default task cpu units (Fargate pair with ``memory``). Default ``1024`` (1 vCPU)."""
    memory: int = 2048
    """Default task memory in MiB. Default ``2048``. Example: ``4096`` with ``cpu=2048``."""
    architecture: str = "ARM64"
    """``"ARM64"`` (default: about 20 % cheaper, Spot-capable) or ``"X86_64"``."""
    max_cpu: int | None = None
    """Largest cpu a job may ask for. Default ``None`` (= ``cpu``: no per-job override)."""
    max_memory: int | None = None
    """Largest memory a job may ask for. Default ``None`` (= ``memory``)."""
    timeout_seconds: int = 3600
    """Run time after which a job fails (worker stops itself; the sweep enforces it).
    Default ``3600``; allowed 60..86400."""
    max_attempts: int = jobcontract.DEFAULT_MAX_ATTEMPTS
    """Runs per job before it is FAILED (Spot interruptions and crashes retry). Default ``3``;
    allowed 1..10."""
    max_concurrency: int = 10
    """Most tasks of this worker at once (the launcher holds back beyond it). Default ``10``."""
    reuse_idle_seconds: int | None = None
    """Warm reuse: seconds a task that finished a job waits for this worker's next job before
    it exits (0..3600; ``0`` = one job per task). Default ``None``:
    ``jobcontract.DEFAULT_REUSE_IDLE_SECONDS`` (30 s, about a task's start-up, so waiting costs
    no more than a new task would). The stack setting ``taskReuse: false`` makes it 0 for every
    worker. The worker's code needs no change either way."""
    spot_share: int | None = None
    """Percent of tasks on Fargate Spot (0..100). Default ``None``: the platform's default."""
    spot_fallback: bool | None = None
    """Retry on on-demand Fargate when Spot has no capacity. Default ``None``: the platform's
    default."""
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Plain environment variables. Default ``{}``. Names that look like secrets (KEY, TOKEN,
    SECRET, PASSWORD...) are refused: use ``secrets``. Example: ``{"BATCH_MODEL_ID": "..."}``."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Env var -> Secrets Manager secret ARN or SSM parameter ARN, injected by ECS at start;
    the execution role may read exactly these. Default ``{}``. Example:
    ``{"NOTION_TOKEN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:notion-AbCdEf"}``.
    A secret encrypted with a customer-managed KMS key also needs ``kms:Decrypt`` (not granted)."""
    policy_statements: Sequence[iam.Statement] = ()
    """Extra task-role statements (``components.iam.Statement``, which refuses wildcard
    actions and ``Resource: "*"`` on scoped actions). Default none. Example:
    ``iam.bedrock_invoke("amazon.nova-lite-v1:0", region, account_id)``."""
    input_schema: Mapping[str, Any] | None = None
    """JSON schema of a job's ``input`` (checked by the API). Default ``None``: the worker
    folder's ``input_schema.json`` (so the schema lives beside the code that reads the input),
    or ``{"type": "object"}`` when the folder has none."""
    keep_images: int | None = None
    """Images the ECR lifecycle policy keeps (1..1000). Default ``None``: the stack's
    ``ecr.keepImages``."""
    base_image: str | None = None
    """``BASE_IMAGE`` build argument for the Dockerfile. Default ``None`` (Dockerfile default).
    Example: ``"public.ecr.aws/docker/library/python:3.13-slim"``."""
    readonly_root_filesystem: bool = True
    """Mount the container's root filesystem read-only (``/tmp`` stays writable). Default
    ``True``; turn off only for a tool that must write elsewhere."""


@dataclass(frozen=True)
class _Validated:
    cpu: int
    memory: int
    max_cpu: int
    max_memory: int
    architecture: str
    dockerfile: Path
    context: Path
    family: str
    repo_name: str
    task_role_name: str
    execution_role_name: str
    input_schema_json: str


def looks_secret(env_name: str) -> bool:
    """True when an environment variable name suggests it carries a credential."""
    upper = env_name.upper()
    if upper.endswith(_POINTER_SUFFIXES):
        return False
    words = set(upper.split("_"))
    return bool(words & _SECRET_WORDS) or any(w in upper for w in ("PASSWORD", "APIKEY", "SECRET"))


def secret_resource_arn(value_from: str) -> str:
    """The IAM resource of an ECS ``valueFrom``: a Secrets Manager ARN without the
    ``:json-key:stage:version`` suffix, or the SSM parameter ARN as is."""
    if _SECRET_ARN.match(value_from):
        return ":".join(value_from.split(":")[:7])
    return value_from


def _folder_schema(source: Path) -> dict[str, Any]:
    """The worker folder's ``input_schema.json``, or the permissive default."""
    path = source / INPUT_SCHEMA_FILE
    if not path.is_file():
        return dict(DEFAULT_INPUT_SCHEMA)
    try:
        loaded = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AwsConstraintError(str(path), "invalid JSON", f"a JSON schema ({exc})") from None
    if not isinstance(loaded, dict):
        raise AwsConstraintError(str(path), type(loaded).__name__, "a JSON object")
    return loaded


def _validate(name: str, args: FargateWorkerArgs, name_prefix: str) -> _Validated:
    aws_rules.worker_name(name, "worker name")
    cpu, memory = aws_rules.fargate_pair(args.cpu, args.memory, f"{name}: cpu/memory")
    max_cpu = args.max_cpu if args.max_cpu is not None else cpu
    max_memory = args.max_memory if args.max_memory is not None else memory
    aws_rules.fargate_pair(max_cpu, max_memory, f"{name}: max_cpu/max_memory")
    if max_cpu < cpu or max_memory < memory:
        raise AwsConstraintError(
            f"{name}: max_cpu/max_memory",
            (max_cpu, max_memory),
            f"at least the defaults ({cpu}, {memory})",
        )
    architecture = aws_rules.fargate_architecture(args.architecture, f"{name}: architecture")
    lo, hi = TIMEOUT_RANGE
    if not lo <= args.timeout_seconds <= hi:
        raise AwsConstraintError(f"{name}: timeout_seconds", args.timeout_seconds, f"{lo}..{hi}")
    lo, hi = MAX_ATTEMPTS_RANGE
    if not lo <= args.max_attempts <= hi:
        raise AwsConstraintError(f"{name}: max_attempts", args.max_attempts, f"{lo}..{hi}")
    if args.max_concurrency < 1:
        raise AwsConstraintError(f"{name}: max_concurrency", args.max_concurrency, ">= 1")
    if args.reuse_idle_seconds is not None:
        lo, hi = REUSE_IDLE_RANGE
        if isinstance(args.reuse_idle_seconds, bool) or not (
            isinstance(args.reuse_idle_seconds, int) and lo <= args.reuse_idle_seconds <= hi
        ):
            raise AwsConstraintError(
                f"{name}: reuse_idle_seconds",
                args.reuse_idle_seconds,
                f"None (default {jobcontract.DEFAULT_REUSE_IDLE_SECONDS} s) or whole seconds "
                f"{lo}..{hi} (0 = one job per task)",
            )
    if args.spot_share is not None:
        aws_rules.percent(args.spot_share, f"{name}: spot_share")
    if args.keep_images is not None:
        aws_rules.keep_images(args.keep_images, f"{name}: keep_images")

    for env_name in args.environment:
        if not _ENV_NAME.match(env_name):
            raise AwsConstraintError(f"{name}: environment", env_name, "[A-Za-z_][A-Za-z0-9_]*")
        if env_name in RESERVED_ENV:
            raise AwsConstraintError(
                f"{name}: environment", env_name, "a name the component does not set itself"
            )
        if looks_secret(env_name):
            raise AwsConstraintError(
                f"{name}: environment",
                env_name,
                "non-secret settings only; pass credentials through `secrets` "
                "(env var -> Secrets Manager/SSM ARN) so they never sit in the task definition",
            )
    for env_name, arn in args.secrets.items():
        if not _ENV_NAME.match(env_name) or env_name in RESERVED_ENV:
            raise AwsConstraintError(f"{name}: secrets", env_name, "a free env var name")
        if env_name in args.environment:
            raise AwsConstraintError(f"{name}: secrets", env_name, "not also in `environment`")
        if not (_SECRET_ARN.match(arn) or _SSM_ARN.match(arn)):
            raise AwsConstraintError(
                f"{name}: secrets[{env_name}]",
                arn,
                "a Secrets Manager secret ARN or an SSM parameter ARN",
            )

    source = Path(args.source_dir) if args.source_dir else Path("workers") / name
    source = source if source.is_absolute() else REPO_ROOT / source
    schema = dict(args.input_schema) if args.input_schema is not None else _folder_schema(source)
    if schema.get("type") != "object":
        raise AwsConstraintError(f"{name}: input_schema.type", schema.get("type"), "'object'")
    try:  # the API checks inputs with this validator: only its JSON-schema subset works
        check_schema(schema)
    except SchemaError as exc:
        raise AwsConstraintError(f"{name}: input_schema", schema, str(exc)) from None
    schema_json = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    if len(schema_json.encode()) > MAX_INPUT_SCHEMA_BYTES:
        raise AwsConstraintError(
            f"{name}: input_schema", f"{len(schema_json)} bytes", f"<= {MAX_INPUT_SCHEMA_BYTES}"
        )

    dockerfile = source / "Dockerfile"
    if not dockerfile.is_file():
        raise AwsConstraintError(
            f"{name}: source_dir",
            str(source),
            f"a folder with a Dockerfile (missing: {dockerfile})",
        )
    context = REPO_ROOT if source.resolve().is_relative_to(REPO_ROOT) else source

    family = f"{name_prefix}-{name}"
    if not _FAMILY.match(family):
        raise AwsConstraintError(f"{name}: task family", family, "1-255 of [A-Za-z0-9_-]")
    if not _ECR_NAME.match(family) or len(family) > 256:
        raise AwsConstraintError(f"{name}: ECR repository", family, "lowercase [a-z0-9._/-]")
    task_role, exec_role = f"{family}-task", f"{family}-exec"
    if len(exec_role) > _ROLE_NAME_MAX:
        raise AwsConstraintError(f"{name}: role name", exec_role, "at most 64 characters")
    return _Validated(
        cpu=cpu,
        memory=memory,
        max_cpu=max_cpu,
        max_memory=max_memory,
        architecture=architecture,
        dockerfile=dockerfile,
        context=context,
        family=family,
        repo_name=family,
        task_role_name=task_role,
        execution_role_name=exec_role,
        input_schema_json=schema_json,
    )


def capacity_strategy(config: StackConfig, spot_share: int) -> list[dict[str, Any]]:
    """ECS capacity provider strategy for a Spot percentage, by the stack's own rule
    (``StackConfig.capacity_strategy``), so a worker override and the default agree."""
    shares = dataclasses.replace(config, spot_share=spot_share).capacity_strategy()
    return [
        {"capacityProvider": s.capacity_provider, "weight": s.weight, "base": s.base}
        for s in shares
    ]


def source_fingerprint(*folders: Path) -> str:
    """Short content hash of the folders an image is built from (a readable image tag)."""
    digest = hashlib.sha256()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if {"__pycache__", "tests"} & set(
                path.relative_to(folder).parts
            ) or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _ecs_tasks_trust(
    account: pulumi.Output[str], arn_prefix: pulumi.Output[str]
) -> pulumi.Output[str]:
    # Confused-deputy guard ECS recommends for task roles ("Task IAM role" trust policy).
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": account},
                        "ArnLike": {"aws:SourceArn": pulumi.Output.concat(arn_prefix, ":*")},
                    },
                }
            ],
        }
    )


class FargateWorker(pulumi.ComponentResource):
    """One worker: image, task definition, roles and registration."""

    worker_name: str
    launch_queue: JobQueue
    """The stack's launch queue this worker's jobs go through (shared, not the worker's)."""
    reuse_idle_seconds: int
    """The warm-reuse window in effect (0 = off)."""
    iam_ledger: iam.InlinePolicyLedger
    """IAM quotas of the worker's two roles (checked before the registration is written)."""
    repository: aws.ecr.Repository
    image: docker.Image
    log_group: aws.cloudwatch.LogGroup
    task_definition: aws.ecs.TaskDefinition
    task_role: aws.iam.Role
    execution_role: aws.iam.Role
    registration: aws.dynamodb.TableItem
    capacity_provider_strategy: list[dict[str, Any]]
    spot_fallback: bool
    architecture: str
    family: str
    input_schema: dict[str, Any]

    def __init__(
        self, name: str, args: FargateWorkerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("aibatch:index:FargateWorker", name, None, opts)
        platform = args.platform
        v = _validate(name, args, platform.name_prefix)
        self.worker_name = name
        self.architecture = v.architecture
        self.family = v.family
        self.input_schema = json.loads(v.input_schema_json)
        self.reuse_idle_seconds = (
            0
            if not platform.config.task_reuse
            else args.reuse_idle_seconds
            if args.reuse_idle_seconds is not None
            else jobcontract.DEFAULT_REUSE_IDLE_SECONDS
        )
        child = pulumi.ResourceOptions(parent=self)
        keep_images = (
            args.keep_images if args.keep_images is not None else platform.config.keep_images
        )
        self.capacity_provider_strategy = (
            capacity_strategy(platform.config, args.spot_share)
            if args.spot_share is not None
            else [dict(s) for s in platform.capacity_provider_strategy()]
        )
        self.spot_fallback = (
            args.spot_fallback if args.spot_fallback is not None else platform.config.spot_fallback
        )

        identity = aws.get_caller_identity_output()
        region = aws.get_region_output().region
        partition = aws.get_partition_output().partition
        account = identity.account_id
        ecs_arn_prefix = pulumi.Output.concat("arn:", partition, ":ecs:", region, ":", account)

        # --- image ------------------------------------------------------------------------
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            name=v.repo_name,
            # Tags are informative (source hash); the task definition pins the digest, so a
            # rebuilt image never changes what an existing revision runs.
            image_tag_mutability="MUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
            ],
            force_delete=not platform.protect,
            opts=child,
        )
        # AWS rule (ECR user guide, "Lifecycle policy properties"): rules apply by ascending
        # rulePriority, and the tagStatus "any" rule must have the highest priority. An image
        # rebuilt under the same source tag leaves its predecessor untagged: gone after a day,
        # so a worker's idle cost is its kept images' storage and nothing else.
        aws.ecr.LifecyclePolicy(
            f"{name}-repo-lifecycle",
            repository=self.repository.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": "expire untagged images after a day",
                            "selection": {
                                "tagStatus": "untagged",
                                "countType": "sinceImagePushed",
                                "countUnit": "days",
                                "countNumber": 1,
                            },
                            "action": {"type": "expire"},
                        },
                        {
                            "rulePriority": 2,
                            "description": f"keep the last {keep_images} images",
                            "selection": {
                                "tagStatus": "any",
                                "countType": "imageCountMoreThan",
                                "countNumber": keep_images,
                            },
                            "action": {"type": "expire"},
                        },
                    ]
                }
            ),
            opts=child,
        )
        creds = aws.ecr.get_authorization_token_output(registry_id=self.repository.registry_id)
        tag = source_fingerprint(
            v.dockerfile.parent, REPO_ROOT / "workers" / "runtime", REPO_ROOT / "jobcontract"
        )
        build_args = {"BASE_IMAGE": args.base_image} if args.base_image else None
        self.image = docker.Image(
            f"{name}-image",
            image_name=self.repository.repository_url.apply(lambda url: f"{url}:{tag}"),
            build=docker.DockerBuildArgs(
                context=str(v.context),
                dockerfile=str(v.dockerfile),
                platform=aws_rules.docker_platform(v.architecture),
                args=build_args,
            ),
            registry=docker.RegistryArgs(
                server=self.repository.repository_url,
                username=creds.user_name,
                password=pulumi.Output.secret(creds.password),
            ),
            opts=child,
        )

        # --- logs and roles -----------------------------------------------------------------
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aibatch/{platform.name_prefix}/workers/{name}",
            retention_in_days=aws_rules.log_retention(platform.log_retention_days),
            opts=child,
        )
        exec_trust = iam.assume_role_policy("ecs-tasks.amazonaws.com")
        task_trust = _ecs_tasks_trust(account, ecs_arn_prefix)
        self.execution_role = aws.iam.Role(
            f"{name}-exec-role",
            name=v.execution_role_name,
            description=f"ECS execution role of worker {name}: image pull, logs, its secrets",
            # ECS documents the execution role's trust without conditions (the source keys are
            # documented for task roles only); a key it does not send would stop every task.
            assume_role_policy=exec_trust,
            # The launcher may pass exactly the roles under this stack's path.
            path=iam.worker_role_path(platform.name_prefix),
            opts=child,
        )
        self.task_role = aws.iam.Role(
            f"{name}-task-role",
            name=v.task_role_name,
            path=iam.worker_role_path(platform.name_prefix),
            description=f"Task role of worker {name}: its job rows and S3 prefixes only",
            assume_role_policy=task_trust,
            opts=child,
        )
        exec_policy = aws.iam.RolePolicy(
            f"{name}-exec-policy",
            role=self.execution_role.id,
            policy=iam.policy_document(*self._execution_statements(args)),
            opts=child,
        )
        task_policy = aws.iam.RolePolicy(
            f"{name}-task-policy",
            role=self.task_role.id,
            policy=iam.policy_document(*self._task_statements(name, args)),
            opts=child,
        )

        # IAM quotas of the worker's own roles (policy_statements can grow the task role's):
        # the registration below fails the program before IAM would refuse either role.
        self.iam_ledger = iam.InlinePolicyLedger()
        for role_name, trust, policy in (
            (v.execution_role_name, exec_trust, exec_policy),
            (v.task_role_name, task_trust, task_policy),
        ):
            self.iam_ledger.add(role_name, policy.policy)
            self.iam_ledger.trust(role_name, trust)
            self.iam_ledger.managed(role_name, ())  # none attached: every grant is inline

        # --- task definition ----------------------------------------------------------------
        environment: dict[str, pulumi.Input[str]] = {
            Env.STACK: pulumi.get_stack(),
            Env.JOBS_TABLE: platform.jobs_table.name,
            Env.RESULTS_BUCKET: platform.results_bucket.bucket,
            Env.WORKER_NAME: name,
            Env.WORKER_TIMEOUT_SECONDS: str(args.timeout_seconds),
            # A scheduled run records its own job from these (no registration read).
            Env.WORKER_MAX_ATTEMPTS: str(args.max_attempts),
            Env.JOB_TTL_DAYS: str(platform.config.job_ttl_days),
            Env.MODEL_BACKEND: "bedrock",
            Env.MODEL_ID: platform.config.bedrock_model_id,
            Env.LOG_LEVEL: platform.config.log_level,
            Env.REUSE_IDLE_SECONDS: str(self.reuse_idle_seconds),
            **(READONLY_ROOT_ENV if args.readonly_root_filesystem else {}),
            **dict(args.environment),
        }
        secrets = [
            {"name": env_name, "valueFrom": arn} for env_name, arn in sorted(args.secrets.items())
        ]
        container = {
            "name": jobcontract.CONTAINER_NAME,
            "image": self.image.repo_digest,
            "essential": True,
            # AWS rule: Fargate caps stopTimeout at 120 s; Spot gives 120 s after SIGTERM.
            "stopTimeout": aws_rules.stop_timeout(STOP_TIMEOUT_SECONDS),
            "readonlyRootFilesystem": args.readonly_root_filesystem,
            "mountPoints": (
                [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}]
                if args.readonly_root_filesystem
                else []
            ),
            "environment": [{"name": k, "value": environment[k]} for k in sorted(environment)],
            "secrets": secrets,
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": self.log_group.name,
                    "awslogs-region": region,
                    "awslogs-stream-prefix": "job",
                    "mode": "non-blocking",
                },
            },
        }
        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=v.family,
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(v.cpu),
            memory=str(v.memory),
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture=v.architecture
            ),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            container_definitions=pulumi.Output.json_dumps([container]),
            volumes=(
                [aws.ecs.TaskDefinitionVolumeArgs(name="tmp")]
                if args.readonly_root_filesystem
                else None
            ),
            # Jobs are pinned to the revision current at submit time: keep old revisions
            # ACTIVE (AWS cannot run new tasks from an INACTIVE revision). Revisions are free.
            skip_destroy=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[exec_policy]),
        )

        # --- registration -------------------------------------------------------------------
        functions = platform.functions
        launcher = functions.launcher
        self.launch_queue = functions.launch_queue
        # The control plane may already enqueue and run this worker (stack-wide grants, whose
        # size does not depend on the workers). The guard still fails the program, naming the
        # role, should any control-plane role be over one of IAM's quotas.
        ledger = functions.iam_ledger
        # The item is what makes the worker visible to the API: write it last, once the
        # control plane may actually enqueue and run it.
        self.registration = aws.dynamodb.TableItem(
            f"{name}-registration",
            table_name=platform.jobs_table.name,
            hash_key=jobcontract.Table.PK,
            item=ledger.guard(
                pulumi.Output.json_dumps(self._registration_item(name, args, v)), self.iam_ledger
            ),
            # ... and once the cluster has FARGATE/FARGATE_SPOT attached (RunTask needs them).
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    launcher.policy,
                    functions.api.policy,
                    functions.reconciler.policy,
                    functions.sweep.policy,
                    platform.capacity_providers,
                ],
            ),
        )

        self.register_outputs(
            {
                "queue_url": self.launch_queue.queue.url,
                "dlq_url": self.launch_queue.dlq.url,
                "task_definition_arn": self.task_definition.arn,
                "repository_url": self.repository.repository_url,
                "image": self.image.repo_digest,
            }
        )

    # --- policies ---------------------------------------------------------------------------
    def _execution_statements(self, args: FargateWorkerArgs) -> list[iam.Statement]:
        statements = [
            *iam.ecr_pull(self.repository.arn),
            iam.log_group_write(self.log_group.arn, sid="WriteOwnLogs"),
        ]
        sm = sorted({secret_resource_arn(a) for a in args.secrets.values() if _SECRET_ARN.match(a)})
        ssm = sorted({a for a in args.secrets.values() if _SSM_ARN.match(a)})
        if sm:
            statements.append(iam.secret_read(list(sm), sid="ReadOwnSecrets"))
        if ssm:
            statements.append(iam.Statement(SSM_READ_ACTIONS, list(ssm), sid="ReadOwnParameters"))
        return statements

    def _task_statements(self, name: str, args: FargateWorkerArgs) -> list[iam.Statement]:
        platform = args.platform
        bucket_arn = platform.results_bucket.arn
        return [
            iam.table_actions(
                WORKER_TABLE_ACTIONS,
                platform.jobs_table.arn,
                leading_keys=[jobcontract.job_pk_prefix(name) + "*"],
                sid="OwnJobRowsOnly",
            ),
            *iam.worker_dispatch(platform.jobs_table.arn, name),  # warm reuse
            iam.Statement(
                (*iam.OBJECT_WRITE_ACTIONS, *iam.OBJECT_READ_ACTIONS),
                [pulumi.Output.concat(bucket_arn, "/", jobcontract.results_prefix(name), "*")],
                sid="OwnResults",
            ),
            iam.bucket_prefix_read(bucket_arn, jobcontract.inputs_prefix(name), sid="OwnInputs"),
            # A missing input or checkpoint must answer 404 (a clear job error), not 403.
            iam.bucket_prefix_list(
                bucket_arn,
                [jobcontract.inputs_prefix(name), jobcontract.results_prefix(name)],
                sid="ListOwnPrefixes",
            ),
            *args.policy_statements,
        ]

    def _registration_item(
        self, name: str, args: FargateWorkerArgs, v: _Validated
    ) -> dict[str, Any]:
        def s(value: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
            return {"S": value}

        def n(value: int) -> dict[str, str]:
            return {"N": str(value)}

        return {
            jobcontract.Table.PK: s(jobcontract.worker_pk(name)),
            jobcontract.JobField.KIND: s(jobcontract.Table.KIND_WORKER),
            jobcontract.JobField.CREATED_AT: s(REGISTRATION_CREATED_AT),
            WorkerField.NAME: s(name),
            WorkerField.DESCRIPTION: s(args.description),
            WorkerField.TASK_DEFINITION: s(self.task_definition.arn),
            WorkerField.CONTAINER_NAME: s(jobcontract.CONTAINER_NAME),
            # Every worker's jobs go through the stack's one launch queue (the handlers send
            # to queue_url; message group = job id keeps jobs of all workers independent).
            WorkerField.QUEUE_URL: s(self.launch_queue.queue.url),
            WorkerField.DLQ_URL: s(self.launch_queue.dlq.url),
            WorkerField.CPU: n(v.cpu),
            WorkerField.MEMORY: n(v.memory),
            WorkerField.MAX_CPU: n(v.max_cpu),
            WorkerField.MAX_MEMORY: n(v.max_memory),
            WorkerField.MAX_ATTEMPTS: n(args.max_attempts),
            WorkerField.TIMEOUT_SECONDS: n(args.timeout_seconds),
            WorkerField.MAX_CONCURRENCY: n(args.max_concurrency),
            WorkerField.CAPACITY_STRATEGY: s(json.dumps(self.capacity_provider_strategy)),
            WorkerField.SPOT_FALLBACK: {"BOOL": self.spot_fallback},
            WorkerField.INPUT_SCHEMA: s(v.input_schema_json),
            WorkerField.ARCHITECTURE: s(v.architecture),
            WorkerField.REUSE_IDLE_SECONDS: n(self.reuse_idle_seconds),
        }
