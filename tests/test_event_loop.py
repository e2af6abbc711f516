"""store/event_loop.py: the running loop without getpid, and a deadline that behaves as
``asyncio.timeout`` does (an expiry is told from any other cancellation)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from namesrv_redis.store.event_loop import Deadline, running_loop


def test_running_loop_follows_each_loop_of_the_thread() -> None:
    seen = []

    async def ask() -> None:
        seen.append((running_loop(), asyncio.get_running_loop()))

    asyncio.run(ask())
    asyncio.run(ask())
    (a, a_real), (b, b_real) = seen
    assert a is a_real and b is b_real and a is not b


async def _under(seconds: float, work: Callable[[Deadline], Awaitable[None]]) -> str:
    """``work`` under a deadline, as the store uses one: "done", "expired" (the deadline's
    own cancellation) or any other cancellation raised."""
    deadline = Deadline(running_loop(), seconds)
    try:
        await work(deadline)
        return "done"
    except asyncio.CancelledError:
        if deadline.expired_here():
            return "expired"
        raise
    finally:
        deadline.close()


async def _sleep_under(seconds: float, work: float) -> str:
    async def sleep(_: Deadline) -> None:
        await asyncio.sleep(work)

    return await _under(seconds, sleep)


async def test_an_expired_deadline_is_its_own_cancellation() -> None:
    assert await _sleep_under(0.05, 5) == "expired"
    # the task is not left cancelled: it goes on awaiting
    await asyncio.sleep(0.01)
    assert await _sleep_under(1.0, 0.01) == "done"


async def test_a_cancellation_from_outside_stays_one() -> None:
    task = asyncio.ensure_future(_sleep_under(5, 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_outside_cancellation_and_expiry_together_stay_a_cancellation() -> None:
    """The deadline passes and the task is cancelled from outside in the same turn: the
    cancellation is not swallowed as a timeout."""

    async def both(deadline: Deadline) -> None:
        deadline._expire()  # the deadline's timer fires ...
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # ... and so does a cancellation from outside
        await asyncio.sleep(0)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(_under(60, both))


def test_a_deadline_needs_a_task() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError):
            Deadline(loop, 1.0)
    finally:
        loop.close()
