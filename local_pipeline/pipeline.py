"""``LocalPipeline``: the whole stack on one machine, no AWS account.

Start order: moto server (loopback, free port) -> the stack evaluated under Pulumi mocks
(``components.offline.evaluate_stack``) -> its resources created in moto
(``local_pipeline.provision``) -> the handler environment set from the stack's own Lambda
environments -> API gateway stand-in, SQS poller (launcher), local Fargate (workers +
reconciler events), sweep timer. ``stop()`` undoes all of it in reverse and restores the
process environment, so tests can embed it::

    with LocalPipeline(stack="dev") as pipeline:
        submit(pipeline.api_url, pipeline.api_key, ...)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobcontract import Env
from local_pipeline import wakeups
from local_pipeline.api_gateway import (
    GatewayConfig,
    LocalApiGateway,
    Route,
    allowed_networks,
    gateway_responses,
    routes_from_openapi,
)
from local_pipeline.event_sources import PolledQueue, SqsPoller, Ticker, rate_seconds
from local_pipeline.fargate import (
    LocalFargate,
    default_docker_image,
    docker_available,
    missing_images,
)
from local_pipeline.lambdas import LocalLambda
from local_pipeline.provision import Provisioned, provision

log = logging.getLogger("local_pipeline")

REGION = "us-east-1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = Path("local-state")
STATE_FILE = "endpoint.json"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Process environment variables that would send boto3 somewhere other than moto.
_CLEARED_AWS_VARS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# Used when the stack has no OpenAPI document to read (never expected for a real stack).
_FALLBACK_ROUTES = [
    Route("/jobs", frozenset({"GET", "POST"})),
    Route("/workers", frozenset({"GET"})),
    Route("/uploads", frozenset({"POST"})),
    Route("/jobs/{id}/cancel", frozenset({"POST"})),
    Route("/jobs/{id}", frozenset({"GET"})),
]


class LocalPipelineError(RuntimeError):
    """The local pipeline cannot start as asked (no Docker engine, unknown stack, ...)."""


class LocalPipeline:
    """The stack's pipeline on loopback: see the module docstring."""

    def __init__(
        self,
        stack: str = "dev",
        *,
        overrides: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        max_tasks: int = 4,
        docker: bool = False,
        state_dir: Path | None = DEFAULT_STATE_DIR,
        sweep_interval: float | None = None,
        poll_interval: float = 0.2,
        redelivery_seconds: int | None = None,
        worker_env: Mapping[str, str] | None = None,
        worker_command: Callable[[str], list[str]] | None = None,
        task_startup_seconds: float = 0.0,
    ) -> None:
        self.stack = stack
        self.overrides = dict(overrides or {})
        self.host = host
        self.port = port
        self.api_key = api_key or secrets.token_urlsafe(30)
        self.max_tasks = max_tasks
        self.docker = docker
        self.state_dir = (state_dir or DEFAULT_STATE_DIR).resolve()
        self.write_state = state_dir is not None
        self.sweep_interval = sweep_interval
        self.poll_interval = poll_interval
        self.redelivery_seconds = redelivery_seconds
        self.worker_env = dict(worker_env or {})
        self.worker_command = worker_command
        self.task_startup_seconds = task_startup_seconds  # modelled Fargate start-up
        self.moto_endpoint = ""
        self.provisioned: Provisioned | None = None
        self.fargate: LocalFargate | None = None
        self.poller: SqsPoller | None = None
        self._moto: Any = None
        self._gateway: LocalApiGateway | None = None
        self._sweeper: Ticker | None = None
        self._lambdas: dict[str, LocalLambda] = {}
        self._saved_env: dict[str, str | None] = {}
        self._ecs_lock = threading.Lock()
        self._started = False

    # --- context manager -------------------------------------------------------------------
    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        if self._gateway is None:
            raise LocalPipelineError("the local pipeline is not started")
        return self._gateway.url

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    # --- start -----------------------------------------------------------------------------
    def start(self) -> LocalPipeline:
        if self.docker and not docker_available():
            raise LocalPipelineError(
                "--docker needs a running Docker engine (`docker info` failed); "
                "run without --docker to use local worker processes"
            )
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from moto.server import ThreadedMotoServer

        from components.offline import evaluate_stack
        from local_pipeline.moto_fidelity import apply_fixes

        self._started = True
        # The moto server runs in this process: skip loading EC2's AMI catalogue (seconds;
        # the stack needs only a VPC, subnets and security groups).
        self._set_env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        apply_fixes()  # DynamoDB's write isolation, which moto's threads lack
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_endpoint = f"http://{host}:{port}"
        _keep_ecs_tasks_running(self.moto_endpoint)

        try:
            graph = evaluate_stack(self.stack, self.overrides or None)
        except FileNotFoundError as exc:
            raise LocalPipelineError(f"unknown stack {self.stack!r}: {exc}") from exc
        self.provisioned = prov = provision(graph, self.moto_endpoint)
        self._lambdas = {name: LocalLambda(fn) for name, fn in prov.functions.items()}
        if self.docker:
            self._check_images(sorted(prov.workers))

        stack_settings = _stack_settings(self.stack, self.overrides)
        document = _openapi_document(graph)
        config = GatewayConfig(
            routes=routes_from_openapi(document) or _FALLBACK_ROUTES,
            responses=gateway_responses(document),
            api_key=self.api_key,
            stage=stack_settings.get("stage", "v1"),
            allowed_ips=allowed_networks(stack_settings.get("allowed_ips", [])),
        )
        api = self._lambda_by_role("api")
        self._gateway = LocalApiGateway(
            config, api.invoke, host=self.host, port=self.port, admin=self._admin
        )
        self._set_process_env(prov)

        ecs = self.client("ecs")
        self.fargate = LocalFargate(
            ecs=_Locked(ecs, self._ecs_lock),
            cluster_arns=list(prov.cluster_arns.values()),
            base_env={**self.aws_env(), **self.worker_env},
            logs_dir=self.logs_dir,
            deliver=self.deliver_ecs_event,
            workers=prov.workers,
            max_tasks=self.max_tasks,
            docker=self.docker,
            command=self.worker_command,
            poll_interval=self.poll_interval,
            startup_seconds=self.task_startup_seconds,
        )
        self.poller = SqsPoller(
            self.client("sqs"),
            [
                PolledQueue(
                    s.queue_url,
                    s.queue_arn,
                    s.batch_size,
                    self._lambdas[s.function].invoke,
                    max_concurrency=s.max_concurrency,
                )
                for s in prov.event_sources
            ],
            region=REGION,
            poll_interval=self.poll_interval,
            redelivery_seconds=self.redelivery_seconds,
        )
        period = self.sweep_interval or stack_settings.get("sweep_seconds") or 300
        self._sweeper = Ticker("sweep", float(period), self.run_sweep)

        self._gateway.start()
        self._set_env(Env.API_URL, self._gateway.url)
        wakeups.subscribe(wakeups.ECS, self.fargate.wake)
        wakeups.subscribe(wakeups.SQS, self.poller.wake)
        self.fargate.start()
        self.poller.start()
        self._sweeper.start()
        if self.write_state:
            self._write_state()
        log.info("local pipeline up: %s (moto %s)", self.api_url, self.moto_endpoint)

    def _check_images(self, workers: list[str]) -> None:
        missing = missing_images([default_docker_image(w) for w in workers])
        if missing:
            builds = "; ".join(
                f"docker build -f workers/{image.split('/', 1)[1].split(':')[0]}/Dockerfile "
                f"-t {image} ."
                for image in missing
            )
            raise LocalPipelineError(
                f"--docker: images not built: {', '.join(missing)}. From the repository root: "
                f"{builds}"
            )

    def aws_env(self) -> dict[str, str]:
        """What points boto3 (in handlers and worker processes) at the moto server."""
        return {
            Env.AWS_ENDPOINT_URL: self.moto_endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            **FAKE_CREDENTIALS,
        }

    def client(self, service: str) -> Any:
        import boto3

        session = boto3.session.Session(  # type: ignore[attr-defined]
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        return session.client(service, endpoint_url=self.moto_endpoint)

    def _lambda_by_role(self, role: str) -> LocalLambda:
        assert self.provisioned is not None
        return self._lambdas[self.provisioned.function_by_role(role).logical_name]

    def _set_process_env(self, prov: Provisioned) -> None:
        """The handlers run in this process: give it their environment (restored on stop)."""
        for key in _CLEARED_AWS_VARS:
            self._set_env(key, None)
        self._set_env("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        self._set_env("AWS_CONFIG_FILE", os.devnull)
        for key, value in {**self.aws_env(), **prov.handler_env()}.items():
            self._set_env(key, value)
        _reset_handler_clients()

    def _set_env(self, key: str, value: str | None) -> None:
        if key not in self._saved_env:
            self._saved_env[key] = os.environ.get(key)
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

    def _write_state(self) -> None:
        assert self.provisioned is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "api_url": self.api_url,
            "api_key": self.api_key,
            "stack": self.stack,
            "moto_endpoint": self.moto_endpoint,
            "logs_dir": str(self.logs_dir),
            "pid": os.getpid(),
            "workers": {
                name: {
                    "queue_url": worker.queue_url,
                    "dlq_url": worker.dlq_url,
                }
                for name, worker in self.provisioned.workers.items()
            },
            "schedules": [s.component or s.logical_name for s in self.provisioned.schedules],
        }
        path = self.state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.chmod(tmp, 0o600)  # holds the API key
        tmp.replace(path)

    # --- runtime emulation -----------------------------------------------------------------
    def deliver_ecs_event(self, event: dict[str, Any]) -> None:
        """EventBridge -> reconciler; async invocations are retried twice, as in AWS."""
        assert self.provisioned is not None
        targets = self.provisioned.ecs_event_functions or [
            self.provisioned.function_by_role("reconciler").logical_name
        ]
        for name in targets:
            error: Exception | None = None
            for attempt in range(3):
                try:
                    self._lambdas[name].invoke(event)
                    break
                except Exception as exc:
                    log.exception("%s failed on %s (attempt %d)", name, event["id"], attempt + 1)
                    error = exc
            else:
                self._record_failure(name, event, error)

    def _record_failure(self, name: str, event: dict[str, Any], error: Exception | None) -> None:
        """Every attempt failed: the invocation record to the function's on-failure
        destination, as Lambda sends it (the sweep hands it back to the reconciler)."""
        assert self.provisioned is not None
        url = self.provisioned.on_failure.get(name)
        if not url:
            return
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "requestContext": {
                "requestId": secrets.token_hex(16),
                "functionArn": self.provisioned.functions[name].mock_arn,
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": str(error)},
        }
        self.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(record))

    def run_sweep(self) -> Any:
        """Invoke the sweep Lambda now, with a scheduled event."""
        return self._lambda_by_role("sweep").invoke(
            {
                "version": "0",
                "id": secrets.token_hex(8),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "region": REGION,
                "resources": [],
                "detail": {},
            }
        )

    def run_schedule(self, name: str) -> dict[str, Any]:
        """Run a schedule's target now, as EventBridge Scheduler would: an ECS target is a
        RunTask (no job id: the worker records its own job), a Lambda target an invocation."""
        assert self.provisioned is not None
        schedule = self.provisioned.schedule(name)
        payload: Any = json.loads(schedule.input) if schedule.input else {}
        if schedule.function is not None:
            result = self._lambdas[schedule.function].invoke(payload)
            return {
                "schedule": schedule.logical_name,
                "invoked": schedule.function,
                "result": result,
            }
        params = schedule.ecs_parameters or {}
        kwargs: dict[str, Any] = {
            "cluster": schedule.target_arn,
            "taskDefinition": params["taskDefinitionArn"],
            "count": int(params.get("taskCount") or 1),
        }
        strategy = params.get("capacityProviderStrategies") or params.get(
            "capacityProviderStrategy"
        )
        if strategy:
            kwargs["capacityProviderStrategy"] = [
                {
                    "capacityProvider": s["capacityProvider"],
                    "weight": int(s.get("weight") or 0),
                    "base": int(s.get("base") or 0),
                }
                for s in strategy
            ]
        else:
            kwargs["launchType"] = params.get("launchType") or "FARGATE"
        network = params.get("networkConfiguration") or {}
        network = network.get("awsvpcConfiguration", network)
        assign = network.get("assignPublicIp")
        kwargs["networkConfiguration"] = {
            "awsvpcConfiguration": {
                "subnets": list(network.get("subnets") or self.provisioned.subnets),
                "securityGroups": list(
                    network.get("securityGroups") or self.provisioned.security_groups
                ),
                "assignPublicIp": "ENABLED" if assign in (True, "ENABLED") else "DISABLED",
            }
        }
        if isinstance(payload, dict) and (
            {"containerOverrides", "cpu", "memory", "taskRoleArn"} & set(payload)
        ):
            kwargs["overrides"] = payload  # Scheduler passes an ECS target's Input as overrides
        if params.get("group"):
            kwargs["group"] = params["group"]
        tags = params.get("tags")
        if isinstance(tags, dict) and tags:
            kwargs["tags"] = [{"key": k, "value": str(v)} for k, v in tags.items()]
        with self._ecs_lock:
            response = self.client("ecs").run_task(**kwargs)
        failures = response.get("failures") or []
        if failures:
            raise LocalPipelineError(f"RunTask for schedule {name!r} failed: {failures}")
        return {
            "schedule": schedule.logical_name,
            "task_arns": [t["taskArn"] for t in response["tasks"]],
        }

    def _admin(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """Local-only routes under /_local/ (API key required): schedules, sweep, state."""
        parts = [p for p in path.split("/") if p]
        try:
            if (
                method == "POST"
                and len(parts) == 3
                and parts[0] == "schedules"
                and parts[2] == "run"
            ):
                return 200, self.run_schedule(parts[1])
            if method == "POST" and parts == ["sweep"]:
                return 200, {"result": self.run_sweep()}
            if method == "GET" and parts == ["schedules"]:
                assert self.provisioned is not None
                return 200, {
                    "schedules": [
                        {"name": s.component or s.logical_name, "expression": s.expression}
                        for s in self.provisioned.schedules
                    ]
                }
        except KeyError as exc:
            return 404, {"message": str(exc.args[0]) if exc.args else "not found"}
        except Exception as exc:  # an admin action failed: say why instead of dropping
            log.exception("local admin %s %s failed", method, path)
            return 500, {"message": f"{type(exc).__name__}: {exc}"}
        return 404, {"message": f"no local admin route {method} /_local{path}"}

    # --- stop ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything this started, in reverse order. Safe to call twice."""
        if not self._started:
            return
        self._started = False
        if self.fargate is not None:
            wakeups.unsubscribe(wakeups.ECS, self.fargate.wake)
        if self.poller is not None:
            wakeups.unsubscribe(wakeups.SQS, self.poller.wake)
        for part in (self._sweeper, self.poller):
            if part is not None:
                part.stop()
        if self.fargate is not None:
            self.fargate.stop()
        if self._gateway is not None:
            self._gateway.stop()
        if self._moto is not None:
            self._moto.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        _reset_handler_clients()
        if self.write_state:
            path = self.state_dir / STATE_FILE
            try:
                if json.loads(path.read_text()).get("api_key") == self.api_key:
                    path.unlink()
            except (OSError, ValueError):
                pass


class _Locked:
    """A boto3 client whose calls are serialised (shared by the fargate and admin threads)."""

    def __init__(self, client: Any, lock: threading.Lock) -> None:
        self._client = client
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


def _keep_ecs_tasks_running(endpoint: str) -> None:
    """moto advances a task one status step per DescribeTasks; pin tasks at RUNNING until
    StopTask, as Fargate does, since the local Fargate polls DescribeTasks constantly."""
    import urllib.request

    body = json.dumps(
        {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}}
    ).encode()
    req = urllib.request.Request(
        f"{endpoint}/moto-api/state-manager/set-transition", data=body, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def _reset_handler_clients() -> None:
    try:
        from handlers import _aws
    except ImportError:  # handlers not present in this checkout
        return
    _aws.reset_clients()


def _openapi_document(graph: Any) -> dict[str, Any]:
    """The OpenAPI document the stack's RestApi was built from (its ``body`` input)."""
    import yaml

    for api in graph.of_type("aws:apigateway/restApi:RestApi"):
        body = api.inputs.get("body")
        if body:
            doc: dict[str, Any] = (
                json.loads(body) if body.lstrip().startswith("{") else yaml.safe_load(body)
            )
            return doc
    path = PROJECT_ROOT / "components" / "openapi.yaml"
    if path.exists():
        found: dict[str, Any] = yaml.safe_load(path.read_text())
        return found
    return {}


def _stack_settings(stack: str, overrides: Mapping[str, str]) -> dict[str, Any]:
    """Stage, IP allow-list and sweep period from the stack's validated config."""
    from components.config import PROJECT, parse_config
    from components.offline import stack_config

    project = PROJECT
    values: dict[str, Any] = {}
    for key, value in stack_config(stack, overrides).items():
        ns, _, name = key.partition(":")
        if ns != project:
            continue
        values[name] = json.loads(value) if value[:1] in "[{" else value
    config = parse_config(values, project=project, stack=stack)
    return {
        "stage": config.api.stage_name,
        "allowed_ips": list(config.api.allowed_ips),
        "sweep_seconds": rate_seconds(config.sweep_rate),
    }
