"""API keys for the MCP endpoints (docs/mcp-endpoints.md).

Format: ``mcpk_`` + 32 base62 random characters + 6 base62 characters of the CRC32 of the random
part, 43 characters in all. Only the SHA-256 of a key is stored; the checksum lets both planes
reject a mistyped or forged-looking key without touching the store.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
import zlib
from dataclasses import dataclass

PREFIX = "mcpk_"
SCOPE = "mcp:invoke"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALPHABET_SET = frozenset(_ALPHABET)
_RANDOM_LEN = 32
_CHECK_LEN = 6
KEY_LEN = len(PREFIX) + _RANDOM_LEN + _CHECK_LEN
KEY_PREFIX_LEN = 12


class InvalidKeyFormat(ValueError):
    """The string cannot be an API key (wrong shape or checksum)."""


@dataclass(frozen=True, slots=True)
class MintedKey:
    """A freshly minted key: `raw` is shown to the user once, the rest is stored."""

    key_id: str
    raw: str
    key_hash: str
    key_prefix: str


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        digits.append(_ALPHABET[rem])
    return "".join(reversed(digits))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), _CHECK_LEN)


def hash_key(raw: str) -> str:
    """SHA-256 hex digest of a key: what the store keeps and indexes (`raw` must be ASCII:
    check `has_key_shape` first)."""
    return hashlib.sha256(raw.encode("ascii")).hexdigest()


def mint() -> MintedKey:
    """Create a new random key with scope `mcp:invoke`."""
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LEN))
    raw = PREFIX + random_part + _checksum(random_part)
    return MintedKey(
        key_id=str(uuid.uuid4()), raw=raw, key_hash=hash_key(raw), key_prefix=raw[:KEY_PREFIX_LEN]
    )


def has_key_shape(raw: str) -> bool:
    """True when `raw` is ASCII, `KEY_LEN` long and starts with `PREFIX`: the cheap part of
    `check_format`, safe to run before `hash_key` on anything a client sent."""
    return len(raw) == KEY_LEN and raw.isascii() and raw.startswith(PREFIX)


def check_format(raw: str) -> None:
    """Raise `InvalidKeyFormat` unless `raw` has the key shape and a valid checksum."""
    if not has_key_shape(raw):
        raise InvalidKeyFormat("not an mcp-gateway API key")
    body = raw[len(PREFIX) :]
    if not _ALPHABET_SET.issuperset(body):
        raise InvalidKeyFormat("not an mcp-gateway API key")
    random_part, check = body[:_RANDOM_LEN], body[_RANDOM_LEN:]
    if not hmac.compare_digest(_checksum(random_part), check):
        raise InvalidKeyFormat("API key checksum mismatch")


def verify_hash(raw: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented key against a stored hash."""
    return hmac.compare_digest(hash_key(raw), stored_hash)
