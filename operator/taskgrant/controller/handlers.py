"""kopf registration only: every handler delegates at once to the Reconciler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from taskgrant.controller import webhooks
from taskgrant.controller.reconciler import Reconciler
from taskgrant.domain import constants, jobs, lifecycle
from taskgrant.domain.models import Phase
from taskgrant.k8s.client import KubeApi
from taskgrant.k8s.views import WatchedIndices

GRANTS = (constants.GROUP, constants.VERSION, constants.PLURAL)
POLICIES = (constants.GROUP, constants.VERSION, constants.POLICY_PLURAL)
POLICY_USAGE_INTERVAL_SECONDS = 5.0


def _reconciler(memo: kopf.Memo) -> Reconciler:
    reconciler: Reconciler = memo["reconciler"]
    return reconciler


def _indexed(memo: kopf.Memo) -> Reconciler:
    """The reconciler, for resource handlers: kopf calls none of them before its indices are filled."""
    reconciler = _reconciler(memo)
    reconciler.indexed.set()
    return reconciler


@kopf.on.startup(id="configure")
async def configure(*, settings: kopf.OperatorSettings, memo: kopf.Memo, **indices: Any) -> None:
    """`indices`: kopf passes every index (empty until filled) to startup handlers too."""
    # The operator manages its finalizer itself (taskgrant.dev/cleanup), so kopf keeps no state on
    # grants: no finalizer of its own, no last-handled-configuration annotation, one write fewer.
    settings.posting.level = logging.WARNING  # our own events only, not kopf's per-handler chatter
    settings.watching.inactivity_timeout = memo["config"].watch_inactivity_timeout
    # The chart creates the webhook configurations (and the certificate): kopf only serves them.
    settings.admission.server = webhooks.server(memo["config"])
    settings.admission.managed = None
    view = WatchedIndices(indices["policy_bodies"], indices["namespace_labels"])
    reconciler = memo["reconciler"] = Reconciler(memo["api"], memo["config"], view)
    await reconciler.sweep_orphans()
    reconciler.scheduler.start()
    memo["policy_usage"] = asyncio.create_task(
        reconciler.report_policy_usage_every(POLICY_USAGE_INTERVAL_SECONDS, indices["grant_phases"])
    )


@kopf.on.login(id="login")
def login(*, memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    api: KubeApi = memo["api"]
    return api.connection_info()


@kopf.on.cleanup(id="shutdown")
async def shutdown(*, memo: kopf.Memo, **_: Any) -> None:
    reconciler = _reconciler(memo)
    memo["policy_usage"].cancel()
    await reconciler.scheduler.stop()
    reconciler.api.close()


# --- Indices: the operator's watch-fed caches. kopf fills them before it calls any handler. ---


@kopf.index(*GRANTS, id="grants_by_job")
def grants_by_job(
    *, namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str | None, str], str]:
    return {(namespace, jobs.raw_job_name(spec, name)): name}


@kopf.index(*GRANTS, id="grant_phases")
def grant_phases(*, status: kopf.Status, **_: Any) -> dict[str, str]:
    return {str(status.get("phase") or Phase.PENDING.value): str(status.get("policy") or "")}


@kopf.index(*POLICIES, id="policy_bodies")
def policy_bodies(*, name: str, body: kopf.Body, **_: Any) -> dict[str, kopf.Body]:
    return {name: body}


@kopf.index("", "v1", "namespaces", id="namespace_labels")
def namespace_labels(*, name: str, labels: kopf.Labels, **_: Any) -> dict[str, dict[str, str]]:
    return {name: dict(labels)}


@kopf.on.event(*GRANTS, id="grant-changed")
async def grant_changed(
    *, event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    if namespace is not None and lifecycle.needs_reconcile(event["type"], body):
        await _indexed(memo).reconcile(namespace, name)


@kopf.on.event(constants.GROUP, constants.VERSION, constants.APPROVAL_PLURAL, id="approval-changed")
async def approval_changed(*, namespace: str | None, spec: kopf.Spec, memo: kopf.Memo, **_: Any) -> None:
    grant = spec.get("grant")
    name = grant.get("name") if isinstance(grant, Mapping) else None
    if namespace is not None and isinstance(name, str):
        await _indexed(memo).reconcile(namespace, name)


@kopf.on.event("batch", "v1", "jobs", id="job-changed")
async def job_changed(
    *,
    event: kopf.RawEvent,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    grants_by_job: kopf.Index[tuple[str | None, str], str] | None = None,
    **_: Any,
) -> None:
    grants = list(grants_by_job.get((namespace, name), [])) if grants_by_job is not None else []
    if grants and namespace is not None:
        job = None if event["type"] == "DELETED" else event["object"]
        await asyncio.gather(*(_indexed(memo).reconcile(namespace, grant, job) for grant in grants))


@kopf.on.event(
    "", "v1", "serviceaccounts", labels={constants.LABEL_MANAGED_BY: constants.MANAGER}, id="account-changed"
)
async def account_changed(*, event: kopf.RawEvent, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    """A grant's ServiceAccount deleted (and maybe recreated by someone else) ends the grant."""
    if event["type"] == "DELETED":
        namespace = labels.get(constants.LABEL_GRANT_NAMESPACE)
        name = labels.get(constants.LABEL_GRANT_NAME)
        if namespace and name:
            await _indexed(memo).reconcile(namespace, name, account_gone=True)


