"""Faults: API errors, broken watch-streams, crashes, tampering. Nothing leaks, nothing is lost."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskgrant.emulator import EmulatedCluster, Fault

from .harness import CORE, RBAC, Api, OperatorProcess, operator_process, wait_for, wait_for_phase

NS = "ci"
pytestmark = pytest.mark.usefixtures("permissive_policy")


def creates(cluster: EmulatedCluster, plural: str) -> list[int | None]:
    return [r.status for r in cluster.requests() if r.verb == "create" and r.plural == plural]


@pytest.mark.parametrize(
    ("verb", "plural", "status", "retry_after"),
    [
        ("create", "rolebindings", 500, None),
        ("create", "roles", 429, 1),
        ("create", "serviceaccounts", 503, None),
        ("deletecollection", "rolebindings", 500, None),
        ("deletecollection", "serviceaccounts", 429, 1),
    ],
)
def test_api_errors_are_retried_and_the_grant_converges(
    api: Api,
    operator: OperatorProcess,
    cluster: EmulatedCluster,
    verb: str,
    plural: str,
    status: int,
    retry_after: int | None,
) -> None:
    cluster.inject_fault(Fault(verb, plural, status, times=3, retry_after=retry_after))
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active", timeout=20)
    assert len(api.managed_objects()) == 3  # all of it, once
    api.finish_job(NS, "release-42")
    assert wait_for_phase(api, NS, "release-42", "Revoked", timeout=20)["status"]["reason"] == "JobSucceeded"
    assert api.managed_objects() == []
    failed = [r for r in cluster.requests() if r.verb == verb and r.plural == plural and r.status == status]
    assert len(failed) == 3  # the faults really happened, and were retried past


def test_persistent_errors_never_leave_partial_access(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    # Role bindings cannot be created for a long while: the grant must not report Active meanwhile.
    cluster.inject_fault(Fault("create", "rolebindings", 500, times=12))
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for(
        lambda: len([s for s in creates(cluster, "rolebindings") if s == 500]) >= 6,
        timeout=20,
        what="several failed attempts",
    )
    grant = api.grant(NS, "release-42")
    assert grant is not None and grant.get("status", {}).get("phase") != "Active"
    api.finish_job(NS, "release-42")  # the task ended before access could start
    grant = wait_for_phase(api, NS, "release-42", "Revoked", timeout=40)
    assert grant["status"]["reason"] == "JobAlreadyFinished"
    assert api.managed_objects() == []


@pytest.mark.parametrize("plural", ["roles", "rolebindings"])
def test_a_conflict_on_create_without_an_object_is_retried(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster, plural: str
) -> None:
    # A 409 whose object then cannot be read (it vanished in between) must not be taken as success.
    cluster.inject_fault(Fault("create", plural, 409, times=1, reason="AlreadyExists"))
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    grant = wait_for_phase(api, NS, "release-42", "Active", timeout=20)
    [ref] = grant["status"]["roles"]
    assert api.get(f"{RBAC}/namespaces/{NS}/roles/{ref['name']}") is not None


def test_a_cut_watch_stream_is_reopened(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active")
    watches = len([r for r in cluster.requests() if r.verb == "watch" and r.plural == "jobs"])
    cluster.cut_watches()
    api.finish_job(NS, "release-42")  # possibly while no stream is open: the resumed watch replays it
    assert wait_for_phase(api, NS, "release-42", "Revoked")["status"]["reason"] == "JobSucceeded"
    assert len([r for r in cluster.requests() if r.verb == "watch" and r.plural == "jobs"]) > watches
    assert api.managed_objects() == []


@pytest.fixture
def impatient_operator(cluster: EmulatedCluster, tmp_path: Path) -> Iterator[OperatorProcess]:
    yield from operator_process(cluster, tmp_path, "--watch-inactivity-timeout", "2")


def test_a_silent_watch_stream_is_detected_and_no_revocation_is_missed(
    api: Api, impatient_operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active")
    cluster.silence_watches()  # streams stay open and deliver nothing: a hung connection
    api.finish_job(NS, "release-42")
    grant = wait_for_phase(api, NS, "release-42", "Revoked", timeout=15)
    assert grant["status"]["reason"] == "JobSucceeded"
    assert api.managed_objects() == []


def test_killed_between_role_and_binding_then_restarted(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    cluster.inject_fault(Fault("create", "rolebindings", 500, times=1000))
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for(lambda: creates(cluster, "rolebindings"), what="an attempt to bind")
    operator.kill()  # the Role exists, its RoleBinding does not
    kinds = [kind for kind, _, _ in api.managed_objects()]
    assert kinds == ["roles", "serviceaccounts"]
    cluster.clear_faults()
    operator.start()
    grant = wait_for_phase(api, NS, "release-42", "Active", timeout=20)
    objects = api.managed_objects()
    assert sorted(kind for kind, _, _ in objects) == ["rolebindings", "roles", "serviceaccounts"]
    assert [(n, m) for _, n, m in objects if _ == "roles"] == [(NS, grant["status"]["roles"][0]["name"])]
    api.finish_job(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Revoked")
    assert api.managed_objects() == []


def test_a_recreated_service_account_inherits_no_binding(api: Api, operator: OperatorProcess) -> None:
    api.create_job(NS, "release-42")
    api.create_grant(NS, "release-42")
    wait_for_phase(api, NS, "release-42", "Active")
    # Someone deletes the grant's ServiceAccount and makes their own under the same name.
    api.ok("DELETE", f"{CORE}/namespaces/{NS}/serviceaccounts/release-42")
    impostor = api.ok(
        "POST",
        f"{CORE}/namespaces/{NS}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "release-42", "namespace": NS}},
    )
    grant = wait_for_phase(api, NS, "release-42", "Revoked")
    assert grant["status"]["reason"] == "ServiceAccountDeleted"
    bindings = api.items(f"{RBAC}/rolebindings")
    assert [b for b in bindings if any(s.get("name") == "release-42" for s in b.get("subjects") or [])] == []
    survivor = api.get(f"{CORE}/namespaces/{NS}/serviceaccounts/release-42")
    assert (
        survivor is not None and survivor["metadata"]["uid"] == impostor["metadata"]["uid"]
    )  # not ours to delete


def test_deleting_a_target_namespace_under_an_active_grant(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.ok(
        "POST",
        f"{CORE}/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shared"}},
    )
    rule = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get"]}
    api.create_job(NS, "migrate")
    api.create_grant(NS, "migrate", access=[{"namespace": "shared", "rules": [rule]}])
    wait_for_phase(api, NS, "migrate", "Active")
    api.ok("DELETE", f"{CORE}/namespaces/shared")
    wait_for(
        lambda: all(ns != "shared" for _, ns, _ in api.managed_objects()) or None, what="namespace purge"
    )
    api.finish_job(NS, "migrate")
    grant = wait_for_phase(api, NS, "migrate", "Revoked")
    assert grant["status"]["reason"] == "JobSucceeded"
    assert api.managed_objects() == []
    assert api.items(f"{RBAC}/namespaces/shared/roles") == []  # nothing was recreated there


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_metrics_endpoint_serves_the_lifecycle(cluster: EmulatedCluster, api: Api, tmp_path: Path) -> None:
    port = free_port()
    for _ in operator_process(cluster, tmp_path, "--metrics-port", str(port)):
        api.create_job(NS, "release-42")
        api.create_grant(NS, "release-42", duration="2s")
        wait_for_phase(api, NS, "release-42", "Active")
        wait_for_phase(api, NS, "release-42", "Revoked")
        time.sleep(5.5)  # the phase gauge is recounted every 5 s

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }
        assert samples['taskgrant_activations_total{job_source="named"}'] == 1
        assert samples['taskgrant_revocations_total{phase="Revoked",reason="DeadlineExceeded"}'] == 1
        assert samples["taskgrant_deadline_lateness_seconds_count"] == 1
        assert samples["taskgrant_revocation_duration_seconds_count"] == 1
        assert samples['taskgrant_grants{phase="Revoked"}'] == 1
        assert samples['taskgrant_grants{phase="Active"}'] == 0
        assert samples['taskgrant_api_requests_total{code="201",verb="create"}'] >= 3
        assert samples['taskgrant_api_requests_total{code="200",verb="deletecollection"}'] == 3
        assert "taskgrant_reconcile_errors_total" in samples
        assert "process_resident_memory_bytes" in samples
