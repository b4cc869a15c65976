"""The parts of ``JobStore``'s conditional writes: the status condition, the attempt fence,
``expect`` conditions, the ``SET``/``REMOVE`` terms and ``worker_status``. Each helper adds
its placeholders to the ``names``/``values`` maps and its terms to the lists it is given, so a
write is these steps in order (``JobStore.transition_op``, ``JobStore.update``)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from jobcontract.dynamo import to_attr
from jobcontract.names import worker_of_job_id, worker_status
from jobcontract.states import JobStatus, can_transition
from jobcontract.store_errors import InvalidTransition
from jobcontract.table import JobField, Table

StatusLike = JobStatus | str


def as_status(value: StatusLike) -> JobStatus:
    return value if isinstance(value, JobStatus) else JobStatus(value)


def as_statuses(value: StatusLike | Collection[StatusLike]) -> list[JobStatus]:
    """One status or several, as a non-empty list."""
    if isinstance(value, JobStatus | str):
        return [as_status(value)]
    sources = [as_status(v) for v in value]
    if not sources:
        raise ValueError("from_status is empty")
    return sources


def allowed_move(
    from_status: StatusLike | Collection[StatusLike], to_status: StatusLike
) -> tuple[list[JobStatus], JobStatus]:
    """The move's sources and target; ``InvalidTransition`` for a move the contract forbids."""
    sources = as_statuses(from_status)
    target = as_status(to_status)
    for source in sources:
        if not can_transition(source, target):
            raise InvalidTransition(f"{source.value} -> {target.value} is not allowed")
    return sources, target


def worker_of(job_id: str) -> str:
    worker = worker_of_job_id(job_id)
    if worker is None:
        raise ValueError(f"not a job id: {job_id!r}")
    return worker


def status_condition(sources: list[JobStatus], values: dict[str, Any]) -> str:
    if len(sources) == 1:
        values[":from0"] = {"S": sources[0].value}
        return "#status = :from0"
    for i, source in enumerate(sources):
        values[f":from{i}"] = {"S": source.value}
    return "#status IN (" + ", ".join(f":from{i}" for i in range(len(sources))) + ")"


def add_attempt_terms(
    attempt: int | None,
    increment_attempts: bool,
    names: dict[str, str],
    values: dict[str, Any],
    conditions: list[str],
    sets: list[str],
) -> None:
    """``attempts == attempt`` (when given) and ``attempts + 1`` (when asked)."""
    if attempt is not None:
        names["#attempts"] = JobField.ATTEMPTS
        values[":attempt"] = {"N": str(attempt)}
        conditions.append("#attempts = :attempt")
    if increment_attempts:
        names["#attempts"] = JobField.ATTEMPTS
        values[":one"] = {"N": "1"}
        sets.append("#attempts = #attempts + :one")


# add_expect and add_sets share a shape (duplicates pairs them): each takes the caller's
# mapping and adds its own placeholders (#e/:e, #s/:s) and terms, by design of this module.
def add_expect(
    expect: Mapping[str, Any] | None,
    names: dict[str, str],
    values: dict[str, Any],
    conditions: list[str],
) -> None:
    """Each field equal to its value, ``None`` meaning absent."""
    for i, (field_name, value) in enumerate((expect or {}).items()):
        names[f"#e{i}"] = field_name
        if value is None:
            conditions.append(f"attribute_not_exists(#e{i})")
        else:
            values[f":e{i}"] = to_attr(value)
            conditions.append(f"#e{i} = :e{i}")


def add_sets(
    set_fields: Mapping[str, Any] | None,
    names: dict[str, str],
    values: dict[str, Any],
    sets: list[str],
) -> None:
    """``SET`` terms of the caller's fields; the ones the store manages are refused."""
    reserved = {JobField.STATUS, JobField.WORKER_STATUS, Table.PK, JobField.JOB_ID}
    for i, (field_name, value) in enumerate((set_fields or {}).items()):
        if field_name in reserved:
            raise ValueError(f"{field_name} is managed by the store")
        names[f"#s{i}"] = field_name
        values[f":s{i}"] = to_attr(value)
        sets.append(f"#s{i} = :s{i}")


def update_expression(
    sets: list[str], remove_fields: Collection[str], names: dict[str, str]
) -> str:
    """``SET ...`` plus ``REMOVE ...`` of ``remove_fields`` (their names added to ``names``)."""
    removes = []
    for i, field_name in enumerate(remove_fields):
        names[f"#r{i}"] = field_name
        removes.append(f"#r{i}")
    return "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")


def add_worker_status(
    job_id: str, target: JobStatus, values: dict[str, Any], conditions: list[str], sets: list[str]
) -> None:
    # worker_status is "<worker>#<STATUS>"; DynamoDB cannot concatenate, so the worker
    # comes from the job id (and the condition proves it matches the stored one).
    worker = worker_of(job_id)
    values[":ws"] = {"S": worker_status(worker, target)}
    sets.append("#ws = :ws")
    conditions.append("#worker = :worker")
    values[":worker"] = {"S": worker}
