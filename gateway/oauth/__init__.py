"""The OAuth 2.1 endpoints MCP clients talk to, served with the data plane."""
