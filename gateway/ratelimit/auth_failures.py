"""Failed-auth throttling per client address: a flood of bad keys costs no store lookups.

Each failed authentication with a key that was sent but is unusable (malformed, unknown or
revoked; a request without any key does not count) is counted against the client's address in
a window of `window_s`. The `limit`-th failure flags the address for a whole window from then
on: until it passes, every MCP request from that address is answered 429 `auth-throttled`
with `Retry-After`, right after the `Origin` check and before any key lookup, even one with a
valid key (a throttled address cannot tell good keys from bad ones; that is the point).

Cost: a request from an address that is not flagged pays one truthiness check of a dict (none
at all while no address is flagged); successful requests never count. Only failures do work.

Shared between replicas through Redis when configured: each failure is one atomic script
(INCR, and PEXPIRE when the window starts or the limit is reached; the reply carries the
remaining PTTL), so the failures of every replica add up to one count. Counters are keyed
`<key prefix><address>`; the wiring gives each deployment its own prefix, so replicas of one
deployment share counts and other deployments on the same Redis (staging, tests) do not. The
flag itself is local:
a replica flags an address on its first failure from it once the shared count has passed the
limit, so after the limit each replica lets at most one more lookup through (plus those already
in flight). Without Redis, or while Redis fails (then left alone for `retry_interval_s` after
each failure, so a hung Redis does not slow every bad request), the counts are in-process
(bounded).

The HTTP layer gives the client's address as a string (`settings_api.http.client_address`
says which address that is behind a proxy). IPv6 addresses are counted per /64, the block one
host usually owns.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from gateway.redis_clients import RedisClient

log = logging.getLogger("gateway.ratelimit")

# Failure reasons (gateway.state.AuthFailure.reason) that count against the address.
COUNTED_REASONS = frozenset({"malformed", "unknown", "revoked"})
DEFAULT_MAX_ENTRIES = 100_000
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)
V = TypeVar("V")

# KEYS[1] the address's counter; ARGV[1] window in ms, ARGV[2] the limit → {count, pttl ms}.
# The window starts with the first failure; reaching the limit restarts it, so the lockout
# lasts a full window on every replica.
SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 or n == tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {n, redis.call('PTTL', KEYS[1])}
"""


def throttle_key(address: str | None) -> str:
    """The unit an address is counted in: the IPv4 address, the IPv6 /64, or the text as
    given when it is no IP address (a unix socket, a proxy's odd value)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address[:64]
    if ip.version == 6:
        mapped = ip.ipv4_mapped  # type: ignore[union-attr]
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class AuthFailureThrottle:
    """Counts failed authentications per client address; answers whether one is throttled."""

    def __init__(
        self,
        limit: int,
        window_s: float,
        redis: RedisClient | None = None,
        *,
        key_prefix: str = "mcpgw:af:",
        timeout_s: float = 0.5,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        warn_interval_s: float = 30.0,
        retry_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.limit = limit
        self.window_s = window_s
        self._prefix = key_prefix
        self._timeout_s = timeout_s
        self._max_entries = max_entries
        self._warn_interval_s = warn_interval_s
        self._last_warning = -math.inf
        self._retry_interval_s = retry_interval_s
        self._redis_down_until = -math.inf  # after a failure, Redis is left alone a while
        self._clock = clock
        self._script = redis.register_script(SCRIPT) if redis is not None else None
        self._flagged: dict[str, float] = {}  # throttle key → clock() when the lockout ends
        self._counts: dict[str, list[float]] = {}  # local windows: key → [count, window end]

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def retry_after(self, address: str | None) -> float | None:
        """Seconds until the client at `address` may try again; None when it is not
        throttled. No I/O: the flags are local."""
        if not self._flagged:
            return None
        key = throttle_key(address)
        until = self._flagged.get(key)
        if until is None:
            return None
        left = until - self._clock()
        if left > 0:
            return left
        del self._flagged[key]
        return None

    async def failed(self, address: str | None) -> None:
        """Count one failed authentication from `address`; flag it at the limit."""
        if self.limit <= 0:
            return
        key = throttle_key(address)
        count, ttl_s = await self._count(key)
        if count >= self.limit:
            self._flagged[key] = self._clock() + ttl_s
            _bound(self._flagged, self._max_entries, self._clock(), lambda until: until)

    async def _count(self, key: str) -> tuple[int, float]:
        """(failures in the current window, seconds left in it)."""
        if self._script is not None and self._clock() >= self._redis_down_until:
            try:
                async with asyncio.timeout(self._timeout_s):
                    count, ttl_ms = await self._script(
                        keys=[self._prefix + key],
                        args=[max(1, round(self.window_s * 1000)), self.limit],
                    )
            except REDIS_FAILURES as exc:
                self._redis_down_until = self._clock() + self._retry_interval_s
                self._warn(exc)
            else:
                ttl_s = int(ttl_ms) / 1000 if int(ttl_ms) > 0 else self.window_s
                return int(count), ttl_s
        return self._count_locally(key)

    def _count_locally(self, key: str) -> tuple[int, float]:
        now = self._clock()
        entry = self._counts.get(key)
        if entry is None or entry[1] <= now:
            entry = [0, now + self.window_s]
            self._counts[key] = entry
            _bound(self._counts, self._max_entries, now, lambda e: e[1])
        entry[0] += 1
        if entry[0] == self.limit:
            entry[1] = now + self.window_s
        return int(entry[0]), entry[1] - now

    def _warn(self, exc: BaseException) -> None:
        now = self._clock()
        if now - self._last_warning >= self._warn_interval_s:
            self._last_warning = now
            log.warning(
                "failed-auth throttle: Redis unavailable (%s); counting per replica",
                type(exc).__name__,
            )


def _bound(
    entries: dict[str, V], max_entries: int, now: float, expiry: Callable[[V], float]
) -> None:
    """Keep `entries` within `max_entries`: past it, drop the expired ones, then the oldest
    down to 90% (so the scan is paid once per many inserts, not on each)."""
    if len(entries) <= max_entries:
        return
    for key in [k for k, v in entries.items() if expiry(v) <= now]:
        del entries[key]
    excess = len(entries) - max_entries * 9 // 10
    if excess > 0:
        for key in list(itertools.islice(entries, excess)):
            del entries[key]
