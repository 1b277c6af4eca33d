"""Where admission reads the cluster's policies and namespace labels from.

Reconciles read the operator's watch-fed kopf indices, as controllers read their informers' caches:
no request per reconcile, and kopf starts no handler before every index is filled. The webhook reads
the API itself, because kopf may serve it before the indices are filled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Protocol

from taskgrant.k8s.client import KubeApi
from taskgrant.k8s.resources import NAMESPACES, TASKGRANT_POLICIES

Labels = Mapping[str, str]


class ClusterView(Protocol):
    async def policies(self) -> list[Mapping[str, Any]]:
        """Every TaskGrantPolicy, as the API would list it."""
        ...

    async def namespace_labels(self, names: Collection[str]) -> dict[str, Labels]:
        """The labels of those of the named namespaces that exist."""
        ...


class ApiReads:
    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def policies(self) -> list[Mapping[str, Any]]:
        return list(await self.api.list(TASKGRANT_POLICIES))

    async def namespace_labels(self, names: Collection[str]) -> dict[str, Labels]:
        found = await asyncio.gather(*(self.api.get(NAMESPACES, None, name) for name in names))
        return {name: ns["metadata"].get("labels") or {} for name, ns in zip(names, found, strict=True) if ns}


class WatchedIndices:
    """kopf indices, read as live mappings: name → the one value its object contributed."""

    def __init__(
        self, policies: Mapping[str, Iterable[Mapping[str, Any]]], namespaces: Mapping[str, Iterable[Labels]]
    ) -> None:
        self._policies = policies
        self._namespaces = namespaces

    async def policies(self) -> list[Mapping[str, Any]]:
        return [body for bodies in self._policies.values() for body in bodies]

    async def namespace_labels(self, names: Collection[str]) -> dict[str, Labels]:
        found = {name: list(self._namespaces.get(name, ())) for name in names}
        return {name: labels[0] for name, labels in found.items() if labels}
