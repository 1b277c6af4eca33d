"""One fresh emulated cluster and one fresh operator process per phase."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.procstat import ProcSample, sample
from taskgrant.emulator import EmulatedCluster

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "crds"
# The watches the operator opens: ready once all are open.
WATCHED = frozenset(
    {"taskgrants", "jobs", "serviceaccounts", "taskgrantpolicies", "taskgrantapprovals", "namespaces"}
)


class BenchTimeout(Exception):
    pass


@dataclass
class OperatorProcess:
    """The `taskgrant-operator` console script, as a user starts it; JSON logs at the default level."""

    cluster: EmulatedCluster
    kubeconfig: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        command = [
            str(Path(sys.executable).parent / "taskgrant-operator"),
            "--kubeconfig",
            str(self.kubeconfig),
            "--log-format",
            "json",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        deadline = time.monotonic() + timeout
        while True:
            # The request log is still tiny here, so copying it a few times is cheap.
            watched = {str(r.plural) for r in self.cluster.requests() if r.verb == "watch"}
            if watched >= WATCHED:
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.process.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise BenchTimeout(
                    f"the operator opened only {sorted(watched)} in {timeout}s; see {self.log}"
                )
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def sample(self) -> ProcSample:
        return sample(self.pid)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextlib.contextmanager
def cluster_and_operator(workdir: Path, name: str) -> Iterator[tuple[EmulatedCluster, OperatorProcess]]:
    """An emulated API (a thread of this process) and the operator (a subprocess) against it.

    This process's cyclic garbage collector is paused for the phase: its pauses grow with the heap
    the emulator and earlier phases leave, and would show up as the operator's latency (the
    emulator stands in for an API server, whose own collector does not stop it). The operator runs
    as users run it.
    """
    phase_dir = workdir / name
    phase_dir.mkdir(parents=True, exist_ok=True)
    gc.collect()
    gc.disable()
    try:
        with EmulatedCluster(crds=CRDS) as cluster:
            kubeconfig = cluster.write_kubeconfig(phase_dir / "kubeconfig")
            operator = OperatorProcess(cluster, kubeconfig, phase_dir / "operator.log")
            try:
                yield cluster, operator.start()
            finally:
                operator.stop()
    finally:
        gc.enable()
