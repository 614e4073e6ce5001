"""The console's sign-in state: the settings-API token in an HttpOnly, SameSite=Strict cookie
scoped to /console, and the CSRF token every state-changing form carries (bound to it).

A cookie rather than sessionStorage because the pages are rendered on the server: every
navigation must carry the token, and script must never be able to read it (docs/console.md).
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from settings_api.http import SETTINGS

__all__ = ["COOKIE", "clear_token", "csrf_token", "set_token", "token_of", "valid_csrf"]

COOKIE = "mcpgw_console"
COOKIE_PATH = "/console"
_MAX_TOKEN_CHARS = 16_384


def token_of(request: web.Request) -> str | None:
    """The token the browser holds, if any."""
    token = request.cookies.get(COOKIE, "").strip()
    return token if token and len(token) <= _MAX_TOKEN_CHARS else None


def set_token(request: web.Request, response: web.StreamResponse, token: str) -> None:
    """Keep `token` for this browser session (no expiry: it ends with the browser, and the
    token's own `exp` still applies)."""
    response.set_cookie(
        COOKIE,
        token,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.app[SETTINGS].public_url.startswith("https:"),
    )


def clear_token(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH)


def _csrf_key(request: web.Request) -> bytes:
    # MCPGW_SESSION_SECRET is shared by every replica, so any replica accepts a page's forms.
    secret = request.app[SETTINGS].session_secret.encode()
    return hmac.new(secret, b"mcp-gateway console csrf", hashlib.sha256).digest()


def csrf_token(request: web.Request, token: str) -> str:
    """The CSRF token of the session whose settings-API token is `token`."""
    return hmac.new(_csrf_key(request), token.encode(), hashlib.sha256).hexdigest()


def valid_csrf(request: web.Request, token: str, given: object) -> bool:
    """True when `given` (a form field) is the session's CSRF token."""
    if not isinstance(given, str) or not given.isascii():
        return False
    return hmac.compare_digest(given.encode(), csrf_token(request, token).encode())
