"""An MCP client session with one upstream server over Streamable HTTP (the legacy protocol
era, 2024-11-05 … 2025-11-25): the initialize handshake and its negotiated version, the
session id every later request carries, tools/list's pages, and the closing DELETE."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict

from mcp_core.client.errors import UpstreamError, quote
from mcp_core.client.exchange import (
    DEFAULT_MAX_BODY_BYTES,
    MessageHandler,
    RpcReply,
    mcp_headers,
    post_message,
    result_of,
)
from mcp_core.client.http_client import HttpClient
from mcp_core.client.listing import list_all_tools
from mcp_core.client.peer import UpstreamPeer
from mcp_core.headers import SESSION_ID_HEADER
from mcp_core.version import __version__
from mcp_core.versions import CLIENT_VERSIONS, META_PREFIX, Era

__all__ = ["UpstreamSession", "legacy_params"]

logger = logging.getLogger(__name__)

# Session ids must be visible ASCII (MCP transports spec); anything else could smuggle headers.
_SESSION_ID_RE = re.compile(r"[\x21-\x7e]+")


class UpstreamSession(UpstreamPeer):
    """One MCP session with an upstream over Streamable HTTP (legacy era).

    Tracks the session id and negotiated version so every request after ``initialize`` carries
    them. Not safe for concurrent requests that race ``initialize``; one session per task.
    """

    era = Era.LEGACY

    def __init__(
        self,
        http: HttpClient,
        url: str,
        headers: Mapping[str, str],
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__(http, url, headers, max_body_bytes=max_body_bytes)
        self._headers = dict(headers)
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self.initialize_result: dict[str, Any] | None = None
        self._sent_headers: tuple[tuple[str | None, str | None], CIMultiDict[str]] | None = None

    def headers(self) -> CIMultiDict[str]:
        """Headers for the next POST (caller headers plus session id and version); the same
        object while those stay the same (nothing changes it: it is only sent)."""
        state = (self.session_id, self.protocol_version)
        if self._sent_headers is None or self._sent_headers[0] != state:
            self._sent_headers = (
                state,
                mcp_headers(
                    self._headers,
                    session_id=self.session_id,
                    protocol_version=self.protocol_version,
                ),
            )
        return self._sent_headers[1]

    async def send(
        self,
        message: Mapping[str, Any],
        *,
        on_message: MessageHandler | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RpcReply:
        """POST a prepared JSON-RPC message with this session's headers (and `headers`, this
        request's own, e.g. its trace context)."""
        sent = self.headers()
        if headers:
            sent = sent.copy()
            sent.update(headers)
        return await post_message(
            self._http,
            self._target,
            message,
            sent,
            max_body_bytes=self.max_body_bytes,
            on_message=on_message,
        )

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_message: MessageHandler | None = None,
    ) -> dict[str, Any]:
        """Send a request and return its ``result`` (``jsonrpc-error`` on an error response)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.new_id(), "method": method}
        if params is not None:
            message["params"] = dict(params)
        reply = await self.send(message, on_message=on_message)
        if reply.message is None:  # pragma: no cover - post_message always reads requests
            raise UpstreamError("invalid-response", "upstream sent no response")
        return result_of(reply.message)

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification (the server answers 202 with no body)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self.send(message)

    async def initialize(self) -> dict[str, Any]:
        """Run the initialize handshake; return the server's InitializeResult."""
        self.session_id = None
        self.protocol_version = None
        message = {
            "jsonrpc": "2.0",
            "id": self.new_id(),
            "method": "initialize",
            "params": {
                "protocolVersion": CLIENT_VERSIONS[0],
                "capabilities": {},
                "clientInfo": {"name": "mcp-gateway", "version": __version__},
            },
        }
        reply = await self.send(message)
        if reply.message is None:  # pragma: no cover - post_message always reads requests
            raise UpstreamError("invalid-response", "upstream sent no initialize response")
        result = result_of(reply.message)
        version = result.get("protocolVersion")
        if not isinstance(version, str):
            raise UpstreamError("invalid-response", "upstream initialize result lacks a version")
        if version not in CLIENT_VERSIONS:
            raise UpstreamError(
                "invalid-response", f"upstream chose unsupported protocol version {quote(version)}"
            )
        session_id = reply.headers.get(SESSION_ID_HEADER)
        if session_id is not None and not _SESSION_ID_RE.fullmatch(session_id):
            raise UpstreamError("invalid-response", "upstream sent a malformed Mcp-Session-Id")
        self.session_id = session_id
        self.protocol_version = version
        self.initialize_result = result
        await self.notify("notifications/initialized")
        return result

    async def list_tools(self, *, max_pages: int = 100) -> list[dict[str, Any]]:
        """Every tool of the upstream, following ``nextCursor``, in the upstream's order."""
        return await list_all_tools(self.request, max_pages=max_pages)

    async def terminate(self) -> None:
        """End the session with DELETE, best effort (servers may answer 405, or be gone)."""
        if self.session_id is None:
            return
        headers = self.headers()
        self.session_id = None
        try:
            async with self._http.delete(self._target, headers=headers, allow_redirects=False):
                pass  # any status is fine: the server may not support explicit termination
        except (aiohttp.ClientError, OSError) as exc:
            logger.debug("upstream session termination failed: %s", type(exc).__name__)


def legacy_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`params` for a legacy request: `_meta` keys of the modern exchange (version, client
    capabilities, log opt-in) mean nothing in a session and are left out."""
    if params is None:
        return None
    meta = params.get("_meta")
    if not isinstance(meta, Mapping) or not any(
        isinstance(k, str) and k.startswith(META_PREFIX) for k in meta
    ):
        return dict(params)
    kept = {k: v for k, v in meta.items() if not (isinstance(k, str) and k.startswith(META_PREFIX))}
    out = {k: v for k, v in params.items() if k != "_meta"}
    if kept:
        out["_meta"] = kept
    return out
