"""A stand-in for the Redis limiter that fails while `down`: what the failover limiter wraps."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.context import Charge, Decision


class FlakyPrimary:
    """Stands in for RedisLimiter: fails while `down`, counts calls."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    async def check(self, key_id: str, *, tools_call: bool) -> Decision:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("connection refused")
        return Decision(allowed=True, limit=99, remaining=98, reset_s=0.1, retry_after_s=0)

    async def check_many(self, key_id: str, charges: list[Charge]) -> list[Decision]:
        return [await self.check(key_id, tools_call=True) for _ in charges]

    async def session_ended(self, key_id: str, session_id: str) -> bool:
        if self.down:
            raise RedisConnectionError("connection refused")
        return False

    async def end_session(self, key_id: str, session_id: str, expires_at_s: float) -> None:
        if self.down:
            raise RedisConnectionError("connection refused")

    async def close(self) -> None:
        pass
