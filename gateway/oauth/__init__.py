"""The OAuth endpoints MCP clients talk to: the authorization server (authorization.py, its
consent page consent.py) and the protected resource metadata of the MCP endpoints."""
