"""gateway.deadline: `Deadline` behaves as asyncio.timeout (expiry becomes TimeoutError, a
cancellation from elsewhere stays one, nothing fires after the block), and `RunningLoop`
follows a new loop once the old one closed."""

from __future__ import annotations

import asyncio

import pytest

from gateway.deadline import Deadline, RunningLoop


async def test_expiry_leaves_the_block_as_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop, 0.02)
    started = loop.time()
    with pytest.raises(TimeoutError):
        with deadline:
            await asyncio.sleep(5)
    assert deadline.expired and loop.time() - started < 1
    await asyncio.sleep(0.01)  # the task is not left cancelled


async def test_a_block_that_ends_in_time_is_not_cancelled_later() -> None:
    with Deadline(asyncio.get_running_loop(), 0.02) as deadline:
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)  # past the deadline: would raise CancelledError if armed
    assert not deadline.expired


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def work() -> None:
        with Deadline(asyncio.get_running_loop(), 5):
            await asyncio.sleep(5)

    task = asyncio.create_task(work())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_inside_an_outer_timeout_each_owns_its_expiry() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):  # the outer one expires first: its TimeoutError
        async with asyncio.timeout(0.02):
            with Deadline(loop, 5):
                await asyncio.sleep(5)
    async with asyncio.timeout(5):  # the inner one expires first: the outer stays quiet
        with pytest.raises(TimeoutError):
            with Deadline(loop, 0.02):
                await asyncio.sleep(5)
        await asyncio.sleep(0)


def test_running_loop_follows_a_new_loop() -> None:
    ref = RunningLoop()
    first = asyncio.run(_get(ref))
    second = asyncio.run(_get(ref))
    assert first is not second and first.is_closed()


async def _get(ref: RunningLoop) -> asyncio.AbstractEventLoop:
    loop = ref.get()
    assert loop is asyncio.get_running_loop() and ref.get() is loop
    return loop
