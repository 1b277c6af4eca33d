import asyncio

from taskgrant.controller.reconciler import GrantLocks


async def test_holders_of_one_grant_never_overlap_and_the_lock_is_dropped_after() -> None:
    locks = GrantLocks()
    inside: list[int] = []
    overlaps: list[int] = []

    async def work(n: int) -> None:
        async with locks.hold(("ci", "g")):
            if inside:
                overlaps.append(n)
            inside.append(n)
            await asyncio.sleep(0.01)
            inside.remove(n)

    late: list[asyncio.Task[None]] = []

    async def first() -> None:
        await work(0)
        # Arrives right after the release, before the waiting holder wakes: an asyncio.Lock reads as
        # unlocked then, and dropping it would let this one in beside the waiter.
        late.append(asyncio.create_task(work(99)))

    await asyncio.gather(first(), work(1), work(2))
    await asyncio.gather(*late)
    assert overlaps == []
    assert locks._locks == {} and not locks._users


async def test_different_grants_do_not_wait_for_each_other() -> None:
    locks = GrantLocks()
    order: list[str] = []

    async def work(name: str, delay: float) -> None:
        async with locks.hold(("ci", name)):
            await asyncio.sleep(delay)
            order.append(name)

    await asyncio.gather(work("slow", 0.05), work("fast", 0.0))
    assert order == ["fast", "slow"]
