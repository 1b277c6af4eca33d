"""`taskgrant-operator demo`, the README's first command, shows a grant's whole life."""

import subprocess
import sys
from pathlib import Path


def test_the_demo_shows_activation_and_both_revocations() -> None:
    script = Path(sys.executable).parent / "taskgrant-operator"
    result = subprocess.run([str(script), "demo"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "TaskGrant ci/release-42 is Pending: waiting for Job release-42" in out
    assert "'resourceNames': ['signing-key'], 'verbs': ['get']" in out
    assert "Revoked, reason JobSucceeded" in out
    assert "while the Job still ran: reason DeadlineExceeded" in out
    assert "nothing the grant created is left" in out
    assert "Traceback" not in result.stderr
