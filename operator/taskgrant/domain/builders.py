"""Pure builders: a grant in, Kubernetes object dicts out. No I/O here."""

from __future__ import annotations

import copy
import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskgrant.domain import constants
from taskgrant.domain.models import TOKEN_VOLUME, GrantRef, TaskGrantSpec, TokenSpec

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
    annotations = {
        f"{constants.CONTEXT_ANNOTATION_PREFIX}{key}": value for key, value in spec.context.items()
    }
    if spec.reason:
        annotations[constants.ANNOTATION_REASON] = spec.reason
    if annotations:
        metadata["annotations"] = annotations
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


def token_projection(token: TokenSpec) -> dict[str, Any]:
    """One projected volume: the grant's token(s), the cluster CA and the namespace, as clients expect.

    A projected token has one audience, so each audience gets its own file: the first at `token`
    (where client libraries look), the others at `token-1`, `token-2`, ... No audience means the API
    server's own.
    """
    audiences: list[str | None] = list(token.audiences) or [None]
    sources: list[dict[str, Any]] = []
    for index, audience in enumerate(audiences):
        projection: dict[str, Any] = {
            "path": "token" if index == 0 else f"token-{index}",
            "expirationSeconds": token.expiration_seconds,
        }
        if audience is not None:
            projection["audience"] = audience
        sources.append({"serviceAccountToken": projection})
    sources.append(
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
    )
    sources.append(
        {
            "downwardAPI": {
                "items": [
                    {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                ]
            }
        }
    )
    return {"name": TOKEN_VOLUME, "projected": {"defaultMode": 0o444, "sources": sources}}


def build_job(grant: GrantRef, spec: TaskGrantSpec) -> dict[str, Any]:
    """The Job for a jobTemplate grant: the template unchanged, except who it runs as and its token mount."""
    assert spec.job_template is not None  # only called for jobTemplate grants
    template = spec.job_template
    job_spec = copy.deepcopy(template.spec)
    pod = job_spec.setdefault("template", {}).setdefault("spec", {})
    pod["serviceAccountName"] = service_account_name(grant, spec)
    pod["automountServiceAccountToken"] = False
    pod["volumes"] = [*(pod.get("volumes") or []), token_projection(spec.effective_token)]
    mount = {"name": TOKEN_VOLUME, "mountPath": spec.effective_token.mount_path, "readOnly": True}
    for kind in ("initContainers", "containers"):
        for container in pod.get(kind) or []:
            container["volumeMounts"] = [*(container.get("volumeMounts") or []), dict(mount)]
    metadata = object_metadata(grant, grant.namespace, spec.job_name(grant.name))
    user_meta = template.metadata
    if user_meta is not None:
        metadata["labels"] = {**user_meta.labels, **metadata["labels"]}
        if user_meta.annotations:
            metadata["annotations"] = dict(user_meta.annotations)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}
