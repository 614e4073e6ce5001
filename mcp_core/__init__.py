"""MCP protocol facts and the upstream MCP client, shared by the data plane (gateway), the
control plane (settings_api) and the example upstream; it imports neither plane.

Importing the package itself loads nothing: the simulator uses mcp_core.json_codec and
mcp_core.results and must stay free of the network stack.
"""
