"""Admission decisions as pure functions: who asked, who approved, and whether a grant may exist.

The webhook (taskgrant.controller.webhooks) feeds these with an AdmissionReview's parts and with what it read
from the API; nothing here does I/O. A refusal's message is what `kubectl apply` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from taskgrant.domain import constants
from taskgrant.domain.identity import Identity
from taskgrant.domain.models import (
    Reason,
    TaskGrantApprovalSpec,
    describe_validation_error,
    parse_status,
)
from taskgrant.domain.policy import Admission, Policy

CREATE: Final = "CREATE"
UPDATE: Final = "UPDATE"
# HTTP codes in the refusal, as the API server would use them: 403 for who, 422 for what.
FORBIDDEN: Final = 403
INVALID: Final = 422


@dataclass(frozen=True)
class Refusal:
    message: str
    code: int = FORBIDDEN


def _annotations(body: Mapping[str, Any] | None) -> Mapping[str, str]:
    annotations = ((body or {}).get("metadata") or {}).get("annotations")
    return annotations if isinstance(annotations, Mapping) else {}


def stamp(userinfo: Mapping[str, Any], keys: Sequence[str]) -> dict[str, str]:
    """Mutating: the identity annotations for a new object; they overwrite whatever the user wrote."""
    return Identity.from_userinfo(userinfo).annotations(keys)


def identity_refusal(
    operation: str | None,
    userinfo: Mapping[str, Any],
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    keys: Sequence[str],
) -> Refusal | None:
    """Validating: the identity annotations are the requester's on CREATE, and never change after.

    Mutating webhooks run before validating ones, so on CREATE a difference means that something
    after our stamp (another webhook, or a request that bypassed ours) forged it.
    """
    current = {key: _annotations(body).get(key) for key in keys}
    if operation == CREATE:
        expected = stamp(userinfo, keys)
        forged = sorted(key for key in keys if current[key] != expected[key])
        if forged:
            return Refusal(
                f"{', '.join(forged)} must be the requesting user's own identity, as the admission "
                "webhook stamps it; it cannot be set by hand"
            )
    elif operation == UPDATE:
        before = {key: _annotations(old).get(key) for key in keys}
        changed = sorted(key for key in keys if current[key] != before[key])
        if changed:
            return Refusal(f"{', '.join(changed)} cannot be added, changed or removed")
    return None


def grant_refusal(admission: Admission) -> Refusal | None:
    """Validating a new grant: the operator's own verdict, worded as its Denied event words it."""
    if admission.allowed or admission.reason is None:
        return None
    code = INVALID if admission.reason == Reason.INVALID_SPEC else FORBIDDEN
    return Refusal(f"{admission.reason.value}: {admission.message}", code)


def parse_approval(body: Mapping[str, Any]) -> TaskGrantApprovalSpec | Refusal:
    try:
        return TaskGrantApprovalSpec.model_validate(dict(body.get("spec") or {}))
    except ValidationError as error:
        return Refusal(describe_validation_error(error), INVALID)


def approval_policy_name(grant: Mapping[str, Any], admitted_by: str | None) -> str | None:
    """The policy that governs the grant's approval: the one its status names, else today's verdict."""
    return parse_status(grant.get("status")).policy or admitted_by


def approval_refusal(
    userinfo: Mapping[str, Any],
    spec: TaskGrantApprovalSpec,
    grant: Mapping[str, Any] | None,
    policy_name: str | None,
    policies: Iterable[Policy],
) -> Refusal | None:
    """Validating a new approval: the named grant, not its requester, an approver its policy lists.

    `grant` is the TaskGrant named by spec.grant.name as read now (None: absent); `policy_name` is
    `approval_policy_name` of it; `policies` are the cluster's valid TaskGrantPolicies.
    """
    name = spec.grant.name
    if grant is None:
        return Refusal(f"names grant {name}, which does not exist in this namespace", INVALID)
    actual_uid = (grant.get("metadata") or {}).get("uid")
    if actual_uid != spec.grant.uid:
        return Refusal(
            f"names grant {name} with uid {spec.grant.uid}, but the grant has uid {actual_uid}", INVALID
        )
    approver = Identity.from_userinfo(userinfo)
    requester = Identity.stamped_on(grant, constants.REQUESTER_ANNOTATIONS)
    if requester is not None and approver.same_person(requester):
        return Refusal(f"self-approval is refused: {requester.username} requested grant {name}")
    if policy_name is None:
        return Refusal(f"grant {name} is allowed by no TaskGrantPolicy, so there is nothing to approve")
    policy = next((policy for policy in policies if policy.name == policy_name), None)
    if policy is None:
        return Refusal(f"policy {policy_name}, which allowed grant {name}, is gone or invalid")
    approval = policy.spec.approval
    if approval is None or not approval.required:
        return Refusal(f"policy {policy_name} requires no approval for grant {name}")
    if not approval.lists(approver.username, list(approver.groups)):
        return Refusal(f"{approver.username} is not an approver listed by policy {policy_name}")
    return None


def approval_change_refusal(body: Mapping[str, Any], old: Mapping[str, Any] | None) -> Refusal | None:
    """An approval's decision never changes (as its CRD's CEL rule says). Metadata may: finalizers
    and kopf's bookkeeping must not lock an approval in place."""
    if (body.get("spec") or {}) != ((old or {}).get("spec") or {}):
        return Refusal("an approval is immutable: create a new one", INVALID)
    return None
