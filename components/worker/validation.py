"""Pure validation of a worker's arguments: everything checked before any resource exists.

No Pulumi engine is needed (plain functions over the args dataclass; the tests call them
directly), and nothing here imports Pulumi, so the policy pack (``policy/rules.py``) imports
``looks_secret`` from here: the component and the pack refuse the same environment names.
A mistake fails the program with ``AwsConstraintError`` naming the argument and the rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jobcontract
from components import aws_rules
from components.aws_rules import AwsConstraintError, within
from jobcontract import Env
from jobcontract.registration import DEFAULT_INPUT_SCHEMA, schema_json
from jobcontract.schema import SchemaError, check_schema

if TYPE_CHECKING:
    from components.worker.args import FargateWorkerArgs

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
INPUT_SCHEMA_FILE = "input_schema.json"  # in the worker folder, read by default
MAX_INPUT_SCHEMA_BYTES = 32 * 1024  # our rule: the registration item stays far below 400 KB
REUSE_IDLE_RANGE = (0, 3600)  # our rule: an idle task costs Fargate time; an hour is plenty
TIMEOUT_RANGE = (60, 86_400)  # our rule: the sweep fails longer runs; split day-long work
MAX_ATTEMPTS_RANGE = (1, 10)

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
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# --- the one secret-name rule (the component and the policy pack) -------------------------
# A name is split on "_" into words; one of these words marks a credential ...
SECRET_WORDS = frozenset(
    {"KEY", "TOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PWD", "PASSPHRASE",
     "CREDENTIAL", "CREDENTIALS", "APIKEY", "PRIVATE", "AUTH", "WEBHOOK"}
)  # fmt: skip
# ... and so does one of these inside a word ("DBPASSWORD", "OPENAIAPIKEY"), or a word ending
# in "TOKEN(S)" ("GITHUBTOKEN"); a word that only starts like one ("TOKENIZER", "AUTHOR",
# "KEYWORDS") does not.
SECRET_FRAGMENTS = ("PASSWORD", "PASSWD", "PASSPHRASE", "APIKEY", "SECRET", "CREDENTIAL")
SECRET_WORD_ENDINGS = ("TOKEN", "TOKENS")
# A name ending like a reference holds where the secret is, not the secret.
REFERENCE_SUFFIXES = ("_ARN", "_NAME", "_ID", "_PARAM", "_PARAMETER", "_PATH")


def looks_secret(env_name: str) -> bool:
    """True when an environment variable name suggests it carries a credential: the
    component refuses it in ``environment`` and the policy pack's ``no-plaintext-secrets``
    rule flags it in any plain environment (Lambda or container) unless the value is empty
    or an ARN."""
    upper = env_name.upper()
    if upper.endswith(REFERENCE_SUFFIXES):
        return False
    words = set(upper.split("_"))
    return (
        bool(words & SECRET_WORDS)
        or any(f in upper for f in SECRET_FRAGMENTS)
        or any(w.endswith(SECRET_WORD_ENDINGS) for w in words)
    )


# AWS rule: ECS secrets valueFrom is a Secrets Manager secret ARN (optionally with
# ":json-key:version-stage:version-id") or an SSM parameter ARN (or name in the same region;
# we require the ARN so the execution role can be scoped to it).
SECRET_ARN = re.compile(
    r"^arn:(aws[a-z-]*):secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+(:.*)?$"
)
SSM_ARN = re.compile(r"^arn:(aws[a-z-]*):ssm:[a-z0-9-]+:\d{12}:parameter/[A-Za-z0-9/_.-]+$")
# AWS rule: IAM role names are at most 64 characters; ECS family names at most 255 of
# [A-Za-z0-9_-]; ECR repository names are lowercase [a-z0-9._/-], 2..256 characters.
ROLE_NAME_MAX = 64
_FAMILY = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_ECR_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


def secret_resource_arn(value_from: str) -> str:
    """The IAM resource of an ECS ``valueFrom``: a Secrets Manager ARN without the
    ``:json-key:stage:version`` suffix, or the SSM parameter ARN as is."""
    if SECRET_ARN.match(value_from):
        return ":".join(value_from.split(":")[:7])
    return value_from


@dataclass(frozen=True)
class Validated:
    """The checked sizes, paths and names of one worker."""

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


def validate(name: str, args: FargateWorkerArgs, name_prefix: str) -> Validated:
    """Every check of a Fargate worker's arguments, in the order a reader meets them."""
    aws_rules.worker_name(name, "worker name")
    cpu, memory, max_cpu, max_memory = _fargate_sizes(name, args)
    architecture = aws_rules.fargate_architecture(args.architecture, f"{name}: architecture")
    _limits(name, args)
    _environment(name, args)
    _secrets(name, args)
    source = _source(name, args)
    schema_text = _input_schema(name, args, source)
    dockerfile = _dockerfile(name, source)
    context = REPO_ROOT if source.resolve().is_relative_to(REPO_ROOT) else source
    family, task_role, exec_role = _names(name, name_prefix)
    # Keyword construction of the record, field by field (as the instance checks build theirs).
    return Validated(
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
        input_schema_json=schema_text,
    )


