"""End-to-end set-up: a kind cluster (pytest-kind) running the operator's image, installed by its chart.

Every e2e test depends on `e2e_prerequisites` (autouse, session-scoped), which runs before any
cluster is created. Without a reachable Docker engine (`docker info` fails), kind or helm, it skips
every e2e test with one reason naming what is missing; nothing is silently passed. With
TASKGRANT_E2E_REQUIRED=1 (CI's e2e job) the same reason fails them instead.

kind is taken from --kind-bin or PATH, kubectl from --kind-kubectl-bin or PATH (else pytest-kind
downloads one). pytest-kind's own kind download (v0.17.0 unless KIND_VERSION is set) starts a
Kubernetes 1.25 node, older than the CRDs' CEL rules need (1.29+), so a kind on PATH is required;
the session fails (not skips) if the cluster turns out older than 1.29.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pytest_kind import KindCluster

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "taskgrant-operator"
IMAGE_REPOSITORY = "taskgrant-operator"
IMAGE_TAG = "e2e"
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
RELEASE = "taskgrant"
OPERATOR_NAMESPACE = "taskgrant-system"
OPERATOR_PODS = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=taskgrant-operator"
MIN_KUBERNETES = (1, 29)
# The Job's image: kubectl with a shell (debian-base), pinned; E2E_KUBECTL_IMAGE overrides it.
KUBECTL_IMAGE = os.environ.get("E2E_KUBECTL_IMAGE", "registry.k8s.io/kubectl:v1.31.0")

T = TypeVar("T")


@dataclass(frozen=True)
class Tools:
    docker: str
    kind: str
    helm: str
    kubectl: str | None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def docker_problem(docker: str | None) -> str | None:
    """Why Docker cannot be used (None: the engine answers `docker info`)."""
    if docker is None:
        return "no docker command on PATH"
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "Docker engine unreachable: `docker info` timed out"
    if result.returncode != 0:
        return (
            f"Docker engine unreachable: `docker info` failed: {_last_line(result.stderr or result.stdout)}"
        )
    return None


@cache
def find_tools(kind_bin: str | None, kubectl_bin: str | None) -> Tools | str:
    """The tools the e2e tests need, or the skip reason naming every one that is missing."""
    docker = shutil.which("docker")
    kind = kind_bin or shutil.which("kind")
    helm = shutil.which("helm")
    problems = []
    if (problem := docker_problem(docker)) is not None:
        problems.append(problem)
    if kind is None:
        problems.append("kind not found (put it on PATH or pass --kind-bin)")
    if helm is None:
        problems.append("helm not found on PATH")
    if problems:
        return "e2e tests need Docker, kind and helm: " + "; ".join(problems)
    assert docker is not None and kind is not None and helm is not None
    return Tools(docker=docker, kind=kind, helm=helm, kubectl=kubectl_bin or shutil.which("kubectl"))


@pytest.fixture(scope="session", autouse=True)
def e2e_prerequisites(request: pytest.FixtureRequest) -> Tools:
    found = find_tools(request.config.getoption("kind_bin"), request.config.getoption("kind_kubectl_bin"))
    if isinstance(found, str):
        if os.environ.get("TASKGRANT_E2E_REQUIRED") == "1":  # CI's e2e job: a skip would hide a broken set-up
            pytest.fail(f"{found} (TASKGRANT_E2E_REQUIRED=1)", pytrace=False)
        pytest.skip(found)
    return found


class CommandFailed(AssertionError):
    pass


def run(
    command: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure the message has its exit status and the end of its output."""
    result = subprocess.run(
        list(command),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )
    if check and result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-60:])
        raise CommandFailed(f"{' '.join(command)!s} exited {result.returncode}:\n{tail}")
    return result


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Cluster:
    """The kind cluster, with kubectl and helm pointed at it."""

    def __init__(self, kind: KindCluster, tools: Tools) -> None:
        self.kind = kind
        self.tools = tools
        kind.ensure_kubectl()
        self.kubectl_path = str(kind.kubectl_path)
        self.kubeconfig = str(kind.kubeconfig_path)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [self.kubectl_path, *args],
            input=input,
            check=check,
            timeout=timeout,
            env={"KUBECONFIG": self.kubeconfig},
        )

    def apply(self, *manifests: dict[str, Any]) -> None:
        self.kubectl(
            "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
        )

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        scope = ["-n", namespace] if namespace else []
        result = self.kubectl("get", kind, name, *scope, "-o", "json", "--ignore-not-found")
        return json.loads(result.stdout) if result.stdout.strip() else None

    def names(self, kinds: str, namespace: str, selector: str) -> list[str]:
        result = self.kubectl("get", kinds, "-n", namespace, "-l", selector, "-o", "name")
        return sorted(result.stdout.split())

    def can_i(self, verb: str, resource: str, namespace: str, user: str) -> bool:
        result = self.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", check=False)
        answer = result.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl auth can-i answered {answer!r}: {result.stderr.strip()}"
        return answer == "yes"

    def token_review(self, token: str) -> dict[str, Any]:
        """The API server's verdict on a token (the token itself never appears in a message)."""
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        result = self.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review), check=False)
        assert result.returncode == 0, f"TokenReview failed: {result.stderr.strip()}"
        status: dict[str, Any] = json.loads(result.stdout).get("status") or {}
        return status

    def token_kubeconfig(self, token: str, path: Path) -> Path:
        """A kubeconfig with only the cluster and this bearer token (no admin client certificate)."""
        admin = json.loads(self.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kind", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": "token", "user": {"token": token}}],
            "contexts": [{"name": "token", "context": {"cluster": "kind", "user": "token"}}],
            "current-context": "token",
        }
        path.touch(0o600)
        path.write_text(json.dumps(config))
        return path

    def kubectl_as(self, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return run([self.kubectl_path, "--kubeconfig", str(kubeconfig), *args], check=False, timeout=60)

    def server_version(self) -> tuple[int, int]:
        version = json.loads(self.kubectl("version", "-o", "json").stdout)["serverVersion"]
        return int(version["major"]), int(version["minor"].rstrip("+"))

    def helm_install(self) -> None:
        run(
            [
                self.tools.helm,
                "upgrade",
                "--install",
                RELEASE,
                str(CHART),
                "--kubeconfig",
                self.kubeconfig,
                "--namespace",
                OPERATOR_NAMESPACE,
                "--create-namespace",
                "--set",
                f"image.repository={IMAGE_REPOSITORY}",
                "--set",
                f"image.tag={IMAGE_TAG}",
                "--set",
                "image.pullPolicy=Never",
                "--wait",
                "--timeout",
                "5m",
            ],
            timeout=420,
        )

    def diagnostics(self, namespace: str) -> str:
        """What a failing test should show: the grant-related objects, the Job's and the operator's logs."""
        sections = []
        for title, args in (
            ("objects", ["get", "tg,jobs,pods,sa,roles,rolebindings", "-n", namespace, "-o", "wide"]),
            ("grants", ["get", "tg", "-n", namespace, "-o", "yaml"]),
            ("job logs", ["logs", "-n", namespace, "-l", "batch.kubernetes.io/job-name", "--tail=50"]),
            ("operator pods", ["get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "wide"]),
            ("operator logs", ["logs", "-n", OPERATOR_NAMESPACE, "-l", OPERATOR_PODS, "--tail=100"]),
        ):
            try:
                result = self.kubectl(*args, check=False, timeout=30)
                sections.append(f"--- {title} ---\n{(result.stdout + result.stderr).strip()}")
            except Exception as error:  # diagnostics must never hide the real failure
                sections.append(f"--- {title} --- unavailable: {error}")
        return "\n".join(sections)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, e2e_prerequisites: Tools) -> Iterator[Cluster]:
    """Build the image, start kind (pytest-kind's kind_cluster), load the image, install the chart."""
    tools = e2e_prerequisites
    options = request.config.option
    options.kind_bin = options.kind_bin or tools.kind
    options.kind_kubectl_bin = options.kind_kubectl_bin or tools.kubectl
    # Built before the cluster exists: a broken Dockerfile fails fast.
    run([tools.docker, "build", "-t", IMAGE, "."], cwd=ROOT, timeout=1200)
    kind: KindCluster = request.getfixturevalue("kind_cluster")
    kind.load_docker_image(IMAGE)
    cluster = Cluster(kind, tools)
    version = cluster.server_version()
    assert version >= MIN_KUBERNETES, (
        f"the cluster runs Kubernetes {version[0]}.{version[1]}; the CRDs need "
        f"{MIN_KUBERNETES[0]}.{MIN_KUBERNETES[1]}+ (use a newer kind, or --kind-image)"
    )
    try:
        cluster.helm_install()
    except CommandFailed as error:
        raise AssertionError(f"{error}\n{cluster.diagnostics(OPERATOR_NAMESPACE)}") from None
    for crd in ("taskgrants.taskgrant.dev", "taskgrantpolicies.taskgrant.dev"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    yield cluster
