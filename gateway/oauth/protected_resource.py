"""RFC 9728 protected resource metadata of each integration URL (callUrl, testUrl), and the
URLs the 401 challenge names: where an OAuth-only MCP client learns that the gateway is the
authorization server for that URL (docs/mcp-endpoints.md, "OAuth").

Each document sits at the path-inserted well-known URL of its resource
(`/.well-known/oauth-protected-resource/v1/tenants/{t}/integrations/{i}/mcp:call`); the root
document stays 404, as do unknown and disabled integrations.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from gateway.context import MCP_PATH, Endpoint, mcp_path
from gateway.oauth.cors import CORS_HEADERS, preflight
from gateway.state import GATEWAY
from settings_api.http import SETTINGS, problem_response
from settings_api.oauth.metadata import PR_WELL_KNOWN, issuer, resource_metadata_url
from settings_api.problems import NotFound, Problem

# The metadata is public and the same for every caller.
_HEADERS = {**CORS_HEADERS, "Cache-Control": "public, max-age=60"}


def setup_protected_resource(app: web.Application) -> None:
    """Serve the metadata of every integration URL (GET; HEAD answered alike; CORS)."""
    path = PR_WELL_KNOWN + MCP_PATH + "{endpoint}"
    resource = app.router.add_resource(path, name="oauth.protected-resource")
    resource.add_route("GET", _metadata)
    resource.add_route("HEAD", _metadata)
    resource.add_route("OPTIONS", preflight)


def resource_path(request: web.Request, endpoint: Endpoint) -> str:
    """The path of the callUrl or testUrl `request` names, percent-encoded as in a URL (so it
    is safe inside a quoted header parameter whatever the client sent)."""
    tenant, integration = request.match_info["tenant"], request.match_info["integration"]
    return quote(mcp_path(tenant, integration, endpoint), safe="/:")


def resource_url(public_url: str, path: str) -> str:
    """The resource identifier (RFC 8707) of the integration URL at `path`: what a token for
    it names, built from MCPGW_PUBLIC_URL, never from the Host a request arrived on."""
    return public_url + path


def challenge_url(request: web.Request, endpoint: Endpoint) -> str:
    """The `resource_metadata` of a 401 on that integration URL."""
    return resource_metadata_url(request.app[SETTINGS].public_url, resource_path(request, endpoint))


async def _metadata(request: web.Request) -> web.StreamResponse:
    try:
        endpoint = Endpoint(request.match_info["endpoint"])
    except ValueError:
        return _not_found(request)
    try:
        view = await request.app[GATEWAY].resolver.integration(
            request.match_info["tenant"], request.match_info["integration"]
        )
    except Problem as problem:  # the store is unreachable and nothing is cached
        return problem_response(problem, request)
    if view is None or not view.enabled:
        return _not_found(request)
    public_url = request.app[SETTINGS].public_url
    document = {
        "resource": resource_url(public_url, resource_path(request, endpoint)),
        "authorization_servers": [issuer(public_url)],
        "bearer_methods_supported": ["header"],
    }
    return web.json_response(document, headers=_HEADERS)


def _not_found(request: web.Request) -> web.Response:
    response = problem_response(
        NotFound("no MCP endpoint with OAuth here: the integration is unknown or disabled"),
        request,
    )
    response.headers.update(_HEADERS)
    return response