def _fargate_sizes(name: str, args: FargateWorkerArgs) -> tuple[int, int, int, int]:
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
    return cpu, memory, max_cpu, max_memory


def _limits(name: str, args: FargateWorkerArgs) -> None:
    lo, hi = TIMEOUT_RANGE
    within(args.timeout_seconds, lo, hi, f"{name}: timeout_seconds", f"{lo}..{hi}")
    lo, hi = MAX_ATTEMPTS_RANGE
    within(args.max_attempts, lo, hi, f"{name}: max_attempts", f"{lo}..{hi}")
    if args.max_concurrency < 1:
        raise AwsConstraintError(f"{name}: max_concurrency", args.max_concurrency, ">= 1")
    reuse = args.reuse_idle_seconds
    if reuse is not None:
        lo, hi = REUSE_IDLE_RANGE
        if isinstance(reuse, bool) or not (isinstance(reuse, int) and lo <= reuse <= hi):
            raise AwsConstraintError(
                f"{name}: reuse_idle_seconds",
                reuse,
                f"None (default {jobcontract.DEFAULT_REUSE_IDLE_SECONDS} s) or whole seconds "
                f"{lo}..{hi} (0 = one job per task)",
            )
    if args.spot_share is not None:
        aws_rules.percent(args.spot_share, f"{name}: spot_share")
    if args.keep_images is not None:
        aws_rules.keep_images(args.keep_images, f"{name}: keep_images")


def _environment(name: str, args: FargateWorkerArgs) -> None:
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


def _secrets(name: str, args: FargateWorkerArgs) -> None:
    for env_name, arn in args.secrets.items():
        if not _ENV_NAME.match(env_name) or env_name in RESERVED_ENV:
            raise AwsConstraintError(f"{name}: secrets", env_name, "a free env var name")
        if env_name in args.environment:
            raise AwsConstraintError(f"{name}: secrets", env_name, "not also in `environment`")
        if not (SECRET_ARN.match(arn) or SSM_ARN.match(arn)):
            raise AwsConstraintError(
                f"{name}: secrets[{env_name}]",
                arn,
                "a Secrets Manager secret ARN or an SSM parameter ARN",
            )


def _source(name: str, args: FargateWorkerArgs) -> Path:
    source = Path(args.source_dir) if args.source_dir else Path("workers") / name
    return source if source.is_absolute() else REPO_ROOT / source


def folder_schema(source: Path) -> dict[str, Any]:
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


def _input_schema(name: str, args: FargateWorkerArgs, source: Path) -> str:
    """The schema's canonical text (as the registration holds it)."""
    given: Mapping[str, Any] | None = args.input_schema
    schema = dict(given) if given is not None else folder_schema(source)
    if schema.get("type") != "object":
        raise AwsConstraintError(f"{name}: input_schema.type", schema.get("type"), "'object'")
    try:  # the API checks inputs with this validator: only its JSON-schema subset works
        check_schema(schema)
    except SchemaError as exc:
        raise AwsConstraintError(f"{name}: input_schema", schema, str(exc)) from None
    text = schema_json(schema)
    if len(text.encode()) > MAX_INPUT_SCHEMA_BYTES:
        raise AwsConstraintError(
            f"{name}: input_schema", f"{len(text)} bytes", f"<= {MAX_INPUT_SCHEMA_BYTES}"
        )
    return text


def _dockerfile(name: str, source: Path) -> Path:
    dockerfile = source / "Dockerfile"
    if not dockerfile.is_file():
        raise AwsConstraintError(
            f"{name}: source_dir",
            str(source),
            f"a folder with a Dockerfile (missing: {dockerfile})",
        )
    return dockerfile


def _names(name: str, name_prefix: str) -> tuple[str, str, str]:
    """Task family (= ECR repository name) and the two role names."""
    family = f"{name_prefix}-{name}"
    if not _FAMILY.match(family):
        raise AwsConstraintError(f"{name}: task family", family, "1-255 of [A-Za-z0-9_-]")
    if not _ECR_NAME.match(family) or len(family) > 256:
        raise AwsConstraintError(f"{name}: ECR repository", family, "lowercase [a-z0-9._/-]")
    task_role, exec_role = f"{family}-task", f"{family}-exec"
    if len(exec_role) > ROLE_NAME_MAX:
        raise AwsConstraintError(f"{name}: role name", exec_role, "at most 64 characters")
    return family, task_role, exec_role
