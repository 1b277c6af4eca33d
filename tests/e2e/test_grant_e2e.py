"""A grant's whole life on a real cluster: the real image, the chart, the API server's own RBAC.

A TaskGrant with a jobTemplate gives its Job `get` on one secret. The Job's pod reads that secret
(allowed) and another (refused with Forbidden) and waits for the test to release it; meanwhile the
test proves the access is live and issues a token for the grant's ServiceAccount. When the Job
completes, the grant ends Revoked/JobSucceeded, the API server no longer authorizes the account,
and the token issued during the run no longer authenticates. A grant the policy does not cover
ends Denied and creates nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import KUBECTL_IMAGE, Cluster, wait_for

pytestmark = pytest.mark.e2e

NAMESPACE = "e2e"
POLICY = "e2e-secrets"
GRANT = "reader"  # also the Job's and the ServiceAccount's name
USER = f"system:serviceaccount:{NAMESPACE}:{GRANT}"
GRANT_LABEL = "taskgrant.dev/grant-name"

# The Job's pod: both reads must behave, then it waits until the test sets `release` on the granted
# secret (so the test can act while access is live). Exit 0 only if everything behaved.
JOB_SCRIPT = f"""
set -u
if ! kubectl get secret granted -n {NAMESPACE} -o name; then
  echo "FAIL: reading secret granted was refused"; exit 1
fi
if out=$(kubectl get secret forbidden -n {NAMESPACE} -o name 2>&1); then
  echo "FAIL: reading secret forbidden was allowed"; exit 1
fi
case "$out" in
  *Forbidden*) echo "ok: reading secret forbidden was refused: $out" ;;
  *) echo "FAIL: reading secret forbidden failed, but not with Forbidden: $out"; exit 1 ;;
esac
echo "waiting for the test to release the Job"
i=0
until [ -n "$(kubectl get secret granted -n {NAMESPACE} -o 'jsonpath={{.data.release}}')" ]; do
  i=$((i + 1))
  if [ "$i" -ge 150 ]; then echo "FAIL: never released"; exit 1; fi
  sleep 2
