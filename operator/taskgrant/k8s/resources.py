"""The API resources the project uses, and how their paths and label selectors are written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskgrant.domain import constants


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        if subresource is not None:
            base += f"/{subresource}"
        return base


SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings")
JOBS = Resource("batch", "v1", "jobs")
EVENTS = Resource("", "v1", "events")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
TASKGRANTS = Resource(constants.GROUP, constants.VERSION, constants.PLURAL)
SUBJECT_ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False)
TASKGRANT_APPROVALS = Resource(constants.GROUP, constants.VERSION, constants.APPROVAL_PLURAL)
TASKGRANT_POLICIES = Resource(constants.GROUP, constants.VERSION, constants.POLICY_PLURAL, namespaced=False)
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def has_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    actual = obj.get("metadata", {}).get("labels") or {}
    return all(actual.get(key) == value for key, value in labels.items())


def still_present(obj: Mapping[str, Any]) -> bool:
    """A deleted object with finalizers lingers (and, for RBAC, keeps authorizing) until they clear."""
    return bool(obj.get("metadata", {}).get("finalizers"))
