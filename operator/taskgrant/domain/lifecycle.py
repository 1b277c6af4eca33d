"""The grant lifecycle as pure decisions: grant, Job and clock in, what to do out. No I/O here."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskgrant.domain import constants
from taskgrant.domain.jobs import job_is_gone, job_outcome, job_service_account
from taskgrant.domain.models import TERMINAL_PHASES, GrantRef, Phase, Reason, TaskGrantSpec, TaskGrantStatus


def needs_reconcile(event_type: str | None, body: Mapping[str, Any]) -> bool:
    """Whether a grant's watch event can change what the operator must do.

    Most events on a grant are the echoes of the operator's own writes (its status, its finalizer);
    reconciling on those would only re-read what it just wrote. `event_type` None: the grant was
    listed (at start, or when a watch is re-listed), which is when a restarted operator resumes it.
    """
    meta = body.get("metadata") or {}
    finalizers = meta.get("finalizers") or []
    if event_type == "DELETED":
        return False  # gone: nothing of it is left to remove (the finalizer saw to that)
    if meta.get("deletionTimestamp"):
        return constants.FINALIZER in finalizers
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase in TERMINAL_PHASES:
        return False
    if event_type is None:
        return True
    if phase is None:
        return constants.FINALIZER not in finalizers  # new; with the finalizer, a reconcile is on it
    observed = status.get("observedGeneration")
    if observed is not None and meta.get("generation") != observed:
        return True  # the spec changed
    return constants.ANNOTATION_REVOKE in (meta.get("annotations") or {})


@dataclass(frozen=True)
class Activate:
    job_uid: str | None  # None: the operator creates the Job from spec.jobTemplate
    expires_at: datetime.datetime


@dataclass(frozen=True)
class Wait:
    """Nothing to do now; look again at `until` (or when something changes)."""

    reason: Reason
    message: str
    until: datetime.datetime


@dataclass(frozen=True)
class Revoke:
    reason: Reason
    message: str


@dataclass(frozen=True)
class Deny:
    reason: Reason
    message: str


@dataclass(frozen=True)
class Finished:
    """A terminal grant: nothing ever happens to it again."""


Decision = Activate | Wait | Revoke | Deny | Finished


def truncate_to_seconds(moment: datetime.datetime) -> datetime.datetime:
    """Kubernetes timestamps carry whole seconds; computing from the stored value keeps restarts exact."""
    return moment.replace(microsecond=0)


FOREVER = datetime.datetime.max.replace(tzinfo=datetime.UTC)


def later(moment: datetime.datetime, delta: datetime.timedelta) -> datetime.datetime:
    """moment + delta, saturating at the end of time instead of overflowing (notBefore in year 9999)."""
    try:
        return moment + delta
    except OverflowError:
        return FOREVER


def pending_expiry(
    spec: TaskGrantSpec, created: datetime.datetime, max_duration: datetime.timedelta
) -> datetime.datetime:
    """A grant that never activates still ends: at its deadline, or the maximum after it could start."""
    start = max(created, spec.not_before) if spec.not_before else created
    return min(filter(None, [spec.deadline, later(start, max_duration)]))


def active_expiry(
    spec: TaskGrantSpec, activated: datetime.datetime, max_duration: datetime.timedelta
) -> datetime.datetime:
    """Effective expiry: the earliest of deadline, activation + duration and activation + maximum."""
    candidates = [spec.deadline, later(activated, max_duration)]
    if spec.duration is not None:
        candidates.append(later(activated, spec.duration))
    return min(filter(None, candidates))


def current_expiry(
    spec: TaskGrantSpec, status: TaskGrantStatus, now: datetime.datetime, max_duration: datetime.timedelta
) -> datetime.datetime:
    """An active grant's expiry: as recorded, or earlier if a policy's maxDuration shrank since."""
    activated = status.activated_at or now
    recomputed = active_expiry(spec, activated, max_duration)
    return min(status.expires_at, recomputed) if status.expires_at is not None else recomputed


def effective_expiry(
    grant: GrantRef,
    spec: TaskGrantSpec,
    status: TaskGrantStatus,
    now: datetime.datetime,
    max_duration: datetime.timedelta,
    started: datetime.datetime | None = None,
) -> datetime.datetime:
    """When the grant ends at the latest: its active expiry once active, else its pending one."""
    if status.phase == Phase.ACTIVE:
        return current_expiry(spec, status, now, max_duration)
    return pending_expiry(spec, started or grant.created or now, max_duration)


def _deadline_exceeded(status: TaskGrantStatus, expiry: datetime.datetime) -> Revoke:
    before = "" if status.phase == Phase.ACTIVE else " before activation"
    return Revoke(Reason.DEADLINE_EXCEEDED, f"expired at {expiry.isoformat()}{before}")


def deadline_passed(
    grant: GrantRef,
    spec: TaskGrantSpec,
    status: TaskGrantStatus,
    now: datetime.datetime,
    max_duration: datetime.timedelta,
    started: datetime.datetime | None = None,
) -> Revoke | None:
    """The revocation of a grant whose time is up, whatever its Job does (so the Job need not be read)."""
    expiry = effective_expiry(grant, spec, status, now, max_duration, started)
    return _deadline_exceeded(status, expiry) if now >= expiry else None


def decide(
    grant: GrantRef,
    spec: TaskGrantSpec,
    status: TaskGrantStatus,
    job: Mapping[str, Any] | None,
    now: datetime.datetime,
    max_duration: datetime.timedelta,
    account_gone: bool = False,
    started: datetime.datetime | None = None,
) -> Decision:
    """What the grant needs now, given its Job as last seen (None: no such Job).

    `started`: when the grant could first start (its approval), else its creation.
    `account_gone`: the grant's ServiceAccount was deleted or replaced. A ServiceAccount recreated
    under the same name would inherit the bindings, so an active grant ends at once.
    """
    if status.phase in TERMINAL_PHASES:
        return Finished()
    if status.observed_generation is not None and grant.generation != status.observed_generation:
        return Revoke(Reason.SPEC_CHANGED, "the spec changed after admission; grants are single-use")
    job_name = spec.job_name(grant.name)
    expiry = effective_expiry(grant, spec, status, now, max_duration, started)

    if status.phase == Phase.ACTIVE:
        expected_uid = status.job.uid if status.job else None
        if account_gone:
            return Revoke(
                Reason.SERVICE_ACCOUNT_DELETED, "the grant's ServiceAccount was deleted or replaced"
            )
        if now >= expiry:
            return _deadline_exceeded(status, expiry)
        if job is None or job_is_gone(job) or job.get("metadata", {}).get("uid") != expected_uid:
            return Revoke(Reason.JOB_DELETED, f"Job {job_name} (uid {expected_uid}) is gone")
        outcome = job_outcome(job)
        if outcome is not None:
            return Revoke(
                outcome, f"Job {job_name} {'succeeded' if outcome == Reason.JOB_SUCCEEDED else 'failed'}"
            )
        return Wait(Reason.JOB_RUNNING, f"Job {job_name} is running", expiry)

    if now >= expiry:
        return _deadline_exceeded(status, expiry)
    creates_job = spec.job_template is not None
    if (job is None and not creates_job) or (job is not None and job_is_gone(job)):
        return Wait(Reason.WAITING_FOR_JOB, f"waiting for Job {job_name}", expiry)
    if job is not None and job_outcome(job) is not None:
        return Revoke(Reason.JOB_ALREADY_FINISHED, f"Job {job_name} had already finished; no access given")
    if job is not None and not creates_job:
        account = spec.service_account_name or grant.name
        if job_service_account(job) != account:
            return Deny(
                Reason.JOB_SERVICE_ACCOUNT_MISMATCH,
                f"Job {job_name} runs as ServiceAccount {job_service_account(job)}, not as the grant's "
                f"{account}; no access given",
            )
    if spec.not_before is not None and now < spec.not_before:
        return Wait(
            Reason.WAITING_FOR_NOT_BEFORE,
            f"access starts at notBefore {spec.not_before.isoformat()}",
            min(spec.not_before, expiry),
        )
    activated = truncate_to_seconds(now)
    job_uid = job["metadata"]["uid"] if job is not None else None
    return Activate(job_uid, active_expiry(spec, activated, max_duration))
