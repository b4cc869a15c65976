"""The stack's results bucket and its settings: no public access, bucket-owner objects,
SSE-S3, expiry of ``results/`` and ``inputs/`` (``results.expireDays``,
``results.inputsExpireDays``), aborted multipart uploads cleaned up after a day, TLS only.
``BatchPlatform`` makes it once per stack; who may read or write which prefix is decided by
``components.grants.ResultsBucket``."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import iam
from components.config import ResultsConfig


@dataclass(frozen=True)
class StoredResults:
    """The bucket and its settings, as ``BatchPlatform.nodes`` lists them."""

    bucket: aws.s3.Bucket
    settings: tuple[pulumi.CustomResource, ...]
    """Public access block, ownership, encryption, lifecycle and the TLS-only policy."""


def results_bucket(
    parent: pulumi.Resource,
    name: str,
    name_prefix: str,
    results: ResultsConfig,
    protect: bool,
) -> StoredResults:
    """The bucket (kept on destroy when ``protect``) and its settings, children of ``parent``."""
    child = pulumi.ResourceOptions(parent=parent)
    # Bucket names are global: AWS appends a unique suffix to the prefix. Emptied on
    # destroy unless protected; protected, it outlives `pulumi destroy` like the jobs table
    # (protect + retain_on_delete, BatchPlatform's `keep`).
    bucket = aws.s3.Bucket(
        f"{name}-results",
        bucket_prefix=f"{name_prefix}-results-",
        force_destroy=not protect,
        opts=pulumi.ResourceOptions(parent=parent, protect=protect, retain_on_delete=protect),
    )
    # S3's four public-access switches, all on (duplicates pairs the shape with other flags).
    public_block = aws.s3.BucketPublicAccessBlock(
        f"{name}-results-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    ownership = aws.s3.BucketOwnershipControls(
        f"{name}-results-ownership",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=child,
    )
    encryption = _encryption(name, bucket, child)
    lifecycle = _lifecycle(name, bucket, results, child)
    tls_only = aws.s3.BucketPolicy(
        f"{name}-results-tls-only",
        bucket=bucket.id,
        policy=iam.policy_document(
            iam.deny_insecure_transport(
                ["s3:*"], [bucket.arn, pulumi.Output.concat(bucket.arn, "/*")]
            )
        ),
        # S3 rejects a bucket policy while the public access block is being changed.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[public_block]),
    )
    return StoredResults(bucket, (public_block, ownership, encryption, lifecycle, tls_only))


def _encryption(
    name: str, bucket: aws.s3.Bucket, child: pulumi.ResourceOptions
) -> aws.s3.BucketServerSideEncryptionConfiguration:
    return aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-results-encryption",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"  # SSE-S3: no KMS request charges per object
                ),
            )
        ],
        opts=child,
    )


def _lifecycle(
    name: str, bucket: aws.s3.Bucket, results: ResultsConfig, child: pulumi.ResourceOptions
) -> aws.s3.BucketLifecycleConfiguration:
    return aws.s3.BucketLifecycleConfiguration(
        f"{name}-results-lifecycle",
        bucket=bucket.id,
        rules=[
            _expire_rule("expire-results", "results/", results.expire_days),
            _expire_rule("expire-inputs", "inputs/", results.inputs_expire_days),
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="abort-incomplete-uploads",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=1
                ),
            ),
        ],
        opts=child,
    )


def _expire_rule(
    rule_id: str, prefix: str, days: int
) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
    return aws.s3.BucketLifecycleConfigurationRuleArgs(
        id=rule_id,
        status="Enabled",
        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
    )
