"""Security headers of every console response (pages and assets)."""

from __future__ import annotations

from aiohttp import web

# No inline script or style anywhere: every script and stylesheet is a file under
# /console/static, so 'self' suffices and injected markup cannot run.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_COMMON = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def secure(response: web.StreamResponse, *, cacheable: bool = False) -> web.StreamResponse:
    """`response` with the console's headers; pages are never cached (one may hold a key)."""
    response.headers.update(_COMMON)
    if not cacheable:
        response.headers["Cache-Control"] = "no-store"
    return response
