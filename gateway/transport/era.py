"""Which protocol era a POST speaks, and at which version (docs/mcp-endpoints.md).

- A message whose `params._meta` names `io.modelcontextprotocol/protocolVersion` is modern.
- So is one whose `MCP-Protocol-Version` header names a version that is not a legacy one
  (a modern version, or one we do not know: it is then answered with -32022).
- Everything else is legacy, at the header's version, or 2025-03-26 without the header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_core.headers import PROTOCOL_VERSION_HEADER
from mcp_core.versions import (
    DEFAULT_LEGACY_VERSION,
    LEGACY_VERSIONS,
    PROTOCOL_VERSION_META,
    Era,
)

MISSING: Any = object()


@dataclass(slots=True)  # not frozen: see gateway.context.Decision
class EraChoice:
    era: Era
    # The version the message claims: the `_meta` value (any JSON type; checked later), else
    # the header, else the legacy default.
    version: Any
    header: str | None  # the raw MCP-Protocol-Version header, if any
    in_meta: bool  # the version came from the body's `_meta`


def meta_version(message: Any) -> Any:
    """`params._meta["io.modelcontextprotocol/protocolVersion"]` of a message, or MISSING."""
    if not isinstance(message, dict):
        return MISSING
    params = message.get("params")
    if not isinstance(params, dict):
        return MISSING
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        return MISSING
    return meta.get(PROTOCOL_VERSION_META, MISSING)


def detect(headers: Mapping[str, str], body: Any) -> EraChoice:
    """The era of a parsed POST body (a message or a batch) and its headers."""
    header = headers.get(PROTOCOL_VERSION_HEADER)
    if isinstance(body, list):
        version = next((v for v in map(meta_version, body) if v is not MISSING), MISSING)
    else:
        version = meta_version(body)
    if version is not MISSING:
        return EraChoice(Era.MODERN, version, header, True)
    if header is not None and header not in LEGACY_VERSIONS:
        return EraChoice(Era.MODERN, header, header, False)
    return EraChoice(Era.LEGACY, header or DEFAULT_LEGACY_VERSION, header, False)
