"""Workflow-bound approvals with the real operator; identities as the admission webhook stamps them."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

from taskgrant.domain.manifests import grant_manifest
from taskgrant.emulator import EmulatedCluster

from .harness import GRANTS, TEST_CLIENT, Api, OperatorProcess, wait_for, wait_for_phase

NS = "ci"
RULES = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "requireResourceNames": True}]


def approval_policy(api: Api, **approval: Any) -> None:
    api.create_policy(
        "needs-approval",
        rules=RULES,
        approval={
            "required": True,
            "approvers": {"users": ["alice", "carol"], "groups": ["sre"]},
            **approval,
        },
    )


def stamped(kind: str, username: str, groups: tuple[str, ...] = (), uid: str | None = None) -> dict[str, str]:
    """The identity annotations the webhook writes (kind: requester or approver)."""
    return {
        f"taskgrant.dev/{kind}-username": username,
        f"taskgrant.dev/{kind}-uid": uid or f"uid-{username}",
        f"taskgrant.dev/{kind}-groups": json.dumps(list(groups)),
    }


def request_grant(api: Api, name: str = "release-42", requester: str = "bob", **spec: Any) -> dict[str, Any]:
    body = grant_manifest(NS, name, **spec)
    body["metadata"]["annotations"] = stamped("requester", requester)
    return dict(api.ok("POST", f"{GRANTS}/namespaces/{NS}/taskgrants", body))


def decide(
    api: Api,
    grant: dict[str, Any],
    approver: str,
    decision: str = "Approve",
    *,
    groups: tuple[str, ...] = (),
    uid: str | None = None,
    comment: str = "ok",
) -> None:
    api.ok(
        "POST",
        f"{GRANTS}/namespaces/{NS}/taskgrantapprovals",
        {
            "apiVersion": "taskgrant.dev/v1alpha1",
            "kind": "TaskGrantApproval",
            "metadata": {
                "name": f"{grant['metadata']['name']}-{approver}-{decision.lower()}",
                "namespace": NS,
                "annotations": stamped("approver", approver, groups),
            },
            "spec": {
                "grant": {"name": grant["metadata"]["name"], "uid": uid or grant["metadata"]["uid"]},
                "decision": decision,
                "comment": comment,
            },
        },
    )


def created(cluster: EmulatedCluster) -> list[str]:
    """What the operator (not the test) created of a grant's objects."""
    return [
        f"{r.plural}"
        for r in cluster.requests()
        if r.verb == "create"
        and r.user_agent != TEST_CLIENT
        and r.plural in ("serviceaccounts", "roles", "rolebindings", "jobs")
    ]


