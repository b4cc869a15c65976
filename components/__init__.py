"""The component library: typed Pulumi components for the AI batch pipeline.

Import the component you need from its module (``components.platform.BatchPlatform``,
``components.fargate_worker.FargateWorker``, ...); this package imports nothing itself, so
importing one component does not load the others.
"""