@kopf.on.event(*POLICIES, id="policy-changed")
async def policy_changed(
    *, event: kopf.RawEvent, name: str, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    generation = None if event["type"] == "DELETED" else meta.get("generation")
    await _indexed(memo).policy_changed(name, generation)


@kopf.on.event("", "v1", "namespaces", id="namespace-changed")
async def namespace_changed(
    *, event: kopf.RawEvent, name: str, labels: kopf.Labels, memo: kopf.Memo, **_: Any
) -> None:
    await _indexed(memo).namespace_changed(name, None if event["type"] == "DELETED" else dict(labels))


# --- Admission webhook: who asked, who approved, and grants validated before they exist. ---
# Handler ids are the URL paths (webhooks.PATHS) that the chart's webhook configurations call.
APPROVALS = (constants.GROUP, constants.VERSION, constants.APPROVAL_PLURAL)


@kopf.on.mutate(*GRANTS, id=webhooks.MUTATE_GRANT, operations=["CREATE"])
def stamp_requester(
    *, userinfo: kopf.UserInfo, patch: kopf.Patch, operation: str | None = None, **_: Any
) -> None:
    webhooks.stamp(operation, userinfo, patch, constants.REQUESTER_ANNOTATIONS)


@kopf.on.validate(*GRANTS, id=webhooks.VALIDATE_GRANT, operations=["CREATE", "UPDATE"])
async def validate_grant(
    *,
    userinfo: kopf.UserInfo,
    body: kopf.Body,
    memo: kopf.Memo,
    operation: str | None = None,
    old: kopf.Body | None = None,
    **_: Any,
) -> None:
    await webhooks.validate_grant(_reconciler(memo), operation, userinfo, body, old)


@kopf.on.mutate(*APPROVALS, id=webhooks.MUTATE_APPROVAL, operations=["CREATE"])
def stamp_approver(
    *, userinfo: kopf.UserInfo, patch: kopf.Patch, operation: str | None = None, **_: Any
) -> None:
    webhooks.stamp(operation, userinfo, patch, constants.APPROVER_ANNOTATIONS)


@kopf.on.validate(*APPROVALS, id=webhooks.VALIDATE_APPROVAL, operations=["CREATE", "UPDATE"])
async def validate_approval(
    *,
    userinfo: kopf.UserInfo,
    body: kopf.Body,
    memo: kopf.Memo,
    operation: str | None = None,
    old: kopf.Body | None = None,
    **_: Any,
) -> None:
    await webhooks.validate_approval(_reconciler(memo), operation, userinfo, body, old)
