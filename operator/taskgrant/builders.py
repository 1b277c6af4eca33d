"""Pure builders: a grant in, Kubernetes object dicts out. No I/O here."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskgrant import constants
from taskgrant.models import GrantRef, TaskGrantSpec

# Role names stay well under every Kubernetes name limit; the hash makes them unique per grant.
NAME_PREFIX = "tg"
MAX_READABLE_PART = 40
HASH_LENGTH = 10


@dataclass(frozen=True)
class RoleTarget:
    """Where one access entry lands: its namespace and the Role/RoleBinding name there."""

    namespace: str
    name: str


def grant_labels(grant: GrantRef) -> dict[str, str]:
    return {
        constants.LABEL_MANAGED_BY: constants.MANAGER,
        constants.LABEL_GRANT_NAME: grant.name,
        constants.LABEL_GRANT_NAMESPACE: grant.namespace,
        constants.LABEL_GRANT_UID: grant.uid,
    }


def owner_reference(grant: GrantRef) -> dict[str, Any]:
    # No blockOwnerDeletion: it would need update rights on the grant's finalizers, and the
    # operator deletes these objects itself before the grant's finalizer is released.
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "name": grant.name,
        "uid": grant.uid,
        "controller": True,
    }


def object_metadata(grant: GrantRef, namespace: str, name: str) -> dict[str, Any]:
    """Metadata of every object a grant owns; ownerReferences cannot cross namespaces."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": grant_labels(grant)}
    if namespace == grant.namespace:
        meta["ownerReferences"] = [owner_reference(grant)]
    return meta


def service_account_name(grant: GrantRef, spec: TaskGrantSpec) -> str:
    return spec.service_account_name or grant.name


def role_targets(grant: GrantRef, spec: TaskGrantSpec) -> list[RoleTarget]:
    """One Role (and RoleBinding of the same name) per access entry, named uniquely for this grant.

    The hash covers the grant's namespace, name, uid and entry index, so two grants (even from
    different namespaces, or a grant recreated under the same name) never share an object name.
    """
    targets = []
    for index, entry in enumerate(spec.access):
        seed = f"{grant.namespace}/{grant.name}/{grant.uid}/{index}"
        digest = hashlib.sha256(seed.encode()).hexdigest()[:HASH_LENGTH]
        readable = grant.name[:MAX_READABLE_PART].rstrip("-.")
        targets.append(RoleTarget(entry.namespace or grant.namespace, f"{NAME_PREFIX}-{readable}-{digest}"))
    return targets


def build_service_account(grant: GrantRef, spec: TaskGrantSpec) -> dict[str, Any]:
    metadata = object_metadata(grant, grant.namespace, service_account_name(grant, spec))
    if spec.reason:
        metadata["annotations"] = {constants.ANNOTATION_REASON: spec.reason}
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata,
        # The Job gets its token from a projected volume or its own mount, never a legacy automount.
        "automountServiceAccountToken": False,
    }


def build_roles(grant: GrantRef, spec: TaskGrantSpec) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": object_metadata(grant, target.namespace, target.name),
            "rules": [rule.model_dump(by_alias=True, exclude_defaults=True) for rule in entry.rules],
        }
        for target, entry in zip(role_targets(grant, spec), spec.access, strict=True)
    ]


def build_role_bindings(grant: GrantRef, spec: TaskGrantSpec) -> list[dict[str, Any]]:
    subject = {
        "kind": "ServiceAccount",
        "name": service_account_name(grant, spec),
        "namespace": grant.namespace,
    }
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": object_metadata(grant, target.namespace, target.name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": target.name},
            "subjects": [subject],
        }
        for target in role_targets(grant, spec)
    ]


def build_event(
    involved: Mapping[str, Any], event_type: str, reason: str, message: str, now: datetime.datetime
) -> dict[str, Any]:
    """A core/v1 Event on the grant, named as kubectl and client-go name theirs (object.hex-time)."""
    meta = involved["metadata"]
    moment = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{int(now.timestamp() * 1e9):x}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", constants.API_VERSION),
            "kind": involved.get("kind", constants.KIND),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": constants.MANAGER},
        "reportingComponent": f"{constants.GROUP}/operator",
        "firstTimestamp": moment,
        "lastTimestamp": moment,
        "count": 1,
    }
