"""The MCP endpoints, callUrl (`…/mcp:call`) and testUrl (`…/mcp:test`): the data plane's
request pipeline (docs/mcp-endpoints.md).

Each check has its own answer, in this order: `Origin` (403; several `Origin` headers too) →
failed-auth throttle per client address (429 `auth-throttled`, before any key lookup;
gateway/ratelimit/auth_failures.py) → API key or OAuth access token (401 with a
`WWW-Authenticate` naming the URL's protected resource metadata) → key bound to this
integration (403) → integration exists (404) and has MCP enabled (403 `mcp-disabled`) → request
rate limit (503 when the limiter is down and fails closed) → body arrived within
`MCPGW_BODY_TIMEOUT_S` (408, connection closed) → body size (413) → media type (415) →
`tools/call` rate limit → MCP transport and JSON-RPC (gateway/transport/http.py,
gateway/dispatch.py; a 2025-03-26 batch's members are charged one by one there, and the ones
past the limit get a JSON-RPC rate-limit error each). A JSON-RPC message past either limit is
answered by the transport as that request's failure (`answer_rate_limited`: clients survive
it); anything else past it gets the 429 problem with `Retry-After`.

A request is counted when it starts, before its body is read, so a body that never arrives
is still charged to its key and holds its connection no longer than the body deadline. When
the whole body came with the headers (the usual small POST) it is parsed first and both
buckets are asked in one check, which gives the same answers in one round trip. Every answer
given after the limiter ran carries `RateLimit-Limit/-Remaining/-Reset`.

Every stage refuses by raising a `Problem`; `_serve` turns it into the answer, once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from aiohttp import web

from gateway.call_log.recorder import CALLS, CallOutcome, CallRecorder, run_id_of
from gateway.context import MCP_PATH, Charge, Decision, Endpoint, IntegrationView, KeyEntry
from gateway.oauth.protected_resource import (
    challenge_url,
    resource_path,
    resource_url,
    setup_protected_resource,
)
from gateway.observability import metrics, tracing
from gateway.observability.middleware import (
    NOT_OFFERED,
    note_outcome,
    note_reason,
    note_rpc_method,
)
from gateway.ratelimit.auth_failures import COUNTED_REASONS
from gateway.ratelimit.buckets import tighter
from gateway.request_body import answer_and_close, read_body
from gateway.sessions import SessionCodec
from gateway.state import GATEWAY, AuthFailure, GatewayState
from gateway.transport.http import (
    Exchange,
    Inbound,
    answer_delete,
    answer_post,
    answer_rate_limited,
    parse,
    set_rate_headers,
)
from mcp_core.headers import SESSION_ID_HEADER
from settings_api.http import (
    REQUEST_ID,
    SETTINGS,
    Handler,
    client_address,
    problem_response,
)
from settings_api.oauth import tokens
from settings_api.problems import (
    AuthThrottled,
    Forbidden,
    McpDisabled,
    MethodNotAllowed,
    NotFound,
    Problem,
    RequestTimeout,
    TooManyRequests,
    Unauthorized,
)

SESSIONS: web.AppKey[SessionCodec] = web.AppKey("mcp_sessions", SessionCodec)
REQUIRED_SCOPE = "mcp:invoke"
ALLOWED_METHODS = "POST, DELETE"
# Protected resource metadata that does not exist; the authorization server's metadata is
# gateway/oauth/authorization.py's.
WELL_KNOWN_PREFIXES = ("/.well-known/oauth-protected-resource",)


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
        post: Handler = partial(_serve, endpoint=endpoint, answer=_post)
        delete: Handler = partial(_serve, endpoint=endpoint, answer=_delete)
        if tracing.ENABLED:  # decided at start-up: untraced requests pay nothing for it
            post, delete = (
                tracing.traced(post, endpoint.value),
                tracing.traced(delete, endpoint.value),
            )
        resource.add_route("POST", post)
        resource.add_route("DELETE", delete)
        resource.add_route("GET", _get)
        resource.add_route("HEAD", _get)
    setup_protected_resource(app)
    for prefix in WELL_KNOWN_PREFIXES:
        app.router.add_route("*", prefix + "{tail:.*}", _no_oauth)


async def _start_sessions(app: web.Application) -> None:
    app[SESSIONS] = SessionCodec(app[SETTINGS].session_secret)


@dataclass(slots=True)
class _Caller:
    """A request past origin and auth: its key and integration, and the limiter's verdict."""

    request: web.Request
    endpoint: Endpoint
    state: GatewayState
    key: KeyEntry
    integration: IntegrationView
    headers: dict[str, str]  # on every answer: X-Request-Id, then RateLimit-* once counted
    decision: Decision | None = None
    session_ended: bool = False  # the legacy session the request names was ended (DELETE)
    session_log_level: str | None = None  # its logging/setLevel level (read for tools/call)
    refused_before_body: RateLimited | None = None  # see count_before_body

    async def admit(self, *, tools_call: bool, session_id: str | None) -> None:
        """Count the request and, for a legacy session, ask whether it was ended and, for a
        `tools/call`, its log level (all at once: on Redis they share a round trip). 429 past
        the limit."""
        check = self.state.limiter.check(self.key.key_id, tools_call=tools_call)
        if session_id is None:
            decision = await check
        elif tools_call:
            decision, self.session_ended, self.session_log_level = await asyncio.gather(
                check,
                self.state.sessions.session_ended(self.key.key_id, session_id),
                self.state.sessions.session_log_level(self.key.key_id, session_id),
            )
        else:
            decision, self.session_ended = await asyncio.gather(
                check, self.state.sessions.session_ended(self.key.key_id, session_id)
            )
        self._show(decision)
        _refuse_if_limited(decision)

    async def count_start(self) -> None:
        """Count the request before its body is read (its session taken from the header)."""
        await self.admit(tools_call=False, session_id=self.request.headers.get(SESSION_ID_HEADER))

    async def count_before_body(self) -> None:
        """`count_start` for a body still arriving: a refusal waits until the body is parsed,
        so that a JSON-RPC message gets its answer in JSON-RPC (`refuse_if_refused_before_body`).
        """
        try:
            await self.count_start()
        except RateLimited as problem:
            self.refused_before_body = problem

    def refuse_if_refused_before_body(self) -> None:
        if self.refused_before_body is not None:
            raise self.refused_before_body

    async def admit_call(self, session_id: str | None) -> None:
        """Charge the `tools/call` bucket of a request counted when it started (and read its
        legacy session's log level in the same round trip)."""
        assert self.decision is not None
        charge = self.state.limiter.check_many(self.key.key_id, (Charge.CALL,))
        if session_id is None:
            [decision] = await charge
        else:
            [decision], self.session_log_level = await asyncio.gather(
                charge, self.state.sessions.session_log_level(self.key.key_id, session_id)
            )
        self._show(tighter(self.decision, decision))
        _refuse_if_limited(decision)

    def _show(self, decision: Decision) -> None:
        """The limiter's figures, on every answer from here on."""
        self.decision = decision
        set_rate_headers(self.headers, decision)

    def call_recorder(self, inbound: Inbound) -> CallRecorder | None:
        """The request's call recorder, when its body may hold a `tools/call` (on the
        request, where dispatch finds it: `recorder_of`)."""
        buffer = self.state.calls
        if buffer is None or not (inbound.tools_call or isinstance(inbound.body, list)):
            return None
        recorder = self.request[CALLS] = CallRecorder(
            buffer,
            self.endpoint.value,
            self.key.key_id,
            self.integration.tenant_id,
            self.integration.integration_id,
            self.request.get(REQUEST_ID),
            run_id_of(self.request),
        )
        return recorder

    def exchange(self) -> Exchange:
        """What the transport needs, once the request is admitted."""
        assert self.decision is not None
        return Exchange(
            request=self.request,
            key=self.key,
            integration=self.integration,
            endpoint=self.endpoint,
            executor=self.state.executors[self.endpoint],
            sessions=self.request.app[SESSIONS],
            decision=self.decision,
            headers=self.headers,
            limiter=self.state.limiter,
            session_ended=self.session_ended,
            session_levels=self.state.sessions,
            session_log_level=self.session_log_level,
        )


