"""Control plane of mcp-gateway: the settings API, and the store and keys both planes use."""
