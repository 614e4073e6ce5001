"""Redis first; when Redis fails, the failure mode decides: `open` answers from the local
buckets (each replica then limits on its own), `closed` raises `LimiterUnavailable` (503).

After a failure Redis is left alone for `retry_interval_s` (requests meanwhile go straight to
the fallback, or fail fast when closed), so an unreachable Redis costs one timeout per interval,
not one per request. A warning is logged at most once per `warn_interval_s`, and (at the same
pace) once when Redis answers again.
"""

from __future__ import annotations

import asyncio
import dataclasses
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


class FailoverLimiter:
    """`RateLimiter`: `primary` (Redis) with `fallback` (local) per the failure `mode`."""

    def __init__(self, primary: RedisLimiter, fallback: LocalLimiter, mode: str = "open", *,
                 retry_interval_s: float = 1.0, warn_interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
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

    @property
    def degraded(self) -> bool:
        """Redis failed and has not answered since (for /readyz and metrics)."""
        return self._degraded

    async def check(self, key_id: str, *, tools_call: bool,
                    session_id: str | None = None) -> Decision:
        if self._down_until and self._clock() < self._down_until:
            return self._fallback_check(key_id, tools_call, session_id, None)
        try:
            decision = await self.primary.check(key_id, tools_call=tools_call,
                                                session_id=session_id)
        except REDIS_FAILURES as exc:
            self._failed(exc)
            return self._fallback_check(key_id, tools_call, session_id, exc)
        if self._degraded:
            self._recovered()
        if session_id is not None and not decision.session_revoked \
                and self.fallback.session_count:
            # A session ended here while Redis was down is only in the local denylist.
            if self.fallback.is_session_ended(key_id, session_id):
                decision = dataclasses.replace(decision, session_revoked=True)
        return decision

    async def check_many(self, key_id: str, charges: Sequence[Charge], *,
                         session_id: str | None = None) -> list[Decision]:
        if self._down_until and self._clock() < self._down_until:
            return self._fallback_many(key_id, charges, session_id, None)
        try:
            decisions = await self.primary.check_many(key_id, charges, session_id=session_id)
        except REDIS_FAILURES as exc:
            self._failed(exc)
            return self._fallback_many(key_id, charges, session_id, exc)
        if self._degraded:
            self._recovered()
        if session_id is not None and decisions and not decisions[0].session_revoked \
                and self.fallback.session_count \
                and self.fallback.is_session_ended(key_id, session_id):
            decisions = [dataclasses.replace(d, session_revoked=True) for d in decisions]
        return decisions

    async def end_session(self, key_id: str, session_id: str, expires_at_s: float) -> None:
        # Always locally too: this replica keeps denying it even if Redis is lost later.
        self.fallback.end_session_now(key_id, session_id, expires_at_s)
        if self._down_until and self._clock() < self._down_until:
            if self.mode == "closed":
                raise LimiterUnavailable("rate limiter unavailable (Redis)")
            return
        try:
            await self.primary.end_session(key_id, session_id, expires_at_s)
        except REDIS_FAILURES as exc:
            self._failed(exc)
            if self.mode == "closed":
                raise LimiterUnavailable("rate limiter unavailable (Redis)") from exc
        else:
            if self._degraded:
                self._recovered()

    async def close(self) -> None:
        try:
            await self.primary.close()
        finally:
            await self.fallback.close()

    def _fallback_check(self, key_id: str, tools_call: bool, session_id: str | None,
                        exc: BaseException | None) -> Decision:
        if self.mode == "closed":
            raise LimiterUnavailable("rate limiter unavailable (Redis)") from exc
        return self.fallback.check_now(key_id, tools_call=tools_call, session_id=session_id)

    def _fallback_many(self, key_id: str, charges: Sequence[Charge], session_id: str | None,
                       exc: BaseException | None) -> list[Decision]:
        if self.mode == "closed":
            raise LimiterUnavailable("rate limiter unavailable (Redis)") from exc
        return self.fallback.check_many_now(key_id, charges, session_id=session_id)

    def _failed(self, exc: BaseException) -> None:
        now = self._clock()
        self._down_until = now + self._retry_interval_s
        self._degraded = True
        metrics.limiter_degraded(True)
        if now - self._last_warning >= self._warn_interval_s:
            self._last_warning = now
            action = ("limiting per replica from local buckets" if self.mode == "open"
                      else "refusing requests (failure mode closed)")
            log.warning("rate limiter: Redis unavailable (%s: %s); %s",
                        type(exc).__name__, exc, action)

    def _recovered(self) -> None:
        self._degraded = False
        metrics.limiter_degraded(False)
        self._down_until = 0.0
        now = self._clock()
        if now - self._last_recovery_log >= self._warn_interval_s:
            self._last_recovery_log = now
            log.info("rate limiter: Redis answers again; limiting from Redis")
