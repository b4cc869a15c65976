"""The dispatch state's names (``jobcontract.dispatch``): its item keys and attributes, a
drain request's message, the stack budget in cpu units."""

from __future__ import annotations

import uuid
from typing import Final

STACK_PK: Final = "dispatch@stack"
DISPATCH_PREFIX: Final = "dispatch#"
SLOT_PREFIX: Final = "slot#"
KIND_DISPATCH: Final = "dispatch"
KIND_SLOT: Final = "slot"
CPU_UNITS_PER_VCPU: Final = 1024
# The body of a launch-queue message that asks the launcher to hand out free slots.
DRAIN_MESSAGE: Final = '{"drain": true}'
DRAIN_GROUP: Final = "dispatch-drain"


# One constant a name, like JobField and LogField (duplicates pairs the shape): the
# dispatch items' own attributes, which must not collide with a job's (see WORKER).
class F:
    """Attribute names of the dispatch items."""

    TASKS: Final = "tasks"
    CPU: Final = "cpu"
    WAITING: Final = "waiting"
    IDLE: Final = "idle"
    YIELD: Final = "yield_share"
    # Not "worker": that attribute (with created_at) would list these items in the jobs'
    # by-worker index.
    WORKER: Final = "for_worker"
    TASK_ARN: Final = "task_arn"
    CURRENT_JOB: Final = "current_job"
    CURRENT_ATTEMPT: Final = "current_attempt"
    RAN: Final = "ran"  # string set: the jobs a reused task finished before its current one
    # Set once the task ran a child of an array job: the reconciler then reads the job at
    # the task's stop even after a clean exit 0, to count the child on its parent.
    ARRAY_CHILD: Final = "array_child"
    # Set by the task itself once its last job's end is recorded and it is about to exit:
    # its worker's slot (``tasks``/``cpu`` of ``dispatch#<worker>``) is given back then, the
    # stack's vCPUs only when it has STOPPED (``Dispatch.free_slot``, ``Dispatch.release``).
    FREED: Final = "freed"


# Key builders shaped like jobcontract.names' (duplicates pairs them): other items, other
# prefixes, kept next to the prefixes above that the IAM grants also use.
def worker_key(worker: str) -> str:
    return f"{DISPATCH_PREFIX}{worker}"


def slot_key(job_id: str, attempt: int) -> str:
    """The lease of the task launched for ``job_id``'s ``attempt`` (its run number)."""
    return f"{SLOT_PREFIX}{job_id}-{attempt}"


def slot_key_prefix(worker: str) -> str:
    """What every lease key of this worker's tasks starts with (IAM LeadingKeys: + '*')."""
    return f"{SLOT_PREFIX}{worker}_"


def drain_message() -> dict[str, str]:
    """SQS FIFO send arguments (without QueueUrl) of one drain request. Each has its own
    deduplication id (two tasks stopping at once must each get a drain) and its own message
    group: FIFO hands out no message of a group while another of it is in flight, so one
    shared group made every drain wait for the one running (measured: seconds per freed
    slot in a burst). Concurrent drains are safe: every claim is a conditional transaction,
    and a drain that loses a job to another takes the next parked one. AWS rule (SQS
    SendMessage): MessageGroupId is 1-128 alphanumeric or punctuation characters; this is
    47."""
    return {
        "MessageBody": DRAIN_MESSAGE,
        "MessageGroupId": f"{DRAIN_GROUP}-{uuid.uuid4().hex}",
        "MessageDeduplicationId": uuid.uuid4().hex,
    }


def vcpu_budget_units(limit_vcpus: float) -> int | None:
    """The stack's budget in cpu units; None when unlimited (0)."""
    return int(limit_vcpus * CPU_UNITS_PER_VCPU) if limit_vcpus > 0 else None
