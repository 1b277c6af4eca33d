import asyncio
import datetime
from collections.abc import Hashable

from taskgrant.controller.scheduler import Scheduler, utcnow


async def test_fires_each_key_once_at_its_latest_schedule() -> None:
    fired: list[tuple[Hashable, float]] = []
    start = utcnow()

    async def callback(key: Hashable) -> None:
        fired.append((key, (utcnow() - start).total_seconds()))

    scheduler = Scheduler(callback)
    scheduler.start()
    try:
        scheduler.schedule("a", start + datetime.timedelta(seconds=0.3))
        scheduler.schedule("b", start + datetime.timedelta(seconds=0.1))
        scheduler.schedule("a", start + datetime.timedelta(seconds=0.2))  # replaces the 0.3 s wake-up
        scheduler.schedule("c", start + datetime.timedelta(seconds=0.15))
        scheduler.cancel("c")
        await asyncio.sleep(0.5)
    finally:
        await scheduler.stop()
    assert [key for key, _ in fired] == ["b", "a"]
    assert fired[0][1] >= 0.1 and fired[1][1] >= 0.2
    assert scheduler.pending() == {}


async def test_retries_back_off_and_reset() -> None:
    async def callback(key: Hashable) -> None:
        pass

    scheduler = Scheduler(callback)
    assert [scheduler.retry("k") for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    scheduler.succeeded("k")
    assert scheduler.retry("k") == 0.5


async def test_a_failing_callback_does_not_stop_the_loop() -> None:
    fired: list[Hashable] = []

    async def callback(key: Hashable) -> None:
        fired.append(key)
        raise RuntimeError("boom")

    scheduler = Scheduler(callback)
    scheduler.start()
    try:
        scheduler.schedule("x", utcnow())
        await asyncio.sleep(0.05)
        scheduler.schedule("y", utcnow())
        await asyncio.sleep(0.05)
    finally:
        await scheduler.stop()
    assert fired == ["x", "y"]
