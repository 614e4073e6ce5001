"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from settings_api.app import STORE
from settings_api.http import SETTINGS, json_response, problem_response
from settings_api.problems import ServiceUnavailable
from settings_api.store import StoreError

log = logging.getLogger(__name__)

REDIS_PING: web.AppKey[object] = web.AppKey("redis_ping", object)


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving HTTP."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready only when the store (and Redis, when configured) answer within the store timeout."""
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
        problem = ServiceUnavailable(f"not ready: {', '.join(failing)} unreachable",
                                     checks=checks)
        return problem_response(problem, request)
    return json_response({"status": "ready", "checks": checks})
