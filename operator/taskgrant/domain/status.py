"""Pure builders of status patches, with conditions that kstatus, Flux and Argo CD read correctly.

- Ready: True while access is active and after a clean end (a finished grant is not "stuck");
  False while pending and when denied.
- Active: True only while access is live; pipelines wait on it.
- Reconciling: True while the grant waits for its Job or its window (kstatus: InProgress).
- Stalled: True when denied (kstatus: Failed).
"""

from __future__ import annotations

import datetime
from typing import Any

from taskgrant.domain.models import TERMINAL_PHASES, Condition, Phase, TaskGrantStatus


def timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition_states(phase: Phase) -> dict[str, bool]:
    return {
        "Ready": phase in (Phase.ACTIVE, Phase.REVOKED),
        "Active": phase == Phase.ACTIVE,
        "Reconciling": phase in (Phase.AWAITING_APPROVAL, Phase.PENDING),
        "Stalled": phase == Phase.DENIED,
    }


def conditions(
    previous: TaskGrantStatus,
    phase: Phase,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """The full condition list; lastTransitionTime moves only when a condition's status flips."""
    before: dict[str, Condition] = {condition.type: condition for condition in previous.conditions}
    result = []
    for kind, state in _condition_states(phase).items():
        status = "True" if state else "False"
        old = before.get(kind)
        entry: dict[str, Any] = {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": (
                timestamp(old.last_transition_time if old is not None and old.status == status else now)
            ),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        result.append(entry)
    return result


def status_patch(
    previous: TaskGrantStatus,
    phase: Phase,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime.datetime,
    warning: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A merge patch for the status subresource; extra fields are given in their CRD (camelCase) names.

    A warning adds a `Warning` condition (True), which kstatus and GitOps tools ignore for health.
    """
    all_conditions = conditions(previous, phase, reason, message, generation, now)
    # The admitted generation while live (a newer one revokes the grant); the last seen once final.
    observed = generation if phase in TERMINAL_PHASES else previous.observed_generation or generation
    if warning is not None:
        all_conditions.append(
            {
                "type": "Warning",
                "status": "True",
                "reason": "AutomountedToken",
                "message": warning,
                "lastTransitionTime": timestamp(now),
            }
        )
    return {
        "status": {
            "phase": phase.value,
            "reason": reason,
            "message": message,
            "observedGeneration": observed,
            "conditions": all_conditions,
            **fields,
        }
    }


def unchanged(previous: TaskGrantStatus, patch: dict[str, Any]) -> bool:
    """True when a patch would only restate the current phase, reason, message and fields."""
    current = previous.model_dump(by_alias=True, mode="json", exclude_none=True)
    wanted = {key: value for key, value in patch["status"].items() if key != "conditions"}
    return all(current.get(key) == value for key, value in wanted.items())
