"""MCP protocol facts and the upstream MCP client, shared by the data plane (gateway), the
control plane (settings_api) and the example upstream; it imports neither plane."""
