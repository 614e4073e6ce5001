"""The console's static files, served from memory under a content digest so browsers may cache
them for good: a new release has new URLs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from console.headers import secure

__all__ = ["STATIC_PREFIX", "Assets"]

STATIC_PREFIX = "/console/static"
_TYPES = {".css": "text/css", ".js": "text/javascript"}
_NAMES = ("console.css", "console.js")


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str
    digest: str


class Assets:
    """console/static/*, read once at start-up (a few KiB)."""

    def __init__(self) -> None:
        files = resources.files("console") / "static"
        self._assets: dict[str, _Asset] = {}
        for name in _NAMES:
            body = (files / name).read_bytes()
            suffix = name[name.rindex(".") :]
            digest = hashlib.sha256(body).hexdigest()[:16]
            self._assets[name] = _Asset(body, _TYPES[suffix], digest)

    def url(self, name: str) -> str:
        """The cache-forever URL of asset `name`."""
        return f"{STATIC_PREFIX}/{self._assets[name].digest}/{name}"

    async def handler(self, request: web.Request) -> web.StreamResponse:
        asset = self._assets.get(request.match_info["name"])
        if asset is None or request.match_info["digest"] != asset.digest:
            return secure(web.Response(status=404, text="not found"))
        etag = f'"{asset.digest}"'
        if request.headers.get("If-None-Match") == etag:
            return secure(web.Response(status=304, headers={"ETag": etag}), cacheable=True)
        response = web.Response(
            body=asset.body,
            content_type=asset.content_type,
            charset="utf-8",
            headers={"Cache-Control": "public, max-age=31536000, immutable", "ETag": etag},
        )
        return secure(response, cacheable=True)