Answer = Callable[[_Caller], Awaitable[web.StreamResponse]]


async def _serve(request: web.Request, endpoint: Endpoint, answer: Answer) -> web.StreamResponse:
    """The checks POST and DELETE share (origin, throttle, key, binding, integration), then
    `answer`; whatever stage refuses, its problem becomes the answer here."""
    headers = _base_headers(request)
    try:
        _check_origin(request)
        state = request.app[GATEWAY]
        key, view = await _authenticate(request, state, endpoint)
        return await answer(_Caller(request, endpoint, state, key, view, headers))
    except RequestTimeout as problem:
        return await answer_and_close(_problem(problem, request, headers), request)
    except Problem as problem:
        return _problem(problem, request, headers)


async def _post(caller: _Caller) -> web.StreamResponse:
    """Request limit, body, size and media type, `tools/call` limit, then the transport. A
    JSON-RPC message past the limit gets its answer from the transport, not the 429 problem."""
    request = caller.request
    settings = request.app[SETTINGS]
    body = await read_body(
        request, settings.max_body_bytes, settings.body_timeout_s, caller.count_before_body
    )
    inbound = _parse(request, body.json)
    if tracing.ENABLED:
        tracing.note_message(
            inbound.body, inbound.choice, request.headers, caller.integration.tools_by_name
        )
    calls = caller.call_recorder(inbound)
    try:
        if not body.counted:  # the body came with the headers: both buckets in one check
            await caller.admit(
                tools_call=inbound.tools_call, session_id=inbound.session_id(request.headers)
            )
        caller.refuse_if_refused_before_body()
        body.refuse_if_unusable()
        if body.counted and inbound.tools_call:
            await caller.admit_call(inbound.session_id(request.headers))
    except RateLimited as problem:
        if calls is not None:
            calls.refused(inbound.body, CallOutcome.RATE_LIMITED)
        answer = answer_rate_limited(caller.exchange(), inbound, problem.wait_s)
        if answer is None:
            raise
        note_outcome(request, "rate_limited")
        return answer
    response = await answer_post(caller.exchange(), inbound)
    if calls is not None:
        calls.settle(inbound.body)
    return response


