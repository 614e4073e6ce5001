"""The MCP streamable HTTP transport, both eras: what a POST or DELETE means once the endpoint
(gateway/endpoint.py) has checked origin, key, integration, rate limit, size and media type.

POST: parse (the endpoint charges a single `tools/call` to its bucket once parsed) → batch / era
rules → headers (modern) or session (legacy; a request in a session is judged by the session's
negotiated version) → each batch member charged to the limiter → dispatch → JSON, one SSE
event, or an SSE stream of the call's notifications followed by its response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.context import (
    Charge,
    Decision,
    Endpoint,
    IntegrationView,
    KeyEntry,
    RateLimiter,
    RequestContext,
    SessionDenylist,
    SessionLogLevels,
    ToolExecutor,
)
from gateway.dispatch import dispatch_batch, dispatch_one, server_info
from gateway.ratelimit.buckets import tighter
from gateway.sessions import SessionCodec
from gateway.transport.era import EraChoice
from gateway.transport.era import detect as detect_era
from gateway.transport.headers import (
    accepted_types,
    check_param_headers,
    check_routing_headers,
)
from gateway.transport.limits import MAX_BATCH_MESSAGES
from gateway.transport.log_delivery import (
    LEGACY_DEFAULT_LOG_LEVEL,
    filtered,
    requested_log_level,
)
from mcp_core import sse
from mcp_core.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    McpError,
    error_response,
    rate_limited_answer,
    retry_data,
    status_of,
)
from mcp_core.headers import PROTOCOL_VERSION_HEADER, SESSION_ID_HEADER
from mcp_core.json_codec import NOT_PARSED, dumps, dumps_bytes, fast_loads, strict_loads
from mcp_core.json_limits import depth_reason, too_deep
from mcp_core.messages import structure_error, valid_id_or_none
from mcp_core.protocol_2024 import notification_for
from mcp_core.versions import (
    CLIENT_CAPABILITIES_META,
    DEFAULT_LEGACY_VERSION,
    MODERN_VERSIONS,
    PROTOCOL_VERSION_META,
    SERVER_INFO_META,
    SUPPORTED_VERSIONS,
    Era,
)
from settings_api.problems import BadRequest, NotFound

log = logging.getLogger(__name__)

SIMULATOR_SEED_HEADER = "X-Simulator-Seed"
# How often a streaming tools/call looks for a vanished client (aiohttp does not cancel
# handlers on disconnect unless the server runs with handler_cancellation=True).
DISCONNECT_POLL_S = 0.25


# --- parsing (before the limiter) -----------------------------------------------------------


@dataclass(slots=True)  # not frozen: see gateway.context.Decision
class Inbound:
    """A POST body, parsed once."""

    body: Any = None
    parse_error: str | None = None
    choice: EraChoice | None = None

    @property
    def tools_call(self) -> bool:
        """Whether the body is one `tools/call` (the limiter's second bucket; a batch's members
        are charged one by one once the batch is found valid)."""
        body = self.body
        return isinstance(body, dict) and body.get("method") == "tools/call"

    def session_id(self, headers: Mapping[str, str]) -> str | None:
        """The legacy session id this POST presents (modern requests have none)."""
        if self.choice is None or self.choice.era is not Era.LEGACY:
            return None
        if isinstance(self.body, dict) and self.body.get("method") == "initialize":
            return None  # initialize starts a session; an old id on it is ignored
        return headers.get(SESSION_ID_HEADER)


def parse(raw: bytes, headers: Mapping[str, str]) -> Inbound:
    body = fast_loads(raw)
    if body is not NOT_PARSED and not too_deep(body, raw=raw):
        # orjson accepted it: no NaN, no lone surrogates, nesting already bounded.
        return Inbound(body=body, choice=detect_era(headers, body))
    try:
        body = strict_loads(raw)
    except RecursionError:
        return Inbound(parse_error=depth_reason())
    except UnicodeDecodeError:
        return Inbound(parse_error="the body is not UTF-8")
    except ValueError as exc:
        reason = (
            f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else str(exc)
        )
        return Inbound(parse_error=f"the body is not valid JSON: {reason}")
    if too_deep(body, raw=raw):
        return Inbound(parse_error=depth_reason())
    if _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(body):
        return Inbound(
            parse_error="the body is not valid JSON: a string is not valid Unicode (lone surrogate)"
        )
    return Inbound(body=body, choice=detect_era(headers, body))


# A "\ud800"-style escape parses into a lone surrogate, which no answer, upstream or log line can
# encode as UTF-8 (a pair is fine: it parses into one character). Only bodies with such an
# escape pay for the full check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate(body: Any) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# --- answering --------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Exchange:
    """One MCP request after the endpoint's checks: who asks, about what, with which verdict."""

    request: web.Request
    key: KeyEntry
    integration: IntegrationView
    endpoint: Endpoint
    executor: ToolExecutor  # where this endpoint's tools/call goes
    sessions: SessionCodec
    decision: Decision
    headers: dict[str, str]  # added to every answer (RateLimit-*, X-Request-Id)
    limiter: RateLimiter  # charges a batch's members (LimiterUnavailable: the 503 problem)
    session_ended: bool = False  # the legacy session named by the request was ended (DELETE)
    session_levels: SessionLogLevels | None = None  # where logging/setLevel keeps levels
    session_log_level: str | None = None  # the legacy session's level (read for tools/call)
    session_expires_at: float | None = None  # of the valid legacy session the request names


