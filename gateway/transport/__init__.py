"""The MCP streamable HTTP transport, one concern per module:

- `era`: which protocol era (modern 2026-07-28, or legacy 2025-*) a POST speaks, at which version
- `headers`: the modern request-metadata headers (Mcp-Method, Mcp-Name, MCP-Protocol-Version,
  Mcp-Param-*) checked against the body, and `Accept`
- `sse`: Server-Sent Events framing
- `errors`: JSON-RPC error codes and the HTTP status each gets, per era
- `http`: what a POST or DELETE means once the endpoint's checks passed (import it directly:
  it depends on gateway.dispatch, which depends on `errors`)
"""