def _parse(request: web.Request, raw: bytes | None) -> Inbound:
    inbound = parse(raw, request.headers) if raw is not None else Inbound()
    note_rpc_method(request, inbound.body, inbound.parse_error is not None)
    return inbound


async def _delete(caller: _Caller) -> web.StreamResponse:
    """End a legacy session (counted like a POST, without a body)."""
    await caller.count_start()
    return await answer_delete(caller.exchange(), caller.state.sessions)


async def _get(request: web.Request) -> web.StreamResponse:
    """No server-initiated stream: nothing is ever sent outside a request's own response."""
    headers = _base_headers(request)
    try:
        _check_origin(request)
        # Legacy clients ask for a server stream as a matter of course: a normal answer.
        note_outcome(request, NOT_OFFERED)
        raise MethodNotAllowed(
            "this MCP endpoint opens no GET stream; POST JSON-RPC messages",
            headers={"Allow": ALLOWED_METHODS},
        )
    except Problem as problem:
        return _problem(problem, request, headers)


async def _no_oauth(request: web.Request) -> web.StreamResponse:
    note_outcome(request, NOT_OFFERED)  # MCP clients probe for OAuth at every start
    return problem_response(
        NotFound(
            "no metadata here: each MCP endpoint has its own protected resource metadata, at "
            "/.well-known/oauth-protected-resource/v1/tenants/{tenant}/integrations/"
            "{integration}/mcp:call (or mcp:test)"
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


async def _authenticate(
    request: web.Request, state: GatewayState, endpoint: Endpoint
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
            note_reason(request, "throttled")
            raise AuthThrottled(wait)
    try:
        return await _authorize(request, state, endpoint)
    except Unauthorized as problem:
        reason = problem.extensions.get("reason", "other")
        metrics.auth_failed(reason)
        note_reason(request, reason)
        if throttle is not None and reason in COUNTED_REASONS:
            await throttle.failed(_client_address(request))
        raise
    except McpDisabled:
        metrics.auth_failed("disabled")
        note_reason(request, "disabled")
        raise
    except Forbidden:  # bound to another integration (or without the mcp:invoke scope)
        metrics.auth_failed("wrong-integration")
        note_reason(request, "wrong-integration")
        raise


def _client_address(request: web.Request) -> str | None:
    return client_address(request, request.app[SETTINGS].trust_forwarded)


async def _authorize(
    request: web.Request, state: GatewayState, endpoint: Endpoint
) -> tuple[KeyEntry, IntegrationView]:
    """The live key, or the approving key of a live access token issued for this URL (the
    resolver decides missing, malformed, unknown, revoked, expired and wrong-resource), bound
    to this integration, which exists and has MCP enabled; the integration as the key sees it
    (a key narrowed to some tools sees only those)."""
    presented = _presented_key(request, endpoint)
    try:
        # An access token is told apart before the API-key format check, which would call it
        # malformed.
        if presented is not None and tokens.has_access_token_shape(presented):
            path = resource_path(request, endpoint)
            resource = resource_url(request.app[SETTINGS].public_url, path)
            key = await state.resolver.authenticate_token(presented, resource)
        else:
            key = await state.resolver.authenticate(presented)
    except AuthFailure as failure:
        # RFC 6750: an error code only when credentials were sent.
        error = None if failure.reason == "missing" else "invalid_token"
        raise _unauthorized(request, endpoint, str(failure), failure.reason, error) from None
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
    return key, view if key.tool_ids is None else state.key_views.view_for(key, view)


def _presented_key(request: web.Request, endpoint: Endpoint) -> str | None:
    """The key or access token from `Authorization: Bearer` or `X-API-Key` (never the query
    string); None when no credentials were sent. Credentials in another form are refused
    here: that is the request's syntax (RFC 6750 `invalid_request`), not a judgement of the
    key."""
    authorization = request.headers.get("Authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = request.headers.get("X-API-Key", "").strip()
    if api_key:
        return api_key
    if authorization is None and "X-API-Key" not in request.headers:
        return None
    raise _unauthorized(
        request,
        endpoint,
        "the API key must be sent as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
        "malformed",
        "invalid_request",
    )


def _unauthorized(
    request: web.Request, endpoint: Endpoint, detail: str, reason: str, error: str | None
) -> Unauthorized:
    """The 401, its challenge naming this URL's protected resource metadata (RFC 9728), so an
    OAuth-only client can start the authorization flow."""
    problem = Unauthorized(detail, error=error, resource_metadata=challenge_url(request, endpoint))
    problem.extensions["reason"] = reason
    return problem


class RateLimited(TooManyRequests):
    """The key's request or `tools/call` bucket is empty for `wait_s` more seconds."""

    def __init__(self, wait_s: float) -> None:
        retry_after = max(1, math.ceil(wait_s))
        super().__init__(
            f"rate limit exceeded; retry in {retry_after} s", retry_after_s=retry_after
        )
        self.wait_s = wait_s


def _refuse_if_limited(decision: Decision) -> None:
    if not decision.allowed:
        raise RateLimited(decision.retry_after_s)


def _problem(problem: Problem, request: web.Request, headers: dict[str, str]) -> web.Response:
    response = problem_response(problem, request)
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    return response
