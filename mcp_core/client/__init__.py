"""MCP client for upstream servers (Streamable HTTP transport, both protocol eras).

The control plane reads an upstream's tool catalog with :func:`fetch_tool_catalog`; the data
plane proxies ``tools/call`` over a :class:`StatelessUpstream` (2026-07-28) or an
:class:`UpstreamSession` (legacy), whichever :func:`connect` finds the upstream speaks. Both
send every request through the one HTTP client they are given (an :class:`HttpClient`: the
application's aiohttp session, settings_api.egress.create_upstream_client). Modules:

- ``http_client``: what the client needs of that HTTP client, the session settings it is made
  with (:func:`create_http_client`), and the URL requests go to;
- ``exchange``: one JSON-RPC exchange: the request's headers (the tenant-header policy), the
  POST, the answer read as JSON or SSE within size and depth bounds;
- ``session``: an MCP session (legacy era): initialize, the session id, tools/list, DELETE;
- ``stateless``: the modern era (2026-07-28): per-request ``_meta`` and headers, no session;
- ``negotiation``: ``server/discover`` first, the handshake when the upstream is legacy;
- ``listing``: tools/list's pages, in either era;
- ``catalog``: a whole catalog read within one deadline;
- ``errors``: :class:`UpstreamError` and its reasons.

Tenant header values and URL credentials are secrets: their values never go into exception
messages or logs, and are scrubbed from upstream text passed on (mcp_core.redaction).
"""

from mcp_core.client.catalog import fetch_tool_catalog
from mcp_core.client.errors import (
    UNREACHABLE_MESSAGE,
    UPSTREAM_ERROR_REASONS,
    AddressRefused,
    UpstreamError,
)
from mcp_core.client.exchange import (
    DEFAULT_MAX_BODY_BYTES,
    MessageHandler,
    RpcReply,
    mcp_headers,
    post_message,
    read_body_limited,
    read_rpc_response,
    result_of,
)
from mcp_core.client.http_client import HttpClient, create_http_client
from mcp_core.client.negotiation import PROBE_TIMEOUT_S, Upstream, connect
from mcp_core.client.session import UpstreamSession, legacy_params
from mcp_core.client.stateless import StatelessUpstream

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "PROBE_TIMEOUT_S",
    "UNREACHABLE_MESSAGE",
    "UPSTREAM_ERROR_REASONS",
    "AddressRefused",
    "HttpClient",
    "MessageHandler",
    "RpcReply",
    "StatelessUpstream",
    "Upstream",
    "UpstreamError",
    "UpstreamSession",
    "connect",
    "create_http_client",
    "fetch_tool_catalog",
    "legacy_params",
    "mcp_headers",
    "post_message",
    "read_body_limited",
    "read_rpc_response",
    "result_of",
]
