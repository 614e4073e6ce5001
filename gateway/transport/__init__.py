"""The MCP streamable HTTP transport, one concern per module:

- `era`: which protocol era (modern 2026-07-28, or legacy 2025-*) a POST speaks, at which version
- `headers`: the modern request-metadata headers (Mcp-Method, Mcp-Name, MCP-Protocol-Version,
  Mcp-Param-*) checked against the body, and `Accept`
- `sse`: Server-Sent Events framing
- `errors`: JSON-RPC error codes, the one error type `McpError`, and the HTTP status each
  answer gets, per era
- `limits`: bounds on what one POST may carry
- `http`: what a POST or DELETE means once the endpoint's checks passed; it calls
  gateway.dispatch, which uses `errors`, `era` and `limits` and never this module
"""
