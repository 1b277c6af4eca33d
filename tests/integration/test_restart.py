"""State lives in the API: an operator that was down, killed or restarted loses nothing."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pytest

from taskgrant.emulator import EmulatedCluster

from .harness import CORE, RBAC, Api, OperatorProcess, wait_for, wait_for_phase

NS = "ci"
pytestmark = pytest.mark.usefixtures("permissive_policy")


def labelled(kind: str, namespace: str, name: str, grant: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1" if kind != "ServiceAccount" else "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "taskgrant-operator",
                "taskgrant.dev/grant-name": grant,
                "taskgrant.dev/grant-namespace": NS,
                "taskgrant.dev/grant-uid": uid,
            },
        },
        **({"rules": []} if kind == "Role" else {}),
        **(
            {
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [],
            }
            if kind == "RoleBinding"
            else {}
        ),
    }


def test_job_finishing_while_the_operator_is_down(api: Api, operator: OperatorProcess) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active")
    operator.kill()
    api.finish_job(NS, "release-42")
    time.sleep(0.5)
    assert len(api.managed_objects()) == 3  # nobody revoked yet: the operator is down
    operator.start()
    assert wait_for_phase(api, NS, "release-42", "Revoked")["status"]["reason"] == "JobSucceeded"
    assert api.managed_objects() == []


def test_deadline_passing_while_the_operator_is_down(api: Api, operator: OperatorProcess) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42", duration="2s")
    grant = wait_for_phase(api, NS, "release-42", "Active")
    operator.stop()
    expires = datetime.datetime.fromisoformat(grant["status"]["expiresAt"])
    while datetime.datetime.now(datetime.UTC) < expires + datetime.timedelta(seconds=0.5):
        time.sleep(0.1)
    operator.start()
    assert wait_for_phase(api, NS, "release-42", "Revoked")["status"]["reason"] == "DeadlineExceeded"
    assert api.managed_objects() == []


def test_a_restart_mid_life_keeps_the_grant_and_its_deadline(api: Api, operator: OperatorProcess) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42", duration="4s")
    before = wait_for_phase(api, NS, "release-42", "Active")
    objects = api.managed_objects()
    operator.stop()
    operator.start()
    time.sleep(0.5)
    after = api.grant(NS, "release-42")
    assert after is not None
    assert after["status"]["phase"] == "Active"
    assert after["status"]["expiresAt"] == before["status"]["expiresAt"]  # the clock did not restart
    assert after["status"]["activatedAt"] == before["status"]["activatedAt"]
    assert api.managed_objects() == objects  # no duplicates
    # The restarted operator still revokes on time: the deadline was scheduled again from status.
    assert wait_for_phase(api, NS, "release-42", "Revoked")["status"]["reason"] == "DeadlineExceeded"
    assert api.managed_objects() == []


def test_grant_created_while_down_is_served_on_start(api: Api, operator: OperatorProcess) -> None:
    operator.stop()
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    operator.start()
    wait_for_phase(api, NS, "release-42", "Active")


def test_orphans_are_removed_on_start(cluster: EmulatedCluster, api: Api, tmp_path: Path) -> None:
    from .harness import operator_process

    # A live grant's objects must survive the sweep; a vanished grant's and an ended grant's must not.
    api.create_job(NS, "live")
    for _ in operator_process(cluster, tmp_path):
        api.create_grant(NS, "live")
        live = wait_for_phase(api, NS, "live", "Active")
        api.create_job(NS, "ended")
        api.create_grant(NS, "ended")
        ended = wait_for_phase(api, NS, "ended", "Active")
    # Operator down: forge leftovers as a crash between create and revoke would leave them.
    for kind, path in (
        ("ServiceAccount", f"{CORE}/namespaces/{NS}/serviceaccounts"),
        ("Role", f"{RBAC}/namespaces/shared/roles"),
        ("RoleBinding", f"{RBAC}/namespaces/shared/rolebindings"),
    ):
        api.ok(
            "POST",
            path,
            labelled(kind, NS if kind == "ServiceAccount" else "shared", "ghost", "gone", "uid-gone"),
        )
    api.ok(
        "PATCH",
        f"/apis/taskgrant.dev/v1alpha1/namespaces/{NS}/taskgrants/ended/status",
        {"status": {"phase": "Revoked", "reason": "JobSucceeded"}},
        content_type="application/merge-patch+json",
    )
    ended_roles = [r["name"] for r in ended["status"]["roles"]]
    assert ended_roles and len(api.managed_objects()) == 9

    for _ in operator_process(cluster, tmp_path):
        live_uid = live["metadata"]["uid"]
        wait_for(
            lambda: (
                all(
                    obj[2] != "ghost" and obj[2] not in ended_roles and obj[2] != "ended"
                    for obj in api.managed_objects()
                )
                or None
            ),
            what="orphans removed",
        )
        remaining = api.managed_objects()
        assert len(remaining) == 3
        for _kind, namespace, name in remaining:
            assert namespace == NS and (name == "live" or name.startswith("tg-live-"))
        assert all(
            o["metadata"]["labels"]["taskgrant.dev/grant-uid"] == live_uid
            for o in api.items(f"{RBAC}/namespaces/{NS}/roles")
        )
        assert api.grant(NS, "live")["status"]["phase"] == "Active"  # type: ignore[index]