def test_no_access_until_a_listed_approver_approves(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    approval_policy(api)
    api.create_job(NS, "release-42")
    grant = request_grant(api, duration="10m")
    waiting = wait_for_phase(api, NS, "release-42", "AwaitingApproval")
    assert waiting["status"]["reason"] == "WaitingForApproval"
    assert waiting["status"]["message"] == "needs 1 more approval(s) from user alice, user carol, group sre"
    assert created(cluster) == []  # nothing exists before approval
    conditions = {c["type"]: c["status"] for c in waiting["status"]["conditions"]}
    assert conditions["Reconciling"] == "True" and conditions["Active"] == "False"

    approved = time.monotonic()
    decide(api, grant, "alice", comment="release window agreed")
    active = wait_for_phase(api, NS, "release-42", "Active")
    assert time.monotonic() - approved < 5
    assert active["status"]["approvals"] == [
        {"name": "release-42-alice-approve", "approver": "alice", "decision": "Approve"}
    ]
    assert active["status"]["approvedAt"] <= active["status"]["activatedAt"]
    # The expiry clock started at activation, not at the request.
    activated = datetime.datetime.fromisoformat(active["status"]["activatedAt"])
    assert datetime.datetime.fromisoformat(active["status"]["expiresAt"]) - activated == datetime.timedelta(
        minutes=10
    )
    wait_for(
        lambda: (
            {"ApprovalRecorded", "Approved", "Activated"}
            <= {e["reason"] for e in api.events(NS, "release-42")}
            or None
        ),
        what="decision events",
    )


def test_self_approval_unlisted_approvers_and_old_uids_count_for_nothing(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    approval_policy(api)
    api.create_job(NS, "release-42")
    grant = request_grant(api, requester="alice")  # alice is a listed approver, but asked herself
    wait_for_phase(api, NS, "release-42", "AwaitingApproval")
    decide(api, grant, "alice")
    decide(api, grant, "mallory")
    decide(api, grant, "carol", uid="uid-of-a-deleted-grant-with-this-name")
    waiting = wait_for(
        lambda: (
            (g := api.grant(NS, "release-42"))
            and "ignored" in g["status"]["message"]
            and g["status"]["message"].count(";") >= 3
            and g
        ),
        what="ignored approvals",
    )
    assert waiting["status"]["phase"] == "AwaitingApproval"
    message = waiting["status"]["message"]
    assert "release-42-alice-approve: self-approval by alice" in message
    assert "release-42-mallory-approve: mallory is not a listed approver" in message
    assert (
        "release-42-carol-approve: for another grant of this name (uid uid-of-a-deleted-grant-with-this-name)"
        in message
    )
    assert created(cluster) == []
    decide(api, grant, "dave", groups=("sre",))  # listed through a group
    assert wait_for_phase(api, NS, "release-42", "Active")["status"]["approvals"][0]["approver"] == "dave"


def test_two_approvers_when_the_policy_says_two(api: Api, operator: OperatorProcess) -> None:
    approval_policy(api, count=2)
    api.create_job(NS, "release-42")
    grant = request_grant(api)
    wait_for_phase(api, NS, "release-42", "AwaitingApproval")
    decide(api, grant, "alice")
    wait_for(
        lambda: (g := api.grant(NS, "release-42")) and g["status"].get("approvals") and g,
        what="the first approval recorded",
    )
    assert api.grant(NS, "release-42")["status"]["phase"] == "AwaitingApproval"  # type: ignore[index]
    decide(api, grant, "carol")
    wait_for_phase(api, NS, "release-42", "Active")


def test_one_deny_ends_the_grant(api: Api, operator: OperatorProcess, cluster: EmulatedCluster) -> None:
    approval_policy(api, count=2)
    api.create_job(NS, "release-42")
    grant = request_grant(api)
    wait_for_phase(api, NS, "release-42", "AwaitingApproval")
    decide(api, grant, "alice")
    decide(api, grant, "carol", "Deny", comment="not during the freeze")
    denied = wait_for_phase(api, NS, "release-42", "Denied")
    assert denied["status"]["reason"] == "ApprovalDenied"
    assert denied["status"]["message"] == "denied by carol: not during the freeze"
    assert created(cluster) == []


def test_no_approval_in_time_is_a_denial(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    approval_policy(api, timeout="2s")
    api.create_job(NS, "release-42")
    request_grant(api)
    denied = wait_for_phase(api, NS, "release-42", "Denied", timeout=15)
    assert denied["status"]["reason"] == "ApprovalTimeout"
    assert created(cluster) == []


def test_manual_revocation_ends_an_active_grant(api: Api, operator: OperatorProcess) -> None:
    api.create_policy("plain", rules=RULES)
    api.create_job(NS, "release-42")
    request_grant(api)
    wait_for_phase(api, NS, "release-42", "Active")
    api.patch(
        f"{GRANTS}/namespaces/{NS}/taskgrants/release-42",
        {"metadata": {"annotations": {"taskgrant.dev/revoke": "incident 77"}}},
    )
    revoked = wait_for_phase(api, NS, "release-42", "Revoked")
    assert revoked["status"]["reason"] == "ManuallyRevoked"
    assert revoked["status"]["message"] == "revoked on request: incident 77"
    assert api.managed_objects() == []


def test_requesters_may_only_ask_for_what_they_could_do(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_policy("own-rights-only", rules=RULES, requireRequesterPermissions=True)
    cluster.allow_access("bob", "get", "", "secrets", NS)
    api.create_job(NS, "by-bob")
    request_grant(api, "by-bob", requester="bob")
    assert wait_for_phase(api, NS, "by-bob", "Active")["status"]["policy"] == "own-rights-only"
    api.create_job(NS, "by-eve")
    request_grant(api, "by-eve", requester="eve")
    denied = wait_for_phase(api, NS, "by-eve", "Denied")
    assert denied["status"]["reason"] == "RequesterLacksPermission"
    assert denied["status"]["message"] == (
        "spec.access[0].rules[0]: eve may not get secrets signing-key in ci themselves"
    )
    reviews = [r for r in cluster.requests() if r.plural == "subjectaccessreviews"]
    assert [r.data["spec"]["user"] for r in reviews] == ["bob", "eve"]
    assert reviews[0].data["spec"]["resourceAttributes"] == {
        "namespace": NS,
        "verb": "get",
        "group": "",
        "resource": "secrets",
        "name": "signing-key",
    }
    assert [kind for kind, ns, name in api.managed_objects() if name.startswith("by-eve")] == []
