"""Operator-run Jobs with a task-shaped token, and checks on Jobs that others create."""

from __future__ import annotations

import time
from typing import Any

from taskgrant.domain.manifests import SECRET_RULE
from taskgrant.emulator import EmulatedCluster

from .harness import BATCH, CORE, GRANTS, Api, OperatorProcess, wait_for, wait_for_phase

NS = "ci"
TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "release"}},
    "spec": {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [{"name": "fetch", "image": "git"}],
                "containers": [
                    {
                        "name": "sign",
                        "image": "cosign",
                        "volumeMounts": [{"name": "work", "mountPath": "/w"}],
                    },
                    {"name": "sidecar", "image": "shipper"},
                ],
                "volumes": [{"name": "work", "emptyDir": {}}],
            }
        },
    },
}
TOKEN_POLICY: dict[str, Any] = {
    "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "requireResourceNames": True}],
    "allowedAudiences": ["tickets.example.com", "sigstore"],
    "maxTokenExpirationSeconds": 1800,
}
MOUNT = {
    "name": "taskgrant-token",
    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    "readOnly": True,
}


def job_of(api: Api, name: str) -> dict[str, Any] | None:
    result = api.get(f"{BATCH}/namespaces/{NS}/jobs/{name}")
    return dict(result) if result is not None else None


def test_template_job_is_created_after_its_rbac_with_the_token(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_policy("tokens", **TOKEN_POLICY)
    api.create_grant(
        NS,
        "release-42",
        job=None,
        jobTemplate=TEMPLATE,
        token={"audiences": ["sigstore"], "expirationSeconds": 900},
    )
    grant = wait_for_phase(api, NS, "release-42", "Active")
    job = job_of(api, "release-42")
    assert job is not None
    assert grant["status"]["job"] == {"name": "release-42", "uid": job["metadata"]["uid"]}
    creates = [
        r.plural
        for r in cluster.requests()
        if r.verb == "create"
        and r.namespace == NS
        and r.plural in ("serviceaccounts", "roles", "rolebindings", "jobs")
    ]
    assert creates == ["serviceaccounts", "roles", "rolebindings", "jobs"]

    assert job["metadata"]["ownerReferences"][0]["uid"] == grant["metadata"]["uid"]
    assert job["metadata"]["labels"]["app"] == "release"
    assert job["metadata"]["labels"]["taskgrant.dev/grant-uid"] == grant["metadata"]["uid"]
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "release-42" and pod["automountServiceAccountToken"] is False
    assert pod["volumes"] == [
        {"name": "work", "emptyDir": {}},
        {
            "name": "taskgrant-token",
            "projected": {
                "defaultMode": 0o444,
                "sources": [
                    {
                        "serviceAccountToken": {
                            "path": "token",
                            "expirationSeconds": 900,
                            "audience": "sigstore",
                        }
                    },
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ],
            },
        },
    ]
    assert pod["initContainers"][0]["volumeMounts"] == [MOUNT]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "work", "mountPath": "/w"}, MOUNT]
    assert pod["containers"][1]["volumeMounts"] == [MOUNT]
    assert job["spec"]["backoffLimit"] == 0


def test_template_job_ends_the_grant_and_goes_with_it(api: Api, operator: OperatorProcess) -> None:
    api.create_policy("tokens", **TOKEN_POLICY)
    api.create_grant(NS, "release-42", job=None, jobTemplate=TEMPLATE)
    wait_for_phase(api, NS, "release-42", "Active")
    finished = time.monotonic()
    api.finish_job(NS, "release-42")
    assert wait_for_phase(api, NS, "release-42", "Revoked")["status"]["reason"] == "JobSucceeded"
    assert time.monotonic() - finished < 2  # driven by the Job's own event, not a later sweep
    assert api.managed_objects() == []
    assert job_of(api, "release-42") is not None  # kept for its logs until the grant goes
    api.ok("DELETE", f"{GRANTS}/namespaces/{NS}/taskgrants/release-42")
    wait_for(lambda: job_of(api, "release-42") is None or None, what="the grant's Job to be deleted")
    wait_for(lambda: api.grant(NS, "release-42") is None or None, what="the grant to be gone")


def test_deleting_an_active_template_grant_removes_access_and_job(
    api: Api, operator: OperatorProcess
) -> None:
    api.create_policy("tokens", **TOKEN_POLICY)
    api.create_grant(NS, "release-42", job=None, jobTemplate=TEMPLATE)
    wait_for_phase(api, NS, "release-42", "Active")
    api.ok("DELETE", f"{GRANTS}/namespaces/{NS}/taskgrants/release-42")
    wait_for(lambda: api.grant(NS, "release-42") is None or None, what="the grant to be gone")
    assert job_of(api, "release-42") is None
    assert api.managed_objects() == []