done
echo "PASS: granted secret read, forbidden secret refused"
"""


def secret(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "stringData": {"value": f"{name}-value"},
    }


def read_rule(name: str) -> dict[str, Any]:
    return {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [name], "verbs": ["get"]}


def grant(name: str, secret_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "taskgrant.dev/v1alpha1",
        "kind": "TaskGrant",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "access": [{"rules": [read_rule(secret_name)]}],
            "duration": "10m",
            "reason": "end-to-end test",
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": 600,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "check",
                                    "image": KUBECTL_IMAGE,
                                    "command": ["/bin/sh", "-c", JOB_SCRIPT],
                                }
                            ],
                        }
                    },
                }
            },
        },
    }


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> Iterator[str]:
    """Namespace e2e with a policy allowing `get` on secret granted only, and two secrets."""
    cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait", timeout=300)
    cluster.kubectl("delete", "taskgrantpolicy", POLICY, "--ignore-not-found")
    cluster.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "taskgrant.dev/v1alpha1",
            "kind": "TaskGrantPolicy",
            "metadata": {"name": POLICY},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["secrets"],
                        "verbs": ["get"],
                        "requireResourceNames": True,
                        "resourceNames": ["granted"],
                    }
                ],
                "maxDuration": "15m",
            },
        },
        secret("granted"),
        secret("forbidden"),
    )
    yield NAMESPACE


def status_of(cluster: Cluster, name: str) -> dict[str, Any]:
    body = cluster.get("taskgrant", name, NAMESPACE)
    return dict((body or {}).get("status") or {})


def wait_for_phase(cluster: Cluster, name: str, phase: str, timeout: float) -> dict[str, Any]:
    try:
        return wait_for(
            lambda: (status := status_of(cluster, name)).get("phase") == phase and status,
            timeout,
            f"grant {NAMESPACE}/{name} to be {phase}",
        )
    except AssertionError as error:
        raise AssertionError(
            f"{error}; status: {status_of(cluster, name)}\n{cluster.diagnostics(NAMESPACE)}"
        ) from None


def job_outcome(cluster: Cluster, name: str) -> str | None:
    job = cluster.get("job", name, NAMESPACE)
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return str(condition["type"])
    return None


def grant_objects(cluster: Cluster, name: str) -> list[str]:
    return cluster.names("serviceaccounts,roles,rolebindings", NAMESPACE, f"{GRANT_LABEL}={name}")


def test_job_gets_exactly_its_access_and_loses_it_when_it_completes(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.apply(grant(GRANT, "granted"))

    # Access is live: the API server authorizes the grant's ServiceAccount for the granted secret only.
    try:
        cluster.kubectl("wait", "-n", namespace, f"tg/{GRANT}", "--for=condition=Active", "--timeout=120s")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{cluster.diagnostics(namespace)}") from None
    active = status_of(cluster, GRANT)
    assert (active["phase"], active["reason"], active["policy"]) == ("Active", "JobRunning", POLICY)
    assert cluster.can_i("get", "secret/granted", namespace, USER)
    assert not cluster.can_i("get", "secret/forbidden", namespace, USER)
    assert not cluster.can_i("list", "secrets", namespace, USER)

    # A token issued while the Job runs works now (it authenticates, and reads the granted secret).
    token = cluster.kubectl("create", "token", GRANT, "-n", namespace, "--duration=10m").stdout.strip()
    review = cluster.token_review(token)
    assert review.get("authenticated") is True, review.get("error")
    assert review["user"]["username"] == USER
    as_token = cluster.token_kubeconfig(token, tmp_path / "token.kubeconfig")
    during = cluster.kubectl_as(as_token, "get", "secret", "granted", "-n", namespace, "-o", "name")
    assert during.returncode == 0, during.stderr

    # Release the Job: it exits 0 only if both of its reads behaved.
    cluster.kubectl(
        "patch",
        "secret",
        "granted",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"stringData": {"release": "1"}}),
    )
    try:
        outcome = wait_for(lambda: job_outcome(cluster, GRANT), 420, f"Job {namespace}/{GRANT} to finish", 2)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{cluster.diagnostics(namespace)}") from None
    logs = cluster.kubectl("logs", "-n", namespace, f"job/{GRANT}", check=False).stdout
    assert outcome == "Complete", f"the Job failed:\n{logs}\n{cluster.diagnostics(namespace)}"
    assert "PASS: granted secret read, forbidden secret refused" in logs, logs

    # The grant ended cleanly, and everything it created is gone.
    revoked = wait_for_phase(cluster, GRANT, "Revoked", 120)
    assert revoked["reason"] == "JobSucceeded", revoked
    assert revoked.get("revokedAt"), revoked
    assert grant_objects(cluster, GRANT) == []
    assert cluster.get("serviceaccount", GRANT, namespace) is None

    # The API server agrees: no authorization, and the token from the run no longer authenticates
    # (Kubernetes may take a moment to see the deletions: its authorizer and token caches).
    wait_for(
        lambda: not cluster.can_i("get", "secret/granted", namespace, USER),
        30,
        f"{USER} to lose get on secret/granted",
    )
    wait_for(
        lambda: cluster.token_review(token).get("authenticated") is not True,
        60,
        "the run's token to stop authenticating",
    )
    after = cluster.kubectl_as(as_token, "get", "secret", "granted", "-n", namespace, "-o", "name")
    assert after.returncode != 0
    assert "Unauthorized" in after.stderr, after.stderr


def test_grant_outside_the_policy_is_denied_and_creates_nothing(cluster: Cluster, namespace: str) -> None:
    name = "overreach"
    cluster.apply(grant(name, "forbidden"))

    denied = wait_for_phase(cluster, name, "Denied", 60)
    assert denied["reason"] == "PolicyDenied", denied
    assert f"policy {POLICY}" in denied["message"], denied
    conditions = {c["type"]: c["status"] for c in denied["conditions"]}
    assert conditions == {"Ready": "False", "Active": "False", "Reconciling": "False", "Stalled": "True"}

    assert cluster.names("rolebindings", namespace, f"{GRANT_LABEL}={name}") == []
    assert grant_objects(cluster, name) == []
    bindings = json.loads(cluster.kubectl("get", "rolebindings", "-n", namespace, "-o", "json").stdout)[
        "items"
    ]
    subjects = [s for b in bindings for s in b.get("subjects") or [] if s.get("name") == name]
    assert subjects == [], "no RoleBinding names the denied grant's ServiceAccount"
    assert cluster.get("job", name, namespace) is None, "a denied grant's Job is never created"
    assert not cluster.can_i(
        "get", "secret/forbidden", namespace, f"system:serviceaccount:{namespace}:{name}"
    )
