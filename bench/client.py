"""The bench's own API client: aiohttp with a bounded connection pool, User-Agent "taskgrant-bench".

Its requests are told apart from the operator's by that User-Agent in the emulator's request log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import aiohttp

BENCH_CLIENT = "taskgrant-bench"
GRANTS = "/apis/taskgrant.dev/v1alpha1"
BATCH = "/apis/batch/v1"
CORE = "/api/v1"
MERGE_PATCH = "application/merge-patch+json"
T = TypeVar("T")


class ApiFailure(Exception):
    pass


class BenchClient:
    def __init__(self, url: str, token: str, concurrency: int = 16) -> None:
        self.url = url
        self.concurrency = concurrency
        self._headers = {
            "Accept": "application/json",
            "Authorization": f"Bearer {token}",
            "User-Agent": BENCH_CLIENT,
        }
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BenchClient:
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=120)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, headers=self._headers)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        assert self._session is not None, "use `async with BenchClient(...)`"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else None
        async with self._session.request(method, self.url + path, data=data, headers=headers) as response:
            raw = await response.read()
            return response.status, json.loads(raw) if raw else {}

    async def ok(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        status, result = await self.call(method, path, body, content_type)
        if status >= 300:
            message = result.get("message") if isinstance(result, dict) else result
            raise ApiFailure(f"{method} {path} answered {status}: {message}")
        return result

    async def create(self, path: str, body: Any) -> Any:
        return await self.ok("POST", path, body)

    async def patch(self, path: str, patch: Any) -> Any:
        return await self.ok("PATCH", path, patch, MERGE_PATCH)

    async def items(self, path: str) -> list[dict[str, Any]]:
        result = await self.ok("GET", path)
        return list(result.get("items") or [])


async def run_all(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Run every call concurrently (the client's connection pool bounds how many are in flight)."""
    return list(await asyncio.gather(*calls))


# The objects the bench creates.

COMPLETE = {"status": {"conditions": [{"type": "Complete", "status": "True", "reason": "Bench"}]}}
