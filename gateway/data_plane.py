"""Wiring of the data plane: cache, change subscription, limiter, executors (over the app's
upstream HTTP client), MCP routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.cache import GatewayCache
from gateway.call_log.buffer import CallBuffer
from gateway.call_log.writer import CallWriter, expire_calls
from gateway.cancelling import cancel_and_wait
from gateway.context import Endpoint
from gateway.endpoint import setup_mcp_routes
from gateway.executors import ProxyExecutor, SimulatorExecutor, UpstreamPool
from gateway.invalidation import RedisChangeFeed
from gateway.oauth.authorization import setup_authorization_server
from gateway.observability.tracing import setup_tracing
from gateway.ratelimit import BucketSpec, Limits, create_limiter
from gateway.ratelimit.auth_failures import AuthFailureThrottle
from gateway.state import GATEWAY, LIMITER_REDIS, REDIS, GatewayState, deployment_tag
from settings_api.app import CHANGES
from settings_api.config import Settings
from settings_api.http import HTTP_CLIENT, SETTINGS
from settings_api.routes import SERVICE
from settings_api.service import SettingsService
from simulator import Simulator

log = logging.getLogger(__name__)

# How often a replica writes when its keys were last used: lastUsedAt lags a key's first use by
# at most this (the settings API promises 5 s), with one write per replica, not per request.
LAST_USED_FLUSH_S = 2.0


async def gateway_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the data plane's state; stop its background tasks and pools on shutdown."""
    settings = app[SETTINGS]
    service = app[SERVICE]
    cache = GatewayCache(service)
    feed = app[CHANGES]
    feed.subscribe(cache.apply)
    tasks: list[asyncio.Task[None]] = []
    if isinstance(feed, RedisChangeFeed):

        def connected() -> None:
            cache.flush()
            cache.subscribed = True

        def lost() -> None:
            cache.subscribed = False

        cache.subscribed = False  # until the first subscription is confirmed
        feed.on_connection(connected, lost)
        tasks.append(asyncio.create_task(feed.run(), name="mcpgw-change-feed"))
    limiter = create_limiter(
        mcp_limits(settings), app.get(LIMITER_REDIS), failure_mode=settings.rate_limit_failure_mode
    )
    # The app's one upstream HTTP client (http_client_ctx, opened before and closed after this
    # context): callUrl's calls share its kept-alive connections with the catalog reads.
    pool = UpstreamPool(app[HTTP_CLIENT], timeout_s=settings.upstream_timeout_s)
    simulated = SimulatorExecutor(Simulator(max_result_bytes=settings.simulator_max_result_bytes))
    calls = CallBuffer()
    call_writer = CallWriter(calls, service)
    app[GATEWAY] = GatewayState(
        resolver=cache,
        limiter=limiter,
        sessions=limiter,  # the denylist lookup shares the limiter's round trip
        executors={
            Endpoint.CALL: ProxyExecutor(pool, max_inflight=settings.upstream_max_inflight),
            Endpoint.TEST: simulated,
        },
        auth_throttle=AuthFailureThrottle(
            settings.auth_failure_limit,
            settings.auth_failure_window_s,
            app.get(REDIS),
            key_prefix=f"mcpgw:af:{deployment_tag(settings.database_url)}:",
        ),
        calls=calls,
    )
    tasks.append(asyncio.create_task(_flush_last_used(cache, service), name="mcpgw-last-used"))
    tasks.append(asyncio.create_task(call_writer.run(), name="mcpgw-call-log"))
    tasks.append(
        asyncio.create_task(
            expire_calls(service, settings.call_log_retention_days), name="mcpgw-call-retention"
        )
    )
    try:
        yield
    finally:
        await asyncio.gather(*(cancel_and_wait(task) for task in tasks))
        await _record(cache, service)
        await call_writer.write_pending()
        await pool.close()
        simulated.close()
        await limiter.close()


def mcp_limits(settings: Settings) -> Limits:
    """Each API key's buckets: tools/call, and every MCP request."""
    return Limits(
        call=BucketSpec(settings.rate_limit_rps, settings.rate_limit_burst),
        request=BucketSpec(settings.request_limit_rps, settings.request_limit_burst),
    )


async def _flush_last_used(cache: GatewayCache, service: SettingsService) -> None:
    while True:
        await asyncio.sleep(LAST_USED_FLUSH_S)
        await _record(cache, service)


async def _record(cache: GatewayCache, service: SettingsService) -> None:
    """Write when keys and access tokens were last used, in one batch each, not once per
    request."""
    for what, uses, write in (
        ("key", cache.key_use, service.record_key_use),
        ("access token", cache.token_use, service.record_token_use),
    ):
        used = uses.take()
        try:
            await write(used)
        except Exception as exc:
            log.warning("could not record %s use (%s); will retry", what, type(exc).__name__)
            uses.restore(used)


def setup_data_plane(app: web.Application) -> None:
    """Add the MCP endpoints (callUrl, testUrl) and the authorization server that lets OAuth
    clients in (gateway/oauth/) to `app`, traced when `OTEL_*` asks for it."""
    setup_tracing(app)
    setup_mcp_routes(app)
    setup_authorization_server(app)
