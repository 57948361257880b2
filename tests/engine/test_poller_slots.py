"""The poller's global cap hands slots out by priority (power polls first)."""

from __future__ import annotations

import asyncio

from console.live.poller import _PRIORITY, _Slots


async def test_slots_go_to_the_lowest_priority_first_then_in_order() -> None:
    slots = _Slots(1)
    await slots.acquire(5)  # taken: the rest queue
    order: list[str] = []

    async def job(name: str, priority: int) -> None:
        await slots.acquire(priority)
        order.append(name)
        slots.release()

    tasks = [asyncio.create_task(job(n, p)) for n, p in (("events", 4), ("power-a", 0), ("sensors", 3),
                                                         ("power-b", 0), ("switch", 1))]
    await asyncio.sleep(0)
    slots.release()
    await asyncio.gather(*tasks)
    assert order == ["power-a", "power-b", "switch", "sensors", "events"]
    assert _PRIORITY["power"] < _PRIORITY["switch"] < _PRIORITY["boot"] < _PRIORITY["image"]


async def test_a_cancelled_waiter_gives_its_slot_on() -> None:
    slots = _Slots(1)
    await slots.acquire(0)
    waiting = asyncio.create_task(slots.acquire(0))
    await asyncio.sleep(0)
    slots.release()  # handed to the waiter ...
    waiting.cancel()  # ... cancelled before it ran: the slot must not be lost
    await asyncio.gather(waiting, return_exceptions=True)
    await asyncio.wait_for(slots.acquire(0), 1)
