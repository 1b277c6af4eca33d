"""`python -m bench` (`make bench`) runs end to end. A tiny run: its timings are not checked, since
they depend on the machine; what does not (request counts, outcomes, the report) is."""

import json
import subprocess
import sys
from pathlib import Path

from .harness import ROOT


def test_a_small_benchmark_run(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "bench", "--sizes", "10", "--deadline-grants", "4"]
    command += ["--memory-grants", "20", "--paced-rate", "20", "--json", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    phases = json.loads(out.read_text())["phases"]
    assert [name for name, phase in phases.items() if phase["error"]] == []

    lifecycle = phases["lifecycle-10"]
    assert lifecycle["paced_grants"] == 1
    assert lifecycle["revocation_latency_s"]["count"] == 9
    assert lifecycle["paced_revocation_latency_s"]["count"] == 1
    assert lifecycle["activation_latency_s"]["count"] == 9
    counts = lifecycle["requests_per_lifecycle"]
    assert (counts["writes_without_events"], counts["event_writes"]) == (10, 2)

    deadline = phases["deadline-4"]
    assert deadline["revocation_reasons"] == {"DeadlineExceeded": 4}
    assert deadline["deadline_lateness_s"]["count"] == deadline["paced_deadline_lateness_s"]["count"] == 2

    assert [step["grants"] for step in phases["memory-20"]["steps"]] == [0, 2, 4, 10, 20]
    for row in ("| activation, paced |", "| deadline lateness, paced |", "| flat per-grant memory slope"):
        assert row in result.stdout
