"""Bulkheads between tenants: at most `limit` upstream operations in flight per key (an
integration's callUrl calls, a tenant's catalog reads).

An operation over the limit is refused at once rather than queued: a queue would make the
caller wait on a slow upstream it does not own, and a tenant whose upstream stalls would still
pile up work (and memory) in the gateway. Only keys with an operation in flight are kept, so
memory follows what is in flight, never how many integrations or tenants were ever seen.
Single event loop: no lock is needed between the check and the count.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["DEFAULT_MAX_INFLIGHT", "Bulkhead"]

DEFAULT_MAX_INFLIGHT = 32  # MCPGW_UPSTREAM_MAX_INFLIGHT's default


class Bulkhead:
    """Counts operations in flight per key; `try_enter` refuses the one past `limit`."""

    __slots__ = ("_held", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._held: dict[Hashable, int] = {}

    def __len__(self) -> int:
        """How many keys have an operation in flight (idle keys are not kept)."""
        return len(self._held)

    def try_enter(self, key: Hashable) -> bool:
        """Take a slot for `key`; False (and nothing taken) when all of its slots are taken.
        Every True must be paired with one `leave`."""
        held = self._held.get(key, 0)
        if held >= self.limit:
            return False
        self._held[key] = held + 1
        return True

    def leave(self, key: Hashable) -> None:
        """Give back a slot taken by `try_enter`; the key is forgotten when it has none."""
        held = self._held[key] - 1
        if held:
            self._held[key] = held
        else:
            del self._held[key]
