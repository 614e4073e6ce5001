"""Per-key rate limiting (docs/mcp-endpoints.md): one interface, backends side by side.

- `RedisLimiter` (redis.py): the token buckets in one atomic Lua script per key on Redis server
  time, the ended-session denylist and session log levels beside them, concurrent checks
  pipelined into one round trip; exact across replicas.
- `LocalLimiter` (local.py): the same semantics in-process, bounded memory; one process only.
- `FailoverLimiter` (failover.py): Redis first; on Redis failure the local buckets (`open`) or
  `LimiterUnavailable` (`closed`).

Each is both the `RateLimiter` and the `SessionStore` (ended sessions, sessions' log levels).
`create_limiter` picks: Redis with failover when a Redis client is given, else local.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.context import (
    Charge,
    Decision,
    LimiterUnavailable,
    RateLimiter,
    SessionDenylist,
    SessionStore,
)
from gateway.ratelimit.buckets import BucketSpec, Limits
from gateway.ratelimit.failover import FailoverLimiter
from gateway.ratelimit.local import LocalLimiter
from gateway.ratelimit.redis import RedisLimiter

if TYPE_CHECKING:
    from gateway.redis_clients import RedisClient

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
    "SessionDenylist",
    "SessionStore",
    "create_limiter",
]


def create_limiter(
    limits: Limits,
    redis_client: RedisClient | None,
    *,
    failure_mode: str = "open",
    prefix: str = "mcpgw",
    timeout_s: float = 0.5,
) -> LocalLimiter | FailoverLimiter:
    """`LocalLimiter(limits)` without a client; with one, `FailoverLimiter(RedisLimiter,
    LocalLimiter, failure_mode)`, each Redis round trip bounded by `timeout_s`. The client
    stays the caller's to close."""
    local = LocalLimiter(limits)
    if redis_client is None:
        return local
    primary = RedisLimiter(redis_client, limits, prefix=prefix, timeout_s=timeout_s)
    return FailoverLimiter(primary, local, failure_mode)
