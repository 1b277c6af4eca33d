"""Orchestration: carry out lifecycle decisions against the API.

Every path that can change a grant (kopf's grant and Job events, the scheduler's wake-ups, the
finalizer, the start-up sweep) comes here. Each reconcile re-reads the grant under a per-grant lock,
so stale event bodies never drive a decision, and every step is idempotent, so a retry or a restart
in the middle of a step repeats it harmlessly.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from taskgrant.controller import metrics
from taskgrant.controller.scheduler import Clock, Scheduler, utcnow
from taskgrant.domain import builders, constants, jobs, lifecycle
from taskgrant.domain.approvals import evaluate_approvals
from taskgrant.domain.identity import Identity
from taskgrant.domain.models import (
    TERMINAL_PHASES,
    GrantRef,
    Phase,
    Reason,
    TaskGrantSpec,
    TaskGrantStatus,
    parse_spec,
    parse_status,
)
from taskgrant.domain.policy import (
    Admission,
    access_reviews,
    admission_verdict,
    namespaces_to_label,
    parse_policies,
)
from taskgrant.domain.status import status_patch, timestamp, unchanged
from taskgrant.k8s.client import KubeApi
from taskgrant.k8s.resources import (
    EVENTS,
    JOBS,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
    SUBJECT_ACCESS_REVIEWS,
    TASKGRANT_APPROVALS,
    TASKGRANT_POLICIES,
    TASKGRANTS,
    Resource,
)
from taskgrant.k8s.views import ApiReads, ClusterView

logger = logging.getLogger(__name__)

GrantKey = tuple[str, str]
# When the reconcile that is running began: revocation latency counts from there.
NOTICED: contextvars.ContextVar[float] = contextvars.ContextVar("noticed")
# Revocation order: nothing may stay bound to a Role or ServiceAccount being removed.
REVOCATION_ORDER: tuple[Resource, ...] = (ROLE_BINDINGS, ROLES, SERVICE_ACCOUNTS)


class NotYetGone(Exception):
    """Some object of the grant still exists (a foreign finalizer holds it); try again later."""


class _Unset:
    pass


UNSET = _Unset()


@dataclass(frozen=True)
class Config:
    max_duration: datetime.timedelta = datetime.timedelta(seconds=constants.DEFAULT_MAX_DURATION_SECONDS)
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    # A watch-stream silent this long is taken as hung and reopened (kopf's default: 70 s).
    watch_inactivity_timeout: float = 70.0
    webhook_port: int = 0  # 0: no admission webhook
    webhook_cert_dir: str | None = None  # tls.crt and tls.key (e.g. from cert-manager); None: self-signed


def _valid_spec(body: Mapping[str, Any]) -> TaskGrantSpec | None:
    try:
        return parse_spec(body.get("spec") or {})
    except ValidationError:
        return None


def _owned_by(obj: Mapping[str, Any], grant: GrantRef) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return bool(labels.get(constants.LABEL_GRANT_UID) == grant.uid)


class GrantLocks:
    """One asyncio.Lock per grant, dropped when its last user leaves (never while someone waits on it)."""

    def __init__(self) -> None:
        self._locks: dict[GrantKey, asyncio.Lock] = {}
        self._users: Counter[GrantKey] = Counter()

    @contextlib.asynccontextmanager
    async def hold(self, key: GrantKey) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


class Reconciler:
    def __init__(
        self, api: KubeApi, config: Config, view: ClusterView | None = None, clock: Clock = utcnow
    ) -> None:
        self.api = api
        # Revocations get API threads of their own: never queued behind a burst of activations.
        self.revoking_api = api.lane("kube-revoke")
        self.config = config
        self.reads = ApiReads(api)
        self.view: ClusterView = view or self.reads  # where reconciles read policies and namespaces
        self.clock = clock
        # Set by the first resource handler: kopf runs none before its indices are filled.
        self.indexed = asyncio.Event()
        self.scheduler = Scheduler(self._wake, clock)
        self._locks = GrantLocks()
        # A cache, not state: after a restart every policy is evaluated once more.
        self._policy_generations: dict[str, int | None] = {}
        self._namespace_labels: dict[str, int] = {}  # a fingerprint of each namespace's labels, as last seen

    async def _wake(self, key: Hashable) -> None:
        assert isinstance(key, tuple)  # the scheduler only ever holds GrantKeys
        namespace, name = key
        await self.reconcile(namespace, name)

    async def reconcile(
        self,
        namespace: str,
        name: str,
        job: Mapping[str, Any] | _Unset | None = UNSET,
        account_gone: bool = False,
    ) -> None:
        """Bring one grant up to date; never raises: failures are retried by the scheduler.

        `job` is the grant's Job as an event just showed it (UNSET: read it); `account_gone` says the
        grant's ServiceAccount was just deleted or replaced.
        """
        key = (namespace, name)
        try:
            async with self._locks.hold(key):
                NOTICED.set(time.monotonic())
                await self._reconcile(namespace, name, job, account_gone)
            self.scheduler.succeeded(key)
        except Exception as error:
            metrics.RECONCILE_ERRORS.inc()
            delay = self.scheduler.retry(key)
            logger.warning(
                "reconciling grant %s/%s failed (%s); retrying in %.1fs", namespace, name, error, delay
            )

    async def _reconcile(
        self, namespace: str, name: str, job: Mapping[str, Any] | _Unset | None, account_gone: bool
    ) -> None:
        body = await self.api.get(TASKGRANTS, namespace, name)
        if body is None:
            self.scheduler.cancel((namespace, name))
            return
        if body["metadata"].get("deletionTimestamp"):
            self.scheduler.cancel((namespace, name))
            if constants.FINALIZER in (body["metadata"].get("finalizers") or []):
                await self._finalize(body)
            return
        grant = GrantRef.from_body(body)
        status = parse_status(body.get("status"))
        if status.phase in TERMINAL_PHASES:
            self.scheduler.cancel((namespace, name))
            return
        if status.phase in (Phase.PENDING, Phase.ACTIVE):
            # Revoke first, ask later: an ended Job or a passed expiry needs no admission, and a passed
            # expiry not even the Job; every step saved is taken off revocation latency. (The
            # operator's own maximum is the looser bound here: a policy's shorter one is already in
            # status.expiresAt.) An invalid spec falls through: the admission below says why.
            known = _valid_spec(body)
            if known is not None:
                now, limit = self.clock(), self.config.max_duration
                early: lifecycle.Decision | None = lifecycle.deadline_passed(
                    grant, known, status, now, limit, status.approved_at
                )
                if early is None:  # only then does the Job matter
                    if isinstance(job, _Unset):
                        job = await self.api.get(JOBS, namespace, known.job_name(name))
                    early = lifecycle.decide(
                        grant, known, status, job, now, limit, account_gone, status.approved_at
                    )
                if isinstance(early, lifecycle.Revoke):
                    await self._end(body, grant, known, status, Phase.REVOKED, early.reason, early.message)
                    return
        admission = await self.admit(grant, body.get("spec") or {})
        spec = admission.spec
        if spec is None:
            await self._end(body, grant, None, status, Phase.DENIED, Reason.INVALID_SPEC, admission.message)
            return
        if not admission.allowed:
            # Before admission nothing exists yet: denied. After it, a policy change took it away.
            phase, reason = (
                (Phase.DENIED, Reason.POLICY_DENIED)
                if status.phase in (None, Phase.AWAITING_APPROVAL)
                else (Phase.REVOKED, Reason.POLICY_REVOKED)
            )
            await self._end(body, grant, spec, status, phase, reason, admission.message)
            return
        revoke_request = (body["metadata"].get("annotations") or {}).get(constants.ANNOTATION_REVOKE)
        if revoke_request is not None:
            await self._end(
                body,
                grant,
                spec,
                status,
                Phase.REVOKED,
                Reason.MANUALLY_REVOKED,
                f"revoked on request: {revoke_request}",
            )
            return
        if status.phase is None and admission.check_requester:
            problem = await self._requester_lacks(body, grant, spec)
            if problem is not None:
                await self._end(
                    body, grant, spec, status, Phase.DENIED, Reason.REQUESTER_LACKS_PERMISSION, problem
                )
                return
        started = status.approved_at
        if admission.needs_approval and started is None:
            started = await self._await_approval(body, grant, status, admission)
            if started is None:
                return  # still waiting, or denied
        max_duration = min(filter(None, [self.config.max_duration, admission.max_duration]))
        if status.phase in (None, Phase.AWAITING_APPROVAL) and not await self._create_service_account(
            body, grant, spec, status
        ):
            return
        if isinstance(job, _Unset):
            job = await self.api.get(JOBS, namespace, spec.job_name(name))
        now = self.clock()
        decision = lifecycle.decide(grant, spec, status, job, now, max_duration, account_gone, started)
        match decision:
            case lifecycle.Revoke(reason=reason, message=message):
                await self._end(body, grant, spec, status, Phase.REVOKED, reason, message)
            case lifecycle.Wait(reason=reason, message=message, until=until):
                if status.phase == Phase.ACTIVE:  # the expiry or the allowing policy may have changed
                    assert status.job is not None and status.job.uid is not None and status.activated_at
                    kept = next((c.message for c in status.conditions if c.type == "Warning"), None)
                    patch = self._active_patch(
                        grant,
                        spec,
                        status,
                        status.job.uid,
                        status.activated_at,
                        until,
                        admission.policy,
                        now,
                        kept,
                    )
                else:
                    expiry = lifecycle.effective_expiry(grant, spec, status, now, max_duration, started)
                    patch = status_patch(
                        status,
                        Phase.PENDING,
                        reason,
                        message,
                        grant.generation,
                        now,
                        serviceAccountName=builders.service_account_name(grant, spec),
                        policy=admission.policy,
                        expiresAt=timestamp(expiry),
                    )
                await self._write_status(body, status, patch)
                self.scheduler.schedule((namespace, name), until)
            case lifecycle.Deny(reason=reason, message=message):
                await self._end(body, grant, spec, status, Phase.DENIED, reason, message)
            case lifecycle.Activate(job_uid=job_uid, expires_at=expires_at):
                warning = jobs.automount_warning(job) if job is not None and spec.job else None
                await self._activate(
                    body, grant, spec, status, job_uid, expires_at, admission.policy, now, warning
                )
            case lifecycle.Finished():
                self.scheduler.cancel((namespace, name))

    async def admit(
        self, grant: GrantRef, raw_spec: Mapping[str, Any], view: ClusterView | None = None
    ) -> Admission:
        """The same admission as `taskgrant check`, fed from the cluster's policies and namespaces."""
        view = view or self.view
        names = sorted(namespaces_to_label(grant.namespace, raw_spec))
        bodies, labels = await asyncio.gather(view.policies(), view.namespace_labels(names))
        policies, invalid = parse_policies(bodies)
        for policy in invalid:  # a broken policy allows nothing, and says why in the log
            logger.warning("ignoring invalid TaskGrantPolicy %s: %s", policy.name, policy.error)
        return admission_verdict(grant.namespace, grant.name, raw_spec, policies, labels)

    async def _requester_lacks(
        self, body: Mapping[str, Any], grant: GrantRef, spec: TaskGrantSpec
    ) -> str | None:
        """Why the requester may not do themselves what they ask for, or None if they may."""
        requester = Identity.stamped_on(body, constants.REQUESTER_ANNOTATIONS)
        if requester is None:
            return "no requester identity was stamped (is the admission webhook installed?)"
        try:
            reviews = access_reviews(grant.namespace, spec)
        except ValueError as error:
            return str(error)
        answers = await asyncio.gather(
            *(
                self.api.request(
                    "create",
                    "POST",
                    SUBJECT_ACCESS_REVIEWS.path(),
                    body={
                        "apiVersion": "authorization.k8s.io/v1",
                        "kind": "SubjectAccessReview",
                        "spec": {
                            "user": requester.username,
                            "uid": requester.uid,
                            "groups": list(requester.groups),
                            "resourceAttributes": attributes,
                        },
                    },
                )
                for _, attributes in reviews
            )
        )
        for (path, attributes), answer in zip(reviews, answers, strict=True):
            if not (answer.get("status") or {}).get("allowed"):
                what = "/".join(filter(None, [attributes["resource"], attributes.get("subresource")]))
                target = f" {attributes['name']}" if "name" in attributes else ""
                return (
                    f"{path}: {requester.username} may not {attributes['verb']} {what}{target} in "
                    f"{attributes['namespace']} themselves"
                )
        return None

    async def _await_approval(
        self, body: Mapping[str, Any], grant: GrantRef, status: TaskGrantStatus, admission: Admission
    ) -> datetime.datetime | None:
        """Count the grant's approvals; the moment it is approved, or None while it waits or is denied.

        Nothing exists for the grant before approval, and its expiry clock only starts then.
        """
        assert admission.approval is not None and admission.spec is not None
        policy = admission.approval
        requester = Identity.stamped_on(body, constants.REQUESTER_ANNOTATIONS)
        now = self.clock()
        state = evaluate_approvals(
            grant, requester, await self.api.list(TASKGRANT_APPROVALS, grant.namespace), policy, now
        )
        recorded = {approval.name for approval in status.approvals}
        for decision in state.counted:
            if decision.name not in recorded:
                await self.post_event(
                    body, "Normal", "ApprovalRecorded", f"{decision.decision} by {decision.by}"
                )
        approvals = [{"name": d.name, "approver": d.approver, "decision": d.decision} for d in state.counted]
        if state.denied_by is not None:
            await self._end(
                body,
                grant,
                admission.spec,
                status,
                Phase.DENIED,
                Reason.APPROVAL_DENIED,
                f"denied by {state.denied_by.by}",
            )
            return None
        if state.approved:
            await self.api.patch(
                TASKGRANTS,
                grant.namespace,
                grant.name,
                {"status": {"approvedAt": timestamp(now), "approvals": approvals}},
                "status",
            )
            await self.post_event(body, "Normal", "Approved", f"approved by {', '.join(state.approvers)}")
            return lifecycle.truncate_to_seconds(now)
        assert state.deadline is not None
        if now >= state.deadline:
            await self._end(
                body,
                grant,
                admission.spec,
                status,
                Phase.DENIED,
                Reason.APPROVAL_TIMEOUT,
                f"not approved by {timestamp(state.deadline)}",
            )
            return None
        missing = policy.count - len(state.approvers)
        listed = [
            *(f"user {u}" for u in policy.approvers.users),
            *(f"group {g}" for g in policy.approvers.groups),
        ]
        message = (
            f"needs {missing} more approval(s) from {', '.join(listed) or 'nobody (no approvers listed)'}"
        )
        if state.ignored:
            message += f"; ignored: {'; '.join(state.ignored)}"
        await self._write_status(
            body,
            status,
            status_patch(
                status,
                Phase.AWAITING_APPROVAL,
                Reason.WAITING_FOR_APPROVAL,
                message,
                grant.generation,
                now,
                policy=admission.policy,
                approvals=approvals,
                expiresAt=timestamp(state.deadline),
            ),
        )
        self.scheduler.schedule((grant.namespace, grant.name), state.deadline)
        return None

    async def _create_service_account(
        self, body: Mapping[str, Any], grant: GrantRef, spec: TaskGrantSpec, status: TaskGrantStatus
    ) -> bool:
        """Create the grant's ServiceAccount; False if the grant was denied instead.

        The finalizer goes on first: nothing may exist for a grant that could be deleted without it.
        """
        await self._set_finalizer(body, present=True)
        account, _ = await self.api.create(SERVICE_ACCOUNTS, builders.build_service_account(grant, spec))
        if _owned_by(account, grant):
            return True
        name = builders.service_account_name(grant, spec)
        await self._end(
            body,
            grant,
            spec,
            status,
            Phase.DENIED,
            Reason.SERVICE_ACCOUNT_CONFLICT,
            f"ServiceAccount {grant.namespace}/{name} already exists and was not created for "
            "this grant; it is left untouched",
        )
        return False

    async def _activate(
        self,
        body: Mapping[str, Any],
        grant: GrantRef,
        spec: TaskGrantSpec,
        status: TaskGrantStatus,
        job_uid: str | None,
        expires_at: datetime.datetime,
        policy: str | None,
        now: datetime.datetime,
        warning: str | None,
    ) -> None:
        """RBAC first, then (for a jobTemplate) the Job, then the Active status."""
        account = await self.api.get(
            SERVICE_ACCOUNTS, grant.namespace, builders.service_account_name(grant, spec)
        )
        if account is None or not _owned_by(account, grant):
            # Someone removed or replaced our ServiceAccount: binding its name would hand them access.
            await self._end(
                body,
                grant,
                spec,
                status,
                Phase.DENIED,
                Reason.SERVICE_ACCOUNT_CONFLICT,
                "the grant's ServiceAccount was deleted or replaced before activation",
            )
            return
        to_create = [
            (ROLES, builders.build_roles(grant, spec)),
            (ROLE_BINDINGS, builders.build_role_bindings(grant, spec)),
        ]
        if spec.job_template is not None:
            to_create.append((JOBS, [builders.build_job(grant, spec)]))
        for resource, objects in to_create:
            created = await asyncio.gather(*(self.api.create(resource, obj) for obj in objects))
            for (existing, _), obj in zip(created, objects, strict=True):
                if not _owned_by(existing, grant):
                    meta = obj["metadata"]
                    await self._end(
                        body,
                        grant,
                        spec,
                        status,
                        Phase.DENIED,
                        Reason.NAME_CONFLICT,
                        f"{obj['kind']} {meta['namespace']}/{meta['name']} exists and was not "
                        "created for this grant; it is left untouched",
                    )
                    return
                if resource is JOBS:
                    job_uid = existing["metadata"]["uid"]
        assert job_uid is not None  # a named Job's uid came from the decision, a created one's from above
        if self.clock() >= expires_at:  # it expired while the RBAC was being created (an API under load)
            await self._end(
                body,
                grant,
                spec,
                status,
                Phase.REVOKED,
                Reason.DEADLINE_EXCEEDED,
                f"expired at {timestamp(expires_at)} during activation",
            )
            return
        activated = lifecycle.truncate_to_seconds(now)
        patch = self._active_patch(grant, spec, status, job_uid, activated, expires_at, policy, now, warning)
        await self._write_status(body, status, patch)
        self.scheduler.schedule((grant.namespace, grant.name), expires_at)
        if warning is not None:
            await self.post_event(body, "Warning", "AutomountedToken", warning)
        message = patch["status"]["message"]
        metrics.ACTIVATIONS.labels(job_source="template" if spec.job_template else "named").inc()
        await self.post_event(body, "Normal", "Activated", self._with_reason(message, spec))
        logger.info(
            "grant %s/%s activated: %s", grant.namespace, grant.name, self._with_reason(message, spec)
        )

    def _active_patch(
        self,
        grant: GrantRef,
        spec: TaskGrantSpec,
        status: TaskGrantStatus,
        job_uid: str,
        activated: datetime.datetime,
        expires_at: datetime.datetime,
        policy: str | None,
        now: datetime.datetime,
        warning: str | None = None,
    ) -> dict[str, Any]:
        targets = builders.role_targets(grant, spec)
        job_name = spec.job_name(grant.name)
        return status_patch(
            status,
            Phase.ACTIVE,
            Reason.JOB_RUNNING,
            f"access active for Job {job_name} until {timestamp(expires_at)}",
            grant.generation,
            now,
            warning,
            serviceAccountName=builders.service_account_name(grant, spec),
            policy=policy,
            roles=[{"namespace": target.namespace, "name": target.name} for target in targets],
            job={"name": job_name, "uid": job_uid},
            activatedAt=timestamp(activated),
            expiresAt=timestamp(expires_at),
        )

    async def _end(
        self,
        body: Mapping[str, Any],
        grant: GrantRef,
        spec: TaskGrantSpec | None,
        status: TaskGrantStatus,
        phase: Phase,
        reason: Reason,
        message: str,
    ) -> None:
        """Remove everything the grant created, and only then record the final phase."""
        await self.remove_objects(grant, self._namespaces_of(grant, spec, status))
        if True:
            now = self.clock()
            metrics.REVOCATION_SECONDS.observe(time.monotonic() - NOTICED.get(time.monotonic()))
            if reason == Reason.DEADLINE_EXCEEDED and status.expires_at is not None:
                metrics.DEADLINE_LATENESS_SECONDS.observe(max(0.0, (now - status.expires_at).total_seconds()))
            metrics.REVOCATIONS.labels(phase=phase.value, reason=reason.value).inc()
            await self._write_status(
                body,
                status,
                status_patch(
                    status,
                    phase,
                    reason,
                    message,
                    grant.generation,
                    now,
                    revokedAt=timestamp(now),
                ),
            )
        self.scheduler.cancel((grant.namespace, grant.name))
        await self.post_event(
            body,
            "Warning" if phase == Phase.DENIED else "Normal",
            phase.value,
            f"{reason.value}: {self._with_reason(message, spec)}",
        )
        logger.info(
            "grant %s/%s %s (%s): %s", grant.namespace, grant.name, phase.value.lower(), reason.value, message
        )

    async def remove_objects(self, grant: GrantRef, namespaces: Iterable[str]) -> None:
        """Delete the grant's RoleBindings, then Roles, then ServiceAccount; raise until all are gone.

        Objects are found by the grant-uid label, so an object that merely shares a name is never
        touched, and objects created just before a crash are found without any status record.
        """
        labels = {constants.LABEL_GRANT_UID: grant.uid}
        unique = sorted(set(namespaces))
        for resource in REVOCATION_ORDER:
            scope = [grant.namespace] if resource is SERVICE_ACCOUNTS else unique
            gone = await asyncio.gather(
                *(self.revoking_api.delete_labelled(resource, ns, labels) for ns in scope)
            )
            if not all(gone):
                raise NotYetGone(f"some {resource.plural} of grant {grant.namespace}/{grant.name} remain")

    def _namespaces_of(
        self, grant: GrantRef, spec: TaskGrantSpec | None, status: TaskGrantStatus
    ) -> set[str]:
        namespaces = {grant.namespace} | {role.namespace for role in status.roles}
        if spec is not None:
            namespaces |= {target.namespace for target in builders.role_targets(grant, spec)}
        return namespaces

    async def _write_status(
        self, body: Mapping[str, Any], status: TaskGrantStatus, patch: dict[str, Any]
    ) -> None:
        if status.phase is not None and unchanged(status, patch):
            return
        meta = body["metadata"]
        await self.api.patch(TASKGRANTS, meta["namespace"], meta["name"], patch, subresource="status")

    async def post_event(self, body: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        """An Event on the grant. Best effort: a lost event must never block or undo a revocation."""
        try:
            await self.api.create(
                EVENTS, builders.build_event(body, event_type, reason, message, self.clock())
            )
        except Exception as error:
            logger.warning("could not post event %s on %s: %s", reason, body["metadata"]["name"], error)

    @staticmethod
    def _with_reason(message: str, spec: TaskGrantSpec | None) -> str:
        return f"{message} (reason: {spec.reason})" if spec is not None and spec.reason else message

    async def _finalize(self, body: Mapping[str, Any]) -> None:
        """The grant is being deleted: remove everything, then release its finalizer."""
        grant = GrantRef.from_body(body)
        status = parse_status(body.get("status"))
        spec = _valid_spec(body)
        await self.remove_objects(grant, self._namespaces_of(grant, spec, status))
        # A Job the grant created goes with it (its Pods too); a named Job is never ours to delete.
        if not await self.api.delete_labelled(JOBS, grant.namespace, {constants.LABEL_GRANT_UID: grant.uid}):
            raise NotYetGone(f"the Job of grant {grant.namespace}/{grant.name} remains")
        await self._set_finalizer(body, present=False)
        if status.phase not in TERMINAL_PHASES:
            metrics.REVOCATIONS.labels(phase=Phase.REVOKED.value, reason=Reason.GRANT_DELETED.value).inc()
            await self.post_event(
                body,
                "Normal",
                Phase.REVOKED.value,
                f"{Reason.GRANT_DELETED.value}: the grant was deleted; its access is removed",
            )
        logger.info("grant %s/%s deleted; its objects are removed", grant.namespace, grant.name)

    async def _set_finalizer(self, body: Mapping[str, Any], *, present: bool) -> None:
        """Add or remove the operator's finalizer; a conflicting change by anyone else fails it (409)."""
        meta = body["metadata"]
        current = list(meta.get("finalizers") or [])
        if (constants.FINALIZER in current) == present:
            return
        wanted = (
            [*current, constants.FINALIZER] if present else [f for f in current if f != constants.FINALIZER]
        )
        patch = {"metadata": {"finalizers": wanted, "resourceVersion": meta.get("resourceVersion")}}
        await self.api.patch(TASKGRANTS, meta["namespace"], meta["name"], patch)

    async def sweep_orphans(self) -> int:
        """Delete labelled objects whose grant is gone, was recreated or has ended; count those grants."""
        managed = {constants.LABEL_MANAGED_BY: constants.MANAGER}
        found: dict[GrantRef, set[str]] = {}
        for resource in REVOCATION_ORDER:
            for obj in await self.api.list(resource, labels=managed):
                meta = obj["metadata"]
                labels = meta.get("labels") or {}
                grant = GrantRef(
                    namespace=labels.get(constants.LABEL_GRANT_NAMESPACE, ""),
                    name=labels.get(constants.LABEL_GRANT_NAME, ""),
                    uid=labels.get(constants.LABEL_GRANT_UID, ""),
                )
                if self.config.namespaces and grant.namespace not in self.config.namespaces:
                    continue  # another operator instance owns grants there
                found.setdefault(grant, set()).add(meta["namespace"])
        live = {}
        for body in await self.list_grants():
            status = parse_status(body.get("status"))
            if status.phase not in TERMINAL_PHASES:
                live[body["metadata"].get("uid")] = body
        orphans = {grant: namespaces for grant, namespaces in found.items() if grant.uid not in live}
        for grant, namespaces in orphans.items():
            logger.info(
                "removing orphaned objects of grant %s/%s (uid %s) in %s",
                grant.namespace,
                grant.name,
                grant.uid,
                ", ".join(sorted(namespaces)),
            )
            await self.remove_objects(grant, namespaces)
        return len(orphans)

    async def list_grants(self) -> list[dict[str, Any]]:
        if not self.config.namespaces:
            return await self.api.list(TASKGRANTS)
        found = await asyncio.gather(*(self.api.list(TASKGRANTS, ns) for ns in self.config.namespaces))
        return [grant for grants in found for grant in grants]

    async def policy_changed(self, policy: str, generation: int | None) -> None:
        """Re-evaluate every grant the policy allows, and those being admitted right now.

        `generation` is None for a deleted policy. A policy event with a generation already evaluated
        only changed its status (our own usage count), which re-evaluates nothing.
        Listed from the API rather than a watch-fed index, so a grant whose status names the policy
        an instant ago is not missed; one still being admitted waits on its lock, then sees the change.
        """
        if generation is not None and self._policy_generations.get(policy) == generation:
            return
        self._policy_generations[policy] = generation
        await self._reconcile_live_grants(
            lambda body, status: status.phase is None or status.policy == policy
        )

    async def namespace_changed(self, namespace: str, labels: Mapping[str, str] | None) -> None:
        """Re-evaluate the live grants in or into a namespace whose labels changed: policies select by them.

        `labels` is None for a deleted namespace, which changes nothing here (its grants go with it).
        The first sight of a namespace (the start-up listing) re-evaluates nothing either: every live
        grant is reconciled at start anyway.
        """
        fingerprint = hash(frozenset(labels.items())) if labels is not None else None
        before = self._namespace_labels.get(namespace)
        if fingerprint is None:
            self._namespace_labels.pop(namespace, None)
            return
        self._namespace_labels[namespace] = fingerprint
        if before is None or before == fingerprint:
            return

        def touches(body: Mapping[str, Any], status: TaskGrantStatus) -> bool:
            grant_namespace = body["metadata"]["namespace"]
            return namespace in namespaces_to_label(grant_namespace, body.get("spec") or {}) or any(
                role.namespace == namespace for role in status.roles
            )

        await self._reconcile_live_grants(touches)

    async def _reconcile_live_grants(
        self, wanted: Callable[[Mapping[str, Any], TaskGrantStatus], bool]
    ) -> None:
        """Reconcile every grant not yet ended that `wanted` picks, listed from the API (not a cache)."""
        grants = []
        for body in await self.list_grants():
            status = parse_status(body.get("status"))
            if status.phase not in TERMINAL_PHASES and wanted(body, status):
                grants.append((body["metadata"]["namespace"], body["metadata"]["name"]))
        await asyncio.gather(*(self.reconcile(namespace, name) for namespace, name in grants))

    async def report_policy_usage(self, grant_phases: Mapping[str, Iterable[str]]) -> None:
        """Count grants by phase (a metric), and write each policy's Active grants to its status.

        `grant_phases`: phase → the policy (or "") of each grant in it, as the grant index keeps them.
        """
        metrics.count_phases({phase: len(list(policies)) for phase, policies in grant_phases.items()})
        counts = Counter(policy for policy in grant_phases.get(Phase.ACTIVE.value, ()) if policy)
        for body in await self.view.policies():
            meta = body["metadata"]
            wanted = {"activeGrants": counts[meta["name"]], "observedGeneration": meta.get("generation")}
            if {key: (body.get("status") or {}).get(key) for key in wanted} != wanted:
                await self.api.patch(TASKGRANT_POLICIES, None, meta["name"], {"status": wanted}, "status")

    async def report_policy_usage_every(
        self, seconds: float, grant_phases: Mapping[str, Iterable[str]]
    ) -> None:
        await self.indexed.wait()  # a count from a half-filled index would be wrong
        while True:
            try:
                await self.report_policy_usage(grant_phases)
            except Exception as error:  # a missed count is retried next round; it never blocks grants
                logger.warning("could not update TaskGrantPolicy usage: %s", error)
            await asyncio.sleep(seconds)
