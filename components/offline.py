"""Run a Pulumi program offline under mocks and return what it would create.

This is the ONE place where provider calls (caller identity, region, VPC lookups, ECR
credentials, ...) are answered and where fake-but-realistic resource outputs (ARNs, URLs,
ids, image digests) are made up: the answers and the outputs table are
``components.offline_aws``, the mocks that use them and the program runner are here. Tests,
the local pipeline, the cost estimator and the policy checklist all read the same recorded
graph, so they agree on what a stack contains.

Every run gets a fresh event loop, fresh Pulumi settings and fresh config, so runs can be
repeated in one process (``pulumi`` keeps its state in module globals and context vars).
"""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.runtime
from pulumi.runtime import config as runtime_config
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime import stack as runtime_stack

from components import offline_aws
from components.offline_aws import (
    ACCOUNT_ID,
    DEFAULT_SUBNET_IDS,
    DEFAULT_VPC_ID,
    PARTITION,
    REGION,
)
from components.offline_config import (
    DEFAULT_PROJECT,
    OFFLINE_SECRET,
    PROJECT_ROOT,
    project_name,
    stack_config,
)

__all__ = [
    "ACCOUNT_ID",
    "DEFAULT_PROJECT",
    "DEFAULT_SUBNET_IDS",
    "DEFAULT_VPC_ID",
    "OFFLINE_SECRET",
    "PARTITION",
    "PROGRAM",
    "PROJECT_ROOT",
    "REGION",
    "AwsMocks",
    "MockResource",
    "StackGraph",
    "evaluate_stack",
    "run_program",
    "stack_config",
    "unwrap_secrets",
]

PROGRAM = PROJECT_ROOT / "__main__.py"

# Pulumi marks a secret value on the wire with this signature key.
_SECRET_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"


@dataclass(frozen=True)
class MockResource:
    """One registered resource: inputs use wire (camelCase) names with secrets unwrapped."""

    # A record of what the mocks saw; duplicates pairs its field list with the security
    # tests' Case by shape only (other fields).
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    parent: str | None  # logical name of the parent resource (None: the stack)
    custom: bool
    protect: bool = False  # ResourceOptions(protect=...)
    retain_on_delete: bool = False  # ResourceOptions(retain_on_delete=...)
    depends_on: tuple[str, ...] = ()  # logical names of explicit + input dependencies
    aliases: tuple[str, ...] = ()  # ResourceOptions(aliases=...): the earlier logical names


@dataclass
class StackGraph:
    """Everything a program registered, in registration order, plus its resolved exports."""

    resources: list[MockResource]
    exports: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_token: str) -> list[MockResource]:
        return [r for r in self.resources if r.type == type_token]

    def named(self, type_token: str, name: str) -> MockResource:
        matches = [r for r in self.of_type(type_token) if r.name == name]
        if len(matches) == 1:
            return matches[0]
        candidates = sorted(r.name for r in self.of_type(type_token))
        problem = "no" if not matches else f"{len(matches)}"
        listing = candidates or "none of that type"
        raise KeyError(f"{problem} {type_token} named {name!r}; candidates: {listing}")

    def types(self) -> dict[str, int]:
        """Resource count per type token (the inventory)."""
        counts: dict[str, int] = {}
        for r in self.resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))