async def answer_post(x: Exchange, inbound: Inbound) -> web.StreamResponse:
    if inbound.parse_error is not None:
        return _reply(
            x, error_response(None, PARSE_ERROR, "Parse error", inbound.parse_error), Era.LEGACY
        )
    body, choice = inbound.body, inbound.choice
    assert choice is not None
    try:
        if isinstance(body, list):
            return await _batch(x, body, choice)
        if choice.era is Era.MODERN:
            return await _modern(x, body, choice)
        return await _legacy(x, body, choice)
    except McpError as exc:
        answer = exc.response(valid_id_or_none(body))
        return _reply(x, answer, choice.era, status=exc.http_status)


async def answer_delete(x: Exchange, sessions: SessionDenylist) -> web.StreamResponse:
    """End a legacy session: later requests with its id get 404 on every replica."""
    raw = x.request.headers.get(SESSION_ID_HEADER)
    if raw is None:
        raise BadRequest(f"send the {SESSION_ID_HEADER} of the session to end")
    info = x.sessions.verify(raw, x.key.key_id)
    if info is None or x.session_ended:
        raise NotFound("no such session (it ended, expired, or belongs to another key)")
    await sessions.end_session(x.key.key_id, raw, info.expires_at)
    return web.Response(status=204, headers=x.headers)


async def _modern(x: Exchange, message: Any, choice: EraChoice) -> web.StreamResponse:
    _check_structure(message)
    if "method" not in message:
        raise McpError(
            INVALID_REQUEST,
            "Invalid request",
            "clients send no JSON-RPC responses in protocol 2026-07-28",
        )
    version = choice.version
    if not choice.in_meta:  # the header says modern; the body carries no version
        if version not in MODERN_VERSIONS:
            raise _unsupported(version)
        raise _missing_meta()
    if "id" not in message:  # 2026-07-28 defines no client notifications over HTTP
        if not isinstance(version, str):
            raise _missing_meta()
        if version not in MODERN_VERSIONS:
            raise _unsupported(version)
        return _accepted(x)
    if CLIENT_CAPABILITIES_META not in message["params"]["_meta"]:
        raise _missing_meta()
    headers = x.request.headers
    check_routing_headers(headers, message, version)
    if not isinstance(version, str):
        raise McpError(INVALID_PARAMS, f"params._meta[{PROTOCOL_VERSION_META!r}] must be a string")
    if version not in MODERN_VERSIONS:
        raise _unsupported(version)
    if message["method"] == "tools/call":
        _check_param_headers(x, headers, message["params"])
    ctx = _context(x, Era.MODERN, version, None)
    ctx.log_level = requested_log_level(message)
    return await _respond(x, message, ctx)


async def _legacy(x: Exchange, message: Any, choice: EraChoice) -> web.StreamResponse:
    _check_structure(message)
    if "method" not in message:
        return _accepted(x)  # a response from the client: we never ask, nothing waits for it
    method, notification = message["method"], "id" not in message
    if method == "initialize":
        if notification:
            return _accepted(x)
        ctx = _context(x, Era.LEGACY, choice.version, None)
        answer = await dispatch_one(message, ctx)
        assert answer is not None
        extra: dict[str, str] = {}
        result = answer.get("result")
        if isinstance(result, dict):
            extra[SESSION_ID_HEADER] = x.sessions.mint(x.key.key_id, result["protocolVersion"])
        return _reply(x, answer, Era.LEGACY, extra=extra)
    session_id, session_version = _session(x, required=not notification and method != "ping")
    version = _version(choice, session_version)
    if notification:
        return _accepted(x)
    return await _respond(x, message, _context(x, Era.LEGACY, version, session_id))


