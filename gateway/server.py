"""Composes the planes a process serves (`--role`) into one aiohttp application."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import AsyncIterator
from typing import Literal

from aiohttp import web

from console.app import setup_console
from gateway.data_plane import gateway_ctx, setup_data_plane
from gateway.health import DRAIN, REDIS_PING, Drain, healthz, readyz
from gateway.observability.middleware import edge_middleware, metrics_handler
from gateway.observability.parser_errors import protect_parser_logs
from gateway.redis_clients import open_clients, ping
from gateway.settings_limits import settings_limits_ctx
from gateway.state import LIMITER_REDIS, REDIS
from settings_api.app import (
    CHANGES,
    http_client_ctx,
    service_ctx,
    setup_settings_api,
    store_ctx,
)
from settings_api.config import Settings
from settings_api.http import SETTINGS

log = logging.getLogger(__name__)

Role = Literal["all", "gateway", "settings"]
ROLES: tuple[Role, ...] = ("all", "gateway", "settings")
# HTTP parser bounds, explicit rather than aiohttp's defaults: the request line at most 8190
# bytes, each header line at most 16 KiB, at most 128 headers. aiohttp answers a request past
# them with a plain-text 400 and closes the connection, before any middleware
# (docs/mcp-endpoints.md). That 400 quotes the offending line (its first 100 bytes when it is
# too long, all of it when it holds an invalid byte), and no public aiohttp hook replaces it:
# header lines get twice aiohttp's 8190 bytes so that an oversized `Authorization` or
# `X-API-Key` (a key or JWT with junk after it) still reaches our own code, which answers a
# 401 problem without echoing it. Past 16 KiB, or with an invalid byte, the parser's answer
# stands (it goes to that client only); its log record is stripped of the request's bytes
# (gateway/observability/parser_errors.py).
HTTP_PARSER_LIMITS = {"max_line_size": 8190, "max_field_size": 16384, "max_headers": 128}
# The collector's first threshold for a serving process (CPython's default is 700). A
# request's containers are freed by reference counting, but the collector counts allocations
# and only the frees made while its count is above zero: with requests in flight the count
# still climbs, and at 700 callUrl ran a young collection every 16 requests that found
# nothing to free (docs/performance.md).
YOUNG_COLLECTION_THRESHOLD = 20_000


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Redis clients when `MCPGW_REDIS_URL` is set (for `MCPGW_REDIS_MODE`): the shared
    one (change feed, readiness, failed-auth throttle) and the limiter's."""
    settings = app[SETTINGS]
    if settings.redis_url is None:
        yield
        return
    from gateway.invalidation import RedisChangeFeed

    clients = open_clients(settings)
    client = clients.shared
    app[REDIS] = client
    app[LIMITER_REDIS] = clients.limiter
    app[REDIS_PING] = lambda: ping(client)
    feed = RedisChangeFeed(client)
    app[CHANGES] = feed
    try:
        yield
    finally:
        await feed.aclose()  # stop re-sending unconfirmed changes before the client closes
        await clients.aclose()


async def tune_collector(_: web.Application) -> None:
    """Start-up hook of a serving process: freeze what start-up made, collect less often."""
    # Everything allocated at start-up (modules, schemas, compiled validators) lives for the
    # whole process: keep it out of the collector's way, so collections under load stay short.
    gc.collect()
    gc.freeze()
    _young, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to (host, port) (port 0 = a free one), not listening yet;
    `reuse_port` lets worker processes bind the same port (SO_REUSEPORT)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def use_fast_event_loop() -> None:
    """Run the next event loops on uvloop: the event loop and socket I/O are a large share of a
    gateway request's CPU time (see docs/performance.md). Without uvloop, asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # not on this platform: the standard loop works, only slower
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def build_app(settings: Settings, role: Role = "all") -> web.Application:
    """The application for `role`: health probes always, plus the planes the role names."""
    protect_parser_logs()
    app = web.Application(
        middlewares=[edge_middleware],
        client_max_size=settings.max_body_bytes,
        handler_args=HTTP_PARSER_LIMITS,
    )
    app[SETTINGS] = settings
    app[DRAIN] = Drain()
    # Order matters: each context may use what the ones before it opened.
    app.cleanup_ctx.extend([store_ctx, http_client_ctx, redis_ctx, service_ctx])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    # The MCP routes go first: aiohttp tries the routes under one path prefix in the order
    # they were added, and the hot path should match on its first try, not its twentieth.
    if role in ("all", "gateway"):
        app.cleanup_ctx.append(gateway_ctx)
        setup_data_plane(app)
    if role in ("all", "settings"):
        app.cleanup_ctx.append(settings_limits_ctx)
        setup_settings_api(app)
        setup_console(app)
    return app


def drain_on_signals(app: web.Application, grace_s: float) -> None:
    """Graceful shutdown for `app` run by `web.run_app`, replacing aiohttp's signal handlers.

    On the first SIGTERM or SIGINT /readyz turns 503 at once while the listener stays open for
    `grace_s`, so load balancers stop routing here (requests that still arrive are served).
    Then aiohttp's own graceful shutdown runs: the listener closes, in-flight requests get
    run_app's `shutdown_timeout` to finish, and the cleanup contexts close the pools. A
    second signal skips what is left of the grace.
    """

    async def install(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        pending: list[asyncio.TimerHandle] = []

        def on_signal(signum: signal.Signals) -> None:
            drain = app[DRAIN]
            if drain.draining:
                for handle in pending:
                    handle.cancel()
                _graceful_exit()
            drain.start()
            log.info("%s: not ready any more; closing the listener in %g s", signum.name, grace_s)
            pending.append(loop.call_later(grace_s, _graceful_exit))

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)

    app.on_startup.append(install)


def _graceful_exit() -> None:
    # What aiohttp's own handlers do: run_app catches it and shuts the runner down.
    raise web.GracefulExit()
