"""Ready-to-paste MCP client configurations and connection steps for an integration's URL
(console, demo): with the key as a header, or without one through the gateway's OAuth."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "claude_desktop_config",
    "connector_steps",
    "cursor_config",
    "mcp_remote_oauth_config",
]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def cursor_config(name: str, call_url: str, api_key: str) -> dict[str, Any]:
    """Cursor's `mcp.json`: a remote server with the key as a header."""
    return {
        "mcpServers": {name: {"url": call_url, "headers": {"Authorization": f"Bearer {api_key}"}}}
    }


def _mcp_remote_args(call_url: str) -> list[str]:
    args = ["-y", "mcp-remote", call_url]
    parts = urlsplit(call_url)
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        args.append("--allow-http")  # mcp-remote refuses plain HTTP beyond localhost otherwise
    return args


def claude_desktop_config(name: str, call_url: str, api_key: str) -> dict[str, Any]:
    """Claude Desktop's `claude_desktop_config.json`, bridged to the URL by mcp-remote."""
    args = [*_mcp_remote_args(call_url), "--header", "Authorization:${AUTH_HEADER}"]
    return {
        "mcpServers": {
            name: {"command": "npx", "args": args, "env": {"AUTH_HEADER": f"Bearer {api_key}"}}
        }
    }


def mcp_remote_oauth_config(name: str, call_url: str) -> dict[str, Any]:
    """mcp-remote without a header: it runs the OAuth flow (the consent page) itself."""
    return {"mcpServers": {name: {"command": "npx", "args": _mcp_remote_args(call_url)}}}


def connector_steps(call_url: str) -> list[str]:
    """Claude.ai / Claude Desktop "Add custom connector", step by step (docs/clients.md)."""
    steps = [
        "In Claude.ai or Claude Desktop: Settings → Connectors → Add custom connector.",
        f"Give it a name and paste {call_url} as the remote MCP server URL "
        "(no OAuth client id or secret: Claude registers itself).",
        "Connect: the gateway's consent page opens; paste the integration's API key and approve. "
        "Claude then holds a token for this URL only, never the key.",
    ]
    parts = urlsplit(call_url)
    if parts.scheme != "https" or parts.hostname in _LOOPBACK:
        steps.append(
            "Claude connects from Anthropic's servers, so this needs the gateway reachable from "
            "the internet over https (MCPGW_PUBLIC_URL); this URL is not."
        )
    return steps
