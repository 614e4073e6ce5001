"""Per-key rate limiting (design.md §5): one interface, backends side by side.

- `RedisLimiter` (redis.py): the token buckets and the ended-session denylist in one atomic Lua
  script per check on Redis server time, concurrent checks pipelined into one round trip; exact
  across replicas.
- `LocalLimiter` (local.py): the same semantics in-process, bounded memory; one process only.
- `FailoverLimiter` (failover.py): Redis first; on Redis failure the local buckets (`open`) or
  `LimiterUnavailable` (`closed`).

`create_limiter` picks: Redis with failover when a Redis client is given, else local.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.context import Charge, Decision, LimiterUnavailable, RateLimiter
from gateway.ratelimit.buckets import BucketSpec, Limits
from gateway.ratelimit.failover import FailoverLimiter
from gateway.ratelimit.local import LocalLimiter
from gateway.ratelimit.redis import RedisLimiter

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from settings_api.config import Settings

__all__ = [
    "BucketSpec",
    "Charge",
    "Decision",
    "FailoverLimiter",
    "LimiterUnavailable",
    "Limits",
    "LocalLimiter",
    "RateLimiter",
    "RedisLimiter",
    "create_limiter",
]


def create_limiter(settings: Settings, redis_client: Redis | None, *, prefix: str = "mcpgw",
                   timeout_s: float = 0.5) -> RateLimiter:
    """The limiter the gateway uses. With a client: `FailoverLimiter(RedisLimiter, LocalLimiter,
    settings.rate_limit_failure_mode)`; each Redis round trip is bounded by `timeout_s`, so
    the client needs no `socket_timeout` (which costs every send a Task). The client stays the
    caller's to close."""
    limits = Limits.from_settings(settings)
    local = LocalLimiter(limits)
    if redis_client is None:
        return local
    primary = RedisLimiter(redis_client, limits, prefix=prefix, timeout_s=timeout_s)
    return FailoverLimiter(primary, local, settings.rate_limit_failure_mode)
