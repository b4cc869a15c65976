"""ai-batch: a serverless AI batch pipeline on AWS.

    client -> API Gateway (API key) -> api Lambda -> jobs table + the stack's SQS FIFO launch queue
           -> launcher Lambda -> ecs:RunTask on Fargate / Fargate Spot -> results in S3
    ECS "task stopped" events -> reconciler Lambda (retry / fail / notify)
    EventBridge Scheduler -> a worker's task as a scheduled job (or an array job's parent)

Read top to bottom, this file is the architecture: config -> platform -> API -> workers ->
scheduled tasks -> (alarms) -> exports. Adding a worker = one ``FargateWorker`` here + one
folder ``workers/<name>/``.
"""

import pulumi

from components import iam, seed_workers
from components.batch_api import BatchApi, BatchApiArgs
from components.config import load_config
from components.fargate_worker import FargateWorker, FargateWorkerArgs
from components.observability import Observability, ObservabilityArgs
from components.platform import BatchPlatform, BatchPlatformArgs
from components.scheduled_task import ScheduledTask, ScheduledTaskArgs

# 1. Every setting of this stack, validated before anything is declared.
config = load_config()

# 2. What all workers share: network, cluster, jobs table, results bucket, failure topic,
#    and the control-plane Lambdas (api handler, launcher, reconciler, sweep).
platform = BatchPlatform("platform", BatchPlatformArgs(config=config))

# 3. The REST API in front of the api handler (OpenAPI document in components/openapi.yaml).
api = BatchApi("api", BatchApiArgs(platform=platform))

# 4. The seed workers. Each may call the configured Bedrock model and nothing else new.
seed_workers.check_schemas()
invoke_model = iam.bedrock_invoke(config.bedrock_model_id, platform.region, platform.account_id)
workers = {
    seed.name: FargateWorker(
        seed.name,
        FargateWorkerArgs(
            platform=platform,
            description=seed.description,
            cpu=seed.cpu,
            memory=seed.memory,
            timeout_seconds=seed.timeout_seconds,
            max_attempts=seed.max_attempts,
            max_concurrency=seed.max_concurrency,
            policy_statements=invoke_model,
        ),
    )
    for seed in seed_workers.SEED_WORKERS
}

# 5. The scheduled tasks: a nightly content analysis (one job) and a weekly array job of meta
#    descriptions (its shards fan out on the worker's slots), recorded and retried like any job.
for seed_schedule in seed_workers.SEED_SCHEDULES:
    ScheduledTask(
        seed_schedule.name,
        ScheduledTaskArgs(
            platform=platform,
            worker=workers[seed_schedule.worker],
            schedule=seed_schedule.schedule,
            timezone=seed_schedule.timezone,
            input=dict(seed_schedule.input),
            array=seed_schedule.array,
            description=seed_schedule.description,
        ),
    )

# 6. Alarms and the dashboard where the stack asks for them (prod).
if config.alarms:
    Observability(
        "observability",
        ObservabilityArgs(
            platform=platform,
            api_name=api.rest_api.name,
            api_stage=api.stage.stage_name,
            queues={"launch": platform.functions.launch_queue.queue.name},
            dlqs={"launch": platform.functions.launch_queue.dlq.name},
            worker_log_groups={name: w.log_group.name for name, w in workers.items()},
        ),
    )

# 7. What a client and an operator need.
pulumi.export("apiUrl", api.url)
pulumi.export("apiKeyId", api.api_key_id)
pulumi.export("apiKey", pulumi.Output.secret(api.api_key_value))
pulumi.export("resultsBucket", platform.results_bucket.bucket)
pulumi.export("jobsTable", platform.jobs_table.name)
pulumi.export("clusterArn", platform.cluster.arn)
pulumi.export("clusterName", platform.cluster.name)
pulumi.export("failureTopicArn", platform.failure_topic.arn)
# One launch queue for every worker; queueUrls / dlqUrls (per worker, as before) point at it.
launch_queue = platform.functions.launch_queue
pulumi.export("launchQueueUrl", launch_queue.queue.url)
pulumi.export("launchDlqUrl", launch_queue.dlq.url)
pulumi.export("queueUrls", {name: w.launch_queue.queue.url for name, w in workers.items()})
pulumi.export("dlqUrls", {name: w.launch_queue.dlq.url for name, w in workers.items()})
