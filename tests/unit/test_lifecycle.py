import datetime
from typing import Any

import pytest

from taskgrant.domain import jobs, lifecycle
from taskgrant.domain.lifecycle import Activate, Finished, Revoke, Wait
from taskgrant.domain.models import GrantRef, Phase, Reason, TaskGrantStatus, parse_status

from .conftest import CREATED, make_spec

HOUR = datetime.timedelta(hours=1)
T0 = CREATED + datetime.timedelta(minutes=1)


def job(
    uid: str = "job-uid",
    *conditions: str,
    deleting: bool = False,
    account: str = "release-42",
    automount: bool | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "release-42", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T02:05:00Z"
    pod: dict[str, Any] = {"serviceAccountName": account, "containers": [{"name": "main", "image": "x"}]}
    if automount is not None:
        pod["automountServiceAccountToken"] = automount
    return {
        "metadata": meta,
        "spec": {"template": {"spec": pod}},
        "status": {"conditions": [{"type": kind, "status": "True"} for kind in conditions]},
    }


def active(expires: str = "2026-12-01T02:31:00Z", uid: str = "job-uid") -> TaskGrantStatus:
    return parse_status(
        {
            "phase": "Active",
            "observedGeneration": 1,
            "job": {"name": "release-42", "uid": uid},
            "activatedAt": "2026-12-01T02:01:00Z",
            "expiresAt": expires,
        }
    )


PENDING = parse_status({"phase": "Pending", "observedGeneration": 1})
NEW = TaskGrantStatus()


def at(minutes: float) -> datetime.datetime:
    return CREATED + datetime.timedelta(minutes=minutes)


def decide(
    grant: GrantRef,
    status: TaskGrantStatus,
    the_job: dict[str, Any] | None,
    now: datetime.datetime,
    **spec: object,
) -> lifecycle.Decision:
    return lifecycle.decide(grant, make_spec(**spec), status, the_job, now, HOUR)


def test_new_grant_with_running_job_activates(grant: GrantRef) -> None:
    decision = decide(grant, NEW, job(), T0, duration="30m")
    assert decision == Activate("job-uid", T0 + datetime.timedelta(minutes=30))


def test_activation_uses_whole_seconds(grant: GrantRef) -> None:
    now = T0 + datetime.timedelta(microseconds=900_000)
    decision = decide(grant, NEW, job(), now, duration="30m")
    assert decision == Activate("job-uid", T0 + datetime.timedelta(minutes=30))


def test_without_a_job_the_grant_waits_until_its_pending_bound(grant: GrantRef) -> None:
    decision = decide(grant, NEW, None, T0)
    assert decision == Wait(Reason.WAITING_FOR_JOB, "waiting for Job release-42", CREATED + HOUR)


def test_a_deleting_job_is_no_job(grant: GrantRef) -> None:
    assert isinstance(decide(grant, PENDING, job(deleting=True), T0), Wait)


def test_not_before_delays_activation(grant: GrantRef) -> None:
    decision = decide(grant, NEW, job(), T0, notBefore="2026-12-01T02:10:00Z")
    assert decision == Wait(
        Reason.WAITING_FOR_NOT_BEFORE, "access starts at notBefore 2026-12-01T02:10:00+00:00", at(10)
    )
    assert decide(grant, PENDING, job(), at(10), notBefore="2026-12-01T02:10:00Z") == Activate(
        "job-uid", at(70)
    )


@pytest.mark.parametrize("condition", ["Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"])
def test_a_job_finished_before_activation_never_gets_access(grant: GrantRef, condition: str) -> None:
    decision = decide(grant, PENDING, job("job-uid", condition), T0)
    assert isinstance(decision, Revoke) and decision.reason == Reason.JOB_ALREADY_FINISHED


def test_unfinished_conditions_do_not_count(grant: GrantRef) -> None:
    the_job = {
        **job("j"),
        "status": {
            "conditions": [{"type": "Complete", "status": "False"}, {"type": "Suspended", "status": "True"}]
        },
    }
    assert isinstance(decide(grant, PENDING, the_job, T0), Activate)


def test_pending_grant_ends_at_its_deadline(grant: GrantRef) -> None:
    decision = decide(grant, PENDING, None, at(30), deadline="2026-12-01T02:30:00Z")
    assert isinstance(decision, Revoke) and decision.reason == Reason.DEADLINE_EXCEEDED


def test_a_deadline_in_the_past_gives_nothing(grant: GrantRef) -> None:
    decision = decide(grant, NEW, job(), T0, deadline="2026-12-01T01:00:00Z")
    assert isinstance(decision, Revoke) and decision.reason == Reason.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ("Complete", Reason.JOB_SUCCEEDED),
        ("SuccessCriteriaMet", Reason.JOB_SUCCEEDED),
        ("Failed", Reason.JOB_FAILED),
        ("FailureTarget", Reason.JOB_FAILED),
    ],
)
def test_active_grant_ends_with_its_job(grant: GrantRef, condition: str, reason: Reason) -> None:
    decision = decide(grant, active(), job("job-uid", condition), at(5))
    assert isinstance(decision, Revoke) and decision.reason == reason


