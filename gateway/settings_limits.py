"""The settings API's per-token limiter and failed-auth throttle, built from the gateway's
limiter classes and put into the app (settings_api/rate_limit.py defines what it needs).

Same backends and failure mode as the MCP limiter: through Redis when `MCPGW_REDIS_URL` is set
(one bucket per token across replicas; on Redis failure `MCPGW_RATE_LIMIT_FAILURE_MODE` picks
local buckets or 503), in-process otherwise. Redis keys live under
`mcpgw:settings:<deployment tag>:`, so they never mix with MCP keys' buckets nor with another
deployment's (staging, tests) on the same Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.context import Decision, RateLimiter
from gateway.ratelimit import BucketSpec, Limits, create_limiter
from gateway.ratelimit.auth_failures import AuthFailureThrottle
from gateway.state import LIMITER_REDIS, REDIS, deployment_tag
from settings_api.config import Settings
from settings_api.http import SETTINGS
from settings_api.rate_limit import AUTH_FAILURES, TOKEN_LIMITER

if TYPE_CHECKING:
    from gateway.redis_clients import RedisClient

PREFIX = "mcpgw:settings"
LIMITER_TIMEOUT_S = 0.5


class SettingsTokenLimiter:
    """`settings_api.rate_limit.TokenLimiter` on a gateway `RateLimiter` (its request bucket)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def check(self, key: str) -> Decision:
        """The token's request bucket (`LimiterUnavailable`, a 503, when Redis is down)."""
        return await self.limiter.check(key, tools_call=False)

    async def close(self) -> None:
        await self.limiter.close()


def settings_limiter(settings: Settings, redis_client: RedisClient | None) -> SettingsTokenLimiter:
    """The settings API's limiter: Redis with failover when a client is given, else local."""
    spec = BucketSpec(settings.settings_rate_limit_rps, settings.settings_rate_limit_burst)
    # Only the request bucket is ever charged (tools_call=False); `call` just fills the slot.
    limits = Limits(call=spec, request=spec)
    prefix = f"{PREFIX}:{deployment_tag(settings.database_url)}"
    return SettingsTokenLimiter(
        create_limiter(
            limits,
            redis_client,
            failure_mode=settings.rate_limit_failure_mode,
            prefix=prefix,
            timeout_s=LIMITER_TIMEOUT_S,
        )
    )


async def settings_limits_ctx(app: web.Application) -> AsyncIterator[None]:
    """Give the settings API its limiter and failed-auth throttle for the app's life (after
    `redis_ctx`, whose clients they use)."""
    settings = app[SETTINGS]
    limiter = settings_limiter(settings, app.get(LIMITER_REDIS))
    app[TOKEN_LIMITER] = limiter
    # Failed settings-API auth is counted apart from failed MCP auth (its own key prefix), with
    # the same MCPGW_AUTH_FAILURE_* bounds.
    app[AUTH_FAILURES] = AuthFailureThrottle(
        settings.auth_failure_limit,
        settings.auth_failure_window_s,
        app.get(REDIS),
        key_prefix=f"{PREFIX}:af:{deployment_tag(settings.database_url)}:",
    )
    try:
        yield
    finally:
        await limiter.close()
