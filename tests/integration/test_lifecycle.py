"""Every lifecycle path, with the real operator process against the emulated API."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pytest

from taskgrant.domain.manifests import SECRET_RULE
from taskgrant.emulator import EmulatedCluster

from .harness import BATCH, CORE, GRANTS, RBAC, TEST_CLIENT, Api, OperatorProcess, wait_for, wait_for_phase

NS = "ci"
pytestmark = pytest.mark.usefixtures("permissive_policy")
LABELS_OF = {
    "app.kubernetes.io/managed-by": "taskgrant-operator",
    "taskgrant.dev/grant-name": "release-42",
    "taskgrant.dev/grant-namespace": NS,
}


def owner(grant: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "taskgrant.dev/v1alpha1",
            "kind": "TaskGrant",
            "name": grant["metadata"]["name"],
            "uid": grant["metadata"]["uid"],
            "controller": True,
        }
    ]


def writes_to(cluster: EmulatedCluster, plural: str, namespace: str | None = None) -> list[str]:
    return [
        f"{r.verb} {r.namespace}/{r.name}"
        for r in cluster.requests()
        if r.plural == plural
        and r.verb in ("create", "patch", "update", "delete", "deletecollection")
        and (namespace is None or r.namespace == namespace)
    ]


def test_activation_creates_exactly_the_requested_access(api: Api, operator: OperatorProcess) -> None:
    job = api.create_job(NS, "release-42")
    started = time.monotonic()
    grant = api.create_grant(NS, "release-42", duration="15m", reason="release pipeline run 42")
    grant = wait_for_phase(api, NS, "release-42", "Active")
    latency = time.monotonic() - started
    uid = grant["metadata"]["uid"]
    labels = {**LABELS_OF, "taskgrant.dev/grant-uid": uid}
    status = grant["status"]

    [role_ref] = status["roles"]
    assert role_ref["namespace"] == NS and role_ref["name"].startswith("tg-release-42-")
    role = api.get(f"{RBAC}/namespaces/{NS}/roles/{role_ref['name']}")
    binding = api.get(f"{RBAC}/namespaces/{NS}/rolebindings/{role_ref['name']}")
    account = api.get(f"{CORE}/namespaces/{NS}/serviceaccounts/release-42")
    assert role is not None and binding is not None and account is not None
    assert role["rules"] == [SECRET_RULE]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role_ref["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "release-42", "namespace": NS}]
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["annotations"] == {"taskgrant.dev/reason": "release pipeline run 42"}
    for obj in (role, binding, account):
        assert obj["metadata"]["labels"] == labels
        assert obj["metadata"]["ownerReferences"] == owner(grant)
    assert api.managed_objects() == sorted(
        [
            ("rolebindings", NS, role_ref["name"]),
            ("roles", NS, role_ref["name"]),
            ("serviceaccounts", NS, "release-42"),
        ]
    )

    assert status["job"] == {"name": "release-42", "uid": job["metadata"]["uid"]}
    assert status["serviceAccountName"] == "release-42"
    assert status["reason"] == "JobRunning"
    activated = datetime.datetime.fromisoformat(status["activatedAt"])
    expires = datetime.datetime.fromisoformat(status["expiresAt"])
    assert expires - activated == datetime.timedelta(minutes=15)
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Ready": "True", "Active": "True", "Reconciling": "False", "Stalled": "False"}
    assert latency < 5, f"activation took {latency:.2f}s"
    wait_for(lambda: [e for e in api.events(NS, "release-42") if e["reason"] == "Activated"], what="event")


def test_job_success_revokes_every_object(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active")
    api.finish_job(NS, "release-42", "Complete")
    finished = time.monotonic()
    grant = wait_for_phase(api, NS, "release-42", "Revoked")
    took = time.monotonic() - finished
    assert grant["status"]["reason"] == "JobSucceeded"
    assert grant["status"]["revokedAt"]
    assert api.managed_objects() == []
    conditions = {c["type"]: c["status"] for c in grant["status"]["conditions"]}
    assert conditions == {"Ready": "True", "Active": "False", "Reconciling": "False", "Stalled": "False"}
    assert took < 5, f"revocation took {took:.2f}s"
    # Bindings go first, then Roles, then the ServiceAccount.
    order = [r.plural for r in cluster.requests() if r.verb == "deletecollection"]
    assert order == ["rolebindings", "roles", "serviceaccounts"]
    wait_for(
        lambda: [
            e
            for e in api.events(NS, "release-42")
            if e["reason"] == "Revoked" and "JobSucceeded" in e["message"]
        ],
        what="revocation event",
    )


def test_job_failure_revokes(api: Api, operator: OperatorProcess) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active")
    api.finish_job(NS, "release-42", "Failed")
    assert wait_for_phase(api, NS, "release-42", "Revoked")["status"]["reason"] == "JobFailed"
    assert api.managed_objects() == []


def test_job_deletion_revokes(api: Api, operator: OperatorProcess) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active")
    api.ok("DELETE", f"{BATCH}/namespaces/{NS}/jobs/release-42")
    assert wait_for_phase(api, NS, "release-42", "Revoked")["status"]["reason"] == "JobDeleted"
    assert api.managed_objects() == []


def test_grant_waits_for_its_job_and_a_replacement_job_gets_nothing(
    api: Api, operator: OperatorProcess
) -> None:
    api.create_grant(NS, "release-42")
    pending = wait_for_phase(api, NS, "release-42", "Pending")
    assert pending["status"]["reason"] == "WaitingForJob"
    assert [kind for kind, _, _ in api.managed_objects()] == ["serviceaccounts"]  # the Job's pods need it
    first = api.create_job(NS, "release-42")
    active = wait_for_phase(api, NS, "release-42", "Active")
    assert active["status"]["job"]["uid"] == first["metadata"]["uid"]

    api.ok("DELETE", f"{BATCH}/namespaces/{NS}/jobs/release-42")
    api.create_job(NS, "release-42")  # same name, new uid: single use, no new access
    assert wait_for_phase(api, NS, "release-42", "Revoked")["status"]["reason"] == "JobDeleted"
    time.sleep(0.5)
    assert api.grant(NS, "release-42")["status"]["phase"] == "Revoked"  # type: ignore[index]
    assert api.managed_objects() == []


def test_duration_expiry_revokes_on_time(api: Api, operator: OperatorProcess) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42", duration="2s")
    grant = wait_for_phase(api, NS, "release-42", "Active")
    expires = datetime.datetime.fromisoformat(grant["status"]["expiresAt"])
    wait_for(lambda: api.managed_objects() == [] or None, timeout=10, what="objects gone")
    lateness = (datetime.datetime.now(datetime.UTC) - expires).total_seconds()
    grant = wait_for_phase(api, NS, "release-42", "Revoked")
    assert grant["status"]["reason"] == "DeadlineExceeded"
    assert -0.1 < lateness < 2, f"revoked {lateness:.2f}s after expiry"
    # The scheduler's path posts its events like every other path does.
    wait_for(
        lambda: [
            e
            for e in api.events(NS, "release-42")
            if e["reason"] == "Revoked" and "DeadlineExceeded" in e["message"]
        ],
        what="expiry event",
    )


def test_absolute_deadline_revokes_while_the_job_runs(api: Api, operator: OperatorProcess) -> None:
    deadline = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3)).replace(microsecond=0)
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42", deadline=deadline.strftime("%Y-%m-%dT%H:%M:%SZ"))
    grant = wait_for_phase(api, NS, "release-42", "Active")
    assert datetime.datetime.fromisoformat(grant["status"]["expiresAt"]) == deadline
    assert wait_for_phase(api, NS, "release-42", "Revoked")["status"]["reason"] == "DeadlineExceeded"
    assert api.managed_objects() == []


def test_not_before_holds_access_back(api: Api, operator: OperatorProcess) -> None:
    start = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)).replace(microsecond=0)
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42", notBefore=start.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert wait_for_phase(api, NS, "release-42", "Pending")["status"]["reason"] == "WaitingForNotBefore"
    assert [kind for kind, _, _ in api.managed_objects()] == ["serviceaccounts"]
    active = wait_for_phase(api, NS, "release-42", "Active")
    assert datetime.datetime.fromisoformat(active["status"]["activatedAt"]) >= start


def test_finished_job_never_gets_access(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_job(NS, "release-42")
    api.finish_job(NS, "release-42", "Complete")
    api.create_grant(NS, "release-42")
    grant = wait_for_phase(api, NS, "release-42", "Revoked")
    assert grant["status"]["reason"] == "JobAlreadyFinished"
    assert "activatedAt" not in grant["status"]
    assert [w for w in writes_to(cluster, "roles") if w.startswith("create")] == []
    assert [w for w in writes_to(cluster, "rolebindings") if w.startswith("create")] == []
    assert api.managed_objects() == []


def test_invalid_spec_is_denied_and_creates_nothing(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_job(NS, "bad")
    api.create_grant(NS, "bad", access=[{"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]}])
    grant = wait_for_phase(api, NS, "bad", "Denied")
    assert grant["status"]["reason"] == "InvalidSpec"
    assert grant["status"]["message"].startswith(
        "spec.access[0].rules[0].verbs: List should have at least 1 item"
    )
    conditions = {c["type"]: c["status"] for c in grant["status"]["conditions"]}
    assert conditions["Stalled"] == "True" and conditions["Ready"] == "False"
    for plural in ("serviceaccounts", "roles", "rolebindings"):
        assert [w for w in writes_to(cluster, plural) if w.startswith("create")] == []
    wait_for(
        lambda: [e for e in api.events(NS, "bad") if e["type"] == "Warning" and e["reason"] == "Denied"],
        what="denial event",
    )


def test_existing_service_account_is_never_adopted(api: Api, operator: OperatorProcess) -> None:
    existing = api.ok(
        "POST",
        f"{CORE}/namespaces/{NS}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer", "namespace": NS}},
    )
    api.create_job(NS, "release-42", service_account="deployer")
    api.create_grant(NS, "release-42", serviceAccountName="deployer")
    grant = wait_for_phase(api, NS, "release-42", "Denied")
    assert grant["status"]["reason"] == "ServiceAccountConflict"
    after = api.get(f"{CORE}/namespaces/{NS}/serviceaccounts/deployer")
    assert after is not None and after["metadata"]["uid"] == existing["metadata"]["uid"]
    assert "labels" not in after["metadata"]
    assert api.items(f"{RBAC}/namespaces/{NS}/rolebindings") == []


def test_deleting_an_active_grant_removes_everything_first(api: Api, operator: OperatorProcess) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    grant = wait_for_phase(api, NS, "release-42", "Active")
    assert grant["metadata"]["finalizers"] == ["taskgrant.dev/cleanup"]
    api.ok("DELETE", f"{GRANTS}/namespaces/{NS}/taskgrants/release-42")
    wait_for(lambda: api.grant(NS, "release-42") is None or None, what="grant gone")
    assert api.managed_objects() == []


def test_a_lifecycle_is_ten_writes_and_kopf_keeps_no_state(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Pending")
    api.create_job(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active")
    api.finish_job(NS, "release-42")
    grant = wait_for_phase(api, NS, "release-42", "Revoked")
    # The finalizer stays until the grant is deleted; kopf wrote no bookkeeping of its own.
    assert grant["metadata"]["finalizers"] == ["taskgrant.dev/cleanup"]
    assert [key for key in grant["metadata"].get("annotations") or {} if "kopf" in key] == []

    def writes() -> list[str]:
        return [
            f"{r.verb} {r.plural}{'/' + r.subresource if r.subresource else ''}"
            for r in cluster.requests()
            if r.namespace == NS
            and r.plural != "events"
            and r.verb in ("create", "patch", "update", "delete", "deletecollection")
            and not r.user_agent.startswith(TEST_CLIENT)
        ]

    assert writes() == [
        "patch taskgrants",  # the finalizer, before anything exists
        "create serviceaccounts",
        "patch taskgrants/status",  # Pending
        "create roles",
        "create rolebindings",
        "patch taskgrants/status",  # Active
        "deletecollection rolebindings",
        "deletecollection roles",
        "deletecollection serviceaccounts",
        "patch taskgrants/status",  # Revoked
    ]
    api.ok("DELETE", f"{GRANTS}/namespaces/{NS}/taskgrants/release-42")
    wait_for(lambda: api.grant(NS, "release-42") is None or None, what="grant gone")
    assert writes()[10:] == [
        "deletecollection rolebindings",
        "deletecollection roles",
        "deletecollection serviceaccounts",
        "deletecollection jobs",
        "patch taskgrants",  # the finalizer released
    ]


def test_cross_namespace_access_and_name_isolation(api: Api, operator: OperatorProcess) -> None:
    rule = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get"]}
    for namespace in ("team-a", "team-b"):
        api.create_job(namespace, "migrate")
        api.create_grant(
            namespace, "migrate", access=[{"namespace": "shared", "rules": [rule]}, {"rules": [SECRET_RULE]}]
        )
    grants = [wait_for_phase(api, namespace, "migrate", "Active") for namespace in ("team-a", "team-b")]
    shared = api.items(f"{RBAC}/namespaces/shared/roles")
    assert len(shared) == 2 and len({role["metadata"]["name"] for role in shared}) == 2
    for role in shared:
        assert role["rules"] == [rule] and "ownerReferences" not in role["metadata"]
    bindings = api.items(f"{RBAC}/namespaces/shared/rolebindings")
    assert sorted(b["subjects"][0]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert [r["namespace"] for r in grants[0]["status"]["roles"]] == ["shared", "team-a"]

    api.finish_job("team-a", "migrate")
    wait_for_phase(api, "team-a", "migrate", "Revoked")
    assert {obj[1] for obj in api.managed_objects()} == {"shared", "team-b"}
    assert [
        r["metadata"]["labels"]["taskgrant.dev/grant-namespace"]
        for r in api.items(f"{RBAC}/namespaces/shared/roles")
    ] == ["team-b"]


def test_a_changed_spec_revokes(api: Api, operator: OperatorProcess) -> None:
    # Real API servers refuse this through the CRD's CEL rule; the operator does not rely on it.
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active")
    api.patch(
        f"{GRANTS}/namespaces/{NS}/taskgrants/release-42",
        {"spec": {"access": [{"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}]}},
    )
    assert wait_for_phase(api, NS, "release-42", "Revoked")["status"]["reason"] == "SpecChanged"
    assert api.managed_objects() == []


def test_pending_grant_without_job_ends_at_the_maximum(
    cluster: EmulatedCluster, api: Api, tmp_path: Path
) -> None:
    from .harness import operator_process

    for _ in operator_process(cluster, tmp_path, "--max-duration", "2s"):
        api.create_grant(NS, "never")
        wait_for_phase(api, NS, "never", "Pending")
        grant = wait_for_phase(api, NS, "never", "Revoked", timeout=10)
        assert grant["status"]["reason"] == "DeadlineExceeded"
        assert api.managed_objects() == []
