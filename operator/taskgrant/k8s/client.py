"""The one way the operator talks to the Kubernetes API.

Every call goes through `KubeApi.request`: JSON in, JSON out, bounded retries on 429 and 5xx.
Creates treat 409 as "already there" and deletes treat 404 as "already gone", so every
orchestration step can be repeated safely. The `kubernetes` ApiClient is injected, so tests and
the demo point it at the emulator with an ordinary kubeconfig.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import os
import random
import urllib.parse
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kopf
import kubernetes

from taskgrant.controller import metrics
from taskgrant.domain import constants

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 6
BASE_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 30.0
MERGE_PATCH = "application/merge-patch+json"
# Requests made while revoking go through threads of their own: a revocation never queues behind
# a burst of activations (see revoking()).
REVOKING: contextvars.ContextVar[bool] = contextvars.ContextVar("revoking", default=False)


@contextlib.contextmanager
def revoking() -> Iterator[None]:
    token = REVOKING.set(True)
    try:
        yield
    finally:
        REVOKING.reset(token)


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        if subresource is not None:
            base += f"/{subresource}"
        return base


SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings")
JOBS = Resource("batch", "v1", "jobs")
EVENTS = Resource("", "v1", "events")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
TASKGRANTS = Resource(constants.GROUP, constants.VERSION, constants.PLURAL)
SUBJECT_ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False)
TASKGRANT_APPROVALS = Resource(constants.GROUP, constants.VERSION, constants.APPROVAL_PLURAL)
TASKGRANT_POLICIES = Resource(constants.GROUP, constants.VERSION, constants.POLICY_PLURAL, namespaced=False)
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def has_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    actual = obj.get("metadata", {}).get("labels") or {}
    return all(actual.get(key) == value for key, value in labels.items())


def still_present(obj: Mapping[str, Any]) -> bool:
    """A deleted object with finalizers lingers (and, for RBAC, keeps authorizing) until they clear."""
    return bool(obj.get("metadata", {}).get("finalizers"))


class KubeApi:
    def __init__(
        self, client: kubernetes.client.ApiClient, *, max_workers: int = 16, revoking_workers: int = 16
    ) -> None:
        self._client = client
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="kube-api")
        self._revoking = ThreadPoolExecutor(max_workers=revoking_workers, thread_name_prefix="kube-revoke")

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> KubeApi:
        """In-cluster credentials when running in a Pod, else the kubeconfig (KUBECONFIG, ~/.kube)."""
        configuration = kubernetes.client.Configuration()
        # The kubernetes package reads KUBECONFIG once at import; read it now, as kubectl does.
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
        try:
            if kubeconfig:
                raise kubernetes.config.ConfigException("an explicit kubeconfig wins")
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = 32
        return cls(kubernetes.client.ApiClient(configuration))

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
        for executor in (self._executor, self._revoking):
            executor.shutdown(wait=False, cancel_futures=True)
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
            executor = self._revoking if REVOKING.get() else self._executor
            status, headers, data = await loop.run_in_executor(executor, call)
            metrics.API_REQUESTS.labels(verb=verb, code=str(status)).inc()
            if status < 400:
                return json.loads(data) if data else {}
            error = _error_from(status, data)
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


def _error_from(status: int, data: bytes) -> ApiError:
    try:
        payload = json.loads(data)
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    return ApiError(status, str(payload.get("reason") or "Error"), str(payload.get("message") or "")[:500])


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), MAX_BACKOFF_SECONDS)
    delay = min(BASE_BACKOFF_SECONDS * 2.0 ** (attempt - 1), MAX_BACKOFF_SECONDS)
    return delay * random.uniform(0.5, 1.0)
