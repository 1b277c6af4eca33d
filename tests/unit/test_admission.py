"""The admission webhook's pure decisions: identity stamping and forgery, grants, approvals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskgrant.domain import admission, constants
from taskgrant.domain.admission import FORBIDDEN, INVALID, Refusal
from taskgrant.domain.manifests import SECRET_RULE
from taskgrant.domain.models import TaskGrantApprovalSpec
from taskgrant.domain.policy import Policy, admission_verdict, parse_policies

REQUESTER = constants.REQUESTER_ANNOTATIONS
APPROVER = constants.APPROVER_ANNOTATIONS
ALICE = {"username": "alice", "uid": "uid-alice", "groups": ["dev", "system:authenticated"]}
BOB = {"username": "bob", "uid": "uid-bob", "groups": ["sre"]}
GRANT_UID = "grant-uid-1"


def body(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "release-42", "namespace": "ci"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": spec}


def stamped(user: dict[str, Any], keys: tuple[str, str, str] = REQUESTER) -> dict[str, str]:
    return admission.stamp(user, keys)


def test_stamp_is_the_user_info_with_groups_as_json() -> None:
    assert stamped(ALICE) == {
        constants.ANNOTATION_REQUESTER_USERNAME: "alice",
        constants.ANNOTATION_REQUESTER_UID: "uid-alice",
        constants.ANNOTATION_REQUESTER_GROUPS: json.dumps(["dev", "system:authenticated"]),
    }
    # Some authenticators give no uid or groups: stamped as empty, never left to the user.
    assert stamped({"username": "system:serviceaccount:ci:runner"}, APPROVER) == {
        constants.ANNOTATION_APPROVER_USERNAME: "system:serviceaccount:ci:runner",
        constants.ANNOTATION_APPROVER_UID: "",
        constants.ANNOTATION_APPROVER_GROUPS: "[]",
    }


def test_create_with_the_stamp_is_accepted() -> None:
    assert admission.identity_refusal("CREATE", ALICE, body(stamped(ALICE)), None, REQUESTER) is None


@pytest.mark.parametrize(
    "annotations",
    [
        None,  # our mutation did not run
        {**stamped(ALICE), constants.ANNOTATION_REQUESTER_USERNAME: "bob"},
        {**stamped(ALICE), constants.ANNOTATION_REQUESTER_GROUPS: '["system:masters"]'},
    ],
)
def test_create_whose_identity_differs_from_the_requester_is_refused(
    annotations: dict[str, str] | None,
) -> None:
    refusal = admission.identity_refusal("CREATE", ALICE, body(annotations), None, REQUESTER)
    assert refusal is not None and refusal.code == FORBIDDEN
    assert "cannot be set by hand" in refusal.message


def test_update_may_not_add_change_or_remove_the_identity() -> None:
    before = body(stamped(ALICE))
    unchanged = body({**stamped(ALICE), "other": "x"})
    assert admission.identity_refusal("UPDATE", BOB, unchanged, before, REQUESTER) is None
    changed = body({**stamped(ALICE), constants.ANNOTATION_REQUESTER_USERNAME: "bob"})
    removed = body({})
    for after, old in ((changed, before), (removed, before), (before, body(None))):
        refusal = admission.identity_refusal("UPDATE", ALICE, after, old, REQUESTER)
        assert refusal is not None
        assert refusal.message.endswith("cannot be added, changed or removed")


def test_a_grant_that_predates_the_webhook_may_still_be_updated() -> None:
    assert admission.identity_refusal("UPDATE", ALICE, body(None), body(None), REQUESTER) is None


def policies(**spec: Any) -> list[Policy]:
    valid, invalid = parse_policies(
        [
            {
                "metadata": {"name": "ci"},
                "spec": {
                    "namespaceSelector": {},
                    "rules": [{**SECRET_RULE, "requireResourceNames": True}],
                    **spec,
                },
            }
        ]
    )
    assert not invalid
    return valid


def verdict(spec: dict[str, Any], found: list[Policy]) -> Refusal | None:
    return admission.grant_refusal(admission_verdict("ci", "release-42", spec, found, {}))


def test_grant_refusals_carry_the_operators_reason_and_message() -> None:
    good = {"job": {"name": "release-42"}, "access": [{"rules": [SECRET_RULE]}]}
    assert verdict(good, policies()) is None
    assert verdict(good, []) == Refusal("PolicyDenied: no TaskGrantPolicy governs namespace ci", FORBIDDEN)
    invalid = verdict({"access": [{"rules": [SECRET_RULE]}]}, policies())
    assert invalid == Refusal(
        "InvalidSpec: spec: Value error, exactly one of job and jobTemplate must be set", INVALID
    )


APPROVAL = {"username": "carol", "uid": "uid-carol", "groups": ["approvers"]}


def grant_body(requester: dict[str, Any] | None = ALICE, policy: str | None = "ci") -> dict[str, Any]:
    grant = body(stamped(requester) if requester else None)
    grant["metadata"]["uid"] = GRANT_UID
    if policy:
        grant["status"] = {"phase": "AwaitingApproval", "policy": policy}
    return grant


def approval_spec(uid: str = GRANT_UID) -> TaskGrantApprovalSpec:
    return TaskGrantApprovalSpec.model_validate(
        {"grant": {"name": "release-42", "uid": uid}, "decision": "Approve"}
    )


APPROVING = policies(approval={"required": True, "approvers": {"users": ["bob"], "groups": ["approvers"]}})


def refusal_for(
    user: dict[str, Any],
    grant: dict[str, Any] | None = None,
    found: list[Policy] = APPROVING,
    uid: str = GRANT_UID,
) -> Refusal | None:
    grant = grant_body() if grant is None else grant
    name = admission.approval_policy_name(grant, None)
    return admission.approval_refusal(user, approval_spec(uid), grant, name, found)


def test_listed_approvers_by_name_or_group_may_approve() -> None:
    assert refusal_for(BOB) is None
    assert refusal_for(APPROVAL) is None


def test_self_approval_is_refused_by_username_or_uid() -> None:
    refusal = refusal_for({**ALICE, "groups": ["approvers"]})
    assert (
        refusal is not None
        and refusal.message == "self-approval is refused: alice requested grant release-42"
    )
    renamed = {"username": "alice-renamed", "uid": "uid-alice", "groups": ["approvers"]}
    assert refusal_for(renamed) is not None
    # An unknown uid on either side matches nothing: only the username counts then.
    unknown = {"username": "dave", "uid": "", "groups": ["approvers"]}
    assert refusal_for(unknown, grant_body({"username": "alice", "uid": ""})) is None


def test_unlisted_approver_is_refused() -> None:
    refusal = refusal_for({"username": "mallory", "uid": "m", "groups": ["dev"]})
    assert refusal == Refusal("mallory is not an approver listed by policy ci", FORBIDDEN)


def test_approval_for_another_or_missing_grant_is_refused() -> None:
    assert refusal_for(BOB, uid="other") == Refusal(
        f"names grant release-42 with uid other, but the grant has uid {GRANT_UID}", INVALID
    )
    missing = admission.approval_refusal(BOB, approval_spec(), None, None, APPROVING)
    assert missing is not None and "does not exist" in missing.message


def test_approval_needs_a_policy_that_requires_approval() -> None:
    assert refusal_for(BOB, found=policies()) == Refusal(
        "policy ci requires no approval for grant release-42", FORBIDDEN
    )
    gone = refusal_for(BOB, found=[])
    assert gone is not None and "is gone or invalid" in gone.message
    unadmitted = admission.approval_refusal(BOB, approval_spec(), grant_body(policy=None), None, APPROVING)
    assert unadmitted is not None and "allowed by no TaskGrantPolicy" in unadmitted.message


def test_the_status_policy_wins_over_todays_verdict() -> None:
    assert admission.approval_policy_name(grant_body(policy="ci"), "other") == "ci"
    assert admission.approval_policy_name(grant_body(policy=None), "other") == "other"


def test_approval_spec_is_parsed_or_refused() -> None:
    assert isinstance(admission.parse_approval({"spec": {"decision": "Maybe"}}), Refusal)
    parsed = admission.parse_approval({"spec": {"grant": {"name": "g", "uid": "u"}, "decision": "Deny"}})
    assert isinstance(parsed, TaskGrantApprovalSpec) and parsed.decision == "Deny"


def test_an_approvals_decision_never_changes_but_its_metadata_may() -> None:
    old = {"metadata": {}, "spec": {"decision": "Approve"}}
    assert admission.approval_change_refusal({"metadata": {"finalizers": []}, **old}, old) is None
    refusal = admission.approval_change_refusal({"spec": {"decision": "Deny"}}, old)
    assert refusal == Refusal("an approval is immutable: create a new one", INVALID)
