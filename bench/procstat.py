"""CPU time and memory of a process, read from /proc (Linux; stdlib only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    cpu_seconds: float  # user + system, since the process started
    rss_bytes: int  # VmRSS: resident now
    peak_rss_bytes: int  # VmHWM: the high-water mark of resident memory since the process started


def cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            amount, unit = rest.split()
            assert unit == "kB"
            values[key] = int(amount) * 1024
    return values["VmRSS"], values["VmHWM"]


def sample(pid: int) -> ProcSample:
    rss, peak = memory(pid)
    return ProcSample(cpu_seconds=cpu_seconds(pid), rss_bytes=rss, peak_rss_bytes=peak)
