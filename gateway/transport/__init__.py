"""The MCP streamable HTTP transport of the data plane, over aiohttp. The protocol facts it
applies (versions, header names, error codes and `McpError`, SSE framing, the JSON codec) are
mcp_core's; one concern per module here:

- `era`: which protocol era (modern 2026-07-28, or legacy 2024-11-05 … 2025-11-25) a POST
  speaks, at which version
- `headers`: the modern request-metadata headers (Mcp-Method, Mcp-Name, MCP-Protocol-Version,
  Mcp-Param-*) checked against the body, and `Accept`
- `limits`: bounds on what one POST may carry
- `http`: what a POST or DELETE means once the endpoint's checks passed; it calls
  gateway.dispatch, which uses `era` and `limits` and never this module
"""
