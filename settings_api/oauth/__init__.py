"""OAuth 2.1 authorization server for the MCP endpoints: the gateway approves a client with the
integration's API key (docs/mcp-endpoints.md, "OAuth")."""
