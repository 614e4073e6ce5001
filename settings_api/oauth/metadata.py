"""The issuer string and the URLs of the metadata documents (RFC 8414, RFC 9728).

Clients compare the issuer byte for byte between the protected resource metadata, the
authorization server metadata and the `iss` of the authorization response, so it is built in
one place. It ends with "/": clients that parse URLs (pydantic's AnyHttpUrl in the Python SDK)
render an origin with a trailing slash, and the string must survive that round trip."""

from __future__ import annotations

from urllib.parse import urlsplit

AS_WELL_KNOWN = "/.well-known/oauth-authorization-server"
OPENID_WELL_KNOWN = "/.well-known/openid-configuration"
PR_WELL_KNOWN = "/.well-known/oauth-protected-resource"

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
REGISTER_PATH = "/oauth/register"
REVOKE_PATH = "/oauth/revoke"


def issuer(public_url: str) -> str:
    """The gateway's issuer identifier: MCPGW_PUBLIC_URL with one trailing slash."""
    return public_url.rstrip("/") + "/"


def issuer_path(public_url: str) -> str:
    """The issuer's path without its trailing slash ("" when MCPGW_PUBLIC_URL has none)."""
    return urlsplit(public_url).path.rstrip("/")


def resource_metadata_url(public_url: str, resource_path: str) -> str:
    """The RFC 9728 metadata URL of the resource at `resource_path` (well-known inserted
    between the origin and the path)."""
    parts = urlsplit(public_url)
    return f"{parts.scheme}://{parts.netloc}{PR_WELL_KNOWN}{parts.path.rstrip('/')}{resource_path}"


def endpoint(public_url: str, path: str) -> str:
    """The absolute URL of one of the authorization server's endpoints."""
    return public_url.rstrip("/") + path
