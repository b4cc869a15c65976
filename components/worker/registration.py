"""A worker's registration: the ``worker#<name>`` item of the jobs table, written from the
record (``jobcontract.registration.WorkerRegistration``) that the API, the launcher and the
reconciler read back. Shared by ``FargateWorker`` and ``InstanceWorker``.

The item is what makes the worker visible to the API, so it is written last: after the
control-plane policies (the control plane may then enqueue and run it), after the cluster's
FARGATE/FARGATE_SPOT attachment (RunTask needs them), and only once every IAM quota check
passes (``InlinePolicyLedger.guard``: the program fails naming the role instead).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

import jobcontract
from components import iam
from components.worker.validation import Validated
from jobcontract.registration import WorkerRegistration

if TYPE_CHECKING:
    from components.job_queue import JobQueue
    from components.platform import BatchPlatform
    from components.worker.args import FargateWorkerArgs

# The record once the task definition ARN and the launch queue's URLs are known.
RecordOf = Callable[[str, str, str], WorkerRegistration]


def fargate_record(
    name: str,
    args: FargateWorkerArgs,
    v: Validated,
    *,
    capacity_strategy: Sequence[dict[str, Any]],
    spot_fallback: bool,
    reuse_idle_seconds: int,
) -> RecordOf:
    """The record of a Fargate worker (no Managed Instances fields)."""

    def record(task_definition: str, queue_url: str, dlq_url: str) -> WorkerRegistration:
        return WorkerRegistration(
            name=name,
            description=args.description,
            task_definition=task_definition,
            container_name=jobcontract.CONTAINER_NAME,
            queue_url=queue_url,
            dlq_url=dlq_url,
            cpu=v.cpu,
            memory=v.memory,
            max_cpu=v.max_cpu,
            max_memory=v.max_memory,
            max_attempts=args.max_attempts,
            timeout_seconds=args.timeout_seconds,
            max_concurrency=args.max_concurrency,
            capacity_strategy=tuple(dict(s) for s in capacity_strategy),
            spot_fallback=spot_fallback,
            input_schema=json.loads(v.input_schema_json),
            architecture=v.architecture,
            reuse_idle_seconds=reuse_idle_seconds,
        )

    return record


def register(
    name: str,
    record: RecordOf,
    *,
    parent: pulumi.Resource,
    platform: BatchPlatform,
    task_definition: aws.ecs.TaskDefinition,
    launch_queue: JobQueue,
    ledgers: Sequence[iam.InlinePolicyLedger],
    depends_on: Sequence[pulumi.Resource] = (),
) -> aws.dynamodb.TableItem:
    """``<name>-registration``, after the control-plane policies, the cluster's capacity
    providers and ``depends_on``."""
    functions = platform.functions
    item = pulumi.Output.all(
        task_definition.arn, launch_queue.queue.url, launch_queue.dlq.url
    ).apply(lambda known: json.dumps(record(*known).to_dynamodb()))
    # The control plane may already enqueue and run this worker (stack-wide grants, whose
    # size does not depend on the workers). The guard still fails the program, naming the
    # role, should any control-plane role (or one of ``ledgers``) be over an IAM quota.
    return aws.dynamodb.TableItem(
        f"{name}-registration",
        table_name=platform.jobs_table.name,
        hash_key=jobcontract.Table.PK,
        item=functions.iam_ledger.guard(item, *ledgers),
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[
                functions.launcher.policy,
                functions.api.policy,
                functions.reconciler.policy,
                functions.sweep.policy,
                platform.capacity_providers,
                *depends_on,
            ],
        ),
    )
