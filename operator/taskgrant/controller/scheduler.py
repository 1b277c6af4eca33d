"""One scheduler for every grant's next wake-up (notBefore, expiry, retry), not a loop per grant.

It holds only wake-up times derived from the grants' status; after a restart the resume handlers
schedule them again, so nothing is lost with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import heapq
import logging
from collections.abc import Awaitable, Callable, Hashable

logger = logging.getLogger(__name__)

MAX_RETRY_DELAY_SECONDS = 30.0
FIRST_RETRY_DELAY_SECONDS = 0.5

Clock = Callable[[], datetime.datetime]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Scheduler:
    def __init__(self, callback: Callable[[Hashable], Awaitable[None]], clock: Clock = utcnow) -> None:
        self._callback = callback
        self._clock = clock
        self._due: dict[Hashable, datetime.datetime] = {}
        self._heap: list[tuple[datetime.datetime, int, Hashable]] = []
        self._counter = 0
        self._retries: dict[Hashable, int] = {}
        self._changed = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def schedule(self, key: Hashable, when: datetime.datetime) -> None:
        """Wake `key` at `when`, replacing its earlier wake-up: each grant has one next moment."""
        self._due[key] = when
        self._counter += 1
        heapq.heappush(self._heap, (when, self._counter, key))
        self._changed.set()

    def cancel(self, key: Hashable) -> None:
        self._due.pop(key, None)
        self._retries.pop(key, None)

    def retry(self, key: Hashable) -> float:
        """Schedule a retry after a failure, backing off exponentially up to a bound."""
        attempt = self._retries.get(key, 0)
        self._retries[key] = attempt + 1
        delay = min(FIRST_RETRY_DELAY_SECONDS * 2.0**attempt, MAX_RETRY_DELAY_SECONDS)
        self.schedule(key, self._clock() + datetime.timedelta(seconds=delay))
        return delay

    def succeeded(self, key: Hashable) -> None:
        self._retries.pop(key, None)

    def pending(self) -> dict[Hashable, datetime.datetime]:
        return dict(self._due)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="taskgrant-scheduler")

    async def stop(self) -> None:
        tasks = [task for task in [self._loop_task, *self._running] if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                when, _, key = heapq.heappop(self._heap)
                if self._due.get(key) != when:
                    continue  # superseded by a later schedule() or cancelled
                del self._due[key]
                task = asyncio.create_task(self._fire(key))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            timeout = (self._heap[0][0] - now).total_seconds() if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def _fire(self, key: Hashable) -> None:
        try:
            await self._callback(key)
        except Exception:  # the callback handles its own errors; this only keeps the loop alive
            logger.exception("scheduled wake-up of %s failed", key)
