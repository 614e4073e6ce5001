"""Composes the planes a process serves (`--role`) into one aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import redis.asyncio as redis
from aiohttp import web

from gateway.data_plane import gateway_ctx, setup_data_plane
from gateway.health import REDIS_PING, healthz, readyz
from gateway.state import REDIS
from settings_api.app import (
    CHANGES,
    http_client_ctx,
    jwt_middleware,
    service_ctx,
    setup_settings_api,
    store_ctx,
)
from settings_api.config import Settings
from settings_api.http import SETTINGS, problem_middleware, request_id_middleware

Role = Literal["all", "gateway", "settings"]
ROLES: tuple[Role, ...] = ("all", "gateway", "settings")

async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The shared Redis client when `MCPGW_REDIS_URL` is set: limiter, change feed, readiness."""
    url = app[SETTINGS].redis_url
    if url is None:
        yield
        return
    from gateway.invalidation import RedisChangeFeed

    timeout = app[SETTINGS].store_timeout_s
    client = redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                            health_check_interval=10)
    app[REDIS] = client
    app[REDIS_PING] = client.ping
    app[CHANGES] = RedisChangeFeed(client)
    try:
        yield
    finally:
        await client.aclose()


def build_app(settings: Settings, role: Role = "all") -> web.Application:
    """The application for `role`: health probes always, plus the planes the role names."""
    app = web.Application(
        middlewares=[request_id_middleware, problem_middleware, jwt_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    # Order matters: each context may use what the ones before it opened.
    app.cleanup_ctx.extend([store_ctx, http_client_ctx, redis_ctx, service_ctx])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if role in ("all", "settings"):
        setup_settings_api(app)
    if role in ("all", "gateway"):
        app.cleanup_ctx.append(gateway_ctx)
        setup_data_plane(app)
    return app
