"""`taskgrant-operator demo`: one grant's whole life, on an in-process emulated Kubernetes API.

The operator here is the real one (the same handlers and reconciler as in a cluster); only the API
server is emulated, so RBAC is stored but not enforced, and no Pods run: the demo plays the Job.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import kopf

from taskgrant.controller.reconciler import Config
from taskgrant.domain.manifests import grant_manifest, job_manifest, policy_manifest
from taskgrant.k8s.client import KubeApi
from taskgrant.k8s.resources import (
    JOBS,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
    TASKGRANT_POLICIES,
    TASKGRANTS,
)

CRDS = Path(__file__).resolve().parents[3] / "crds"
NAMESPACE = "ci"
T = TypeVar("T")


def say(text: str = "") -> None:
    print(text, flush=True)


async def wait_until(check: Callable[[], Awaitable[T | None]], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while (result := await check()) is None or result is False:
        if time.monotonic() > deadline:
            raise TimeoutError("the demo waited too long; is the operator running?")
        await asyncio.sleep(0.005)
    return result


DEMO_JOB: dict[str, Any] = {"image": "alpine", "command": ["sign-release"]}
POLICY = policy_manifest(
    "ci-secrets",
    namespaceSelector={"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
    rules=[{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "requireResourceNames": True}],
    maxDuration="30m",
)


class Demo:
    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def phase(self, name: str, wanted: str) -> dict[str, Any] | None:
        grant = await self.api.get(TASKGRANTS, NAMESPACE, name)
        return grant if grant and grant.get("status", {}).get("phase") == wanted else None

    async def objects(self, name: str) -> list[str]:
        selector = {"taskgrant.dev/grant-name": name}
        found = []
        for resource, kind in (
            (SERVICE_ACCOUNTS, "ServiceAccount"),
            (ROLES, "Role"),
            (ROLE_BINDINGS, "RoleBinding"),
        ):
            found += [
                f"{kind} {o['metadata']['name']}" for o in await self.api.list(resource, NAMESPACE, selector)
            ]
        return found

    async def gone(self, name: str) -> bool:
        return not await self.objects(name)

    async def allow(self) -> None:
        say("0. A cluster admin allows grants in ci to read named secrets, for 30 minutes at most")
        say("   (grants are default-deny: without a TaskGrantPolicy nothing is ever granted).\n")
        await self.api.create(TASKGRANT_POLICIES, POLICY)

    async def lifecycle_until_job_completes(self) -> None:
        say("1. A release pipeline asks for one secret, for one Job, for at most 15 minutes:")
        await self.api.create(
            TASKGRANTS, grant_manifest(NAMESPACE, "release-42", duration="15m", reason="release run 42")
        )
        pending = await wait_until(lambda: self.phase("release-42", "Pending"))
        say(f"   TaskGrant ci/release-42 is {pending['status']['phase']}: {pending['status']['message']}")
        say(f"   created so far: {', '.join(await self.objects('release-42'))} (no access yet)")

        say("\n2. The Job starts:")
        started = time.monotonic()
        await self.api.create(JOBS, job_manifest(NAMESPACE, "release-42", **DEMO_JOB))
        active = await wait_until(lambda: self.phase("release-42", "Active"))
        took = (time.monotonic() - started) * 1000
        say(f"   Active after {took:.0f} ms; expires at {active['status']['expiresAt']}")
        for ref in active["status"]["roles"]:
            role = await self.api.get(ROLES, ref["namespace"], ref["name"])
            binding = await self.api.get(ROLE_BINDINGS, ref["namespace"], ref["name"])
            assert role is not None and binding is not None
            say(f"   Role {ref['name']}: {role['rules']}")
            say(f"   RoleBinding {ref['name']} -> {binding['subjects']}")

        say("\n3. The Job completes:")
        finished = time.monotonic()
        await self.api.patch(
            JOBS,
            NAMESPACE,
            "release-42",
            {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
            subresource="status",
        )
        await wait_until(lambda: self.gone("release-42"))
        took = (time.monotonic() - finished) * 1000
        revoked = await wait_until(lambda: self.phase("release-42", "Revoked"))
        say(
            f"   every object removed {took:.0f} ms later: {revoked['status']['phase']}, "
            f"reason {revoked['status']['reason']}"
        )

    async def deadline_expiry(self) -> None:
        say("\n4. A backup Job gets 3 seconds, and keeps running past them:")
        await self.api.create(JOBS, job_manifest(NAMESPACE, "nightly-backup", **DEMO_JOB))
        await self.api.create(TASKGRANTS, grant_manifest(NAMESPACE, "nightly-backup", duration="3s"))
        active = await wait_until(lambda: self.phase("nightly-backup", "Active"))
        expires = datetime.datetime.fromisoformat(active["status"]["expiresAt"])
        say(f"   Active; expires at {active['status']['expiresAt']}")
        await wait_until(lambda: self.gone("nightly-backup"))
        late = (datetime.datetime.now(datetime.UTC) - expires).total_seconds() * 1000
        revoked = await wait_until(lambda: self.phase("nightly-backup", "Revoked"))
        say(
            f"   revoked {late:.0f} ms after expiry, while the Job still ran: "
            f"reason {revoked['status']['reason']}"
        )


def run_operator(api: KubeApi, stop: threading.Event) -> None:
    import taskgrant.controller.handlers  # noqa: F401  # registers the handlers with kopf

    asyncio.run(
        kopf.operator(
            clusterwide=True, standalone=True, stop_flag=stop, memo=kopf.Memo(config=Config(), api=api)
        )
    )


async def demo(kubeconfig: Path) -> None:
    api = KubeApi.from_environment(str(kubeconfig))
    try:
        runner = Demo(api)
        await runner.allow()
        await runner.lifecycle_until_job_completes()
        await runner.deadline_expiry()
    finally:
        api.close()


def main() -> int:
    from taskgrant.emulator import EmulatedCluster  # the demo extra (kmock) is needed only here

    kopf.configure(log_format=kopf.LogFormat.PLAIN)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("kopf").setLevel(logging.ERROR)  # e.g. "OS signals are ignored" in a thread
    with EmulatedCluster(crds=CRDS) as cluster, tempfile.TemporaryDirectory() as tmp:
        kubeconfig = cluster.write_kubeconfig(Path(tmp) / "kubeconfig")
        say(
            f"taskgrant-operator demo: an emulated Kubernetes API at {cluster.url}, "
            "the real operator on it.\n"
        )
        stop = threading.Event()
        operator = threading.Thread(
            target=run_operator, args=(KubeApi.from_environment(str(kubeconfig)), stop)
        )
        operator.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # ready once it watches grants and Jobs
                if {"taskgrants", "jobs"} <= {r.plural for r in cluster.requests() if r.verb == "watch"}:
                    break
                time.sleep(0.05)
            asyncio.run(demo(kubeconfig))
        finally:
            stop.set()
            operator.join(timeout=15)
    say("\nDone: access existed only while its Job ran, and nothing the grant created is left.")
    return 0
