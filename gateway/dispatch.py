"""JSON-RPC dispatch of the MCP methods through jsonrpcserver's public API.

Two method tables, one per protocol era; the `RequestContext` is jsonrpcserver's `context=`
argument. The transport parses the body and checks each message's structure (`structure_error`)
before it calls here; `lean_validator`, the same check, is jsonrpcserver's `validator=` hook in
place of its jsonschema one.

Method errors: methods and executors raise `McpError`, which becomes jsonrpcserver's `Error`
result; any other exception is logged and answered with -32603 and a generic message (never
its text).
"""

from __future__ import annotations

import base64
import binascii
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from jsonrpcserver import Error, Result, Success, async_dispatch_to_serializable

from gateway.call_log.recorder import CallOutcome, CallTiming, recorder_of
from gateway.context import RequestContext
from gateway.session_logging import set_log_level
from gateway.transport.limits import check_tool_arguments
from mcp_core.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    McpError,
    error_response,
    rate_limited_response,
)
from mcp_core.messages import structure_error, valid_id_or_none
from mcp_core.protocol_2024 import result_for
from mcp_core.version import __version__
from mcp_core.versions import (
    LATEST_LEGACY_VERSION,
    LEGACY_VERSIONS,
    SERVER_INFO_META,
    SUPPORTED_VERSIONS,
    Era,
)
from settings_api.http import REQUEST_ID

log = logging.getLogger(__name__)

TOOLS_PAGE_SIZE = 100
# How long clients may cache list and discover results. They depend on the key (cacheScope
# "private") and change when a tenant edits the settings, so keep it short.
LIST_TTL_MS = 60_000
# The one declaration of what is served, the same in `initialize` and `server/discover`. A
# method of a capability not declared here is not registered either, so it gets -32601 like
# any unknown method: the spec's answer to a method of an undeclared capability, in both eras.
# `logging`: upstream log messages are relayed (per era: gateway/transport/log_delivery.py).
CAPABILITIES: Mapping[str, Any] = {"tools": {"listChanged": False}, "logging": {}}
_CURSOR_PREFIX = "mcpgw-tools:"
_MAX_NAME_IN_MESSAGE = 200
# A method: the context positionally, every member of an object `params` by name.
Method = Callable[..., Awaitable[Result]]


class InvalidMessage(ValueError):
    """Not a JSON-RPC 2.0 message (jsonrpcserver turns it into -32600)."""


# --- structural validation (jsonrpcserver's `validator=` hook) -------------------------------


def lean_validator(deserialized: Any) -> Any:
    """jsonrpcserver's `validator=` hook: mcp_core.messages' structural check, for a message
    or batch."""
    messages = deserialized if isinstance(deserialized, list) else [deserialized]
    if not messages:
        raise InvalidMessage("an empty batch")
    for message in messages:
        reason = structure_error(message)
        if reason is not None:
            raise InvalidMessage(reason)
    return deserialized


# --- the methods ----------------------------------------------------------------------------