async def _batch(x: Exchange, batch: list[Any], choice: EraChoice) -> web.StreamResponse:
    if choice.era is Era.MODERN:
        raise McpError(
            INVALID_REQUEST,
            "Invalid request",
            "JSON-RPC batches are not part of protocol 2026-07-28",
        )
    if not batch:
        raise McpError(INVALID_REQUEST, "Invalid request", "the batch is empty")
    if len(batch) > MAX_BATCH_MESSAGES:
        raise McpError(
            INVALID_REQUEST,
            "Invalid request",
            f"a batch holds at most {MAX_BATCH_MESSAGES} messages",
        )
    requests = [m for m in batch if isinstance(m, dict) and isinstance(m.get("method"), str)]
    if any(m["method"] == "initialize" for m in requests):
        raise McpError(INVALID_REQUEST, "Invalid request", "initialize cannot be part of a batch")
    needs_session = any("id" in m and m["method"] != "ping" for m in requests)
    session_id, session_version = _session(x, required=needs_session)
    version = _version(choice, session_version)
    if version != DEFAULT_LEGACY_VERSION:
        raise McpError(
            INVALID_REQUEST,
            "Invalid request",
            f"JSON-RPC batches are not part of protocol {version}",
        )
    refused = await _charge_members(x, batch)
    answers = await dispatch_batch(batch, _context(x, Era.LEGACY, version, session_id), refused)
    if not answers:
        return _accepted(x)
    return _reply(x, answers, Era.LEGACY)


async def _charge_members(x: Exchange, batch: list[Any]) -> dict[int, int]:
    """Charge every member to the key's buckets, in order, like that many POSTs (the first
    one's request was counted when the POST started): the index of each refused member with
    its retry delay in whole seconds. The rate-limit headers show the state after the batch."""
    charges: list[Charge] = []
    members: list[int] = []
    for index, message in enumerate(batch):
        call = isinstance(message, dict) and message.get("method") == "tools/call"
        if index == 0 and not call:
            continue
        charges.append(Charge.CALL if index == 0 else Charge.BOTH if call else Charge.REQUEST)
        members.append(index)
    if not charges:
        return {}
    decisions = await x.limiter.check_many(x.key.key_id, charges)
    shown = x.decision
    refused: dict[int, int] = {}
    for index, decision in zip(members, decisions, strict=True):
        shown = tighter(shown, decision)
        if not decision.allowed:
            refused[index] = max(1, math.ceil(decision.retry_after_s))
    set_rate_headers(x.headers, shown)
    return refused


def answer_rate_limited(
    x: Exchange, inbound: Inbound, retry_after_s: float
) -> web.StreamResponse | None:
    """The answer to one JSON-RPC message the rate limit refused, in a form MCP clients hand to
    the caller while the session goes on (docs/mcp-endpoints.md, "Rate limits"); None for
    anything else (unparsed, a batch, not a message), which keeps the 429 problem."""
    message, choice = inbound.body, inbound.choice
    if (
        choice is None
        or not isinstance(message, dict)
        or not isinstance(message.get("method"), str)
    ):
        return None
    x.headers["Retry-After"] = str(retry_data(retry_after_s)["retryAfterSeconds"])
    if "id" not in message:
        return _accepted(x)  # a notification: the gateway acts on none, so none is lost
    answer = rate_limited_answer(
        message["method"], valid_id_or_none(message), retry_after_s, choice.era
    )
    result = answer.get("result")
    if result is not None and choice.era is Era.MODERN:  # like every modern result
        result["_meta"][SERVER_INFO_META] = server_info(_context(x, choice.era, "", None))
    # 200 in both eras: the Python SDK 1.x tears the session down on a 4xx or 5xx (but 404),
    # and the TypeScript SDK 2.x reports a 429 as an HTTP failure without the JSON-RPC error.
    return _reply(x, answer, choice.era, status=200)


