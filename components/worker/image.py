"""A worker's image: its ECR repository, the repository's lifecycle policy, and the image built
from the worker's Dockerfile and pushed with pulumi-docker (the task definition pins it by
digest). Shared by ``FargateWorker`` and ``InstanceWorker``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components import aws_rules
from components.worker.validation import REPO_ROOT, Validated


@dataclass(frozen=True)
class WorkerImage:
    repository: aws.ecr.Repository
    lifecycle_policy: aws.ecr.LifecyclePolicy
    image: docker.Image


def source_fingerprint(*folders: Path) -> str:
    """Short content hash of the folders an image is built from (a readable image tag)."""
    digest = hashlib.sha256()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if {"__pycache__", "tests"} & set(
                path.relative_to(folder).parts
            ) or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def lifecycle_policy(keep_images: int, *, expire_untagged: bool) -> str:
    """The repository's lifecycle policy: keep the last ``keep_images`` images, and (when
    ``expire_untagged``) expire untagged images after a day.

    AWS rule (ECR user guide, "Lifecycle policy properties"): rules apply by ascending
    rulePriority, and the tagStatus "any" rule must have the highest priority. An image
    rebuilt under the same source tag leaves its predecessor untagged: gone after a day, so a
    worker's idle cost is its kept images' storage and nothing else."""
    rules: list[dict[str, Any]] = []
    if expire_untagged:
        rules.append(
            {
                "description": "expire untagged images after a day",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            }
        )
    rules.append(
        {
            "description": f"keep the last {keep_images} images",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": keep_images,
            },
            "action": {"type": "expire"},
        }
    )
    return json.dumps({"rules": [{"rulePriority": i, **r} for i, r in enumerate(rules, 1)]})


def worker_image(
    name: str,
    v: Validated,
    *,
    parent: pulumi.Resource,
    force_delete: bool,
    keep_images: int,
    base_image: str | None,
    expire_untagged: bool,
) -> WorkerImage:
    """Repository ``<name>-repo`` (+ ``<name>-repo-lifecycle``) and image ``<name>-image``,
    built for the task's CPU architecture."""
    child = pulumi.ResourceOptions(parent=parent)
    repository = aws.ecr.Repository(
        f"{name}-repo",
        name=v.repo_name,
        # Tags are informative (source hash); the task definition pins the digest, so a
        # rebuilt image never changes what an existing revision runs.
        image_tag_mutability="MUTABLE",
        image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
            scan_on_push=True
        ),
        encryption_configurations=[
            aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
        ],
        force_delete=force_delete,
        opts=child,
    )
    lifecycle = aws.ecr.LifecyclePolicy(
        f"{name}-repo-lifecycle",
        repository=repository.name,
        policy=lifecycle_policy(keep_images, expire_untagged=expire_untagged),
        opts=child,
    )
    creds = aws.ecr.get_authorization_token_output(registry_id=repository.registry_id)
    tag = source_fingerprint(
        v.dockerfile.parent, REPO_ROOT / "workers" / "runtime", REPO_ROOT / "jobcontract"
    )
    image = docker.Image(
        f"{name}-image",
        image_name=repository.repository_url.apply(lambda url: f"{url}:{tag}"),
        build=docker.DockerBuildArgs(
            context=str(v.context),
            dockerfile=str(v.dockerfile),
            # The image runs on the task's CPU: build for its architecture.
            platform=aws_rules.docker_platform(v.architecture),
            args={"BASE_IMAGE": base_image} if base_image else None,
        ),
        registry=docker.RegistryArgs(
            server=repository.repository_url,
            username=creds.user_name,
            password=pulumi.Output.secret(creds.password),
        ),
        opts=child,
    )
    return WorkerImage(repository=repository, lifecycle_policy=lifecycle, image=image)
