"""The worker's inline delivery of fetched messages (:mod:`streams.faust_glue`), without servers.

Faust's fetch loop awaited ``wait_first(callback(message), suspend_flow.wait())`` per message;
:class:`streams.faust_glue.InlineDrainConsumer` starts the callback by hand and continues it in
a task (:func:`streams.faust_glue._resume`) only when it suspends. These tests pin what the
hand-driven coroutine must still do as if a task ran it: wait on what it awaits, see that
future's result or exception, be cancelled when the delivery is interrupted, and pass through
bare ``sleep(0)`` yields.
"""

from __future__ import annotations

import asyncio

import pytest

from streams.faust_glue import _resume


def _started(coro):  # type: ignore[no-untyped-def]
    """Start ``coro`` by hand as the consumer does: its first suspension point."""
    return coro.send(None)


async def test_a_coroutine_suspended_on_a_full_queue_finishes_when_room_is_made() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(0)

    async def deliver() -> str:  # the conductor's slow path: wait for room in the buffer
        put = asyncio.ensure_future(queue.put(1))
        await asyncio.wait([put], return_when=asyncio.ALL_COMPLETED)
        return "delivered"

    coro = deliver()
    waiting_on = _started(coro)
    assert waiting_on is not None and not waiting_on.done()
    task = asyncio.ensure_future(_resume(coro, waiting_on))
    await asyncio.sleep(0.01)
    assert not task.done()  # still no room
    assert queue.get_nowait() == 0
    assert await asyncio.wait_for(task, 2) == "delivered"
    assert queue.get_nowait() == 1


async def test_the_coroutine_sees_the_exception_of_what_it_awaited() -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()
    seen: list[str] = []

    async def awaiting() -> str:
        try:
            await future
        except ValueError as exc:
            seen.append(str(exc))
            return "handled"
        return "not raised"

    coro = awaiting()
    task = asyncio.ensure_future(_resume(coro, _started(coro)))
    await asyncio.sleep(0)
    future.set_exception(ValueError("bad"))
    assert await asyncio.wait_for(task, 2) == "handled"
    assert seen == ["bad"]


async def test_cancelling_the_delivery_cancels_the_coroutine() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()
    cleaned: list[bool] = []

    async def blocked() -> None:
        try:
            await never
        finally:
            cleaned.append(True)

    coro = blocked()
    task = asyncio.ensure_future(_resume(coro, _started(coro)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
    assert never.cancelled()


async def test_bare_yields_and_several_suspensions_are_followed() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[int] = loop.create_future()
    second: asyncio.Future[int] = loop.create_future()

    async def steps() -> int:
        await asyncio.sleep(0)
        a = await first
        await asyncio.sleep(0)
        return a + await second

    coro = steps()
    waiting_on = _started(coro)
    assert waiting_on is None  # sleep(0) yields nothing
    task = asyncio.ensure_future(_resume(coro, waiting_on))
    loop.call_later(0.01, first.set_result, 2)
    loop.call_later(0.02, second.set_result, 40)
    assert await asyncio.wait_for(task, 2) == 42
