"""In-process limiter: the same buckets and answers as the Redis script, for one process.

Used when no Redis is configured (single process only) and as the fallback of
`FailoverLimiter` in failure mode `open` (then each replica limits on its own).

Memory is bounded: a key's state is dropped once both its buckets are full again (a full bucket
and a missing one are the same thing), swept at most every `sweep_interval_s`; beyond `max_keys`
the least recently used key is dropped even if not full (it then starts over with full buckets:
only ever more lenient, never wrongly refusing). The ended-session denylist and the sessions'
log levels keep entries until the session's own expiry; beyond `max_sessions` each purges its
expired entries first, then the ones that expire soonest.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from gateway.context import Charge, Decision
from gateway.ratelimit.buckets import TOUCHES, Limits, decide, session_digest

# Per-key state: [request tokens, request stamp, call tokens | None, call stamp, full_at].
# Tokens are as of their stamp (monotonic seconds); `None` = never charged (full).
# full_at: when both buckets are full again and the entry can go.
_REQ_TK, _REQ_AT, _CALL_TK, _CALL_AT, _FULL_AT = range(5)

V = TypeVar("V")
_SessionEntry = tuple[str, str]  # (key_id, session digest)


class _UntilExpiry(Generic[V]):
    """Per-session values kept until the session's expiry (Unix seconds), at most `limit`."""

    def __init__(self, limit: int, wall_clock: Callable[[], float]) -> None:
        self._limit = limit
        self._wall_clock = wall_clock
        self._values: dict[_SessionEntry, tuple[V, float]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def put(self, entry: _SessionEntry, value: V, expires_at_s: float) -> None:
        if expires_at_s <= self._wall_clock():
            return
        values = self._values
        values[entry] = (value, expires_at_s)
        if len(values) > self._limit:
            self.purge()
            if len(values) > self._limit:
                # Drop the soonest-expiring sixteenth at once: amortized O(log n) per insert.
                count = len(values) - self._limit + max(1, self._limit // 16)
                for old in heapq.nsmallest(count, values, key=lambda e: values[e][1]):
                    del values[old]

    def get(self, entry: _SessionEntry) -> V | None:
        found = self._values.get(entry)
        if found is None:
            return None
        value, expires_at = found
        if expires_at > self._wall_clock():
            return value
        del self._values[entry]
        return None

    def purge(self) -> None:
        """Forget the expired entries."""
        now = self._wall_clock()
        expired = [entry for entry, (_, at) in self._values.items() if at <= now]
        for entry in expired:
            del self._values[entry]

    def clear(self) -> None:
        self._values.clear()


class LocalLimiter:
    """`RateLimiter` and `SessionDenylist` in-process (bucket time from `time.monotonic`)."""

    def __init__(
        self,
        limits: Limits,
        *,
        max_keys: int = 65_536,
        max_sessions: int = 65_536,
        sweep_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if max_keys < 1 or max_sessions < 1:
            raise ValueError("max_keys and max_sessions must be at least 1")
        self.limits = limits
        self._max_keys = max_keys
        self._max_sessions = max_sessions
        self._sweep_interval_s = sweep_interval_s
        self._clock = clock
        self._wall_clock = wall_clock
        # Insertion order = least recently used first (an entry is re-inserted on every use).
        self._buckets: dict[str, list] = {}
        self._next_sweep = clock() + sweep_interval_s
        self._ended: _UntilExpiry[bool] = _UntilExpiry(max_sessions, wall_clock)
        self._levels: _UntilExpiry[str] = _UntilExpiry(max_sessions, wall_clock)

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    @property
    def session_count(self) -> int:
        return len(self._ended)

    async def check(self, key_id: str, *, tools_call: bool) -> Decision:
        return self.check_now(key_id, tools_call=tools_call)

    async def check_many(self, key_id: str, charges: Sequence[Charge]) -> list[Decision]:
        return self.check_many_now(key_id, charges)

    def check_now(self, key_id: str, *, tools_call: bool) -> Decision:
        """`check` without the coroutine (it never waits)."""
        return self._charge(key_id, Charge.BOTH if tools_call else Charge.REQUEST)

    def check_many_now(self, key_id: str, charges: Sequence[Charge]) -> list[Decision]:
        """`check_many` without the coroutine."""
        return [self._charge(key_id, charge) for charge in charges]

    def _charge(self, key_id: str, charge: Charge) -> Decision:
        now = self._clock()
        if now >= self._next_sweep:
            self.sweep(now)
        limits = self.limits
        state = self._buckets.pop(key_id, None)
        if state is None:
            state = [None, now, None, now, now]
        request, call = TOUCHES[charge]
        buckets = []
        if request:
            buckets.append(
                (limits.request, limits.request.refill(state[_REQ_TK], now - state[_REQ_AT]))
            )
        if call:
            buckets.append(
                (limits.call, limits.call.refill(state[_CALL_TK], now - state[_CALL_AT]))
            )
        decision, after = decide(buckets)
        if decision.allowed:
            if request:
                state[_REQ_TK], state[_REQ_AT] = after[0], now
            if call:
                state[_CALL_TK], state[_CALL_AT] = after[-1], now
            full_at = now
            if state[_REQ_TK] is not None:
                req_tokens = limits.request.refill(state[_REQ_TK], now - state[_REQ_AT])
                full_at = now + limits.request.seconds_to_full(req_tokens)
            if state[_CALL_TK] is not None:
                call_tokens = limits.call.refill(state[_CALL_TK], now - state[_CALL_AT])
                full_at = max(full_at, now + limits.call.seconds_to_full(call_tokens))
            state[_FULL_AT] = full_at
        if state[_REQ_TK] is not None or state[_CALL_TK] is not None:
            self._buckets[key_id] = state  # (re)insert as most recently used
            if len(self._buckets) > self._max_keys:
                del self._buckets[next(iter(self._buckets))]
        return decision

    def sweep(self, now: float | None = None) -> None:
        """Forget keys whose buckets are full again, and ended sessions that expired."""
        now = self._clock() if now is None else now
        self._next_sweep = now + self._sweep_interval_s
        full = [key for key, state in self._buckets.items() if state[_FULL_AT] <= now]
        for key in full:
            del self._buckets[key]
        self._ended.purge()
        self._levels.purge()

    async def session_ended(self, key_id: str, session_id: str) -> bool:
        return self.is_session_ended(key_id, session_id)

    async def end_session(self, key_id: str, session_id: str, expires_at_s: float) -> None:
        self.end_session_now(key_id, session_id, expires_at_s)

    def end_session_now(self, key_id: str, session_id: str, expires_at_s: float) -> None:
        self._ended.put((key_id, session_digest(session_id)), True, expires_at_s)

    def is_session_ended(self, key_id: str, session_id: str) -> bool:
        if not self._ended:  # the usual case: no digest to compute
            return False
        return self._ended.get((key_id, session_digest(session_id))) is not None

    async def session_log_level(self, key_id: str, session_id: str) -> str | None:
        return self.session_log_level_now(key_id, session_id)

    async def set_session_log_level(
        self, key_id: str, session_id: str, level: str, expires_at_s: float
    ) -> None:
        self.set_session_log_level_now(key_id, session_id, level, expires_at_s)

    def session_log_level_now(self, key_id: str, session_id: str) -> str | None:
        if not self._levels:
            return None
        return self._levels.get((key_id, session_digest(session_id)))

    def set_session_log_level_now(
        self, key_id: str, session_id: str, level: str, expires_at_s: float
    ) -> None:
        self._levels.put((key_id, session_digest(session_id)), level, expires_at_s)

    async def close(self) -> None:
        self._buckets.clear()
        self._ended.clear()
        self._levels.clear()
