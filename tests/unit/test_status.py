import datetime

import pytest

from taskgrant.domain.models import Phase, TaskGrantStatus, parse_status
from taskgrant.domain.status import conditions, status_patch, timestamp, unchanged

NOW = datetime.datetime(2026, 12, 1, 2, 0, 0, 123456, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=5)


def states(phase: Phase) -> dict[str, str]:
    return {c["type"]: c["status"] for c in conditions(TaskGrantStatus(), phase, "R", "m", 1, NOW)}


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (Phase.PENDING, {"Ready": "False", "Active": "False", "Reconciling": "True", "Stalled": "False"}),
        (Phase.ACTIVE, {"Ready": "True", "Active": "True", "Reconciling": "False", "Stalled": "False"}),
        (Phase.REVOKED, {"Ready": "True", "Active": "False", "Reconciling": "False", "Stalled": "False"}),
        (Phase.DENIED, {"Ready": "False", "Active": "False", "Reconciling": "False", "Stalled": "True"}),
    ],
)
def test_conditions_read_right_for_kstatus(phase: Phase, expected: dict[str, str]) -> None:
    assert states(phase) == expected


def test_transition_time_moves_only_on_flips() -> None:
    first = status_patch(TaskGrantStatus(), Phase.PENDING, "WaitingForJob", "m", 1, NOW)["status"]
    previous = parse_status(first)
    second = {c["type"]: c for c in conditions(previous, Phase.ACTIVE, "JobRunning", "m", 1, LATER)}
    assert second["Stalled"]["lastTransitionTime"] == "2026-12-01T02:00:00Z"  # False before and after
    assert second["Active"]["lastTransitionTime"] == "2026-12-01T02:05:00Z"  # flipped
    assert second["Active"]["reason"] == "JobRunning" and second["Active"]["observedGeneration"] == 1


def test_patch_carries_phase_fields_and_first_generation() -> None:
    previous = parse_status({"phase": "Pending", "observedGeneration": 1})
    patch = status_patch(previous, Phase.ACTIVE, "JobRunning", "go", 3, NOW, expiresAt=timestamp(LATER))
    assert patch["status"]["phase"] == "Active"
    assert patch["status"]["observedGeneration"] == 1
    assert patch["status"]["expiresAt"] == "2026-12-01T02:05:00Z"


def test_unchanged_detects_restatements_only() -> None:
    patch = status_patch(
        TaskGrantStatus(), Phase.PENDING, "WaitingForJob", "m", 1, NOW, expiresAt="2026-12-01T03:00:00Z"
    )
    current = parse_status(patch["status"])
    assert unchanged(
        current,
        status_patch(
            current, Phase.PENDING, "WaitingForJob", "m", 1, LATER, expiresAt="2026-12-01T03:00:00Z"
        ),
    )
    assert not unchanged(
        current,
        status_patch(
            current, Phase.PENDING, "WaitingForNotBefore", "m", 1, LATER, expiresAt="2026-12-01T03:00:00Z"
        ),
    )
