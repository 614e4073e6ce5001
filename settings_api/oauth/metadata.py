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


def authorization_server_metadata(public_url: str) -> dict[str, object]:
    """The RFC 8414 document (also served as the OpenID configuration clients probe)."""
    return {
        "issuer": issuer(public_url),
        "authorization_endpoint": endpoint(public_url, AUTHORIZE_PATH),
        "token_endpoint": endpoint(public_url, TOKEN_PATH),
        "registration_endpoint": endpoint(public_url, REGISTER_PATH),
        "revocation_endpoint": endpoint(public_url, REVOKE_PATH),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["mcp:invoke"],
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
    }