def set_rate_headers(headers: dict[str, str], decision: Decision) -> None:
    """`RateLimit-Limit/-Remaining/-Reset` of `decision`, on every answer from here on."""
    headers["RateLimit-Limit"] = str(decision.limit)
    headers["RateLimit-Remaining"] = str(max(0, decision.remaining))
    headers["RateLimit-Reset"] = str(max(0, math.ceil(decision.reset_s)))


def _check_structure(message: Any) -> None:
    reason = structure_error(message)
    if reason is not None:
        raise McpError(INVALID_REQUEST, "Invalid request", reason)


def _check_param_headers(
    x: Exchange, headers: CIMultiDictProxy[str], params: dict[str, Any]
) -> None:
    name = params.get("name")
    tool = x.integration.tools_by_name.get(name) if isinstance(name, str) else None
    if tool is None:
        return  # unknown tool: the method answers -32602
    check_param_headers(headers, tool, params.get("arguments"))


def _unsupported(version: Any) -> McpError:
    return McpError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(SUPPORTED_VERSIONS), "requested": version},
    )


def _missing_meta() -> McpError:
    return McpError(
        INVALID_PARAMS,
        "params._meta must carry the request's "
        f"{PROTOCOL_VERSION_META!r} and {CLIENT_CAPABILITIES_META!r}",
    )


def _session(x: Exchange, *, required: bool) -> tuple[str | None, str | None]:
    """The request's valid legacy session id and the version it negotiated; 400 when required
    and missing, 404 when unknown, forged, another key's, expired or ended."""
    raw = x.request.headers.get(SESSION_ID_HEADER)
    if raw is None:
        if required:
            raise McpError(
                INVALID_REQUEST,
                f"Bad Request: the {SESSION_ID_HEADER} header is required (send initialize first)",
                http_status=400,
            )
        return None, None
    info = x.sessions.verify(raw, x.key.key_id)
    if info is None or x.session_ended:
        raise McpError(
            INVALID_REQUEST,
            "Session not found: send initialize to start a new one",
            http_status=404,
        )
    x.session_expires_at = info.expires_at
    return raw, info.protocol_version


def _version(choice: EraChoice, session_version: str | None) -> str:
    """The version a legacy request is judged by: its session's (the signed id carries it),
    else the header's, else 2025-03-26. A header naming another version than the session's
    is refused: what a request may do must not depend on leaving a header out."""
    if session_version is None:
        return choice.version  # type: ignore[no-any-return]
    if choice.header is not None and choice.header != session_version:
        raise McpError(
            INVALID_REQUEST,
            f"Bad Request: the {PROTOCOL_VERSION_HEADER} header "
            f"({choice.header}) does not match the session's protocol version "
            f"({session_version})",
            http_status=400,
        )
    return session_version


def _context(x: Exchange, era: Era, version: str, session_id: str | None) -> RequestContext:
    return RequestContext(
        key=x.key,
        integration=x.integration,
        endpoint=x.endpoint,
        executor=x.executor,
        era=era,
        protocol_version=version,
        request=x.request,
        session_id=session_id,
        simulator_seed=x.request.headers.get(SIMULATOR_SEED_HEADER),
        log_level=(x.session_log_level or LEGACY_DEFAULT_LOG_LEVEL) if era is Era.LEGACY else None,
        session_levels=x.session_levels,
        session_expires_at=x.session_expires_at,
    )


async def _respond(x: Exchange, message: dict[str, Any], ctx: RequestContext) -> web.StreamResponse:
    _, sse_ok = accepted_types(x.request.headers.get("Accept"))
    if (
        sse_ok
        and message["method"] == "tools/call"
        and (_progress_token(message) is not None or _asked_for_logs(x, ctx))
    ):
        return await _stream(x, message, ctx)
    answer = await dispatch_one(message, ctx)
    assert answer is not None  # requests (with an id) always get an answer
    return _reply(x, answer, ctx.era)


def _asked_for_logs(x: Exchange, ctx: RequestContext) -> bool:
    """The client asked for log messages: the request's opt-in (modern) or its session's
    `logging/setLevel` (legacy; the default level alone does not open a stream)."""
    if ctx.era is Era.MODERN:
        return ctx.log_level is not None
    return x.session_log_level is not None


def _progress_token(message: dict[str, Any]) -> Any:
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return meta.get("progressToken") if isinstance(meta, dict) else None


