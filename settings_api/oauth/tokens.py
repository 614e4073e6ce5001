"""Access tokens, refresh tokens and authorization codes: opaque random strings, stored as
their SHA-256 like API keys (settings_api/keys.py)."""

from __future__ import annotations

import hashlib
import secrets

ACCESS_PREFIX = "mcpat_"
REFRESH_PREFIX = "mcprt_"
CODE_PREFIX = "mcpac_"
# 32 random bytes, URL-safe base64 without padding.
_RANDOM_LEN = 43
TOKEN_LEN = len(ACCESS_PREFIX) + _RANDOM_LEN


def _new(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def new_access_token() -> str:
    return _new(ACCESS_PREFIX)


def new_refresh_token() -> str:
    return _new(REFRESH_PREFIX)


def new_code() -> str:
    return _new(CODE_PREFIX)


def _has_shape(raw: str, prefix: str) -> bool:
    return len(raw) == TOKEN_LEN and raw.isascii() and raw.startswith(prefix)


def has_access_token_shape(raw: str) -> bool:
    """True when `raw` is ASCII, `TOKEN_LEN` long and starts with `ACCESS_PREFIX`: cheap, and
    safe to run before `hash_token` on anything a client sent."""
    return _has_shape(raw, ACCESS_PREFIX)


def has_refresh_token_shape(raw: str) -> bool:
    return _has_shape(raw, REFRESH_PREFIX)


def has_code_shape(raw: str) -> bool:
    return _has_shape(raw, CODE_PREFIX)


def hash_token(raw: str) -> str:
    """SHA-256 hex digest: what the store keeps (`raw` must be ASCII: check its shape first)."""
    return hashlib.sha256(raw.encode("ascii")).hexdigest()
