"""Liveness and readiness probes, and the draining flag that readiness honours on shutdown."""

from __future__ import annotations

import asyncio
import logging
import os

from aiohttp import web

from settings_api.app import STORE
from settings_api.http import SETTINGS, json_response, problem_response
from settings_api.problems import ServiceUnavailable
from settings_api.store import StoreError

log = logging.getLogger(__name__)

REDIS_PING: web.AppKey[object] = web.AppKey("redis_ping", object)


class Drain:
    """Set once the process starts shutting down (gateway/server.py `drain_on_signals`): from
    then on /readyz answers 503, so load balancers stop routing here while the listener is
    still open and requests that arrive anyway are still served."""

    def __init__(self) -> None:
        self.draining = False

    def start(self) -> None:
        self.draining = True


DRAIN: web.AppKey[Drain] = web.AppKey("drain", Drain)


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving HTTP; `pid` tells `serve --workers` processes apart."""
    return json_response({"status": "ok", "pid": os.getpid()})


async def readyz(request: web.Request) -> web.Response:
    """Ready only when the store (and Redis, when configured) answer within the store timeout,
    and the process is not shutting down."""
    drain = request.app.get(DRAIN)
    if drain is not None and drain.draining:
        problem = ServiceUnavailable("not ready: shutting down", checks={"shutdown": "draining"})
        return problem_response(problem, request)
    timeout = request.app[SETTINGS].store_timeout_s
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(timeout):
            await request.app[STORE].ping()
        checks["store"] = "ok"
    except (StoreError, TimeoutError, OSError) as exc:
        log.warning("readiness: store unreachable (%s)", type(exc).__name__)
        checks["store"] = "unreachable"
    ping = request.app.get(REDIS_PING)
    if ping is not None:
        try:
            async with asyncio.timeout(timeout):
                await ping()  # type: ignore[operator]
            checks["redis"] = "ok"
        except Exception as exc:
            log.warning("readiness: redis unreachable (%s)", type(exc).__name__)
            checks["redis"] = "unreachable"
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        problem = ServiceUnavailable(f"not ready: {', '.join(failing)} unreachable", checks=checks)
        return problem_response(problem, request)
    return json_response({"status": "ready", "checks": checks})
