"""Mounts the console on an application that serves the settings API (`--role all|settings`)."""

from __future__ import annotations

from aiohttp import web

from console.assets import STATIC_PREFIX, Assets
from console.pages import RENDERER, ROUTES
from console.rendering import Renderer
from console.sign_in_links import SIGN_IN_LINKS, SignInLinks

__all__ = ["setup_console"]

_ROUTE_PREFIX = "console."


def setup_console(app: web.Application) -> None:
    """Add /console's pages and assets to `app`, whose contexts provide the settings service."""
    assets = Assets()
    app[RENDERER] = Renderer(assets)
    app[SIGN_IN_LINKS] = SignInLinks()
    app.router.add_get(
        STATIC_PREFIX + "/{digest}/{name}", assets.handler, name=_ROUTE_PREFIX + "static"
    )
    for method, path, handler, name in ROUTES:
        app.router.add_route(method, path, handler, name=_ROUTE_PREFIX + name)
