"""The replica's bounded buffer of recorded calls, between the request path and the store.

Adding never waits and never fails: past `max_entries` calls or `max_bytes` of recorded
arguments a call is dropped and counted (`mcpgw_call_log_dropped_total{reason="buffer_full"}`);
a batch the store refused is dropped and counted too (`reason="store_unavailable"`).
"""

from __future__ import annotations

import collections

from gateway.observability import metrics
from settings_api.store import ToolCall

MAX_ENTRIES = 10_000
MAX_BYTES = 32 * 1024 * 1024
# What a recorded call costs besides its arguments text, for the byte bound.
ENTRY_OVERHEAD = 512


class CallBuffer:
    """Calls recorded and not yet written, oldest first."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._entries: collections.deque[tuple[ToolCall, int]] = collections.deque()
        self._bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.dropped = 0  # since the process started, whatever the reason

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, call: ToolCall) -> None:
        size = ENTRY_OVERHEAD + (len(call.arguments) if call.arguments else 0)
        if len(self._entries) >= self.max_entries or self._bytes + size > self.max_bytes:
            self.drop(1, "buffer_full")
            return
        self._entries.append((call, size))
        self._bytes += size

    def take(self, limit: int) -> list[ToolCall]:
        """Up to `limit` of the oldest calls, removed from the buffer."""
        taken: list[ToolCall] = []
        while self._entries and len(taken) < limit:
            call, size = self._entries.popleft()
            self._bytes -= size
            taken.append(call)
        return taken

    def drop(self, count: int, reason: str) -> None:
        self.dropped += count
        metrics.calls_dropped(reason, count)
