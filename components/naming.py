"""Logical names of a component's children, and the aliases that keep existing stacks.

A child's logical name is ``<its component's name>-<suffix>``, so two components of one type
never declare two children of one URN (Pulumi URNs carry the parents' types, not their names:
``api-role`` under two platforms' control planes would collide). A component renamed that way
passes the base its children were deployed under as ``previous``: each child then carries an
``aliases`` entry with its old name, and ``pulumi up`` renames it in place instead of
replacing it (https://www.pulumi.com/docs/iac/concepts/resources/options/aliases/).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi


@dataclass(frozen=True)
class ChildNames:
    """Names and options of one component's children."""

    parent: pulumi.Resource
    base: str
    """The component's logical name: every child's name starts with it."""
    previous: str | None = None
    """The base the children had before (``None``: never renamed)."""

    def name(self, suffix: str) -> str:
        return f"{self.base}-{suffix}"

    def opts(self, suffix: str, **options: Any) -> pulumi.ResourceOptions:
        """``parent=`` the component, plus the alias to the child's previous name."""
        aliases = self.aliases(suffix)
        return pulumi.ResourceOptions(parent=self.parent, aliases=aliases or None, **options)

    def aliases(self, suffix: str) -> list[pulumi.Alias]:
        if self.previous is None or self.previous == self.base:
            return []
        return [pulumi.Alias(name=f"{self.previous}-{suffix}")]


def renamed_from(previous: str | None, **options: Any) -> dict[str, Any]:
    """``ResourceOptions`` keywords for a component now named differently: an alias to the
    name it had (none when ``previous`` is ``None``)."""
    if previous is not None:
        options["aliases"] = [pulumi.Alias(name=previous)]
    return options


def node_resources(nodes: Any) -> list[pulumi.Resource]:
    """Every resource a ``nodes`` dataclass names (fields holding a resource, ``None`` or a
    tuple of resources), in field order."""
    from dataclasses import fields

    out: list[pulumi.Resource] = []
    for f in fields(nodes):
        value = getattr(nodes, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, pulumi.Resource):
                out.append(item)
    return out
