"""Stopping a background task that a library may not let stop on the first cancel."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# How often a task that ran on after a cancel is cancelled again.
RECANCEL_S = 0.05


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended, cancelling it again while it runs on."""
    # redis-py (8.1) can swallow a cancellation that lands inside a command: measured, about
    # half of the cancels sent during a PUBLISH, which then returns as if nothing happened. A
    # loop around such a call ran on after its one cancel, and a `serve --workers` worker
    # waited for it at shutdown until the supervisor killed it (17 s).
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_S)
    with contextlib.suppress(asyncio.CancelledError):
        await task
