"""Redis first; when Redis fails, the failure mode decides: `open` answers from the local
buckets (each replica then limits on its own), `closed` raises `LimiterUnavailable` (503).

After a failure Redis is left alone for `retry_interval_s` (requests meanwhile go straight to
the fallback, or fail fast when closed), so an unreachable Redis costs one timeout per interval,
not one per request. A warning is logged at most once per `warn_interval_s`, and (at the same
pace) once when Redis answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from redis.exceptions import RedisError

from gateway.context import Charge, Decision, LimiterUnavailable
from gateway.observability import metrics
from gateway.ratelimit.local import LocalLimiter
from gateway.ratelimit.redis import RedisLimiter

log = logging.getLogger("gateway.ratelimit")

# What counts as "Redis is unavailable": connection, timeout, loading, read-only replica,
# cluster-down, OOM and any other Redis error, socket errors, and our own asyncio.timeout.
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)

FAILURE_MODES = ("open", "closed")
# The 503's detail when ending a session fails (None below: the limiter's own detail).
SESSION_STORE_DOWN = "the session store is unreachable; try again"


class FailoverLimiter:
    """`RateLimiter` and `SessionStore`: `primary` (Redis) with `fallback` (local) per the
    failure `mode`."""

    def __init__(
        self,
        primary: RedisLimiter,
        fallback: LocalLimiter,
        mode: str = "open",
        *,
        retry_interval_s: float = 1.0,
        warn_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in FAILURE_MODES:
            raise ValueError(f"failure mode must be 'open' or 'closed', not {mode!r}")
        self.primary = primary
        self.fallback = fallback
        self.mode = mode
        self._retry_interval_s = retry_interval_s
        self._warn_interval_s = warn_interval_s
        self._clock = clock
        self._down_until = 0.0  # skip the primary until then
        self._last_warning = self._last_recovery_log = -float("inf")
        self._degraded = False  # a failure was logged and no success since

    async def check(self, key_id: str, *, tools_call: bool) -> Decision:
        if self._use_primary():
            try:
                decision = await self.primary.check(key_id, tools_call=tools_call)
            except REDIS_FAILURES as exc:
                self._failed(exc)
            else:
                self._answered()
                return decision
        return self.fallback.check_now(key_id, tools_call=tools_call)

    async def check_many(self, key_id: str, charges: Sequence[Charge]) -> list[Decision]:
        if self._use_primary():
            try:
                decisions = await self.primary.check_many(key_id, charges)
            except REDIS_FAILURES as exc:
                self._failed(exc)
            else:
                self._answered()
                return decisions
        return self.fallback.check_many_now(key_id, charges)

    async def session_ended(self, key_id: str, session_id: str) -> bool:
        # A session ended here while Redis was down is only in the local denylist.
        if self.fallback.session_count and self.fallback.is_session_ended(key_id, session_id):
            return True
        if self._use_primary():
            try:
                ended = await self.primary.session_ended(key_id, session_id)
            except REDIS_FAILURES as exc:
                self._failed(exc)
            else:
                self._answered()
                return ended
        return False

    async def end_session(self, key_id: str, session_id: str, expires_at_s: float) -> None:
        # Always locally too: this replica keeps denying it even if Redis is lost later.
        self.fallback.end_session_now(key_id, session_id, expires_at_s)
        if self._use_primary(SESSION_STORE_DOWN):
            try:
                await self.primary.end_session(key_id, session_id, expires_at_s)
            except REDIS_FAILURES as exc:
                self._failed(exc, SESSION_STORE_DOWN)
            else:
                self._answered()

    async def session_log_level(self, key_id: str, session_id: str) -> str | None:
        if self._use_primary():
            try:
                level = await self.primary.session_log_level(key_id, session_id)
            except REDIS_FAILURES as exc:
                self._failed(exc)
            else:
                self._answered()
                if level is not None:
                    return level
        # Set here while Redis was down, or Redis is down now: this replica's own record.
        return self.fallback.session_log_level_now(key_id, session_id)

    async def set_session_log_level(
        self, key_id: str, session_id: str, level: str, expires_at_s: float
    ) -> None:
        # Locally too: this replica keeps the level if Redis is lost later.
        self.fallback.set_session_log_level_now(key_id, session_id, level, expires_at_s)
        if self._use_primary(SESSION_STORE_DOWN):
            try:
                await self.primary.set_session_log_level(key_id, session_id, level, expires_at_s)
            except REDIS_FAILURES as exc:
                self._failed(exc, SESSION_STORE_DOWN)
            else:
                self._answered()

    async def close(self) -> None:
        try:
            await self.primary.close()
        finally:
            await self.fallback.close()

    def _use_primary(self, refusal: str | None = None) -> bool:
        """Whether to ask Redis: not within `retry_interval_s` of a failure (then the fallback
        answers, or `LimiterUnavailable` is raised when the mode is closed)."""
        if self._down_until and self._clock() < self._down_until:
            if self.mode == "closed":
                raise LimiterUnavailable(refusal)
            return False
        return True

    def _answered(self) -> None:
        if self._degraded:
            self._recovered()

    def _failed(self, exc: BaseException, refusal: str | None = None) -> None:
        """Note the failure (Redis left alone a while, a warning at most so often); raise
        `LimiterUnavailable` when the mode is closed."""
        now = self._clock()
        self._down_until = now + self._retry_interval_s
        self._degraded = True
        metrics.limiter_degraded(True)
        if now - self._last_warning >= self._warn_interval_s:
            self._last_warning = now
            action = (
                "limiting per replica from local buckets"
                if self.mode == "open"
                else "refusing requests (failure mode closed)"
            )
            log.warning(
                "rate limiter: Redis unavailable (%s: %s); %s", type(exc).__name__, exc, action
            )
        if self.mode == "closed":
            raise LimiterUnavailable(refusal) from exc

    def _recovered(self) -> None:
        self._degraded = False
        metrics.limiter_degraded(False)
        self._down_until = 0.0
        now = self._clock()
        if now - self._last_recovery_log >= self._warn_interval_s:
            self._last_recovery_log = now
            log.info("rate limiter: Redis answers again; limiting from Redis")
