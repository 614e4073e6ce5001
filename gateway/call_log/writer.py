"""The call log's background tasks, started by the data plane's cleanup_ctx: the writer
(the buffer to the store in batches) and the retention delete."""

from __future__ import annotations

import asyncio
import logging

from gateway.call_log.buffer import CallBuffer
from gateway.observability import metrics
from settings_api.service import SettingsService, now_ms

log = logging.getLogger(__name__)

# A call is in the store, readable on every replica, within about this long.
FLUSH_INTERVAL_S = 0.5
BATCH = 500
# The retention delete: shortly after start, then hourly.
RETENTION_FIRST_S = 1.0
RETENTION_EVERY_S = 3600.0
DAY_MS = 86_400_000


class CallWriter:
    """Writes the buffer's calls to the store; a batch the store refuses is dropped."""

    def __init__(self, buffer: CallBuffer, service: SettingsService) -> None:
        self.buffer = buffer
        self.service = service
        self._failing = False
        self._dropped_at_failure = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.write_pending()

    async def write_pending(self) -> None:
        """Write everything buffered now, a batch per transaction (stops at the first
        failure: the rest waits for the next round)."""
        while batch := self.buffer.take(BATCH):
            try:
                await self.service.record_calls(batch)
            except Exception as exc:
                self.buffer.drop(len(batch), "store_unavailable")
                if not self._failing:
                    self._failing = True
                    self._dropped_at_failure = self.buffer.dropped - len(batch)
                    log.warning(
                        "cannot write the tool-call log (%s); dropping calls until the store "
                        "answers",
                        type(exc).__name__,
                    )
                return
            metrics.calls_written(len(batch))
            if self._failing:
                self._failing = False
                log.warning(
                    "writing the tool-call log again; %d calls were dropped",
                    self.buffer.dropped - self._dropped_at_failure,
                )


async def expire_calls(service: SettingsService, retention_days: int) -> None:
    """Delete calls older than the retention, at start and then hourly. One replica at a time:
    the delete takes a lock in its transaction (an advisory lock on Postgres, the write lock
    on SQLite), and a replica that does not get it leaves the round to the holder."""
    await asyncio.sleep(RETENTION_FIRST_S)
    while True:
        try:
            deleted = await service.expire_calls(now_ms() - retention_days * DAY_MS)
        except Exception as exc:
            log.warning("tool-call log retention failed (%s); will retry", type(exc).__name__)
        else:
            if deleted:
                log.info("tool-call log retention deleted %d calls", deleted)
        await asyncio.sleep(RETENTION_EVERY_S)
