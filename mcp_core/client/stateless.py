"""An upstream that speaks protocol 2026-07-28 over Streamable HTTP: no session and no
handshake. Every request carries its version, the client's capabilities and identity in
``params._meta``, mirrored into the ``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name``
headers (and the caller's ``Mcp-Param-*`` for a ``tools/call``); JSON-RPC errors come with 4xx
statuses. :meth:`StatelessUpstream.discover` tells whether the upstream speaks it at all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict

from mcp_core.client.errors import UpstreamError
from mcp_core.client.exchange import (
    DEFAULT_MAX_BODY_BYTES,
    MessageHandler,
    mcp_headers,
    post_message,
    result_of,
)
from mcp_core.client.http_client import HttpClient
from mcp_core.client.listing import list_all_tools
from mcp_core.client.peer import UpstreamPeer
from mcp_core.errors import UNSUPPORTED_PROTOCOL_VERSION
from mcp_core.headers import (
    METHOD_HEADER,
    NAME_FIELDS,
    NAME_HEADER,
    PARAM_HEADER_PREFIX,
    encode_value,
)
from mcp_core.version import __version__
from mcp_core.versions import (
    CLIENT_CAPABILITIES_META,
    CLIENT_INFO_META,
    CLIENT_MODERN_VERSION,
    CLIENT_VERSIONS,
    META_PREFIX,
    PROTOCOL_VERSION_META,
    Era,
)

__all__ = ["CLIENT_INFO", "StatelessUpstream"]

CLIENT_INFO = {"name": "mcp-gateway", "version": __version__}
# Failures that say nothing of the upstream's era: they end the probe instead of a fallback.
_TRANSPORT_FAILURES = frozenset({"connect", "timeout", "too-large", "not-allowed"})
# Result fields of the modern exchange itself, not of the answer relayed to a client.
_EXCHANGE_FIELDS = ("resultType", "ttlMs", "cacheScope")


class StatelessUpstream(UpstreamPeer):
    """One upstream at protocol 2026-07-28. Safe for concurrent requests (nothing is shared
    between them but the request id counter)."""

    era = Era.MODERN
    session_id: str | None = None  # there is none: nothing to end
    protocol_version = CLIENT_MODERN_VERSION

    def __init__(
        self,
        http: HttpClient,
        url: str,
        headers: Mapping[str, str],
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__(http, url, headers, max_body_bytes=max_body_bytes)
        # The request-metadata headers are the transport's: a tenant's copy of one would
        # contradict the body.
        tenant = {k: v for k, v in headers.items() if not _metadata_header(k)}
        self._base = mcp_headers(tenant, protocol_version=self.protocol_version)
        self.discover_result: dict[str, Any] | None = None

    async def discover(self) -> bool:
        """Whether the upstream speaks our modern version (`server/discover`). False for
        anything else that is not a transport failure: the caller falls back to the
        handshake, as the 2026-07-28 transport's backward compatibility asks."""
        try:
            response = await self.exchange("server/discover")
        except UpstreamError as exc:
            if exc.reason in _TRANSPORT_FAILURES:
                raise
            return False
        result = response.get("result")
        if isinstance(result, dict):
            versions = result.get("supportedVersions")
            if isinstance(versions, list) and self.protocol_version in versions:
                self.discover_result = result
                return True
            return False
        error = response.get("error")
        if isinstance(error, dict) and error.get("code") == UNSUPPORTED_PROTOCOL_VERSION:
            data = error.get("data")
            supported = data.get("supported") if isinstance(data, dict) else None
            if isinstance(supported, list) and not any(v in CLIENT_VERSIONS for v in supported):
                # A modern-only server of other versions: no handshake to fall back to.
                raise UpstreamError(
                    "invalid-response",
                    "upstream speaks none of the protocol versions the gateway does",
                )
        return False

    async def exchange(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_message: MessageHandler | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The upstream's JSON-RPC response to one request: its error as sent, or its result
        without the fields of the modern exchange itself. ``headers``: the request's
        ``Mcp-Param-*``."""
        message = self._message(method, params)
        reply = await post_message(
            self._http,
            self._target,
            message,
            self._headers(method, message["params"], headers),
            max_body_bytes=self.max_body_bytes,
            on_message=on_message,
            error_bodies=True,
        )
        if reply.message is None:  # pragma: no cover - post_message always reads requests
            raise UpstreamError("invalid-response", "upstream sent no response")
        return _plain(reply.message)

    async def request(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A request's ``result`` (``jsonrpc-error`` on an error response)."""
        return result_of(await self.exchange(method, params))

    async def list_tools(self, *, max_pages: int = 100) -> list[dict[str, Any]]:
        """Every tool of the upstream, following ``nextCursor``, in the upstream's order."""
        return await list_all_tools(self.request, max_pages=max_pages)

    async def terminate(self) -> None:
        """Nothing to end: the modern era has no sessions."""

    def _message(self, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        body = dict(params or {})
        meta = body.get("_meta")
        body["_meta"] = {
            **(meta if isinstance(meta, Mapping) else {}),
            PROTOCOL_VERSION_META: self.protocol_version,
            CLIENT_CAPABILITIES_META: {},
            CLIENT_INFO_META: CLIENT_INFO,
        }
        return {"jsonrpc": "2.0", "id": self.new_id(), "method": method, "params": body}

    def _headers(
        self, method: str, params: Mapping[str, Any], extra: Mapping[str, str] | None
    ) -> CIMultiDict[str]:
        headers = self._base.copy()
        headers[METHOD_HEADER] = method
        field = NAME_FIELDS.get(method)
        name = params.get(field) if field is not None else None
        if isinstance(name, str):
            headers[NAME_HEADER] = encode_value(name)
        for key, value in (extra or {}).items():
            headers[key] = value
        return headers


def _metadata_header(name: str) -> bool:
    lower = name.lower()
    return lower in (METHOD_HEADER.lower(), NAME_HEADER.lower()) or lower.startswith(
        PARAM_HEADER_PREFIX.lower()
    )


def _plain(response: dict[str, Any]) -> dict[str, Any]:
    """`response` with its result as the legacy era would carry it: no `resultType`, cache
    hints or `io.modelcontextprotocol/` `_meta` (they describe this hop). A result that is not
    complete asks for input (sampling, elicitation) the gateway never offers."""
    result = response.get("result")
    if not isinstance(result, dict):
        return response
    kind = result.get("resultType", "complete")
    if kind != "complete":
        raise UpstreamError(
            "invalid-response", "upstream asked for client input, which the gateway cannot give"
        )
    plain = {k: v for k, v in result.items() if k not in _EXCHANGE_FIELDS}
    meta = result.get("_meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if not k.startswith(META_PREFIX)}
        if kept:
            plain["_meta"] = kept
        else:
            del plain["_meta"]
    return {**response, "result": plain}