Core = Callable[[RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]


def server_info(ctx: RequestContext) -> dict[str, str]:
    return {"name": ctx.integration.name, "version": __version__}


async def initialize(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Legacy handshake: the client's version when we speak it, else our latest legacy one
    (never an error: the client decides whether it can live with our answer)."""
    requested = params.get("protocolVersion")
    version = requested if requested in LEGACY_VERSIONS else LATEST_LEGACY_VERSION
    result: dict[str, Any] = {
        "protocolVersion": version,
        "capabilities": dict(CAPABILITIES),
        "serverInfo": server_info(ctx),
    }
    if ctx.integration.description:
        result["instructions"] = ctx.integration.description
    return result


async def ping(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {}


async def discover(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "supportedVersions": list(SUPPORTED_VERSIONS),
        "capabilities": dict(CAPABILITIES),
    }
    if ctx.integration.description:
        result["instructions"] = ctx.integration.description
    return result


async def tools_list(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """The exposed tools, in the settings' order, `TOOLS_PAGE_SIZE` per page."""
    tools = ctx.integration.tools
    start = _decode_cursor(params.get("cursor"))
    end = start + TOOLS_PAGE_SIZE
    result: dict[str, Any] = {"tools": list(tools[start:end])}
    if end < len(tools):
        result["nextCursor"] = _encode_cursor(end)
    return result


async def tools_call(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Run the call; when the request has a call recorder, time it and record its outcome."""
    calls = recorder_of(ctx.request)
    if calls is None:
        return await _run_tool(ctx, params, CallTiming())
    timing = calls.start()
    try:
        return await _run_tool(ctx, params, timing)
    finally:
        calls.finish(params, timing)


async def _run_tool(
    ctx: RequestContext, params: dict[str, Any], timing: CallTiming
) -> dict[str, Any]:
    name = params.get("name")
    if not isinstance(name, str):
        raise McpError(INVALID_PARAMS, "tools/call needs params.name (a string)")
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict):
        raise McpError(INVALID_PARAMS, "params.arguments must be an object")
    else:
        check_tool_arguments(arguments)  # depth and size bounds: -32602
    tool = ctx.integration.tools_by_name.get(name)
    if tool is None:
        shown = name if len(name) <= _MAX_NAME_IN_MESSAGE else name[:_MAX_NAME_IN_MESSAGE] + "…"
        timing.outcome = CallOutcome.DENIED
        raise McpError(INVALID_PARAMS, f"Unknown tool: {shown}")
    result = await ctx.executor.call_tool(ctx, tool, arguments, params.get("_meta"))
    if not isinstance(result, dict):
        raise TypeError(f"executor returned {type(result).__name__}, not a CallToolResult")
    timing.outcome = CallOutcome.TOOL_ERROR if result.get("isError") is True else CallOutcome.OK
    if "isError" not in result:
        # Optional in the spec, but clients in typed languages read its absence as undefined:
        # one shape on both URLs, whatever the upstream or a fixture left out. A copy: the
        # executor may hand out a cached object.
        return {**result, "isError": False}
    return result


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> int:
    if cursor is None:
        return 0
    if isinstance(cursor, str) and len(cursor) <= 64:
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except (binascii.Error, ValueError):
            text = ""
        digits = text.removeprefix(_CURSOR_PREFIX)
        if text.startswith(_CURSOR_PREFIX) and digits.isascii() and digits.isdigit():
            return int(digits)
    raise McpError(INVALID_PARAMS, "Invalid cursor: pass a nextCursor this server returned")


# --- registration ---------------------------------------------------------------------------


def _modern_result(ctx: RequestContext, result: dict[str, Any], cacheable: bool) -> dict[str, Any]:
    """2026-07-28 result fields: resultType, serverInfo in _meta, cache hints on lists.
    A copy: executors may hand out cached result objects."""
    out = dict(result)
    out.setdefault("resultType", "complete")
    meta = result.get("_meta")
    out["_meta"] = (
        {**meta, SERVER_INFO_META: server_info(ctx)}
        if isinstance(meta, dict)
        else {SERVER_INFO_META: server_info(ctx)}
    )
    if cacheable:
        out["ttlMs"] = LIST_TTL_MS
        out["cacheScope"] = "private"  # the answer depends on the key presented
    return out


def _method(name: str, core: Core, era: Era, *, cacheable: bool = False) -> Method:
    modern = era is Era.MODERN

    async def run(ctx: RequestContext, /, **params: Any) -> Result:
        try:
            result = await core(ctx, params)
        except McpError as exc:
            return _error(exc)
        except Exception:  # not left to jsonrpcserver: its answer would carry the text
            request_id = ctx.request.get(REQUEST_ID)
            log.exception(
                "%s failed unexpectedly (integration %s/%s, request %s)",
                name,
                ctx.integration.tenant_id,
                ctx.integration.integration_id,
                request_id,
            )
            return _error(
                McpError(
                    INTERNAL_ERROR,
                    "Internal error; quote the requestId when reporting it",
                    {"requestId": request_id},
                )
            )
        if modern:
            return Success(_modern_result(ctx, result, cacheable))
        return Success(result_for(name, ctx.protocol_version, result))

    run.__name__ = run.__qualname__ = f"{era.value}:{name}"
    # jsonrpcserver binds the params to `inspect.signature(method)` on every call, and
    # inspect returns a `__signature__` as it is instead of building a new one each time.
    run.__signature__ = inspect.signature(run)  # type: ignore[attr-defined]
    return run


def _error(exc: McpError) -> Result:
    """`exc` as jsonrpcserver's error result (which omits an absent `data`)."""
    if exc.data is None:
        return Error(exc.code, exc.message)
    return Error(exc.code, exc.message, exc.data)


def _table(era: Era, entries: Mapping[str, tuple[Core, bool]]) -> dict[str, Method]:
    return {
        name: _method(name, core, era, cacheable=cacheable)
        for name, (core, cacheable) in entries.items()
    }


_SHARED: dict[str, tuple[Core, bool]] = {
    "tools/list": (tools_list, True),
    "tools/call": (tools_call, False),
}
# 2026-07-28 removed initialize, ping and logging/setLevel; it answers them as unknown methods.
MODERN_METHODS = _table(Era.MODERN, {"server/discover": (discover, True), **_SHARED})
LEGACY_METHODS = _table(
    Era.LEGACY,
    {
        "initialize": (initialize, False),
        "ping": (ping, False),
        "logging/setLevel": (set_log_level, False),
        **_SHARED,
    },
)


# --- dispatch -------------------------------------------------------------------------------


async def _dispatch(parsed: dict[str, Any] | list[dict[str, Any]], ctx: RequestContext) -> Any:
    """jsonrpcserver's answer to a parsed message or batch of structurally valid messages: a
    response object, a list of them (one per request, in order), or None (notifications).
    A failure of the library itself is its own -32000 answer (the methods never raise)."""
    methods = MODERN_METHODS if ctx.era is Era.MODERN else LEGACY_METHODS
    # The transport parsed the body already: the deserializer hook hands the library the result.
    return await async_dispatch_to_serializable(
        "", methods, context=ctx, deserializer=lambda _: parsed, validator=lean_validator
    )


async def dispatch_one(message: dict[str, Any], ctx: RequestContext) -> dict[str, Any] | None:
    """Answer one structurally valid message: its response object, or None (notification)."""
    return cast("dict[str, Any] | None", await _dispatch(message, ctx))


async def dispatch_batch(
    messages: list[Any], ctx: RequestContext, refused: Mapping[int, int] | None = None
) -> list[dict[str, Any]]:
    """Answer a batch (2025-03-26): one response per request, in order; an invalid member gets
    its own -32600 answer instead of failing the whole batch. `refused` maps the index of
    each member the rate limit refused to its retry delay in seconds: such a request is not
    run and gets a rate-limit error instead (a refused notification is dropped)."""
    refused = refused or {}
    calls = recorder_of(ctx.request)
    answers: list[dict[str, Any] | None] = [None] * len(messages)
    runnable: list[int] = []
    for index, message in enumerate(messages):
        reason = structure_error(message)
        if reason is not None:
            answers[index] = error_response(
                valid_id_or_none(message), INVALID_REQUEST, "Invalid request", reason
            )
            if calls is not None:
                calls.refused(message, CallOutcome.ERROR)
        elif index in refused:
            if calls is not None:
                calls.refused(message, CallOutcome.RATE_LIMITED)
            if "method" in message and "id" in message:
                answers[index] = rate_limited_response(message["id"], refused[index])
        elif "method" in message:
            runnable.append(index)
    if runnable:
        # The library runs the members concurrently and answers the requests among them in order.
        responses = iter(await _dispatch([messages[i] for i in runnable], ctx) or ())
        for index in runnable:
            if "id" in messages[index]:
                answers[index] = next(responses)
    return [answer for answer in answers if answer is not None]
