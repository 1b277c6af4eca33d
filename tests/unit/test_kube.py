import asyncio
import threading
from typing import Any

import kubernetes
import pytest

from taskgrant.k8s.client import KubeApi


def test_a_lane_gets_threads_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: dict[str, str] = {}

    def call(self: KubeApi, method: str, path: str, *_: Any) -> tuple[int, dict[str, str], bytes]:
        threads[path] = threading.current_thread().name.rsplit("_", 1)[0]
        return 200, {}, b"{}"

    monkeypatch.setattr(KubeApi, "_call", call)
    api = KubeApi(kubernetes.client.ApiClient(kubernetes.client.Configuration()))

    revoking = api.lane("kube-revoke")

    async def requests() -> None:
        await api.request("get", "GET", "/before")
        await asyncio.gather(*(revoking.request("get", "GET", f"/revoking/{i}") for i in range(3)))
        await api.request("get", "GET", "/after")

    try:
        asyncio.run(requests())
    finally:
        api.close()
    assert threads == {
        "/before": "kube-api",
        "/revoking/0": "kube-revoke",
        "/revoking/1": "kube-revoke",
        "/revoking/2": "kube-revoke",
        "/after": "kube-api",
    }
