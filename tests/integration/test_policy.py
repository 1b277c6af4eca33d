"""Guardrails with the real operator: default deny, policy ceilings, continuous re-evaluation."""

from __future__ import annotations

import datetime
import time
from typing import Any

from taskgrant.domain.manifests import SECRET_RULE
from taskgrant.emulator import EmulatedCluster

from .harness import CORE, GRANTS, TEST_CLIENT, Api, OperatorProcess, wait_for, wait_for_phase

NS = "ci"
SIGNING_POLICY: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
    "rules": [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "requireResourceNames": True,
            "resourceNames": ["signing-key"],
        }
    ],
    "maxDuration": "15m",
}


def created(cluster: EmulatedCluster) -> list[str]:
    return [
        f"{r.plural} {r.namespace}/{r.name}"
        for r in cluster.requests()
        if r.verb == "create" and r.plural in ("serviceaccounts", "roles", "rolebindings")
    ]


def denial(api: Api, name: str, namespace: str = NS) -> str:
    grant = wait_for_phase(api, namespace, name, "Denied")
    assert grant["status"]["reason"] == "PolicyDenied"
    message: str = grant["status"]["message"]
    return message


def test_without_a_policy_nothing_is_granted(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    assert denial(api, "release-42") == "no TaskGrantPolicy governs namespace ci"
    assert created(cluster) == []
    events = wait_for(
        lambda: [e for e in api.events(NS, "release-42") if e["type"] == "Warning"], what="event"
    )
    assert events[0]["reason"] == "Denied"
    assert "PolicyDenied: no TaskGrantPolicy governs namespace ci" in events[0]["message"]
    conditions = {c["type"]: c["status"] for c in api.grant(NS, "release-42")["status"]["conditions"]}  # type: ignore[index]
    assert conditions["Stalled"] == "True"


def test_a_covered_grant_is_allowed_and_capped(api: Api, operator: OperatorProcess) -> None:
    api.create_policy("ci-signing", **SIGNING_POLICY)
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")  # no duration: the policy's maxDuration caps it
    grant = wait_for_phase(api, NS, "release-42", "Active")
    assert grant["status"]["policy"] == "ci-signing"
    activated = datetime.datetime.fromisoformat(grant["status"]["activatedAt"])
    expires = datetime.datetime.fromisoformat(grant["status"]["expiresAt"])
    assert expires - activated == datetime.timedelta(minutes=15)
    policy = wait_for(
        lambda: (
            (p := api.get(f"{GRANTS}/taskgrantpolicies/ci-signing"))
            and p.get("status", {}).get("activeGrants") == 1
            and p
        ),
        timeout=15,
        what="usage count",
    )
    assert policy["status"]["activeGrants"] == 1


def test_one_verb_too_many_is_denied(api: Api, operator: OperatorProcess, cluster: EmulatedCluster) -> None:
    api.create_policy("ci-signing", **SIGNING_POLICY)
    api.create_job(NS, "greedy")
    rule = {**SECRET_RULE, "verbs": ["get", "update"]}
    api.create_grant(NS, "greedy", access=[{"rules": [rule]}])
    assert denial(api, "greedy") == (
        "policy ci-signing: spec.access[0].rules[0]: no policy rule covers it (verbs ['update'] not allowed)"
    )
    assert created(cluster) == []


def test_one_namespace_too_many_is_denied(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_policy("ci-signing", **SIGNING_POLICY)
    api.create_job(NS, "wide")
    api.create_grant(
        NS, "wide", access=[{"rules": [SECRET_RULE]}, {"namespace": "prod", "rules": [SECRET_RULE]}]
    )
    assert (
        denial(api, "wide") == "policy ci-signing: spec.access[1]: namespace prod is not a target namespace"
    )
    assert created(cluster) == []


def test_a_longer_duration_is_denied(api: Api, operator: OperatorProcess) -> None:
    api.create_policy("ci-signing", **SIGNING_POLICY)
    api.create_job(NS, "slow")
    api.create_grant(NS, "slow", duration="1h")
    assert denial(api, "slow") == "policy ci-signing: spec.duration 1h exceeds maxDuration 15m"


def test_never_grant_entries_are_refused_under_any_policy(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_policy("anything")  # "*" everywhere: still no exec into pods
    api.create_job(NS, "shell")
    api.create_grant(
        NS,
        "shell",
        access=[{"rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]}],
    )
    assert denial(api, "shell") == (
        "spec.access[0].rules[0]: 'create' on pods/exec is never granted: "
        "it runs commands in or reaches into running pods"
    )
    assert created(cluster) == []


def test_namespace_labels_select_governed_namespaces(api: Api, operator: OperatorProcess) -> None:
    api.ok(
        "POST",
        f"{CORE}/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"tier": "ci"}}},
    )
    api.create_policy(
        "ci-tier", namespaceSelector={"matchLabels": {"tier": "ci"}}, rules=SIGNING_POLICY["rules"]
    )
    for namespace in ("team-a", "team-b"):
        api.create_job(namespace, "release")
        api.create_grant(namespace, "release")
    assert wait_for_phase(api, "team-a", "release", "Active")["status"]["policy"] == "ci-tier"
    assert denial(api, "release", "team-b") == "no TaskGrantPolicy governs namespace team-b"


def test_relabelling_a_namespace_out_of_a_policy_revokes(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    namespace = f"{CORE}/namespaces/team-a"
    api.ok(
        "POST",
        f"{CORE}/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"tier": "ci"}}},
    )
    api.create_policy(
        "ci-tier", namespaceSelector={"matchLabels": {"tier": "ci"}}, rules=SIGNING_POLICY["rules"]
    )
    api.create_job("team-a", "release")
    api.create_grant("team-a", "release")
    wait_for_phase(api, "team-a", "release", "Active")

    def operator_reread_since(moment: float) -> bool | None:
        return (
            any(
                r.verb == "get"
                and r.plural == "taskgrants"
                and r.namespace == "team-a"
                and r.received > moment
                for r in cluster.requests()
                if not r.user_agent.startswith(TEST_CLIENT)
            )
            or None
        )

    # A label the policy does not select by: the grant is re-evaluated and kept.
    relabelled = time.monotonic()
    api.patch(namespace, {"metadata": {"labels": {"owner": "release-team"}}})
    wait_for(lambda: operator_reread_since(relabelled), what="re-evaluation after the relabel")
    assert (api.grant("team-a", "release") or {})["status"]["phase"] == "Active"

    # The label the policy selects by is removed: nothing governs team-a any more.
    relabelled = time.monotonic()
    api.patch(namespace, {"metadata": {"labels": {"tier": None}}})
    grant = wait_for_phase(api, "team-a", "release", "Revoked")
    took = time.monotonic() - relabelled
    assert grant["status"]["reason"] == "PolicyRevoked"
    assert grant["status"]["message"] == "no TaskGrantPolicy governs namespace team-a"
    assert api.managed_objects() == []
    assert took < 5, f"revocation took {took:.2f}s after the relabel"


def test_editing_a_policy_revokes_grants_it_no_longer_allows(api: Api, operator: OperatorProcess) -> None:
    api.create_policy("ci-signing", **SIGNING_POLICY)
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active")
    edited = time.monotonic()
    api.patch(
        f"{GRANTS}/taskgrantpolicies/ci-signing",
        {"spec": {"rules": [{**SIGNING_POLICY["rules"][0], "resourceNames": ["other-key"]}]}},
    )
    grant = wait_for_phase(api, NS, "release-42", "Revoked")
    took = time.monotonic() - edited
    assert grant["status"]["reason"] == "PolicyRevoked"
    assert "resourceNames ['signing-key'] not allowed" in grant["status"]["message"]
    assert api.managed_objects() == []
    assert took < 5, f"revocation took {took:.2f}s after the policy edit"


def test_an_edit_that_still_allows_keeps_the_grant(api: Api, operator: OperatorProcess) -> None:
    api.create_policy("ci-signing", **SIGNING_POLICY)
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    before = wait_for_phase(api, NS, "release-42", "Active")
    api.patch(f"{GRANTS}/taskgrantpolicies/ci-signing", {"spec": {"maxDuration": "5m"}})
    # Still allowed, but the shorter ceiling applies at once to the running grant.
    after = wait_for(
        lambda: (
            (g := api.grant(NS, "release-42"))
            and g["status"]["expiresAt"] != before["status"]["expiresAt"]
            and g
        ),
        what="shortened expiry",
    )
    assert after["status"]["phase"] == "Active"
    activated = datetime.datetime.fromisoformat(after["status"]["activatedAt"])
    assert datetime.datetime.fromisoformat(after["status"]["expiresAt"]) - activated == datetime.timedelta(
        minutes=5
    )


def test_deleting_a_policy_revokes_its_grants(api: Api, operator: OperatorProcess) -> None:
    api.create_policy("ci-signing", **SIGNING_POLICY)
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active")
    api.create_grant(NS, "waiting")  # admitted, its Job not there yet
    wait_for_phase(api, NS, "waiting", "Pending")
    api.ok("DELETE", f"{GRANTS}/taskgrantpolicies/ci-signing")
    for name in ("release-42", "waiting"):
        grant = wait_for_phase(api, NS, name, "Revoked")
        assert grant["status"]["reason"] == "PolicyRevoked"
        assert grant["status"]["message"] == "no TaskGrantPolicy governs namespace ci"
    assert api.managed_objects() == []


def test_another_policy_can_keep_a_grant_alive(api: Api, operator: OperatorProcess) -> None:
    api.create_policy("a-narrow", **SIGNING_POLICY)
    api.create_policy("b-broad")
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    assert wait_for_phase(api, NS, "release-42", "Active")["status"]["policy"] == "a-narrow"
    api.ok("DELETE", f"{GRANTS}/taskgrantpolicies/a-narrow")
    grant = wait_for(
        lambda: (g := api.grant(NS, "release-42")) and g["status"].get("policy") == "b-broad" and g,
        what="the grant to move to the other policy",
    )
    assert grant["status"]["phase"] == "Active"
