"""The one way the operator talks to the Kubernetes API.

Every call goes through `KubeApi.request`: JSON in, JSON out, bounded retries on 429 and 5xx.
Creates treat 409 as "already there" and deletes treat 404 as "already gone", so every
orchestration step can be repeated safely. The `kubernetes` ApiClient is injected, so tests and
the demo point it at the emulator with an ordinary kubeconfig.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
import kubernetes

from taskgrant.k8s.errors import RETRYABLE_STATUSES, ApiError, error_from
from taskgrant.k8s.kubeconfig import load_configuration
from taskgrant.k8s.resources import Resource, has_labels, label_selector, still_present

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BASE_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 30.0
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_WORKERS = 16

# Told of every answer: (verb as Kubernetes names it, HTTP status). The controller counts them.
ResponseObserver = Callable[[str, int], None]


def _ignore(verb: str, status: int) -> None:
    pass


class KubeApi:
    """An API client with its own threads. `lane()` gives a sibling on the same connection pool
    with threads of its own, so that one kind of work (revocations) never queues behind another."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        *,
        max_workers: int = DEFAULT_WORKERS,
        observe: ResponseObserver = _ignore,
        name: str = "kube-api",
    ) -> None:
        self._client = client
        self._observe = observe
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self._lanes: list[KubeApi] = []

    def lane(self, name: str, max_workers: int = DEFAULT_WORKERS) -> KubeApi:
        sibling = KubeApi(self._client, max_workers=max_workers, observe=self._observe, name=name)
        self._lanes.append(sibling)
        return sibling

    @classmethod
    def from_environment(
        cls,
        kubeconfig: str | None = None,
        context: str | None = None,
        *,
        user_agent: str | None = None,
        observe: ResponseObserver = _ignore,
    ) -> KubeApi:
        """Credentials as `kubeconfig.load_configuration` finds them."""
        client = kubernetes.client.ApiClient(load_configuration(kubeconfig, context))
        if user_agent is not None:
            client.user_agent = user_agent
        return cls(client, observe=observe)

    def connection_info(self) -> kopf.ConnectionInfo:
        """The same credentials for kopf's watches, so both clients always agree on the cluster."""
        config = self._client.configuration
        header = config.get_api_key_with_prefix("authorization") or ""  # refreshes in-cluster tokens
        scheme, _, token = header.partition(" ")
        return kopf.ConnectionInfo(
            server=config.host,
            ca_path=config.ssl_ca_cert,
            insecure=not config.verify_ssl,
            certificate_path=config.cert_file,
            private_key_path=config.key_file,
            scheme=scheme or None,
            token=token or None,
        )

    def close(self) -> None:
        for api in (self, *self._lanes):
            api._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    async def request(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One API call (`verb` as Kubernetes names it), retried with jittered backoff on 429 and 5xx."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self._call, method, path, body, query or {}, content_type)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            status, headers, data = await loop.run_in_executor(self._executor, call)
            self._observe(verb, status)
            if status < 400:
                return json.loads(data) if data else {}
            error = error_from(status, data)
            if status not in RETRYABLE_STATUSES or attempt == MAX_ATTEMPTS:
                raise error
            delay = _backoff(attempt, headers.get("Retry-After"))
            logger.warning("%s %s answered %s; retrying in %.2fs", method, path, status, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        query: Mapping[str, str],
        content_type: str,
    ) -> tuple[int, Mapping[str, str], bytes]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        resource_path = f"{path}?{urllib.parse.urlencode(query)}" if query else path
        method, url, headers, serialized, _ = self._client.param_serialize(
            method=method,
            resource_path=resource_path,
            header_params=headers,
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(
            method, url, header_params=headers, body=serialized, _request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        return response.status, response.headers or {}, response.read() or b""

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("get", "GET", resource.path(namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def list(
        self, resource: Resource, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector(labels)} if labels else None
        result = await self.request("list", "GET", resource.path(namespace), query=query)
        items: list[dict[str, Any]] = result.get("items") or []
        # Filter again client-side: a selector the server ignored must never widen what we act on.
        return [item for item in items if has_labels(item, labels or {})]

    async def create(self, resource: Resource, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the object; on 409 return the existing one instead, with False for "not created"."""
        meta = body["metadata"]
        try:
            return await self.request("create", "POST", resource.path(meta.get("namespace")), body=body), True
        except ApiError as error:
            if error.status != 409:
                raise
        existing = await self.get(resource, meta.get("namespace"), meta["name"])
        if existing is None:  # deleted again in between: a genuine race, let the caller retry
            raise ApiError(409, "Conflict", f"{resource.plural} {meta['name']} exists and vanished")
        return existing, False

    async def delete_labelled(self, resource: Resource, namespace: str, labels: Mapping[str, str]) -> bool:
        """Delete every object with these labels in one namespace; True once none is left."""
        query = {"labelSelector": label_selector(labels), "propagationPolicy": "Background"}
        try:
            result = await self.request("deletecollection", "DELETE", resource.path(namespace), query=query)
        except ApiError as error:
            if error.status == 404:  # the namespace is gone, and its objects with it
                return True
            raise
        return not any(still_present(item) for item in result.get("items") or [] if has_labels(item, labels))

    async def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        return await self.request(
            "patch",
            "PATCH",
            resource.path(namespace, name, subresource),
            body=patch,
            content_type=MERGE_PATCH,
        )


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), MAX_BACKOFF_SECONDS)
    delay = min(BASE_BACKOFF_SECONDS * 2.0 ** (attempt - 1), MAX_BACKOFF_SECONDS)
    return delay * random.uniform(0.5, 1.0)
