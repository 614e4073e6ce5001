"""Cheap event-loop helpers for the request path: a remembered running loop and a deadline.

On Python 3.11, `asyncio.get_running_loop()` and `asyncio.current_task()` without a loop each
make a getpid system call (CPython checks for a fork), and `asyncio.timeout` makes two of them
plus a pure-Python context manager; the benchmark's machines charge several µs for a system
call (docs/performance.md). These do the same work with the loop passed in.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class RunningLoop:
    """The loop an object serves, looked up once (and again only after that loop closed, as
    when tests run one loop after another)."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop


class Deadline:
    """``with Deadline(loop, seconds):`` inside a task behaves as ``async with
    asyncio.timeout(seconds):``: when the time is up the task is cancelled, and the
    cancellation leaves the block as `TimeoutError`; a cancellation from elsewhere stays one."""

    __slots__ = ("_cancelling", "_handle", "_loop", "_seconds", "_task", "expired")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self._loop = loop
        self._seconds = seconds
        self.expired = False

    def __enter__(self) -> Deadline:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("Deadline is for code running in a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = self._loop.call_later(self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._handle.cancel()
        if (self.expired and exc_type is asyncio.CancelledError
                and self._task.uncancel() <= self._cancelling):
            raise TimeoutError from exc