def unwrap_secrets(value: Any) -> Any:
    """Strip Pulumi's secret envelopes anywhere in a deserialized value."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG) == _SECRET_VALUE and "value" in value:
            return unwrap_secrets(value["value"])
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


class AwsMocks(pulumi_mocks.Mocks):
    """Fake AWS: deterministic ids and realistic ARNs, URLs and digests."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        self._lock = threading.Lock()
        self._counter = 0
        # (type, logical name) -> the earlier logical name of a resource renamed with an alias
        self.renamed: dict[tuple[str, str], str] = {}

    # --- provider functions --------------------------------------------------------------
    def call(self, args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        # A bare dict: MockMonitor reads a tuple as (result, failures). The partition is read
        # here, at each call, so a test can set ``components.offline.PARTITION`` (aws-cn).
        return offline_aws.provider_answer(args.token, args.args, partition=PARTITION)

    # --- resources -----------------------------------------------------------------------
    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = unwrap_secrets(dict(args.inputs))
        if not args.custom:
            return f"{args.name}-component", {}
        physical = self._physical_name(args.typ, args.name, inputs)
        rid, extra = offline_aws.outputs_for(args.typ, args.name, physical, inputs)
        outputs = {**inputs, **extra}
        outputs.setdefault("id", rid)
        return rid, outputs

    def _physical_name(self, typ: str, name: str, inputs: Mapping[str, Any]) -> str:
        for key in ("name", "bucket", "functionName", "family", "roleName", "dashboardName"):
            value = inputs.get(key)
            if isinstance(value, str) and value:
                return value
        for key in ("namePrefix", "bucketPrefix"):
            value = inputs.get(key)
            if isinstance(value, str) and value:  # AWS appends a unique 26-character suffix
                return f"{value}{offline_aws.digest(typ, name, length=26)}"
        # Pulumi auto-naming: logical name + 7 random hex (deterministic here). A renamed
        # resource with an alias keeps the name made from its earlier logical name.
        name = self.renamed.get((typ, name), name)
        return f"{name}-{offline_aws.digest(typ, name, length=7)}"


# --- running programs ------------------------------------------------------------------


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps every registration with its parent, in order (MockMonitor keeps only state)."""

    def __init__(self, mocks: AwsMocks) -> None:
        super().__init__(mocks)
        self.mocks: AwsMocks = mocks
        # URN -> the transforms that apply to its children (its own, then its ancestors')
        self._transforms_by_urn: dict[str, list[Any]] = {}
        self.recorded: list[MockResource] = []
        self._names_by_urn: dict[str, str] = {}
        self._record_lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        transforms = [*request.transforms, *self._transforms_by_urn.get(request.parent, [])]
        if transforms and request.type != "pulumi:pulumi:Stack":
            self._apply_transforms(request, transforms)
        aliases = tuple(_alias_names(request))
        if aliases:
            # An aliased resource keeps the physical name it was created with: the provider
            # reuses the auto-name it finds in the old state (what a deployment would do).
            self.mocks.renamed[(request.type, request.name)] = aliases[0]
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            return response
        urn = response.urn
        if transforms:
            self._transforms_by_urn[urn] = transforms
        inputs = unwrap_secrets(pulumi.runtime.rpc.deserialize_properties(request.object))
        state = self.resources[urn].state
        with self._record_lock:
            self._names_by_urn[urn] = request.name
            parent = self._names_by_urn.get(request.parent) if request.parent else None
            depends_on = tuple(sorted({self._names_by_urn.get(u, u) for u in request.dependencies}))
            self.recorded.append(
                MockResource(
                    type=request.type,
                    name=request.name,
                    inputs=inputs,
                    outputs=unwrap_secrets(dict(state)),
                    parent=parent,
                    custom=bool(request.custom),
                    protect=bool(getattr(request, "protect", False)),
                    retain_on_delete=bool(getattr(request, "retainOnDelete", False)),
                    depends_on=depends_on,
                    aliases=aliases,
                )
            )
        return response

    def _apply_transforms(self, request: Any, transforms: list[Any]) -> None:
        """What the engine does with the ``transforms`` resource option: call each transform
        (the resource's own, then its parent's and so on up) with the resource's type, name,
        inputs and options, and register what they return. Inputs, ``protect``,
        ``retain_on_delete`` and ``ignore_changes`` are carried back; other options are not
        modelled offline."""
        import grpc
        from pulumi.runtime.proto import callback_pb2, callback_pb2_grpc, resource_pb2

        for transform in transforms:
            options = resource_pb2.TransformResourceOptions(
                protect=request.protect,
                retain_on_delete=request.retainOnDelete,
                ignore_changes=list(request.ignoreChanges),
            )
            transform_request = resource_pb2.TransformRequest(
                type=request.type,
                name=request.name,
                custom=request.custom,
                parent=request.parent,
                properties=request.object,
                options=options,
            )
            # As the engine does: call the SDK's callback server at the transform's target.
            with grpc.insecure_channel(transform.target) as channel:
                answer = callback_pb2_grpc.CallbacksStub(channel).Invoke(
                    callback_pb2.CallbackInvokeRequest(
                        token=transform.token, request=transform_request.SerializeToString()
                    )
                )
            result = resource_pb2.TransformResponse.FromString(answer.response)
            request.object.CopyFrom(result.properties)
            if result.HasField("options"):
                request.protect = result.options.protect
                request.retainOnDelete = result.options.retain_on_delete
                del request.ignoreChanges[:]
                request.ignoreChanges.extend(result.options.ignore_changes)


def _alias_names(request: Any) -> list[str]:
    """The earlier logical names a registration carries (alias specs or full alias URNs)."""
    names = []
    for alias in request.aliases:
        if alias.WhichOneof("alias") == "urn":
            name = alias.urn.rsplit("::", 1)[-1]
        else:
            name = alias.spec.name or request.name
        if name != request.name and name not in names:
            names.append(name)
    return names


_RUN_LOCK = threading.Lock()


def run_program(
    program: Callable[[], None],
    *,
    stack: str = "dev",
    config: Mapping[str, str] | None = None,
    project: str = DEFAULT_PROJECT,
) -> StackGraph:
    """Run ``program`` under mocks (preview=False, so every apply runs) and record it.

    ``config`` keys are full Pulumi config keys (``ai-batch:logRetentionDays``); values are
    strings as Pulumi stores them (JSON text for structured values).
    """
    with _RUN_LOCK:
        loop = asyncio.new_event_loop()
        previous_loop = _current_loop()
        asyncio.set_event_loop(loop)
        try:
            return _run(loop, program, stack, dict(config or {}), project)
        finally:
            _reset_pulumi()
            loop.close()
            asyncio.set_event_loop(previous_loop)


def _current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return None


def _run(
    loop: asyncio.AbstractEventLoop,
    program: Callable[[], None],
    stack: str,
    config: dict[str, str],
    project: str,
) -> StackGraph:
    _reset_pulumi()
    runtime_config.set_all_config(config, [])
    mocks = AwsMocks(stack)
    monitor = _RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    root = runtime_settings.get_root_resource()
    assert isinstance(root, runtime_stack.Stack)

    async def main() -> dict[str, Any]:
        error: BaseException | None = None
        try:
            program()
        except BaseException as exc:  # re-raised once the runtime has drained
            error = exc
        await runtime_stack.wait_for_rpcs()
        if error is not None:
            raise error
        exports: dict[str, Any] = {}
        for key, value in dict(root.outputs).items():
            exports[key] = await pulumi.Output.from_input(value).future(with_unknowns=False)
        await runtime_stack.wait_for_rpcs()
        return exports

    exports = loop.run_until_complete(main())
    return StackGraph(resources=list(monitor.recorded), exports=unwrap_secrets(exports))


def _reset_pulumi() -> None:
    runtime_settings.reset_options()
    runtime_settings.SETTINGS.rpc_manager.clear()
    runtime_settings.SETTINGS.outputs.clear()
    runtime_config.set_all_config({}, [])


def evaluate_stack(stack: str = "dev", overrides: Mapping[str, str] | None = None) -> StackGraph:
    """Run the real ``__main__.py`` for ``stack`` (its Pulumi.<stack>.yaml plus overrides)."""
    config = stack_config(stack, overrides)

    def program() -> None:
        root = str(PROJECT_ROOT)
        added = root not in sys.path
        if added:
            sys.path.insert(0, root)
        try:
            runpy.run_path(str(PROGRAM), run_name="__main__")
        finally:
            if added:
                sys.path.remove(root)

    cwd = os.getcwd()
    os.chdir(PROJECT_ROOT)  # Pulumi runs a program from its project directory
    try:
        return run_program(program, stack=stack, config=config, project=project_name())
    finally:
        os.chdir(cwd)
