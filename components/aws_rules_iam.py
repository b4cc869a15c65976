"""IAM quotas and names, checked before IAM would refuse them: the size of a role's inline
policies and trust policy, its managed policy count, a role path. Importable from
``components.aws_rules`` too; ``components.iam_ledger`` applies them to every role."""

from __future__ import annotations

import re
from collections.abc import Iterable

from components.aws_rules_error import AwsConstraintError

# AWS rule (IAM User Guide, "IAM and AWS STS quotas",
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html): all inline
# policies of one role together at most 10,240 characters, a managed policy at most 6,144,
# 10 managed policies attached per role (20 on request), a role trust policy at most 2,048
# characters (4,096 on request). IAM does not count whitespace in these sizes.
IAM_ROLE_INLINE_POLICY_CHARS = 10_240
IAM_MANAGED_POLICY_CHARS = 6_144
IAM_MANAGED_POLICIES_PER_ROLE = 10
IAM_TRUST_POLICY_CHARS = 2_048
# AWS rule (same page, "IAM name requirements"): a path begins and ends with "/" and holds
# alphanumerics and + = , . @ _ -; the IAM API caps it at 512 characters.
_IAM_PATH = re.compile(r"^/(?:[A-Za-z0-9+=,.@_-]+/)*$")
IAM_PATH_MAX = 512


def policy_chars(document: str) -> int:
    """The size IAM counts for a policy document: its characters without whitespace."""
    return len("".join(document.split()))


def role_inline_policies(role: str, documents: Iterable[str]) -> int:
    """Total inline policy size of one role; raises before IAM would refuse it."""
    size = sum(policy_chars(d) for d in documents)
    if size > IAM_ROLE_INLINE_POLICY_CHARS:
        raise AwsConstraintError(
            f"IAM role {role}: inline policies",
            f"{size} characters",
            f"at most {IAM_ROLE_INLINE_POLICY_CHARS} characters for all inline policies of one "
            "role, whitespace not counted (IAM quota): grant by name prefix or role path "
            "instead of per resource",
        )
    return size


def trust_policy(role: str, document: str) -> int:
    size = policy_chars(document)
    if size > IAM_TRUST_POLICY_CHARS:
        raise AwsConstraintError(
            f"IAM role {role}: trust policy",
            f"{size} characters",
            f"at most {IAM_TRUST_POLICY_CHARS} characters (IAM quota)",
        )
    return size


def managed_policy_count(role: str, count: int) -> int:
    if count > IAM_MANAGED_POLICIES_PER_ROLE:
        raise AwsConstraintError(
            f"IAM role {role}: managed policies",
            count,
            f"at most {IAM_MANAGED_POLICIES_PER_ROLE} attached per role (IAM quota)",
        )
    return count


def iam_path(value: str, key: str = "IAM path") -> str:
    if len(value) > IAM_PATH_MAX or not _IAM_PATH.match(value):
        raise AwsConstraintError(
            key,
            value,
            f"'/' + segments of [A-Za-z0-9+=,.@_-] each ending in '/', <= {IAM_PATH_MAX}",
        )
    return value