async def _stream(x: Exchange, message: dict[str, Any], ctx: RequestContext) -> web.StreamResponse:
    """A tools/call whose client wants progress or logs: its notifications go out as SSE events
    as they arrive (log messages only as the era's rules allow: gateway/transport/
    log_delivery.py), then its response. The stream opens with the first notification, so a
    call that sends none is answered like any other. A client that goes away cancels the
    call."""
    request = x.request
    stream: web.StreamResponse | None = None
    writing = asyncio.Lock()  # events from concurrent senders must not interleave

    async def notify(notification: dict[str, Any]) -> None:
        nonlocal stream
        if notification.get("jsonrpc") != "2.0":
            notification = {"jsonrpc": "2.0", **notification}
        notification = notification_for(ctx.protocol_version, notification)
        data = sse.event(_dumps(notification))
        async with writing:
            if stream is None:
                stream = web.StreamResponse(
                    status=200,
                    headers={**x.headers, **sse.SSE_HEADERS, "Content-Type": sse.SSE_CONTENT_TYPE},
                )
                await stream.prepare(request)
            await stream.write(data)

    ctx.notify = filtered(notify, ctx.log_level)
    work = asyncio.ensure_future(dispatch_one(message, ctx))
    try:
        while not (await asyncio.wait((work,), timeout=DISCONNECT_POLL_S))[0]:
            transport = request.transport
            if transport is None or transport.is_closing():
                log.info(
                    "client went away; cancelling tools/call (integration %s/%s)",
                    ctx.integration.tenant_id,
                    ctx.integration.integration_id,
                )
                work.cancel()
                await asyncio.wait((work,))
                return stream or web.Response(status=499, reason="Client Closed Request")
    except asyncio.CancelledError:  # the server cancelled the handler (e.g. on disconnect)
        work.cancel()
        raise
    answer = work.result()
    assert answer is not None
    if stream is None:
        return _reply(x, answer, ctx.era)
    try:
        async with writing:
            await stream.write(sse.event(_encode(answer)))
            await stream.write_eof()
    except ConnectionError:
        log.info(
            "client went away before the tools/call response (integration %s/%s)",
            ctx.integration.tenant_id,
            ctx.integration.integration_id,
        )
    return stream


# --- encoding ---------------------------------------------------------------------------------


def _reply(
    x: Exchange,
    answer: dict[str, Any] | list[dict[str, Any]],
    era: Era,
    *,
    status: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> web.Response:
    """A JSON answer, or one SSE event for a client that accepts only text/event-stream
    (HTTP errors always carry JSON: clients read error bodies as JSON)."""
    if status is None:
        status = status_of(answer, era) if isinstance(answer, dict) else 200
    headers = {**x.headers, **extra} if extra else dict(x.headers)
    body = (
        _encode_bytes(answer)
        if isinstance(answer, dict)
        else b"[" + b",".join(map(_encode_bytes, answer)) + b"]"
    )
    if status == 200:
        json_ok, sse_ok = accepted_types(x.request.headers.get("Accept"))
        if sse_ok and not json_ok:
            headers.update(sse.SSE_HEADERS)
            return web.Response(
                status=200,
                body=sse.event(body.decode()),
                headers=headers,
                content_type=sse.SSE_CONTENT_TYPE,
            )
    return web.Response(status=status, body=body, headers=headers, content_type="application/json")


def _accepted(x: Exchange) -> web.Response:
    return web.Response(status=202, headers=x.headers)


def _dumps(value: Any) -> str:
    return dumps(value)


def _encode_bytes(answer: dict[str, Any]) -> bytes:
    """`_encode` as UTF-8 bytes (the usual answer goes out without a decode and re-encode)."""
    try:
        return dumps_bytes(answer)
    except (TypeError, ValueError):
        return _encode(answer).encode()


def _encode(answer: dict[str, Any]) -> str:
    """A response object as JSON; one that cannot be serialized becomes -32603."""
    try:
        return _dumps(answer)
    except (TypeError, ValueError):
        log.exception("unserializable JSON-RPC response (id %r)", answer.get("id"))
        request_id = answer.get("id")
        try:
            _dumps(request_id)
        except (TypeError, ValueError):
            request_id = None  # the id itself cannot be written back
        return _dumps(
            error_response(
                request_id, INTERNAL_ERROR, "Internal error: the result could not be serialized"
            )
        )
