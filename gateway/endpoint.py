"""The MCP endpoints, callUrl (`…/mcp:call`) and testUrl (`…/mcp:test`): the data plane's
request pipeline (docs/mcp-endpoints.md).

Each check has its own answer, in this order: `Origin` (403; several `Origin` headers too) →
failed-auth throttle per client address (429 `auth-throttled`, before any key lookup;
gateway/ratelimit/auth_failures.py) → API key (401 with `WWW-Authenticate`) → key bound to this
integration (403) → integration exists (404) and has MCP enabled (403 `mcp-disabled`) → request
rate limit (429 with `Retry-After`; 503 when the limiter is down and fails closed) → body
arrived within `MCPGW_BODY_TIMEOUT_S` (408, connection closed) → body size (413) → media type
(415) → `tools/call` rate limit (429) → MCP transport and JSON-RPC (gateway/transport/http.py,
gateway/dispatch.py; a 2025-03-26 batch's members are charged one by one there, and the ones
past the limit get a JSON-RPC rate-limit error each).

A request is counted when it starts, before its body is read, so a body that never arrives
is still charged to its key and holds its connection no longer than the body deadline. When
the whole body came with the headers (the usual small POST) it is parsed first and both
buckets are asked in one check, which gives the same answers in one round trip. Every answer
given after the limiter ran carries `RateLimit-Limit/-Remaining/-Reset`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from functools import partial
from typing import Any

from aiohttp import web

from gateway.context import (
    Charge,
    Decision,
    Endpoint,
    IntegrationView,
    KeyEntry,
    LimiterUnavailable,
)
from gateway.observability import metrics
from gateway.observability.middleware import note_outcome, note_rpc_method
from gateway.ratelimit.auth_failures import COUNTED_REASONS
from gateway.ratelimit.buckets import tighter
from gateway.sessions import SessionCodec
from gateway.state import GATEWAY, AuthFailure, GatewayState
from gateway.transport.http import (
    Exchange,
    Inbound,
    answer_delete,
    answer_post,
    parse,
    set_rate_headers,
)
from mcp_core.headers import SESSION_ID_HEADER
from settings_api.http import REQUEST_ID, SETTINGS, client_address, problem_response
from settings_api.problems import (
    AuthThrottled,
    Forbidden,
    McpDisabled,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Problem,
    RequestTimeout,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)

MCP_PATH = "/v1/tenants/{tenant}/integrations/{integration}/mcp:"
SESSIONS: web.AppKey[SessionCodec] = web.AppKey("mcp_sessions", SessionCodec)
REQUIRED_SCOPE = "mcp:invoke"
ALLOWED_METHODS = "POST, DELETE"
LIMITER_RETRY_AFTER_S = 2
# No OAuth here: MCP clients probing for an authorization server must learn there is none.
WELL_KNOWN_PREFIXES = (
    "/.well-known/oauth-authorization-server",
    "/.well-known/oauth-protected-resource",
    "/.well-known/openid-configuration",
)


def setup_mcp_routes(app: web.Application) -> None:
    """Add callUrl and testUrl (POST, DELETE; GET → 405) and the well-known 404s to `app`.

    Needs `app[SETTINGS]` and, by the first request, `app[GATEWAY]` (resolver, limiter, and an
    executor per `Endpoint`)."""
    app.on_startup.append(_start_sessions)
    for endpoint in Endpoint:
        path = MCP_PATH + endpoint.value
        # One resource per URL, not one per method: aiohttp matches the path once per
        # resource, and the routes for other methods would each cost the hot POST a match.
        resource = app.router.add_resource(path, name=f"mcp.{endpoint.value}")
        resource.add_route("POST", partial(_post, endpoint=endpoint))
        resource.add_route("DELETE", partial(_delete, endpoint=endpoint))
        resource.add_route("GET", _get)
        resource.add_route("HEAD", _get)
    for prefix in WELL_KNOWN_PREFIXES:
        app.router.add_route("*", prefix + "{tail:.*}", _no_oauth)


async def _start_sessions(app: web.Application) -> None:
    app[SESSIONS] = SessionCodec(app[SETTINGS].session_secret)


async def _post(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    headers = _base_headers(request)
    try:
        _check_origin(request)
        app = request.app
        state = app[GATEWAY]
        key, view = await _authenticate(request, state)
        settings = app[SETTINGS]
        limit = settings.max_body_bytes
        media_ok = request.content_type == "application/json"
        raw = _arrived_body(request, limit)
        if raw is _NOT_YET:
            # Counted now: the body may arrive slowly, or never.
            decision, ended = await _admit(
                state,
                key,
                headers,
                tools_call=False,
                session_id=request.headers.get(SESSION_ID_HEADER),
            )
            raw = await _read_in_time(request, limit, settings.body_timeout_s)
            inbound = _parse(request, raw, media_ok)
            if inbound.tools_call:
                decision = await _admit_call(state, key, headers, decision)
        else:
            inbound = _parse(request, raw, media_ok)
            decision, ended = await _admit(
                state,
                key,
                headers,
                tools_call=inbound.tools_call,
                session_id=inbound.session_id(request.headers),
            )
        if raw is None:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes")
        if not media_ok:
            raise UnsupportedMediaType("send the JSON-RPC message as application/json")
        exchange = Exchange(
            request=request,
            key=key,
            integration=view,
            endpoint=endpoint,
            executor=state.executors[endpoint],
            sessions=app[SESSIONS],
            decision=decision,
            headers=headers,
            admit=partial(_admit_members, state, key),
            session_ended=ended,
        )
        return await answer_post(exchange, inbound)
    except RequestTimeout as problem:
        return await _answer_and_close(_problem(problem, request, headers), request)
    except Problem as problem:
        return _problem(problem, request, headers)


def _parse(request: web.Request, raw: bytes | None, media_ok: bool) -> Inbound:
    inbound = parse(raw, request.headers) if raw is not None and media_ok else Inbound()
    note_rpc_method(request, inbound.body, inbound.parse_error is not None)
    return inbound


async def _delete(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    """End a legacy session (checked like a POST, without a body)."""
    headers = _base_headers(request)
    try:
        _check_origin(request)
        state = request.app[GATEWAY]
        key, view = await _authenticate(request, state)
        decision, ended = await _admit(
            state, key, headers, tools_call=False, session_id=request.headers.get(SESSION_ID_HEADER)
        )
        exchange = Exchange(
            request=request,
            key=key,
            integration=view,
            endpoint=endpoint,
            executor=state.executors[endpoint],
            sessions=request.app[SESSIONS],
            decision=decision,
            headers=headers,
            session_ended=ended,
        )
        try:
            return await answer_delete(exchange, state.sessions)
        except LimiterUnavailable:
            raise ServiceUnavailable(
                "the session store is unreachable; try again", retry_after_s=LIMITER_RETRY_AFTER_S
            ) from None
    except Problem as problem:
        return _problem(problem, request, headers)


async def _get(request: web.Request) -> web.StreamResponse:
    """No server-initiated stream: nothing is ever sent outside a request's own response."""
    headers = _base_headers(request)
    try:
        _check_origin(request)
        raise MethodNotAllowed(
            "this MCP endpoint opens no GET stream; POST JSON-RPC messages",
            headers={"Allow": ALLOWED_METHODS},
        )
    except Problem as problem:
        return _problem(problem, request, headers)


