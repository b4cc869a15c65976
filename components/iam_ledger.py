"""``InlinePolicyLedger``: every IAM quota of a role that grows with what the program
declares (inline policy characters, trust policy characters, managed policies), checked
before IAM would refuse it. Importable from ``components.iam`` too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from components import aws_rules


def _role_check(role: str, documents: Sequence[pulumi.Output[str]]) -> pulumi.Output[int]:
    def check(texts: list[Any]) -> int:
        return aws_rules.role_inline_policies(role, [str(t) for t in texts])

    return pulumi.Output.all(*documents).apply(check)


def _trust_check(role: str, document: pulumi.Output[str]) -> pulumi.Output[int]:
    return document.apply(lambda text: aws_rules.trust_policy(role, str(text)))


class InlinePolicyLedger:
    """Every IAM quota of each role that grows with what the program declares, wherever the
    pieces are declared, checked before IAM would refuse them:

    - ``add(role, document)``: an inline policy; all of a role's together at most 10,240
      characters (``aws_rules.role_inline_policies``);
    - ``trust(role, document)``: the role's trust policy, at most 2,048 characters
      (``aws_rules.trust_policy``);
    - ``managed(role, policy_arns)``: managed policies attached to the role, at most 10
      (``aws_rules.managed_policy_count``).

    A plain-string trust policy and the managed-policy count are checked at once (the program
    fails where it declares them); documents holding Outputs are checked when they resolve:
    ``guard(value)`` returns ``value`` once everything recorded so far fits, or fails the
    program (``pulumi preview`` / ``up``) with ``AwsConstraintError`` naming the role, its size
    and the limit. Pass a guarded value into a resource created after the policies
    (FargateWorker's registration item) so the check is part of the deployment.
    """

    def __init__(self) -> None:
        self._documents: dict[str, list[pulumi.Output[str]]] = {}
        self._trust: dict[str, pulumi.Output[str]] = {}
        self._managed: dict[str, list[pulumi.Input[str]]] = {}

    def add(self, role: str, document: pulumi.Input[str]) -> None:
        self._documents.setdefault(role, []).append(pulumi.Output.from_input(document))

    def trust(self, role: str, document: pulumi.Input[str]) -> None:
        if isinstance(document, str):
            aws_rules.trust_policy(role, document)
        self._trust[role] = pulumi.Output.from_input(document)

    def managed(self, role: str, policy_arns: Sequence[pulumi.Input[str]]) -> None:
        attached = self._managed.setdefault(role, [])
        attached.extend(policy_arns)
        aws_rules.managed_policy_count(role, len(attached))

    def roles(self) -> list[str]:
        return sorted({*self._documents, *self._trust, *self._managed})

    def checks(self) -> list[pulumi.Output[int]]:
        """One Output per check recorded so far (each fails when its quota is exceeded)."""
        snapshot = {role: list(docs) for role, docs in self._documents.items()}
        checks = [_role_check(role, docs) for role, docs in snapshot.items()]
        checks += [_trust_check(role, doc) for role, doc in self._trust.items()]
        return checks

    def guard(self, value: pulumi.Output[Any], *others: InlinePolicyLedger) -> pulumi.Output[Any]:
        """``value`` once every check of this ledger (and of ``others``) passes."""
        checks = [c for ledger in (self, *others) for c in ledger.checks()]
        return pulumi.Output.all(value, *checks).apply(lambda resolved: resolved[0])
