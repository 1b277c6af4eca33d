"""Test harness: the emulated API, a plain HTTP client for it, and the operator as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from taskgrant.domain.manifests import grant_manifest, job_manifest, policy_manifest
from taskgrant.emulator import EmulatedCluster

ROOT = Path(__file__).parents[2]
CRDS = ROOT / "crds"
T = TypeVar("T")

GRANTS = "/apis/taskgrant.dev/v1alpha1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
BATCH = "/apis/batch/v1"
CORE = "/api/v1"
MANAGED = "app.kubernetes.io/managed-by=taskgrant-operator"
TEST_CLIENT = "taskgrant-tests"  # the User-Agent that tells the tests' own requests from the operator's
OTHER_CLIENTS = (TEST_CLIENT, "kubectl-taskgrant/")  # requests that are not the operator's


class Api:
    """A deliberately plain client: what kubectl would do, with no operator code in between."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url,
            data=data,
            method=method,
            headers={
                "Content-Type": content_type,
                "Accept": "application/json",
                "Authorization": f"Bearer {self.token}",
                "User-Agent": TEST_CLIENT,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, result = self.call(method, path, body, **kwargs)
        assert status < 300, f"{method} {path} answered {status}: {result}"
        return result

    def get(self, path: str) -> Any | None:
        status, result = self.call("GET", path)
        return None if status == 404 else result

    def items(self, path: str, selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": selector} if selector else None
        return list(self.ok("GET", path, query=query).get("items") or [])

    def patch(self, path: str, patch: Any) -> Any:
        return self.ok("PATCH", path, patch, content_type="application/merge-patch+json")

    # Shortcuts for the objects the tests handle.
    def create_job(self, namespace: str, name: str, service_account: str | None = None) -> dict[str, Any]:
        return dict(
            self.ok(
                "POST",
                f"{BATCH}/namespaces/{namespace}/jobs",
                job_manifest(namespace, name, service_account or name),
            )
        )

    def finish_job(self, namespace: str, name: str, condition: str = "Complete") -> None:
        self.patch(
            f"{BATCH}/namespaces/{namespace}/jobs/{name}/status",
            {"status": {"conditions": [{"type": condition, "status": "True", "reason": "Test"}]}},
        )

    def create_grant(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        return dict(
            self.ok(
                "POST", f"{GRANTS}/namespaces/{namespace}/taskgrants", grant_manifest(namespace, name, **spec)
            )
        )

    def create_policy(self, name: str, **spec: Any) -> dict[str, Any]:
        return dict(self.ok("POST", f"{GRANTS}/taskgrantpolicies", policy_manifest(name, **spec)))

    def grant(self, namespace: str, name: str) -> dict[str, Any] | None:
        result = self.get(f"{GRANTS}/namespaces/{namespace}/taskgrants/{name}")
        return dict(result) if result is not None else None

    def managed_objects(self) -> list[tuple[str, str, str]]:
        """Every object the operator manages, anywhere: (kind, namespace, name)."""
        found = []
        for path in (f"{CORE}/serviceaccounts", f"{RBAC}/roles", f"{RBAC}/rolebindings"):
            for item in self.items(path, MANAGED):
                if (
                    item.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/managed-by")
                    == "taskgrant-operator"
                ):
                    found.append(
                        (path.rsplit("/", 1)[-1], item["metadata"]["namespace"], item["metadata"]["name"])
                    )
        return sorted(found)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        events = self.items(f"{CORE}/namespaces/{namespace}/events")
        return [e for e in events if e.get("involvedObject", {}).get("name") == name]


def wait_for(
    check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_for_phase(api: Api, namespace: str, name: str, phase: str, timeout: float = 10.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        grant = api.grant(namespace, name)
        return grant if grant and grant.get("status", {}).get("phase") == phase else None

    return wait_for(check, timeout, what=f"grant {namespace}/{name} to be {phase}")


# Every API call an operator made in this test session: (verb, group, resource[/subresource]).
# tests/integration/test_rbac_coverage.py checks them against the chart's RBAC, after all the others.
OPERATOR_CALLS: set[tuple[str, str, str]] = set()


def record_operator_calls(cluster: EmulatedCluster) -> None:
    for request in cluster.requests():
        if request.verb is None or request.plural is None or request.user_agent.startswith(OTHER_CLIENTS):
            continue
        resource = f"{request.plural}/{request.subresource}" if request.subresource else request.plural
        OPERATOR_CALLS.add((request.verb, request.group or "", resource))


class OperatorProcess:
    """The `taskgrant-operator` console script, as a user would start it, against the emulator."""

    def __init__(self, cluster: EmulatedCluster, kubeconfig: Path, log: Path, *args: str) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.log = log
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        watched_before = self._watch_count()
        command = [
            str(Path(sys.executable).parent / "taskgrant-operator"),
            "--kubeconfig",
            str(self.kubeconfig),
            "--log-format",
            "full",
            "--verbose",
            *self.args,
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        # Ready once both watches are open: anything created from now on is seen as it happens.
        wait_for(lambda: self._watch_count() >= watched_before + 2, timeout=30, what="the operator's watches")
        return self

    def _watch_count(self) -> int:
        return sum(
            1 for r in self.cluster.requests() if r.verb == "watch" and r.plural in ("taskgrants", "jobs")
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def operator_process(cluster: EmulatedCluster, tmp: Path, *args: str) -> Iterator[OperatorProcess]:
    kubeconfig = cluster.write_kubeconfig(tmp / "kubeconfig")
    operator = OperatorProcess(cluster, kubeconfig, tmp / "operator.log", *args).start()
    try:
        yield operator
    finally:
        operator.stop()
        record_operator_calls(cluster)
        logs = operator.logs()
        assert cluster.token not in logs, "a credential leaked into the operator's logs"
