"""Ready-to-paste MCP client configurations for an integration's URL and key (console, demo)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["claude_desktop_config", "cursor_config"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def cursor_config(name: str, call_url: str, api_key: str) -> dict[str, Any]:
    """Cursor's `mcp.json`: a remote server with the key as a header."""
    return {
        "mcpServers": {name: {"url": call_url, "headers": {"Authorization": f"Bearer {api_key}"}}}
    }


def claude_desktop_config(name: str, call_url: str, api_key: str) -> dict[str, Any]:
    """Claude Desktop's `claude_desktop_config.json`, bridged to the URL by mcp-remote."""
    args = ["-y", "mcp-remote", call_url, "--header", "Authorization:${AUTH_HEADER}"]
    parts = urlsplit(call_url)
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        args.append("--allow-http")  # mcp-remote refuses plain HTTP beyond localhost otherwise
    return {
        "mcpServers": {
            name: {"command": "npx", "args": args, "env": {"AUTH_HEADER": f"Bearer {api_key}"}}
        }
    }
