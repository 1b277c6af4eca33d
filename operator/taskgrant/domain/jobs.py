"""What the operator reads from a Job: its name rule, its outcome, who it runs as. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskgrant.domain.models import Reason, job_name

# Job conditions that end the task. SuccessCriteriaMet and FailureTarget (Kubernetes 1.31+) come
# before Complete and Failed, while pods may still be terminating: revoking on them is earlier.
JOB_OUTCOMES: Mapping[str, Reason] = {
    "Complete": Reason.JOB_SUCCEEDED,
    "SuccessCriteriaMet": Reason.JOB_SUCCEEDED,
    "Failed": Reason.JOB_FAILED,
    "FailureTarget": Reason.JOB_FAILED,
}


def raw_job_name(raw_spec: Mapping[str, Any], grant_name: str) -> str:
    """The Job a grant's unvalidated spec names: spec.job.name, else (a jobTemplate) the grant's name.

    For the paths that run before validation (the Job index, the early revocation check).
    """
    job = raw_spec.get("job")
    name = job.get("name") if isinstance(job, Mapping) else None
    return job_name(name if isinstance(name, str) else None, grant_name)


def job_outcome(job: Mapping[str, Any]) -> Reason | None:
    """JobSucceeded or JobFailed once the Job's conditions say it ended, else None."""
    for condition in job.get("status", {}).get("conditions") or []:
        outcome = JOB_OUTCOMES.get(condition.get("type", ""))
        if outcome is not None and condition.get("status") == "True":
            return outcome
    return None


def job_service_account(job: Mapping[str, Any]) -> str:
    pod = job.get("spec", {}).get("template", {}).get("spec") or {}
    return str(pod.get("serviceAccountName") or pod.get("serviceAccount") or "default")


def automount_warning(job: Mapping[str, Any]) -> str | None:
    """A named Job whose pods would also get the automounted token, which outlives the task's bounds."""
    pod = job.get("spec", {}).get("template", {}).get("spec") or {}
    if pod.get("automountServiceAccountToken") is True:
        return (
            "the Job's pod template sets automountServiceAccountToken: true, so its pods also get the "
            "kubelet-managed token; set it to false and mount a projected token instead"
        )
    return None


def job_is_gone(job: Mapping[str, Any] | None) -> bool:
    return job is None or bool(job.get("metadata", {}).get("deletionTimestamp"))
