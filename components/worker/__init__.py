"""The parts both worker components (``FargateWorker``, ``InstanceWorker``) are built from,
one concern per module. This package imports nothing itself (``validation`` is imported by the
policy pack, which has no Pulumi providers).

- ``args``: ``FargateWorkerArgs`` / ``InstanceWorkerArgs`` and their documented defaults;
- ``validation``: pure checks of a worker's arguments and the one secret-name rule
  (``looks_secret``, also used by ``policy/rules.py``);
- ``instance_validation``: the Managed Instances checks and the launch chain (pure);
- ``image``: ECR repository, lifecycle policy, the image built and pushed;
- ``roles``: log group, execution and task roles, their least-privilege statements;
- ``task``: environment, container definition and task definition;
- ``managed_instances``: infrastructure/instance roles and capacity providers;
- ``registration``: the ``worker#<name>`` item, written from ``WorkerRegistration``.
"""