def test_a_named_job_running_as_another_account_gets_nothing(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_policy("tokens", **TOKEN_POLICY)
    api.create_job(NS, "release-42", service_account="builder")
    api.create_grant(NS, "release-42")
    grant = wait_for_phase(api, NS, "release-42", "Denied")
    assert grant["status"]["reason"] == "JobServiceAccountMismatch"
    assert grant["status"]["message"] == (
        "Job release-42 runs as ServiceAccount builder, not as the grant's release-42; no access given"
    )
    assert [
        r for r in cluster.requests() if r.verb == "create" and r.plural in ("roles", "rolebindings")
    ] == []
    assert api.managed_objects() == []


def test_an_automounted_token_is_flagged(api: Api, operator: OperatorProcess) -> None:
    api.create_policy("tokens", **TOKEN_POLICY)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "release-42", "namespace": NS},
        "spec": {
            "template": {
                "spec": {
                    "serviceAccountName": "release-42",
                    "automountServiceAccountToken": True,
                    "restartPolicy": "Never",
                    "containers": [{"name": "m", "image": "x"}],
                }
            }
        },
    }
    api.ok("POST", f"{BATCH}/namespaces/{NS}/jobs", job)
    api.create_grant(NS, "release-42")
    grant = wait_for_phase(api, NS, "release-42", "Active")
    [warning] = [c for c in grant["status"]["conditions"] if c["type"] == "Warning"]
    assert warning["status"] == "True" and warning["reason"] == "AutomountedToken"
    wait_for(
        lambda: [
            e
            for e in api.events(NS, "release-42")
            if e["type"] == "Warning" and e["reason"] == "AutomountedToken"
        ],
        what="warning event",
    )


def test_an_external_service_token_with_context_and_no_rules(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_policy("tokens", **TOKEN_POLICY)
    api.create_grant(
        NS,
        "agent-4711",
        job=None,
        jobTemplate=TEMPLATE,
        access=[],
        token={"audiences": ["tickets.example.com"]},
        context={"caseId": "4711"},
        duration="5m",
    )
    grant = wait_for_phase(api, NS, "agent-4711", "Active")
    assert grant["status"]["roles"] == []
    account = api.get(f"{CORE}/namespaces/{NS}/serviceaccounts/agent-4711")
    assert account is not None and account["metadata"]["annotations"] == {
        "context.taskgrant.dev/caseId": "4711"
    }
    assert [
        r for r in cluster.requests() if r.verb == "create" and r.plural in ("roles", "rolebindings")
    ] == []
    job = job_of(api, "agent-4711")
    assert job is not None
    token = job["spec"]["template"]["spec"]["volumes"][-1]["projected"]["sources"][0]["serviceAccountToken"]
    assert token == {"path": "token", "expirationSeconds": 600, "audience": "tickets.example.com"}


def test_token_settings_outside_policy_are_denied(
    api: Api, operator: OperatorProcess, cluster: EmulatedCluster
) -> None:
    api.create_policy("tokens", **TOKEN_POLICY)
    api.create_grant(NS, "wrong-audience", job=None, jobTemplate=TEMPLATE, token={"audiences": ["payments"]})
    api.create_grant(NS, "too-long", job=None, jobTemplate=TEMPLATE, token={"expirationSeconds": 3600})
    assert wait_for_phase(api, NS, "wrong-audience", "Denied")["status"]["message"] == (
        "policy tokens: spec.token.audiences: payments is not an allowed audience"
    )
    assert wait_for_phase(api, NS, "too-long", "Denied")["status"]["message"] == (
        "policy tokens: spec.token.expirationSeconds 3600 exceeds maxTokenExpirationSeconds 1800"
    )
    assert [
        r for r in cluster.requests() if r.verb == "create" and r.plural in ("jobs", "serviceaccounts")
    ] == []


def test_a_template_that_picks_its_own_account_is_refused(api: Api, operator: OperatorProcess) -> None:
    api.create_policy("tokens", **TOKEN_POLICY)
    template = {
        "spec": {
            "template": {
                "spec": {**TEMPLATE["spec"]["template"]["spec"], "serviceAccountName": "cluster-admin-sa"}
            }
        }
    }
    api.create_grant(NS, "sneaky", job=None, jobTemplate=template, access=[{"rules": [SECRET_RULE]}])
    grant = wait_for_phase(api, NS, "sneaky", "Denied")
    assert grant["status"]["reason"] == "InvalidSpec"
    assert "jobTemplate sets serviceAccountName" in grant["status"]["message"]
    assert job_of(api, "sneaky") is None
