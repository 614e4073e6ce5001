"""Signed, self-validating legacy MCP session ids (docs/mcp-endpoints.md, `Mcp-Session-Id`).

A session id carries everything needed to check it: the key it was issued to, the protocol
version negotiated by `initialize`, an expiry and a random nonce, followed by an HMAC-SHA256
over those fields. Any replica holding the same `MCPGW_SESSION_SECRET` accepts it without
shared state; only ended sessions (DELETE) and the levels set by `logging/setLevel` need the
limiter's shared store (gateway/ratelimit/), until the session expires.

Wire form (visible ASCII, as the transport requires): ``<payload>.<mac>``, both base64url
without padding; the payload is the JSON array ``[1, key_id, version, expires_at, nonce]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_LIFETIME_S = 24 * 3600
_FORMAT = 1
_MAX_TOKEN_CHARS = 512  # far above a real token (~150); rejects junk before any work
_KEY_CONTEXT = b"mcp-gateway/legacy-session-id/v1"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a valid session id says."""

    key_id: str
    protocol_version: str
    expires_at: float  # Unix epoch seconds
    nonce: str


class SessionCodec:
    """Mints and verifies session ids with one secret (all replicas must share it)."""

    def __init__(
        self,
        secret: str,
        *,
        lifetime_s: float = DEFAULT_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("the session secret must not be empty")
        if lifetime_s <= 0:
            raise ValueError("lifetime_s must be positive")
        # A derived key: the configured secret is never used raw, so reusing it elsewhere
        # cannot turn another MAC into a valid session id.
        self._key = hmac.new(secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()
        self.lifetime_s = lifetime_s
        self._clock = clock

    def mint(self, key_id: str, version: str) -> str:
        """A new session id for `key_id` at the negotiated protocol `version`."""
        expires_at = int(self._clock() + self.lifetime_s)
        nonce = secrets.token_urlsafe(16)
        payload = _b64(
            json.dumps(
                [_FORMAT, key_id, version, expires_at, nonce], separators=(",", ":")
            ).encode()
        )
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str | None, key_id: str) -> SessionInfo | None:
        """The session `token` names, or None: malformed, bad signature, another key's,
        or expired."""
        if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            return None
        payload, dot, mac = token.rpartition(".")
        if not dot or not hmac.compare_digest(mac, self._sign(payload)):
            return None
        try:
            fields = json.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            return None
        if not (isinstance(fields, list) and len(fields) == 5 and fields[0] == _FORMAT):
            return None
        _, owner, version, expires_at, nonce = fields
        if not (
            isinstance(owner, str)
            and isinstance(version, str)
            and isinstance(expires_at, int)
            and isinstance(nonce, str)
        ):
            return None
        if owner != key_id or expires_at <= self._clock():
            return None
        return SessionInfo(
            key_id=owner, protocol_version=version, expires_at=float(expires_at), nonce=nonce
        )

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
