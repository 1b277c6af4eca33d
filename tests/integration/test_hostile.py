"""Hostile grants against the running operator: clear statuses, nothing created, no crash loop."""

from __future__ import annotations

from typing import Any

import pytest

from taskgrant.domain.manifests import SECRET_RULE
from taskgrant.emulator import EmulatedCluster

from .harness import GRANTS, Api, OperatorProcess, wait_for_phase

NS = "ci"
pytestmark = pytest.mark.usefixtures("permissive_policy")

HOSTILE: dict[str, tuple[dict[str, Any], str]] = {
    "wrong-types": ({"job": "release", "access": {"rules": "all"}}, "spec.job: Input should be"),
    "huge-list": (
        {"access": [{"rules": [{**SECRET_RULE, "resourceNames": ["k"] * 5000}]}]},
        "spec.access[0].rules[0].resourceNames: List should have at most 64 items",
    ),
    "odd-unicode": (
        {"access": [{"namespace": "\uff43\uff49\u202e", "rules": [SECRET_RULE]}]},
        "spec.access[0].namespace: String should match pattern",
    ),
    "null-bytes": (
        {"serviceAccountName": "sa\x00admin"},
        "spec.serviceAccountName: String should match pattern",
    ),
    "astronomical": ({"duration": "24000000000h"}, "spec.duration: Value error"),
    "naive-time": ({"deadline": "2026-12-01T03:00:00"}, "spec.deadline: Input should have timezone info"),
    "extra-fields": ({"clusterWide": True}, "spec.clusterWide: Extra inputs are not permitted"),
    "a" * 64: ({}, "metadata.name: must be at most 63 characters"),
}


def test_hostile_grants_are_denied_clearly_and_create_nothing(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    for name, (spec, _) in HOSTILE.items():
        body = {
            "apiVersion": "taskgrant.dev/v1alpha1",
            "kind": "TaskGrant",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"job": {"name": "x"}, **spec},
        }
        if "access" not in spec:
            body["spec"]["access"] = [{"rules": [SECRET_RULE]}]
        api.ok("POST", f"{GRANTS}/namespaces/{NS}/taskgrants", body)
    for name, (_, message) in HOSTILE.items():
        grant = wait_for_phase(api, NS, name, "Denied")
        assert grant["status"]["reason"] == "InvalidSpec"
        assert message in grant["status"]["message"], grant["status"]["message"]
    assert [
        r
        for r in cluster.requests()
        if r.verb == "create" and r.plural in ("serviceaccounts", "roles", "rolebindings", "jobs")
    ] == []

    # Far past and far future: valid, and they end (or wait) cleanly.
    api.create_job(NS, "past")
    api.create_grant(NS, "past", deadline="1970-01-01T00:00:00Z")
    assert wait_for_phase(api, NS, "past", "Revoked")["status"]["reason"] == "DeadlineExceeded"
    api.create_job(NS, "future")
    api.create_grant(NS, "future", notBefore="9999-12-31T23:59:59Z")
    pending = wait_for_phase(api, NS, "future", "Pending")
    assert pending["status"]["expiresAt"] == "9999-12-31T23:59:59Z"

    # Still serving: a good grant right after activates.
    api.create_job(NS, "good")
    api.create_grant(NS, "good")
    wait_for_phase(api, NS, "good", "Active")
    logs = operator.logs()
    assert "Traceback" not in logs and "retrying in" not in logs  # no crash, no error loop
