"""Approval decisions as pure functions: which TaskGrantApprovals count, and what they add up to.

The admission webhook refuses self-approval and unlisted approvers before an approval is stored;
the operator checks again here (defence in depth), so an approval that slipped past a webhook
outage or a misconfiguration still counts for nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from taskgrant.domain import constants
from taskgrant.domain.identity import Identity
from taskgrant.domain.lifecycle import later
from taskgrant.domain.models import ApprovalPolicy, GrantRef, TaskGrantApprovalSpec


@dataclass(frozen=True)
class Decision:
    name: str
    approver: str
    decision: str
    comment: str | None

    @property
    def by(self) -> str:
        """ "alice: the reason", or "alice" without a comment: how events and messages cite it."""
        return f"{self.approver}: {self.comment}" if self.comment else self.approver


@dataclass(frozen=True)
class ApprovalState:
    approved: bool
    denied_by: Decision | None
    counted: tuple[Decision, ...]  # every valid decision, in creation order
    ignored: tuple[str, ...] = field(default=())  # why other approvals count for nothing
    deadline: datetime.datetime | None = None

    @property
    def approvers(self) -> list[str]:
        return [d.approver for d in self.counted if d.decision == "Approve"]


def approval_deadline(grant: GrantRef, policy: ApprovalPolicy, now: datetime.datetime) -> datetime.datetime:
    return later(grant.created or now, policy.timeout)


def evaluate_approvals(
    grant: GrantRef,
    requester: Identity | None,
    approvals: Iterable[Mapping[str, Any]],
    policy: ApprovalPolicy,
    now: datetime.datetime,
) -> ApprovalState:
    """Count the valid approvals: for this UID, by a stamped approver the policy lists, not the requester."""
    counted: list[Decision] = []
    ignored: list[str] = []
    seen: set[str] = set()
    for body in sorted(approvals, key=lambda b: str(b.get("metadata", {}).get("creationTimestamp", ""))):
        meta = body.get("metadata", {})
        name = str(meta.get("name"))
        try:
            spec = TaskGrantApprovalSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            ignored.append(f"{name}: invalid")
            continue
        if spec.grant.name != grant.name:
            continue
        approver = Identity.stamped_on(body, constants.APPROVER_ANNOTATIONS)
        if spec.grant.uid != grant.uid:
            ignored.append(f"{name}: for another grant of this name (uid {spec.grant.uid})")
        elif approver is None:
            ignored.append(f"{name}: no approver identity was stamped")
        elif requester is not None and approver.same_person(requester):
            ignored.append(f"{name}: self-approval by {approver.username}")
        elif not policy.lists(approver.username, list(approver.groups)):
            ignored.append(f"{name}: {approver.username} is not a listed approver")
        elif approver.username not in seen:
            seen.add(approver.username)
            counted.append(Decision(name, approver.username, spec.decision, spec.comment))
    denied_by = next((d for d in counted if d.decision == "Deny"), None)
    approvals_given = sum(1 for d in counted if d.decision == "Approve")
    return ApprovalState(
        approved=denied_by is None and approvals_given >= policy.count,
        denied_by=denied_by,
        counted=tuple(counted),
        ignored=tuple(ignored),
        deadline=approval_deadline(grant, policy, now),
    )