def test_active_grant_ends_when_its_job_is_deleted_or_replaced(grant: GrantRef) -> None:
    for the_job in [None, job(deleting=True), job("another-uid")]:
        decision = decide(grant, active(), the_job, at(5))
        assert isinstance(decision, Revoke) and decision.reason == Reason.JOB_DELETED


def test_active_grant_ends_at_expiry_even_if_the_job_runs(grant: GrantRef) -> None:
    assert decide(grant, active(), job(), at(30.99)) == Wait(
        Reason.JOB_RUNNING, "Job release-42 is running", at(31)
    )
    decision = decide(grant, active(), job(), at(31))
    assert isinstance(decision, Revoke) and decision.reason == Reason.DEADLINE_EXCEEDED


def test_terminal_grants_never_change(grant: GrantRef) -> None:
    for phase in (Phase.REVOKED, Phase.DENIED):
        status = parse_status({"phase": phase.value, "observedGeneration": 1})
        assert decide(grant, status, job(), T0) == Finished()


def test_a_changed_spec_revokes(grant: GrantRef) -> None:
    changed = grant.model_copy(update={"generation": 2})
    decision = decide(changed, active(), job(), at(5))
    assert isinstance(decision, Revoke) and decision.reason == Reason.SPEC_CHANGED


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, at(60)),  # the operator's maximum
        ({"duration": "10m"}, at(10)),
        ({"duration": "3h"}, at(60)),  # capped by the maximum
        ({"deadline": "2026-12-01T02:05:00Z", "duration": "10m"}, at(5)),
        ({"deadline": "2026-12-01T05:00:00Z"}, at(60)),
    ],
)
def test_effective_expiry_is_the_earliest_end(spec: dict[str, object], expected: datetime.datetime) -> None:
    assert lifecycle.active_expiry(make_spec(**spec), CREATED, HOUR) == expected


def test_pending_expiry_counts_from_not_before() -> None:
    spec = make_spec(notBefore="2026-12-01T04:00:00Z")
    assert lifecycle.pending_expiry(spec, CREATED, HOUR) == CREATED + 3 * HOUR


def test_a_named_job_must_run_as_the_grant_service_account(grant: GrantRef) -> None:
    decision = decide(grant, PENDING, job(account="deployer"), T0)
    assert decision == lifecycle.Deny(
        Reason.JOB_SERVICE_ACCOUNT_MISMATCH,
        "Job release-42 runs as ServiceAccount deployer, not as the grant's release-42; no access given",
    )
    assert isinstance(
        decide(grant, PENDING, job(account="signer"), T0, serviceAccountName="signer"), Activate
    )


def test_a_job_without_service_account_runs_as_default(grant: GrantRef) -> None:
    the_job = job()
    del the_job["spec"]["template"]["spec"]["serviceAccountName"]
    decision = decide(grant, PENDING, the_job, T0)
    assert isinstance(decision, lifecycle.Deny) and "runs as ServiceAccount default" in decision.message


