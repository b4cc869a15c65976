"""The local pipeline (``batchctl local``): the stack's own resources in an embedded moto
server, the real Lambda handlers in-process, and each ECS task as a local worker process.

Importing this package has no side effects; :class:`LocalPipeline` (in
``local_pipeline.pipeline``) is the embeddable entry point.
"""
