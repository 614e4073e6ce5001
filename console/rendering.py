"""HTML pages from the templates in console/templates (jinja2, autoescaped)."""

from __future__ import annotations

import datetime
from typing import Any

import jinja2
from aiohttp import web

from console.assets import Assets
from console.headers import secure

__all__ = ["Renderer"]


def _when(ms: int | None) -> str:
    """Epoch milliseconds as UTC time, to the second."""
    if ms is None:
        return "never"
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class Renderer:
    """Renders a template into a response carrying the console's security headers."""

    def __init__(self, assets: Assets) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("console", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.globals["asset"] = assets.url
        self._env.filters["when"] = _when

    def page(
        self,
        template: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> web.Response:
        html = self._env.get_template(template).render(**context)
        response = web.Response(
            text=html, status=status, content_type="text/html", charset="utf-8", headers=headers
        )
        secure(response)
        return response
