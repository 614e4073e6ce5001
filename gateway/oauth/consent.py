"""The consent page: its HTML (jinja2, autoescaped, from the package's templates), the headers
that keep it safe, and the CSRF token of its form.

The page has no script at all; its one style block is allowed by hash. There is deliberately no
`form-action` directive: the approval answers with a redirect to the client's redirect URI,
and browsers apply `form-action` to that redirect too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

import jinja2
from aiohttp import web

STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}"
    "main{max-width:34rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:8px;"
    "box-shadow:0 1px 4px rgba(0,0,0,.12)}"
    "h1{font-size:1.4rem;margin-top:0}"
    ".error{background:#fdecea;color:#8a1c13;padding:.6rem .8rem;border-radius:4px}"
    "dl{display:grid;grid-template-columns:auto 1fr;gap:.2rem 1rem}"
    "dd{margin:0;overflow-wrap:anywhere}"
    "label{display:block;font-weight:600;margin-top:1rem}"
    "input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font:inherit}"
    ".buttons{display:flex;gap:1rem;margin-top:1rem}"
    "button{padding:.5rem 1.2rem;font:inherit;cursor:pointer}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CSRF_COOKIE = "mcpgw_consent"
CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE_S = 15 * 60


@dataclass(frozen=True, slots=True)
class ConsentView:
    """What the page says about the request."""

    client_id: str
    client_name: str
    client_named: bool
    redirect_host: str
    tenant_id: str
    integration_id: str
    endpoint: str  # "callUrl" or "testUrl"
    resource: str


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.oauth", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render(
    status: int,
    title: str,
    *,
    error: str | None = None,
    view: ConsentView | None = None,
    action: str = "",
    hidden: Iterable[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The page: the request and its form when `view` is given, else only `error`."""
    html = (
        _environment()
        .get_template("consent.html")
        .render(
            title=title,
            style=STYLE,
            error=error,
            request=view,
            action=action,
            hidden=list(hidden),
        )
    )
    return web.Response(
        status=status,
        text=html,
        content_type="text/html",
        charset="utf-8",
        headers={**PAGE_HEADERS, **(headers or {})},
    )


class Csrf:
    """Form tokens bound to the browser (a random cookie) and to the authorization request
    (its parameters), valid `CSRF_MAX_AGE_S`."""

    def __init__(self, secret: str, *, secure_cookie: bool) -> None:
        self._key = hmac.new(secret.encode(), b"mcpgw oauth consent csrf", hashlib.sha256).digest()
        self._secure = secure_cookie

    def nonce(self, request: web.Request) -> tuple[str, bool]:
        """The browser's nonce, and whether it is new (then `set_cookie` must send it)."""
        existing = request.cookies.get(CSRF_COOKIE, "")
        if 20 <= len(existing) <= 64 and existing.isascii():
            return existing, False
        return secrets.token_urlsafe(24), True

    def set_cookie(self, response: web.StreamResponse, nonce: str) -> None:
        # Path "/": the path the browser sees may have a proxy's prefix the gateway cannot know.
        response.set_cookie(
            CSRF_COOKIE,
            nonce,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self._secure,
            max_age=CSRF_MAX_AGE_S,
        )

    def token(self, nonce: str, bound: Iterable[str]) -> str:
        issued = str(int(time.time()))
        return f"{issued}.{self._mac(nonce, issued, bound)}"

    def valid(self, request: web.Request, token: str, bound: Iterable[str]) -> bool:
        nonce = request.cookies.get(CSRF_COOKIE, "")
        issued, _, mac = token.partition(".")
        if not nonce or not issued.isdigit() or len(issued) > 12:
            return False
        if not 0 <= time.time() - int(issued) <= CSRF_MAX_AGE_S:
            return False
        return hmac.compare_digest(mac, self._mac(nonce, issued, bound))

    def _mac(self, nonce: str, issued: str, bound: Iterable[str]) -> str:
        message = "\x00".join((nonce, issued, *bound)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
