"""Wiring of the control plane into an aiohttp application: store, clients, JWT auth, routes."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from mcp_core.client import UpstreamError, fetch_tool_catalog
from settings_api.changes import ChangeFeed, LocalChangeFeed
from settings_api.egress import EgressPolicy, EgressRefused, create_upstream_client
from settings_api.http import HTTP_CLIENT, SETTINGS, Handler
from settings_api.jwt_auth import JwtVerifier, Principal, TokenError
from settings_api.openapi import openapi_handler
from settings_api.problems import (
    Forbidden,
    NotFound,
    Problem,
    Unauthorized,
    UpstreamFailed,
    UpstreamNotAllowed,
)
from settings_api.rate_limit import admit, count_failure, refuse_if_throttled
from settings_api.routes import PRINCIPAL, ROUTES, SERVICE
from settings_api.schemas import ID_PATTERN
from settings_api.secrets_box import SecretBox
from settings_api.service import SettingsService
from settings_api.store import Store, create_store

STORE: web.AppKey[Store] = web.AppKey("store", Store)
CHANGES: web.AppKey[ChangeFeed] = web.AppKey("changes", object)  # type: ignore[arg-type]
VERIFIER: web.AppKey[JwtVerifier] = web.AppKey("jwt_verifier", JwtVerifier)

log = logging.getLogger(__name__)

_ROUTE_PREFIX = "settings."
_ID = re.compile(ID_PATTERN)


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the store and apply pending migrations (under the backend's lock) for the app's life."""
    settings = app[SETTINGS]
    # aiosqlite logs every statement with its parameters at DEBUG: upstream header values
    # included. Keep it at INFO or above even when the service runs with MCPGW_LOG_LEVEL=DEBUG.
    sqlite_log = logging.getLogger("aiosqlite")
    if sqlite_log.level < logging.INFO:
        sqlite_log.setLevel(logging.INFO)
    store = create_store(
        settings.database_url,
        timeout_s=settings.store_timeout_s,
        pool_size=settings.db_pool_size,
        secrets=SecretBox.from_setting(settings.secret_key),
    )
    await store.open()
    try:
        await store.migrate()
        app[STORE] = store
        yield
    finally:
        await store.close()


async def http_client_ctx(app: web.Application) -> AsyncIterator[None]:
    """The one HTTP client of every upstream request, both planes' (catalog reads, callUrl's
    calls): kept-alive connections, the egress policy, no cookies
    (settings_api/egress.py over mcp_core/client/http_client.py)."""
    settings = app[SETTINGS]
    async with create_upstream_client(
        allowed_networks=settings.upstream_allowed_networks, timeout_s=settings.upstream_timeout_s
    ) as session:
        app[HTTP_CLIENT] = session
        yield


async def service_ctx(app: web.Application) -> AsyncIterator[None]:
    """The settings service and JWT verifier; publishes to `app[CHANGES]` (in-process default)."""
    settings = app[SETTINGS]
    if CHANGES not in app:
        app[CHANGES] = LocalChangeFeed()
    session = app[HTTP_CLIENT]

    async def fetch_catalog(url: str, headers: Mapping[str, str]) -> list[dict[str, Any]]:
        try:
            return await fetch_tool_catalog(
                session, url, headers, timeout_s=settings.upstream_timeout_s
            )
        except UpstreamError as exc:
            if exc.reason == "not-allowed":  # e.g. the name now resolves elsewhere
                raise UpstreamNotAllowed(exc.message) from exc
            raise UpstreamFailed(
                f"reading the upstream's tools failed ({exc.reason}): {exc}", reason=exc.reason
            ) from exc

    policy = EgressPolicy(settings.upstream_allowed_networks)

    async def check_upstream(url: str) -> None:
        try:
            await policy.check_url(url, timeout_s=settings.upstream_timeout_s)
        except EgressRefused as exc:
            log.info("upstream URL refused by the egress policy: %s", exc.reason)
            raise UpstreamNotAllowed(str(exc)) from None

    app[SERVICE] = SettingsService(
        app[STORE],
        app[CHANGES],
        fetch_catalog,
        check_upstream,
        max_catalog_reads=settings.upstream_max_inflight,
    )
    app[VERIFIER] = JwtVerifier(
        secret=settings.jwt_secret,
        jwks_url=settings.jwt_jwks_url,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    yield


async def authorize(
    request: web.Request, token: str, tenant: str | None
) -> tuple[Principal, dict[str, str]]:
    """The settings API's auth for `token` on `tenant`: the failed-auth throttle, the JWT
    check, the token's rate limit, then the tenant grant (None: any tenant the token grants).
    Returns the principal and the `RateLimit-*` headers; a refusal is a `Problem` carrying them.
    Shared by the REST routes and the console (console/), so neither is a second way in."""
    refuse_if_throttled(request)
    try:
        principal = await request.app[VERIFIER].verify(token)
    except TokenError as exc:
        await count_failure(request)
        raise Unauthorized(str(exc)) from None
    # Charged once the token is known good: a refused token costs no one's bucket.
    limit_headers = await admit(request, principal)
    try:
        if tenant is not None:
            if not principal.can_access(tenant):
                raise Forbidden(f"the token does not grant tenant {tenant!r}")
            if not _ID.fullmatch(tenant):
                raise NotFound(f"tenant {tenant!r} does not exist")
    except Problem as problem:
        problem.headers.update(limit_headers)
        raise
    return principal, limit_headers


def _with_jwt(handler: Handler) -> Handler:
    """`handler` behind the settings API's auth (`authorize`): a Bearer JWT that grants the
    path's tenant, and the token's rate limit. Per route rather than a middleware, so no other
    route pays for it."""

    async def authenticated(request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            refuse_if_throttled(request)
            raise Unauthorized(
                "send a settings-API JWT as 'Authorization: Bearer <token>'", error=None
            )
        principal, limit_headers = await authorize(
            request, token.strip(), request.match_info.get("tenant", "")
        )
        try:
            request[PRINCIPAL] = principal
            response = await handler(request)
        except Problem as problem:
            problem.headers.update(limit_headers)
            raise
        if not response.prepared:
            response.headers.update(limit_headers)
        return response

    return authenticated


def setup_settings_api(app: web.Application) -> None:
    """Add the control plane's routes to `app` (whose contexts provide the service)."""
    for route in ROUTES:
        app.router.add_route(
            route.method,
            route.path,
            _with_jwt(route.handler),
            name=_ROUTE_PREFIX + route.operation_id,
        )
    app.router.add_get("/openapi.json", openapi_handler)
