"""Reading an upstream's tool catalog (the settings API's configs and :syncTools): the era
probed, every tools/list page read (in an MCP session opened and closed for it, when the
upstream speaks only the legacy era), within one deadline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from mcp_core.client.errors import UpstreamError, connect_error
from mcp_core.client.exchange import DEFAULT_MAX_BODY_BYTES
from mcp_core.client.http_client import HttpClient
from mcp_core.client.negotiation import PROBE_TIMEOUT_S, connect
from mcp_core.client.session import UpstreamSession
from mcp_core.client.stateless import StatelessUpstream
from mcp_core.redaction import scrub, upstream_secrets
from mcp_core.tool_headers import annotation_problem

__all__ = ["fetch_tool_catalog"]

logger = logging.getLogger(__name__)


async def fetch_tool_catalog(
    session: HttpClient,
    url: str,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_pages: int = 100,
) -> list[dict[str, Any]]:
    """List every tool of `url` (following nextCursor): statelessly when it speaks protocol
    2026-07-28, else in an MCP session opened for it and closed afterwards.

    The whole operation, DELETE included, is bounded by ``timeout_s``. Every failure is an
    :class:`UpstreamError`; tools are returned as the upstream sent them, in its order.
    """
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    if max_pages < 1:
        raise ValueError("max_pages must be at least 1")
    modern = StatelessUpstream(session, url, headers, max_body_bytes=max_body_bytes)
    upstream = UpstreamSession(session, url, headers, max_body_bytes=max_body_bytes)
    deadline = asyncio.get_running_loop().time() + timeout_s
    tools: list[dict[str, Any]] = []
    failure: Exception | None = None
    try:
        async with asyncio.timeout_at(deadline):
            connected = await connect(
                modern, upstream, probe_timeout_s=min(PROBE_TIMEOUT_S, timeout_s / 2)
            )
            tools = await connected.list_tools(max_pages=max_pages)
            if connected is modern:
                tools = _without_invalid_header_annotations(tools)
    except (TimeoutError, UpstreamError, aiohttp.ClientError, OSError) as exc:
        failure = exc
    # Free the upstream session on success and failure alike, but never past the deadline.
    # (A cancelled caller skips this: cancellation must not wait on the network.)
    if upstream.session_id is not None and asyncio.get_running_loop().time() < deadline:
        try:
            async with asyncio.timeout_at(deadline):
                await upstream.terminate()
        except TimeoutError:
            logger.debug("upstream session termination skipped: deadline reached")
    if failure is not None:
        error = _as_upstream_error(failure, timeout_s)
        message = scrub(error.message, upstream_secrets(url, headers))
        if message != error.message:
            error = UpstreamError(error.reason, message, status=error.status)
        raise error from failure
    return tools


def _without_invalid_header_annotations(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`tools` less those whose `x-mcp-header` annotations break the 2026-07-28 transport's
    rules: its clients must leave such a tool out (and should say why), so the gateway, a
    client of the upstream, does too, and no tool is offered that its own clients would drop."""
    kept = []
    for tool in tools:
        problem = annotation_problem(tool.get("inputSchema"))
        if problem is None:
            kept.append(tool)
        else:
            name = str(tool.get("name"))[:100]
            logger.warning("upstream tool %r left out of the catalog: %s", name, problem)
    return kept


def _as_upstream_error(exc: Exception, timeout_s: float) -> UpstreamError:
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, TimeoutError):
        return UpstreamError("timeout", f"upstream did not answer within {timeout_s:g} s")
    return connect_error(exc)
