"""Waiting for a condition in async tests: poll, with a bound, instead of sleeping a guess."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def until(
    check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 2.0, interval_s: float = 0.01
) -> float:
    """Poll `check()` (plain or async) until true; how long it took (AssertionError past
    `timeout_s`)."""
    started = time.monotonic()
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        await asyncio.sleep(interval_s)
