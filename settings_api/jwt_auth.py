"""Bearer JWT verification for the settings API (docs/settings-api.md).

Two key sources: the HS256 shared secret (``MCPGW_JWT_SECRET``, also used by
``mcp-gateway token``) and an identity provider's JWKS (``MCPGW_JWT_JWKS_URL``).
All cryptography and claim validation is delegated to pyjwt; this module only
pins algorithms, picks the key source and turns failures into safe messages.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

__all__ = [
    "HMAC_ALGORITHM",
    "JWKS_ALGORITHMS",
    "JwtVerifier",
    "Principal",
    "TokenError",
    "issue_token",
]

_log = logging.getLogger(__name__)

HMAC_ALGORITHM = "HS256"
# Asymmetric only: a JWKS may publish symmetric ("oct") keys, and accepting
# HMAC algorithms on that path is the classic algorithm-confusion hole.
JWKS_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}
)
ALL_TENANTS = "*"
# aiohttp already caps a header line at 16 KiB; this keeps direct callers from
# handing pyjwt megabytes of base64 to decode.
_MAX_TOKEN_CHARS = 16_384
# RFC 7519 NumericDate claims. pyjwt converts them with int(), so it accepts "9999999999"
# (a string) and true; they must be JSON numbers.
_NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")
_JWKS_LIFESPAN_S = 300.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for and which tenants it may touch."""

    subject: str
    tenants: frozenset[str] | None  # None: every tenant ("*")
    issuer: str | None = None  # the `iss` claim: part of the token's identity (rate limit)

    def can_access(self, tenant: str) -> bool:
        """True if the token grants ``tenant``."""
        return self.tenants is None or tenant in self.tenants


class TokenError(Exception):
    """The bearer token is missing or invalid.

    The message is safe to show to the client: it never contains the token.
    """


# Most specific first: several of these subclass DecodeError/InvalidTokenError.
_ERROR_MESSAGES: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "invalid audience"),
    (jwt.InvalidIssuerError, "invalid issuer"),
    (jwt.InvalidIssuedAtError, "invalid iat claim"),
    (jwt.InvalidAlgorithmError, "unsupported algorithm"),
    (jwt.InvalidSignatureError, "invalid signature"),
    (jwt.InvalidKeyError, "invalid signing key"),
    (jwt.DecodeError, "malformed token"),
)


