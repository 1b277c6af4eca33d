"""The admission webhook: kopf's handlers (handlers.py) come here; the API reads happen here, the
decisions in taskgrant.admission.

The chart owns the Mutating- and ValidatingWebhookConfiguration (and the TLS certificate), so the
operator needs no RBAC on admissionregistration.k8s.io. kopf serves each handler at /<handler id>.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

import kopf

from taskgrant.controller.reconciler import Config, Reconciler
from taskgrant.domain import admission, constants
from taskgrant.domain.models import GrantRef
from taskgrant.domain.policy import parse_policies
from taskgrant.k8s.resources import TASKGRANTS

# The handler ids, which are also the URL paths the chart's webhook configurations call.
MUTATE_GRANT: Final = "mutate-taskgrant"
VALIDATE_GRANT: Final = "validate-taskgrant"
MUTATE_APPROVAL: Final = "mutate-taskgrantapproval"
VALIDATE_APPROVAL: Final = "validate-taskgrantapproval"
PATHS: Final = (MUTATE_GRANT, VALIDATE_GRANT, MUTATE_APPROVAL, VALIDATE_APPROVAL)
# cert-manager's and kubernetes.io/tls Secrets' file names.
CERT_FILE: Final = "tls.crt"
KEY_FILE: Final = "tls.key"


class Unserved:
    """No webhook (--webhook-port 0): kopf refuses admission handlers without a server, so this one
    accepts nothing and yields no client config, forever."""

    def __call__(self, fn: kopf.WebhookFn) -> Unserved:
        return self

    def __aiter__(self) -> Unserved:
        return self

    async def __anext__(self) -> kopf.WebhookClientConfig:
        await asyncio.Event().wait()
        raise StopAsyncIteration


def server(config: Config) -> kopf.WebhookServerProtocol:
    """HTTPS on every interface: the certificate from `webhook_cert_dir`, re-read when it is renewed
    (kopf checks the files every minute); without one, kopf's self-signed one (needs certbuilder)."""
    if not config.webhook_port:
        return Unserved()
    certs = config.webhook_cert_dir
    return kopf.WebhookServer(
        port=config.webhook_port,
        certfile=os.path.join(certs, CERT_FILE) if certs else None,
        pkeyfile=os.path.join(certs, KEY_FILE) if certs else None,
    )


def stamp(operation: str | None, userinfo: Mapping[str, Any], patch: kopf.Patch, keys: Sequence[str]) -> None:
    # kopf calls a handler for any operation sent to its path, whatever its `operations` say.
    if operation != admission.CREATE:
        return
    patch.setdefault("metadata", {}).setdefault("annotations", {}).update(admission.stamp(userinfo, keys))


def _refuse(refusal: admission.Refusal | None) -> None:
    if refusal is not None:
        raise kopf.AdmissionError(refusal.message, code=refusal.code)


async def validate_grant(
    reconciler: Reconciler,
    operation: str | None,
    userinfo: Mapping[str, Any],
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
) -> None:
    _refuse(admission.identity_refusal(operation, userinfo, body, old, constants.REQUESTER_ANNOTATIONS))
    if operation == admission.CREATE:
        # Only new grants: the spec is immutable, and a grant a changed policy no longer allows must
        # still let the operator remove its finalizer.
        verdict = await reconciler.admit(_grant_ref(body), body.get("spec") or {}, reconciler.reads)
        _refuse(admission.grant_refusal(verdict))


async def validate_approval(
    reconciler: Reconciler,
    operation: str | None,
    userinfo: Mapping[str, Any],
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
) -> None:
    _refuse(admission.identity_refusal(operation, userinfo, body, old, constants.APPROVER_ANNOTATIONS))
    if operation == admission.UPDATE:
        _refuse(admission.approval_change_refusal(body, old))
        return
    spec = admission.parse_approval(body)
    if isinstance(spec, admission.Refusal):
        _refuse(spec)
        return
    api = reconciler.api
    grant = await api.get(TASKGRANTS, body["metadata"].get("namespace"), spec.grant.name)
    admitted_by = None
    if grant is not None and not (grant.get("status") or {}).get("policy"):
        # Not yet admitted by the operator: the policy it would pick is the one that decides.
        admitted_by = (
            await reconciler.admit(_grant_ref(grant), grant.get("spec") or {}, reconciler.reads)
        ).policy
    policies, _ = parse_policies(await reconciler.reads.policies())
    policy_name = admission.approval_policy_name(grant, admitted_by) if grant is not None else None
    _refuse(admission.approval_refusal(userinfo, spec, grant, policy_name, policies))


def _grant_ref(body: Mapping[str, Any]) -> GrantRef:
    meta = body.get("metadata") or {}
    # A new object may have no uid yet, nor a name when it uses generateName; admission needs neither.
    return GrantRef(
        namespace=meta.get("namespace") or "", name=meta.get("name") or "", uid=meta.get("uid") or ""
    )