async def _no_oauth(request: web.Request) -> web.StreamResponse:
    return problem_response(
        NotFound(
            "this server has no OAuth or OpenID metadata: MCP "
            "endpoints take the integration's API key"
        ),
        request,
    )


# --- the checks -------------------------------------------------------------------------------


def _base_headers(request: web.Request) -> dict[str, str]:
    request_id = request.get(REQUEST_ID)
    return {"X-Request-Id": request_id} if request_id else {}


def _check_origin(request: web.Request) -> None:
    """DNS-rebinding defence: a browser page may only call from an allowed origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if len(request.headers.getall("Origin")) > 1:
        # Only one could be checked, and a proxy may pass on another.
        raise Forbidden("send at most one Origin header")
    allowed = request.app[SETTINGS].allowed_origins
    if "*" not in allowed and origin.rstrip("/") not in allowed:
        raise Forbidden(f"origin {origin!r} is not allowed to call this endpoint")


def _presented_key(request: web.Request) -> str | None:
    """The key from `Authorization: Bearer` or `X-API-Key` (never the query string); "" when
    credentials were sent in an unusable form."""
    authorization = request.headers.get("Authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = request.headers.get("X-API-Key", "").strip()
    if api_key:
        return api_key
    return "" if authorization is not None or "X-API-Key" in request.headers else None


def _unauthorized(detail: str, reason: str, error: str | None = "invalid_token") -> Unauthorized:
    problem = Unauthorized(detail, error=error)
    problem.extensions["reason"] = reason
    return problem


async def _authenticate(
    request: web.Request, state: GatewayState
) -> tuple[KeyEntry, IntegrationView]:
    """The failed-auth throttle (no lookup for a throttled address), then `_authorize`. A
    malformed, unknown or revoked key counts against the client's address; every refusal is
    counted by reason."""
    throttle = state.auth_throttle
    if throttle is not None:
        wait = throttle.retry_after(_client_address(request))
        if wait is not None:
            metrics.auth_failed("throttled")
            note_outcome(request, "auth_throttled")
            retry_after = max(1, math.ceil(wait))
            raise AuthThrottled(
                f"too many failed authentications from this address; retry in {retry_after} s",
                retry_after_s=retry_after,
            )
    try:
        return await _authorize(request, state)
    except Unauthorized as problem:
        reason = problem.extensions.get("reason", "other")
        metrics.auth_failed(reason)
        if throttle is not None and reason in COUNTED_REASONS:
            await throttle.failed(_client_address(request))
        raise
    except McpDisabled:
        metrics.auth_failed("disabled")
        raise
    except Forbidden:  # bound to another integration (or without the mcp:invoke scope)
        metrics.auth_failed("wrong-integration")
        raise


def _client_address(request: web.Request) -> str | None:
    return client_address(request, request.app[SETTINGS].trust_forwarded)


async def _authorize(request: web.Request, state: GatewayState) -> tuple[KeyEntry, IntegrationView]:
    raw = _presented_key(request)
    if raw is None:
        raise _unauthorized(
            "send the integration's API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            "missing",
            error=None,
        )
    if not raw:
        raise _unauthorized(
            "the API key must be sent as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            "malformed",
            error="invalid_request",
        )
    try:
        key = await state.resolver.authenticate(raw)
    except AuthFailure as failure:
        raise _unauthorized(str(failure), failure.reason) from None
    if isinstance(key, AuthFailure):  # a resolver may also return the failure
        raise _unauthorized(str(key), key.reason)
    if key.revoked:
        raise _unauthorized("the API key was revoked", "revoked")
    tenant = request.match_info["tenant"]
    integration = request.match_info["integration"]
    if REQUIRED_SCOPE not in key.scope.split():
        raise Forbidden(f"the API key lacks the {REQUIRED_SCOPE} scope")
    if key.tenant_id != tenant or key.integration_id != integration:
        raise Forbidden("the API key is not bound to this integration")
    view = await state.resolver.integration(tenant, integration)
    if view is None:
        raise NotFound(f"integration {integration!r} does not exist")
    if not view.enabled:
        raise McpDisabled(
            f"MCP is disabled for integration {integration!r}; enable it in its MCP settings"
        )
    return key, view


async def _admit(
    state: GatewayState,
    key: KeyEntry,
    headers: dict[str, str],
    *,
    tools_call: bool,
    session_id: str | None,
) -> tuple[Decision, bool]:
    """Ask the limiter and, for a legacy session, whether it was ended (both at once: on Redis
    they share a round trip). The limiter's figures go on every answer from here on
    (`headers` is updated)."""
    check = state.limiter.check(key.key_id, tools_call=tools_call)
    try:
        if session_id is None:
            decision, ended = await check, False
        else:
            decision, ended = await asyncio.gather(
                check, state.sessions.session_ended(key.key_id, session_id)
            )
    except LimiterUnavailable:
        raise _limiter_down() from None
    set_rate_headers(headers, decision)
    _refuse_if_limited(decision)
    return decision, ended


async def _admit_call(
    state: GatewayState, key: KeyEntry, headers: dict[str, str], counted: Decision
) -> Decision:
    """Charge the `tools/call` bucket for a request already `counted` when it started."""
    [decision] = await _admit_members(state, key, (Charge.CALL,))
    set_rate_headers(headers, tighter(counted, decision))
    _refuse_if_limited(decision)
    return tighter(counted, decision)


async def _admit_members(
    state: GatewayState, key: KeyEntry, charges: Sequence[Charge]
) -> list[Decision]:
    """More charges of one request's key (a batch's members, in order)."""
    try:
        return await state.limiter.check_many(key.key_id, charges)
    except LimiterUnavailable:
        raise _limiter_down() from None


def _limiter_down() -> ServiceUnavailable:
    return ServiceUnavailable(
        "the rate limiter is unreachable; try again", retry_after_s=LIMITER_RETRY_AFTER_S
    )


def _refuse_if_limited(decision: Decision) -> None:
    if not decision.allowed:
        retry_after = max(1, math.ceil(decision.retry_after_s))
        raise TooManyRequests(
            f"rate limit exceeded; retry in {retry_after} s", retry_after_s=retry_after
        )


_NOT_YET: Any = object()  # `_arrived_body`: the body is still arriving


def _arrived_body(request: web.Request, limit: int) -> bytes | None:
    """`_read_bounded`'s answer when the whole body is already here (the usual small POST),
    without a coroutine or a read loop; else `_NOT_YET`."""
    if request.content_length is not None and request.content_length > limit:
        return None
    content = request.content
    if not content.is_eof():
        return _NOT_YET
    raw = content.read_nowait()
    return None if len(raw) > limit else raw


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The rest of a body still arriving (after `_arrived_body`), or None when it exceeds
    `limit` (never more than limit+1 bytes read)."""
    content = request.content
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


async def _read_in_time(request: web.Request, limit: int, timeout_s: float) -> bytes | None:
    """`_read_bounded` within `timeout_s`, else 408."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_bounded(request, limit)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None


async def _answer_and_close(response: web.Response, request: web.Request) -> web.Response:
    """Send `response`, then close the connection: the rest of an unread body may still come,
    so it cannot carry another request, and aiohttp would otherwise keep it open for its
    lingering time (10 s) reading what comes."""
    response.force_close()  # `Connection: close`
    await response.prepare(request)
    await response.write_eof()
    transport = request.transport
    if transport is not None:
        transport.close()  # once the answer is flushed
    return response


def _problem(problem: Problem, request: web.Request, headers: dict[str, str]) -> web.Response:
    response = problem_response(problem, request)
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    return response
