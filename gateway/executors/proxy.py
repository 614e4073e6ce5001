"""callUrl executor: `tools/call` proxied to the bound config's upstream MCP server.

The gateway is an MCP client of the upstream (Streamable HTTP, 2026-07-28 when the upstream
speaks it, else the legacy era), built on :mod:`mcp_core.client`, over the upstreams of
:class:`~gateway.executors.pool.UpstreamPool`.
:class:`ProxyExecutor` bounds each call by ``timeout_s`` (handshake and retry included) and
each integration's calls in flight by ``max_inflight`` (refused at once past it), caps relayed
bodies (their size, and their nesting through :mod:`mcp_core.client`), forwards upstream
progress/log notifications to the client when it can receive them, and maps every failure to a
:class:`~mcp_core.errors.McpError`. Upstream header values are secrets: they never appear
in errors or logs (and are scrubbed from upstream text we relay).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from gateway.context import Notify, RequestContext
from gateway.executors.pool import UpstreamPool
from gateway.observability import metrics, tracing
from gateway.transport.headers import param_headers
from mcp_core.client import MessageHandler, UpstreamError
from mcp_core.errors import INTERNAL_ERROR, McpError
from mcp_core.redaction import scrub, scrub_json, upstream_secrets
from mcp_core.versions import LOG_LEVEL_META, META_PREFIX, Era
from settings_api.bulkhead import DEFAULT_MAX_INFLIGHT, Bulkhead

__all__ = [
    "DEFAULT_MAX_INFLIGHT",
    "FORWARDED_NOTIFICATIONS",
    "INTERNAL_ERROR",
    "ProxyExecutor",
]

logger = logging.getLogger(__name__)

# Server notifications relayed to the client (when it accepted SSE); others are dropped.
FORWARDED_NOTIFICATIONS = frozenset({"notifications/progress", "notifications/message"})


class ProxyExecutor:
    """The callUrl :class:`~gateway.context.ToolExecutor`: the call goes to the upstream.

    ``timeout_s`` (MCPGW_UPSTREAM_TIMEOUT_S; default: the pool's) bounds each call as a whole,
    handshake, notifications and retry included. ``max_inflight``
    (MCPGW_UPSTREAM_MAX_INFLIGHT) bounds the calls in flight per integration: the bulkhead sits
    in front of the shared pool and HTTP client, and a call past it is refused at once, so a
    tenant whose upstream is slow holds up no one but itself.
    """

    def __init__(
        self,
        pool: UpstreamPool,
        *,
        timeout_s: float | None = None,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
    ) -> None:
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.pool = pool
        self.timeout_s = pool.timeout_s if timeout_s is None else timeout_s
        self.bulkhead = Bulkhead(max_inflight)

    async def call_tool(
        self,
        ctx: RequestContext,
        tool: Mapping[str, Any],
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        view = ctx.integration
        if not view.upstream_url:
            metrics.upstream_failed("none")
            raise McpError(
                INTERNAL_ERROR, "This integration has no upstream configured", {"upstream": "none"}
            )
        if view.secrets_error is not None:
            # Never call the upstream without the headers it expects (e.g. its credentials).
            raise self._failure(
                ctx,
                tool,
                f"Upstream headers unavailable: {view.secrets_error}",
                {"upstream": "secrets-unreadable"},
            )
        params: dict[str, Any] = {"name": tool["name"], "arguments": arguments}
        upstream_meta = _upstream_meta(meta)
        if ctx.era is Era.LEGACY and ctx.notify is not None and ctx.log_level is not None:
            # A 2025-era client chose its level with logging/setLevel; a modern upstream sends
            # logs only to a request that opts in (the relay still filters per session).
            upstream_meta = {**(upstream_meta or {}), LOG_LEVEL_META: ctx.log_level}
        if upstream_meta:
            params["_meta"] = upstream_meta
        on_message = _Forwarder(ctx.notify) if ctx.notify is not None else None
        # Sent only to a modern upstream, which checks them against the arguments.
        request_headers = param_headers(tool, arguments)
        slot = (view.tenant_id, view.integration_id)
        if not self.bulkhead.try_enter(slot):
            limit = self.bulkhead.limit
            raise self._failure(
                ctx,
                tool,
                f"Upstream MCP server busy: this integration already has {limit} calls in "
                "flight, its limit (MCPGW_UPSTREAM_MAX_INFLIGHT); retry when one has finished",
                {"upstream": "busy", "limit": limit},
            )
        started = time.perf_counter()
        outcome = "error"
        try:
            if tracing.ENABLED:
                exchange = partial(self._exchange, ctx, tool, params, on_message, request_headers)
                result = await _traced(tool["name"], view.upstream_url, params, exchange)
            else:
                result = await self._exchange(ctx, tool, params, on_message, request_headers)
            outcome = "ok"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.bulkhead.leave(slot)
            metrics.upstream_done(outcome, time.perf_counter() - started)

    async def _exchange(
        self,
        ctx: RequestContext,
        tool: Mapping[str, Any],
        params: dict[str, Any],
        on_message: MessageHandler | None,
        request_headers: Mapping[str, str],
        trace_headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        view = ctx.integration
        assert view.upstream_url is not None
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.pool.request(
                    view.config_id,
                    view.upstream_url,
                    view.upstream_headers,
                    "tools/call",
                    params,
                    on_message=on_message,
                    request_headers=request_headers,
                    trace_headers=trace_headers,
                )
        except TimeoutError:
            raise self._failure(
                ctx,
                tool,
                f"Upstream MCP server timed out after {self.timeout_s:g} s",
                {"upstream": "timeout"},
            ) from None
        except UpstreamError as exc:
            raise self._upstream_failure(ctx, tool, exc) from None
        return self._relay(ctx, tool, response)

    def _relay(
        self,
        ctx: RequestContext,
        tool: Mapping[str, Any],
        response: dict[str, Any],
    ) -> dict[str, Any]:
        if "error" in response:
            error = response["error"]
            code = error.get("code") if isinstance(error, dict) else None
            if not isinstance(code, int) or isinstance(code, bool):
                raise self._invalid(ctx, tool, "its JSON-RPC error has no integer code")
            message = error.get("message")
            if not isinstance(message, str):
                message = "Upstream MCP server error"
            # The upstream's own answer, relayed as is, except for echoed secrets.
            metrics.upstream_failed("jsonrpc-error")
            secrets = _secrets_of(ctx)
            raise McpError(code, scrub(message, secrets), scrub_json(error.get("data"), secrets))
        result = response.get("result")
        if not isinstance(result, dict):
            raise self._invalid(ctx, tool, "its result is not a JSON object")
        return result

    def _invalid(self, ctx: RequestContext, tool: Mapping[str, Any], why: str) -> McpError:
        return self._failure(
            ctx,
            tool,
            f"Upstream MCP server sent an invalid response: {why}",
            {"upstream": "invalid-response"},
        )

    def _upstream_failure(
        self, ctx: RequestContext, tool: Mapping[str, Any], exc: UpstreamError
    ) -> McpError:
        reason = exc.reason
        if reason == "connect":  # the neutral message: it must not map what listens where
            message = f"Upstream MCP server unreachable: {exc.message}"
        elif reason == "timeout":  # the shared handshake's own bound (the pool's timeout)
            message = f"Upstream MCP server timed out after {self.pool.timeout_s:g} s"
        elif reason == "http-status" and exc.status is not None:
            data = {"upstream": reason, "status": exc.status}
            return self._failure(ctx, tool, f"Upstream MCP server answered HTTP {exc.status}", data)
        elif reason == "too-large":
            message = (
                f"Upstream MCP server response exceeds the {self.pool.max_body_bytes} byte limit"
            )
        elif reason == "invalid-response":
            message = f"Upstream MCP server sent an invalid response: {exc.message}"
        elif reason == "jsonrpc-error":  # the handshake was refused
            message = f"Upstream MCP server refused the session: {exc.message}"
        else:  # not-allowed: the egress policy, or a header the gateway does not send
            message = f"Upstream MCP server failed: {exc.message}"
        return self._failure(ctx, tool, scrub(message, _secrets_of(ctx)), {"upstream": reason})

    def _failure(
        self, ctx: RequestContext, tool: Mapping[str, Any], message: str, data: dict[str, Any]
    ) -> McpError:
        logger.info(
            "upstream tools/call failed: integration=%s/%s config=%s tool=%s upstream=%s%s",
            ctx.integration.tenant_id,
            ctx.integration.integration_id,
            ctx.integration.config_id,
            tool.get("name"),
            data["upstream"],
            f" status={data['status']}" if "status" in data else "",
        )
        metrics.upstream_failed(data["upstream"])
        return McpError(INTERNAL_ERROR, message, data)


class _Forwarder:
    """Relays the upstream's progress and log notifications to the client, in order.

    A failing sink (client gone) stops the forwarding, never the call.
    """

    def __init__(self, notify: Notify) -> None:
        self._notify: Callable[[dict[str, Any]], Awaitable[None]] | None = notify

    async def __call__(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if self._notify is None or method not in FORWARDED_NOTIFICATIONS:
            return
        out: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        params = message.get("params")
        if isinstance(params, dict):
            out["params"] = params
        try:
            await self._notify(out)
        except Exception as exc:
            logger.debug("client notification sink failed: %s", type(exc).__name__)
            self._notify = None


def _upstream_meta(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    # The transport's keys describe the client <-> gateway exchange, not the gateway <->
    # upstream one: not passed on, but for the log opt-in, which a modern upstream honours
    # (the upstream client leaves it out for a legacy one).
    if not isinstance(meta, Mapping):
        return None
    return {
        key: value
        for key, value in meta.items()
        if not (isinstance(key, str) and key.startswith(META_PREFIX)) or key == LOG_LEVEL_META
    }


async def _traced(
    tool: str,
    upstream_url: str,
    params: dict[str, Any],
    exchange: Callable[[Mapping[str, str]], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """`exchange` in a CLIENT span whose trace context the upstream receives, in the request's
    headers and in `params._meta` (replacing any the client sent: that one named the client's
    hop, not this one)."""
    with tracing.upstream_span(tool, upstream_url) as span:
        trace_headers = span.trace_headers()
        meta = params.get("_meta")
        params["_meta"] = {**(meta if isinstance(meta, dict) else {}), **trace_headers}
        try:
            result = await exchange(trace_headers)
        except McpError as exc:
            span.error(_error_type(exc))
            raise
        span.result(result)
        return result


def _error_type(exc: McpError) -> str:
    """How a failed upstream call is classed in its span: the gateway's reason (`timeout`,
    `connect`, the HTTP status, …) or the upstream's JSON-RPC error code."""
    data = exc.data
    if exc.code == INTERNAL_ERROR and isinstance(data, dict):
        if data.get("upstream") == "http-status" and "status" in data:
            return str(data["status"])
        if isinstance(data.get("upstream"), str):
            return str(data["upstream"])
    return str(exc.code)


def _secrets_of(ctx: RequestContext) -> list[str]:
    """What to scrub from upstream text relayed to the client (only failures need it)."""
    return upstream_secrets(ctx.integration.upstream_url, ctx.integration.upstream_headers)
