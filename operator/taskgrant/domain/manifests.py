"""Example manifests, as a pipeline would apply them: the demo, the tests and the benchmark share them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskgrant.domain import constants

API_VERSION = f"{constants.GROUP}/{constants.VERSION}"
# The example task's one permission: read one named Secret.
SECRET_RULE: dict[str, Any] = {
    "apiGroups": [""],
    "resources": ["secrets"],
    "resourceNames": ["signing-key"],
    "verbs": ["get"],
}
ANY_RULE: dict[str, Any] = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}


def job_manifest(
    namespace: str,
    name: str,
    service_account: str | None = None,
    *,
    image: str = "busybox",
    command: Sequence[str] = ("true",),
    automount_token: bool | None = None,
) -> dict[str, Any]:
    """A one-container Job running as `service_account` (default: the Job's name, as a grant's is)."""
    pod: dict[str, Any] = {
        "serviceAccountName": service_account or name,
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": image, "command": list(command)}],
    }
    if automount_token is not None:
        pod["automountServiceAccountToken"] = automount_token
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"spec": pod}},
    }


def grant_manifest(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """A grant of SECRET_RULE for the Job of the same name; a spec field given as None is left out."""
    body = {"job": {"name": name}, "access": [{"rules": [SECRET_RULE]}], **spec}
    return {
        "apiVersion": API_VERSION,
        "kind": "TaskGrant",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {key: value for key, value in body.items() if value is not None},
    }


def policy_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """A policy; by default one that governs every namespace and allows anything not never-granted."""
    return {
        "apiVersion": API_VERSION,
        "kind": "TaskGrantPolicy",
        "metadata": {"name": name},
        "spec": {"namespaceSelector": {}, "rules": [ANY_RULE], **spec},
    }


def namespace_manifest(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
