"""What an upstream client holds in either era: the HTTP client, the upstream's URL (parsed
once), the cap on its answers, and the ids of the requests it sends."""

from __future__ import annotations

from collections.abc import Mapping

from yarl import URL

from mcp_core.client.exchange import DEFAULT_MAX_BODY_BYTES
from mcp_core.client.http_client import HttpClient, request_url

__all__ = ["UpstreamPeer"]


class UpstreamPeer:
    """The base of :class:`~mcp_core.client.session.UpstreamSession` (legacy era) and
    :class:`~mcp_core.client.stateless.StatelessUpstream` (2026-07-28)."""

    def __init__(
        self,
        http: HttpClient,
        url: str,
        headers: Mapping[str, str],
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._http = http
        self.url = url
        # Parsed once for the peer's life (aiohttp would parse a string on every request).
        self._target: URL | str = request_url(url, headers)
        self.max_body_bytes = max_body_bytes
        self._next_id = 0

    def new_id(self) -> int:
        """A fresh JSON-RPC request id, unique among this peer's requests."""
        self._next_id += 1
        return self._next_id