TEMPLATE = {
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "x"}]}}}
}


def test_a_template_grant_activates_without_a_job_and_creates_it(grant: GrantRef) -> None:
    decision = decide(grant, NEW, None, T0, job=None, jobTemplate=TEMPLATE)
    assert decision == Activate(None, T0 + HOUR)
    later = decide(grant, PENDING, None, T0, job=None, jobTemplate=TEMPLATE, notBefore="2026-12-01T02:10:00Z")
    assert isinstance(later, Wait) and later.reason == Reason.WAITING_FOR_NOT_BEFORE


def test_a_template_grant_whose_job_finished_before_activation_ends(grant: GrantRef) -> None:
    decision = decide(grant, PENDING, job("j", "Complete"), T0, job=None, jobTemplate=TEMPLATE)
    assert isinstance(decision, Revoke) and decision.reason == Reason.JOB_ALREADY_FINISHED


def test_automount_warning_only_when_the_template_forces_it() -> None:
    assert jobs.automount_warning(job()) is None
    assert jobs.automount_warning(job(automount=False)) is None
    warning = jobs.automount_warning(job(automount=True))
    assert warning is not None and "automountServiceAccountToken: true" in warning


def _grant_body(
    phase: str | None = None,
    *,
    finalizer: bool = True,
    generation: int = 1,
    observed: int | None = 1,
    deleting: bool = False,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "g", "namespace": "ns", "generation": generation}
    if finalizer:
        meta["finalizers"] = ["other.example/keep", "taskgrant.dev/cleanup"]
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T10:00:00Z"
    if annotations:
        meta["annotations"] = annotations
    status = {"phase": phase, "observedGeneration": observed} if phase else {}
    return {"metadata": meta, "status": status}


@pytest.mark.parametrize(
    ("event_type", "body", "expected"),
    [
        # New grants are reconciled; the echo of the operator's own finalizer patch is not.
        ("ADDED", _grant_body(finalizer=False), True),
        ("MODIFIED", _grant_body(finalizer=False), True),
        ("MODIFIED", _grant_body(), False),
        # Listed at start (or on a re-list): every live grant is resumed.
        (None, _grant_body(), True),
        (None, _grant_body("Active"), True),
        (None, _grant_body("AwaitingApproval", finalizer=False), True),
        (None, _grant_body("Revoked"), False),
        # Echoes of status writes change nothing.
        ("MODIFIED", _grant_body("Pending"), False),
        ("MODIFIED", _grant_body("Active"), False),
        ("MODIFIED", _grant_body("AwaitingApproval", finalizer=False), False),
        # A changed spec (generation past the admitted one) and a revocation request are acted on.
        ("MODIFIED", _grant_body("Active", generation=2), True),
        ("MODIFIED", _grant_body("Pending", generation=3, observed=2), True),
        ("MODIFIED", _grant_body("Active", annotations={"taskgrant.dev/revoke": "by ops"}), True),
        ("MODIFIED", _grant_body("Active", annotations={"example.com/note": "x"}), False),
        # Ended grants need nothing, not even when changed.
        ("MODIFIED", _grant_body("Revoked", generation=2), False),
        ("MODIFIED", _grant_body("Denied", finalizer=False), False),
        # Deletion: only while the finalizer is still there to release, whatever the phase.
        ("MODIFIED", _grant_body("Active", deleting=True), True),
        ("MODIFIED", _grant_body("Revoked", deleting=True), True),
        (None, _grant_body("Revoked", deleting=True), True),
        ("MODIFIED", _grant_body("Active", deleting=True, finalizer=False), False),
        ("DELETED", _grant_body("Active", finalizer=False), False),
    ],
)
def test_needs_reconcile(event_type: str | None, body: dict[str, Any], expected: bool) -> None:
    assert lifecycle.needs_reconcile(event_type, body) is expected
