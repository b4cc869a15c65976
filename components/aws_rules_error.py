"""``AwsConstraintError``: what every check of ``components.aws_rules`` (and the components'
own checks) raises, naming the setting, the value given and what is allowed."""

from __future__ import annotations


class AwsConstraintError(ValueError):
    """A value AWS would reject (or that would break the pipeline) was given."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}: {value!r} is not valid; allowed: {allowed}")