def _safe_message(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        # The claim name comes from our own `require` list, never from the token.
        return f"missing {exc.claim} claim"
    for exc_type, message in _ERROR_MESSAGES:
        if isinstance(exc, exc_type):
            return message
    return "invalid token"


class JwtVerifier:
    """Verifies settings-API bearer tokens against the configured key source(s)."""

    def __init__(
        self,
        *,
        secret: str | None,
        jwks_url: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_s: float = 30.0,
        jwks_timeout_s: float = 5.0,
    ) -> None:
        if not secret and not jwks_url:
            raise ValueError("JwtVerifier needs a secret or a jwks_url")
        if jwks_timeout_s <= 0:
            raise ValueError("jwks_timeout_s must be positive")
        if jwks_url and not audience:
            # An IdP signs tokens for all its applications with the same keys: without an
            # audience, one issued for another application would be accepted here.
            raise ValueError("a JWKS needs an audience")
        self._secret = secret or None
        self._audience = audience or None
        self._issuer = issuer or None
        self._leeway_s = leeway_s
        self._jwks_timeout_s = jwks_timeout_s
        self._jwks: jwt.PyJWKClient | None = None
        if jwks_url:
            try:
                # Only the JWK-set cache (TTL-bound): the per-kid LRU cache never
                # expires, so a key the IdP withdrew would stay trusted until restart.
                self._jwks = jwt.PyJWKClient(
                    jwks_url,
                    cache_jwk_set=True,
                    lifespan=_JWKS_LIFESPAN_S,
                    timeout=jwks_timeout_s,
                )
            except jwt.PyJWKClientError as exc:
                raise ValueError(f"invalid JWKS URL: {exc}") from exc

    async def verify(self, token: str) -> Principal:
        """Verify ``token`` and return its principal, or raise TokenError."""
        if not isinstance(token, str) or not token:
            raise TokenError("missing bearer token")
        # A JWT is ASCII (base64url and dots); anything else, such as a header's raw
        # non-UTF-8 bytes, is malformed before pyjwt tries to encode it.
        if len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            raise TokenError("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None

        alg = header.get("alg")
        key: Any
        if alg == HMAC_ALGORITHM and self._secret is not None:
            key = self._secret
        elif isinstance(alg, str) and alg in JWKS_ALGORITHMS and self._jwks is not None:
            key = await self._signing_key(self._jwks, header.get("kid"))
        else:
            # Covers "none", HS384/HS512 and any algorithm whose key source is
            # not configured (e.g. HS256 when only a JWKS is trusted).
            raise TokenError("unsupported algorithm")

        claims = self._decode(token, key, alg)
        return Principal(subject=_subject(claims), tenants=_tenants(claims), issuer=_issuer(claims))

    async def _signing_key(self, client: jwt.PyJWKClient, kid: object) -> jwt.PyJWK:
        if not isinstance(kid, str) or not kid:
            raise TokenError("signing key not found")
        try:
            # PyJWKClient does blocking urllib I/O; keep it off the event loop.
            # wait_for bounds the caller even when urllib's per-operation
            # timeout adds up (connect + slow reads); the thread ends on its own.
            return await asyncio.wait_for(
                asyncio.to_thread(client.get_signing_key, kid),
                timeout=self._jwks_timeout_s,
            )
        except TimeoutError:
            _log.warning("JWKS fetch timed out after %.1fs", self._jwks_timeout_s)
            raise TokenError("JWKS unavailable") from None
        except jwt.PyJWKClientConnectionError as exc:
            _log.warning("JWKS fetch failed: %s", exc)
            raise TokenError("JWKS unavailable") from None
        except jwt.PyJWKClientError:
            # Raised when no key in the (possibly refreshed) set matches the kid.
            raise TokenError("signing key not found") from None
        except (jwt.PyJWTError, ValueError) as exc:
            # Unparsable or key-less JWKS document (bad JSON is a ValueError).
            _log.warning("JWKS document unusable: %s", type(exc).__name__)
            raise TokenError("JWKS unavailable") from None

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        require = ["exp"]
        if self._audience is not None:
            require.append("aud")
        if self._issuer is not None:
            require.append("iss")
        try:
            # `algorithms` is exactly the header alg we already vetted; with a
            # PyJWK key pyjwt additionally insists it matches the key's own alg.
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                options={"require": require, "verify_aud": self._audience is not None},
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
            )
        except jwt.PyJWTError as exc:
            raise TokenError(_safe_message(exc)) from None
        except (ValueError, TypeError):
            # Defensive: odd inputs surfacing from the crypto backend.
            raise TokenError("invalid token") from None
        for name in _NUMERIC_DATE_CLAIMS:
            if name in claims and not _is_numeric_date(claims[name]):
                raise TokenError(f"invalid {name} claim")  # the name is ours, not the token's
        return claims


def _is_numeric_date(value: object) -> bool:
    # bool is an int subclass, and JSON true is not a number; an int may be too large for a
    # float (isfinite would raise), a float may be NaN or Infinity (Python's JSON reads both).
    if isinstance(value, int):
        return not isinstance(value, bool)
    return isinstance(value, float) and math.isfinite(value)


def _subject(claims: Mapping[str, Any]) -> str:
    sub = claims.get("sub")
    return sub if isinstance(sub, str) and sub else "unknown"


def _issuer(claims: Mapping[str, Any]) -> str | None:
    iss = claims.get("iss")
    return iss if isinstance(iss, str) and iss else None


def _tenants(claims: Mapping[str, Any]) -> frozenset[str] | None:
    """Tenants granted by `tenants` (list) and/or `tenant` (string); None = all."""
    granted: set[str] = set()
    if "tenants" in claims:
        value = claims["tenants"]
        if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
            raise TokenError("token grants no tenant")
        granted.update(value)
    if "tenant" in claims:
        value = claims["tenant"]
        if not isinstance(value, str) or not value:
            raise TokenError("token grants no tenant")
        granted.add(value)
    if not granted:
        raise TokenError("token grants no tenant")
    if ALL_TENANTS in granted:
        return None
    return frozenset(granted)


def issue_token(
    secret: str,
    tenant: str,
    *,
    ttl_s: int = 3600,
    subject: str | None = None,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """HS256 token with claims sub, tenants=[tenant] ("*" = all), iat, exp (+ aud/iss).

    Used by `mcp-gateway token`; ``subject`` defaults to ``cli:<tenant>``.
    """
    if not secret:
        raise ValueError("secret must not be empty")
    if not tenant:
        raise ValueError("tenant must not be empty")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject or f"cli:{tenant}",
        "tenants": [tenant],
        "iat": now,
        "exp": now + ttl_s,
    }
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=HMAC_ALGORITHM)
