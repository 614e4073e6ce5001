"""MCP protocol versions and eras, and the ``_meta`` keys that carry them in the modern era.

The modern era (2026-07-28) is stateless: each message names its version in
``params._meta``. The legacy era (2024-11-05 … 2025-11-25) negotiates one at ``initialize``
and sends it as the ``MCP-Protocol-Version`` header (mcp_core.headers).
"""

from __future__ import annotations

import enum

__all__ = [
    "CLIENT_CAPABILITIES_META",
    "CLIENT_INFO_META",
    "CLIENT_MODERN_VERSION",
    "CLIENT_VERSIONS",
    "DEFAULT_LEGACY_VERSION",
    "LATEST_LEGACY_VERSION",
    "LEGACY_VERSIONS",
    "LOG_LEVEL_META",
    "META_PREFIX",
    "MODERN_VERSIONS",
    "OLDEST_LEGACY_VERSION",
    "PROTOCOL_VERSION_META",
    "SERVER_INFO_META",
    "SUPPORTED_VERSIONS",
    "Era",
]

MODERN_VERSIONS: tuple[str, ...] = ("2026-07-28",)
LEGACY_VERSIONS: tuple[str, ...] = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
SUPPORTED_VERSIONS: tuple[str, ...] = MODERN_VERSIONS + LEGACY_VERSIONS
LATEST_LEGACY_VERSION = LEGACY_VERSIONS[0]
DEFAULT_LEGACY_VERSION = "2025-03-26"  # a request without MCP-Protocol-Version
# Before structured results, titles and tool annotations: its sessions receive results cut
# down to its schema (mcp_core/protocol_2024.py).
OLDEST_LEGACY_VERSION = LEGACY_VERSIONS[-1]

# What the upstream client (mcp_core.client) speaks: the modern version, probed with
# server/discover, and failing that the legacy handshake, which offers the first of
# CLIENT_VERSIONS and accepts any of them (tools/list and tools/call differ only in fields
# later versions added).
CLIENT_MODERN_VERSION = MODERN_VERSIONS[0]
CLIENT_VERSIONS: tuple[str, ...] = LEGACY_VERSIONS

# `_meta` keys under this prefix describe one modern-era exchange (its version, the client's
# capabilities, the server's info): they belong to the hop they arrived on.
META_PREFIX = "io.modelcontextprotocol/"
PROTOCOL_VERSION_META = f"{META_PREFIX}protocolVersion"
CLIENT_CAPABILITIES_META = f"{META_PREFIX}clientCapabilities"
SERVER_INFO_META = f"{META_PREFIX}serverInfo"
CLIENT_INFO_META = f"{META_PREFIX}clientInfo"
# A modern request's opt-in to `notifications/message` at or above this level (none without).
LOG_LEVEL_META = f"{META_PREFIX}logLevel"


class Era(enum.StrEnum):
    MODERN = "modern"
    LEGACY = "legacy"
