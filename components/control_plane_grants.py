"""Who may do what in the control plane: one function per Lambda role (``api_grants``,
``launcher_grants``, ``reconciler_grants``, ``sweep_grants``), each grant made by the resource
accessed (``components.grants``, ``JobQueue.grant_send`` / ``grant_consume``), once per stack,
so no role grows with the number of workers. ``ControlPlane._grants`` builds the accessed
resources and calls them; the action lists live in ``components.iam``."""

from __future__ import annotations

from dataclasses import dataclass

from components import iam
from components.grants import (
    Cluster,
    FailedEventsQueue,
    FailureTopic,
    Grantee,
    JobsTable,
    ResultsBucket,
    Secrets,
    grant_run,
)
from components.job_queue import JobQueue

# Every worker's inputs (large job inputs, POST /uploads): the API role's only S3 write.
INPUTS_PREFIX = "inputs/"
RESULTS_PREFIX = "results/"


@dataclass(frozen=True)
class Accessed:
    """What the control-plane roles reach; each grants its own kind of access."""

    table: JobsTable
    bucket: ResultsBucket
    cluster: Cluster
    topic: FailureTopic
    secrets: Secrets
    queue: JobQueue
    failed_events: FailedEventsQueue
    """The reconciler's on-failure destination (``components.failed_events``)."""

    def grant_notify(self, grantee: Grantee) -> None:
        """Publish a failure and read the notification secrets (Slack, Notion)."""
        self.topic.grant_publish(grantee)
        self.secrets.grant_read(grantee, sid="ReadNotificationSecrets")


@dataclass(frozen=True)
class StackTasks:
    """``grant_run``'s scope: the cluster, the stack's task families and worker roles."""

    cluster_arn: iam.Resource
    families: iam.Resource
    roles: list[iam.Resource]


def api_grants(api: Grantee, r: Accessed) -> None:
    """What the API Lambda may do."""
    r.table.grant(api, iam.API_TABLE_ACTIONS, sid="JobsTable")
    # Presigned GET of results and PUT of large inputs are signed with this role.
    r.bucket.grant_prefix(api, RESULTS_PREFIX, read=True, sid="ReadResults")
    # Large job inputs, and the presigned POST forms of POST /uploads: S3 authorizes a
    # presigned request as its signer's s3:PutObject on the key, so this one grant
    # (inputs/ only) is what every upload form can reach.
    r.bucket.grant_prefix(api, INPUTS_PREFIX, write=True, sid="WriteInputs")
    # POST /jobs with a manifest: HeadObject of the uploaded JSON Lines object (S3
    # authorizes HeadObject as s3:GetObject), inputs/ only, read only.
    r.bucket.grant_prefix(api, INPUTS_PREFIX, read=True, sid="HeadManifests")
    # DELETE /jobs/{id} on a running job stops its task (in this cluster only).
    r.cluster.grant_task_actions(api, iam.ECS_STOP_TASK_ACTIONS)
    r.queue.grant_send(api, sid="EnqueueLaunches")  # submit and retry


def launcher_grants(launcher: Grantee, r: Accessed, tasks: StackTasks) -> None:
    """What the launcher may do."""
    r.table.grant(launcher, iam.LAUNCHER_TABLE_ACTIONS, sid="JobsTable")
    r.queue.grant_consume(launcher, sid="ConsumeLaunchQueue")
    # A woken job whose RunTask must be retried gets a message (send_resume).
    r.queue.grant_send(launcher, sid="EnqueueLaunches")
    r.table.grant_leases(launcher)
    # StopTask: a job cancelled (or moved on) while its launch was under way.
    r.cluster.grant_task_actions(launcher, (*iam.ECS_TASK_READ_ACTIONS, *iam.ECS_STOP_TASK_ACTIONS))
    grant_run(launcher, tasks.cluster_arn, tasks.families, tasks.roles)
    r.grant_notify(launcher)  # a job that cannot be launched at all is failed and reported
    # An array job's fan-out step: its manifest, its children's rows and large shard
    # inputs (job rows only; the rows of other kinds stay the API's).
    r.table.grant_job_rows(
        launcher, actions=iam.CREATE_ARRAY_CHILDREN_ACTIONS, sid="CreateArrayChildren"
    )
    r.bucket.grant_prefix(
        launcher, INPUTS_PREFIX, read=True, write=True, sid="ArrayManifestsAndInputs"
    )


def reconciler_grants(reconciler: Grantee, r: Accessed) -> None:
    """What the reconciler may do."""
    r.table.grant(reconciler, iam.RECONCILER_TABLE_ACTIONS, sid="JobsTable")
    r.table.grant_job_rows(
        reconciler, actions=iam.RECORD_SCHEDULED_RUN_ACTIONS, sid="RecordScheduledRuns"
    )
    r.table.grant_leases(reconciler, create=False)  # a stopped task's slot is given back
    r.cluster.grant_task_actions(reconciler, iam.ECS_TASK_READ_ACTIONS)
    # Retry after a failed run; a drain request for the freed slot.
    r.queue.grant_send(reconciler, sid="EnqueueLaunches")
    r.grant_notify(reconciler)
    r.bucket.grant_array_merge(reconciler)  # the last child of an array job ended
    # A scheduled array job with a manifest: its HeadObject (authorized as s3:GetObject),
    # inputs/ only, read only, as the API's check of the same request (HeadManifests).
    r.bucket.grant_prefix(reconciler, INPUTS_PREFIX, read=True, sid="HeadScheduledManifests")
    # Lambda records an event that failed every attempt with this role.
    r.failed_events.grant_record(reconciler)


def sweep_grants(sweep: Grantee, r: Accessed) -> None:
    """What the sweep may do."""
    r.table.grant(sweep, iam.SWEEP_TABLE_ACTIONS, sid="JobsTable")
    r.table.grant_leases(sweep, create=False)  # slots of lost tasks given back
    r.cluster.grant_task_actions(sweep, (*iam.ECS_STOP_TASK_ACTIONS, *iam.ECS_TASK_READ_ACTIONS))
    r.queue.grant_send(sweep, sid="EnqueueLaunches")  # retry of a job that never reported
    r.grant_notify(sweep)  # a job failed by the sweep is reported like any other failure
    r.bucket.grant_array_merge(sweep)  # an array job nobody merged
    r.failed_events.grant_redrive(sweep)  # the reconciler's failed events, handled again
