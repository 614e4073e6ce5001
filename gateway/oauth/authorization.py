"""The authorization server's HTTP endpoints (docs/mcp-endpoints.md, "OAuth"): metadata
(RFC 8414, and the OpenID alias clients probe), registration (RFC 7591), the authorization
endpoint with its consent page, the token endpoint and revocation (RFC 7009).

The grant logic is settings_api/oauth/grants.py; this module is HTTP: reading the requests
within bounds, the OAuth error answers, the page. Until the client's redirect URI is trusted
(a known client, an exact registered URI) every error is a 4xx page; after it, errors go back
to the client as RFC 6749 error redirects carrying `state` and `iss` (RFC 9207)."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from aiohttp import web
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    OAuth2Error,
    UnsupportedGrantTypeError,
)

from gateway.oauth.consent import CSRF_FIELD, ConsentView, Csrf, render
from gateway.oauth.cors import CORS_HEADERS, preflight
from gateway.observability.middleware import note_outcome, note_reason
from gateway.ratelimit.auth_failures import throttle_key
from gateway.state import GATEWAY
from settings_api.http import HTTP_CLIENT, SETTINGS, client_address, read_bounded
from settings_api.oauth import metadata
from settings_api.oauth.clients import (
    ClientMetadataInvalid,
    ClientRegistry,
    ClientUnavailable,
    redirect_uri_problem,
)
from settings_api.oauth.grants import (
    ApprovalRefused,
    OAuthGrants,
    Resource,
    parse_resource,
    valid_code_challenge,
)
from settings_api.routes import SERVICE
from settings_api.store import OAuthClient

# Form and JSON bodies of these endpoints are small: a code, a verifier, a few URLs.
MAX_BODY_BYTES = 16 * 1024
MAX_FIELDS = 32
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM = "application/x-www-form-urlencoded"
# The rate limiter's buckets of client registrations, per client address.
REGISTRATION_BUCKET = "oauth-register:"
# The authorization request's parameters the consent form carries back.
_CARRIED = (
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "state",
    "resource",
    "scope",
)


@dataclass(frozen=True, slots=True)
class AuthorizationServer:
    """What the endpoints share: the grant logic, the client registry, the CSRF tokens."""

    grants: OAuthGrants
    clients: ClientRegistry
    public_url: str
    csrf: Csrf

    @property
    def issuer(self) -> str:
        return metadata.issuer(self.public_url)


OAUTH_SERVER: web.AppKey[AuthorizationServer] = web.AppKey("oauth_server", AuthorizationServer)


async def authorization_server_ctx(app: web.Application) -> AsyncIterator[None]:
    """The authorization server over the app's settings service and its one egress-checked
    HTTP client (client ID metadata documents are fetched with it)."""
    settings = app[SETTINGS]
    service = app[SERVICE]
    app[OAUTH_SERVER] = AuthorizationServer(
        grants=service.oauth,
        clients=ClientRegistry(service.store, app[HTTP_CLIENT]),
        public_url=settings.public_url,
        csrf=Csrf(
            settings.session_secret, secure_cookie=settings.public_url.startswith("https://")
        ),
    )
    yield


def setup_authorization_server(app: web.Application) -> None:
    """Add the authorization server's routes (metadata, register, authorize, token, revoke)."""
    app.cleanup_ctx.append(authorization_server_ctx)
    path = metadata.issuer_path(app[SETTINGS].public_url)
    documents = {
        metadata.AS_WELL_KNOWN,
        metadata.AS_WELL_KNOWN + path,
        metadata.OPENID_WELL_KNOWN,
        metadata.OPENID_WELL_KNOWN + path,
        path + metadata.OPENID_WELL_KNOWN,
    }
    for document in sorted(documents):
        app.router.add_get(document, _metadata, name=None, allow_head=True)
        app.router.add_route("OPTIONS", document, preflight)
    app.router.add_get(metadata.AUTHORIZE_PATH, _authorize_page, name="oauth.authorize")
    app.router.add_post(metadata.AUTHORIZE_PATH, _authorize_decision, name="oauth.approve")
    for route, handler in (
        (metadata.TOKEN_PATH, _token),
        (metadata.REGISTER_PATH, _register),
        (metadata.REVOKE_PATH, _revoke),
    ):
        name = "oauth." + route.rsplit("/", 1)[-1]
        app.router.add_post(route, handler, name=name)
        app.router.add_route("OPTIONS", route, preflight, name=name + ".preflight")


# metadata ------------------------------------------------------------------------------------
async def _metadata(request: web.Request) -> web.Response:
    document = metadata.authorization_server_metadata(request.app[SETTINGS].public_url)
    return web.json_response(
        document, headers={**CORS_HEADERS, "Cache-Control": "public, max-age=300"}
    )


# registration --------------------------------------------------------------------------------
async def _register(request: web.Request) -> web.Response:
    server = request.app[OAUTH_SERVER]
    # Registration is open to anyone and writes to the store: each address gets the tools/call
    # bucket of a key (MCPGW_RATE_LIMIT_RPS / _BURST), shared by every replica through Redis.
    address = client_address(request, request.app[SETTINGS].trust_forwarded)
    decision = await request.app[GATEWAY].limiter.check(
        REGISTRATION_BUCKET + throttle_key(address), tools_call=True
    )
    if not decision.allowed:
        wait = str(max(1, math.ceil(decision.retry_after_s)))
        refused = _json(
            {
                "error": "temporarily_unavailable",
                "error_description": f"too many registrations from this address; retry in {wait} s",
            },
            429,
        )
        refused.headers["Retry-After"] = wait
        return refused
    try:
        if request.content_type != "application/json":
            raise ClientMetadataInvalid("invalid_client_metadata", "send the metadata as JSON")
        raw = await _read_body(request)
        try:
            body = json.loads(raw)
        except ValueError:
            raise ClientMetadataInvalid("invalid_client_metadata", "the body is not JSON") from None
        client = await server.clients.register(body)
    except ClientMetadataInvalid as exc:
        return _json({"error": exc.error, "error_description": exc.description}, 400)
    except _BodyRefused as exc:
        return _json({"error": "invalid_client_metadata", "error_description": str(exc)}, 413)
    answer: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at // 1000,
        "redirect_uris": client.redirect_uris,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    }
    if client.client_name is not None:
        answer["client_name"] = client.client_name
    return _json(answer, 201)


# authorization endpoint ----------------------------------------------------------------------
class _PageError(Exception):
    """An error shown on the page (the redirect URI is not trusted, or not yet)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _RedirectError(Exception):
    """An error sent back to the client's (trusted) redirect URI."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class _Request:
    """A valid authorization request."""

    client: OAuthClient
    redirect_uri: str
    state: str | None
    code_challenge: str
    resource: Resource
    params: dict[str, str]  # what the consent form carries back

    def view(self) -> ConsentView:
        endpoint = "callUrl" if self.resource.url.endswith(":call") else "testUrl"
        return ConsentView(
            client_id=self.client.client_id,
            client_name=self.client.client_name or self.client.client_id,
            client_named=self.client.client_name is not None,
            redirect_host=urlsplit(self.redirect_uri).netloc,
            tenant_id=self.resource.tenant_id,
            integration_id=self.resource.integration_id,
            endpoint=endpoint,
            resource=self.resource.url,
        )

    def bound(self) -> tuple[str, ...]:
        """The values a CSRF token is bound to."""
        return tuple(self.params.get(name, "") for name in _CARRIED)


async def _authorize_page(request: web.Request) -> web.StreamResponse:
    """GET: validate the request and show the consent page."""
    server = request.app[OAUTH_SERVER]
    try:
        params = _single_values(request.query.items())
        client, redirect_uri = await _trusted_redirect(server, params)
    except _PageError as exc:
        return _error_page(request, exc)
    except InvalidRequestError as exc:
        return _error_page(request, _PageError(400, _message(exc)))
    try:
        valid = _valid_request(server, params, client, redirect_uri)
    except _RedirectError as exc:
        _error_redirect(server, redirect_uri, params.get("state"), exc, web.HTTPFound)
    return _consent(request, server, valid, 200)


async def _authorize_decision(request: web.Request) -> web.StreamResponse:
    """POST: the consent form. Approve with one of the integration's keys → code; Deny → error."""
    server = request.app[OAUTH_SERVER]
    try:
        form = await _read_form(request)
        client, redirect_uri = await _trusted_redirect(server, form)
    except _PageError as exc:
        return _error_page(request, exc)
    except (_BodyRefused, InvalidRequestError) as exc:
        return _error_page(request, _PageError(400, _message(exc)))
    state = form.get("state")
    try:
        valid = _valid_request(server, form, client, redirect_uri)
    except _RedirectError as exc:
        _error_redirect(server, redirect_uri, state, exc, web.HTTPSeeOther)
    if not server.csrf.valid(request, form.get(CSRF_FIELD, ""), valid.bound()):
        # Not the browser the page was shown to, or too late: show the page again.
        return _consent(
            request, server, valid, 400, "The form expired or came from elsewhere; try again."
        )
    if form.get("decision") != "approve":
        denied = _RedirectError("access_denied", "the request was denied")
        _error_redirect(server, redirect_uri, state, denied, web.HTTPSeeOther)
    throttle = request.app[GATEWAY].auth_throttle
    address = client_address(request, request.app[SETTINGS].trust_forwarded)
    if throttle is not None:
        wait = throttle.retry_after(address)
        if wait is not None:
            note_outcome(request, "auth_throttled")
            note_reason(request, "throttled")
            message = f"Too many failed attempts from this address; try again in {int(wait) + 1} s."
            return _consent(
                request, server, valid, 429, message, {"Retry-After": str(int(wait) + 1)}
            )
    try:
        code = await server.grants.approve(
            client, redirect_uri, valid.code_challenge, valid.resource, form.get("api_key", "")
        )
    except ApprovalRefused as exc:
        note_reason(request, "consent-refused")
        if throttle is not None:
            await throttle.failed(address)
        return _consent(request, server, valid, 403, str(exc))
    answer = {"code": code, "iss": server.issuer}
    if state is not None:
        answer["state"] = state
    raise web.HTTPSeeOther(_with_query(redirect_uri, answer), headers=_NO_STORE)


async def _trusted_redirect(
    server: AuthorizationServer, params: Mapping[str, str]
) -> tuple[OAuthClient, str]:
    """The client and the redirect URI, once both are known good."""
    client_id = params.get("client_id")
    if not client_id:
        raise _PageError(400, "The request names no client (client_id).")
    try:
        client = await server.clients.find(client_id)
    except ClientUnavailable as exc:
        raise _PageError(400, f"The client cannot be used: {exc}.") from None
    if client is None:
        raise _PageError(400, "The client is not registered with this gateway.")
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is None:
        if len(client.redirect_uris) != 1:
            raise _PageError(400, "The request names no redirect_uri.")
        redirect_uri = client.redirect_uris[0]
    if redirect_uri not in client.redirect_uris or redirect_uri_problem(redirect_uri):
        raise _PageError(400, "The redirect_uri is not one the client registered.")
    return client, redirect_uri


def _valid_request(
    server: AuthorizationServer,
    params: Mapping[str, str],
    client: OAuthClient,
    redirect_uri: str,
) -> _Request:
    if params.get("response_type") != "code":
        raise _RedirectError("unsupported_response_type", "response_type must be code")
    challenge = params.get("code_challenge")
    if not challenge:
        raise _RedirectError("invalid_request", "code_challenge is required (PKCE)")
    if params.get("code_challenge_method") != "S256":
        raise _RedirectError("invalid_request", "code_challenge_method must be S256")
    if not valid_code_challenge(challenge):
        raise _RedirectError("invalid_request", "code_challenge is not an S256 challenge")
    resource_url = params.get("resource")
    if not resource_url:
        raise _RedirectError("invalid_target", "resource is required: the integration's URL")
    resource = parse_resource(server.public_url, resource_url)
    if resource is None:
        raise _RedirectError(
            "invalid_target", "resource must be an integration's callUrl or testUrl"
        )
    carried = {name: params[name] for name in _CARRIED if name in params}
    carried["redirect_uri"] = redirect_uri
    return _Request(client, redirect_uri, params.get("state"), challenge, resource, carried)


def _consent(
    request: web.Request,
    server: AuthorizationServer,
    valid: _Request,
    status: int,
    error: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    nonce, new = server.csrf.nonce(request)
    hidden = [*valid.params.items(), (CSRF_FIELD, server.csrf.token(nonce, valid.bound()))]
    response = render(
        status,
        "Approve access" if error is None else "Approval failed",
        error=error,
        view=valid.view(),
        # Relative: the form goes back to the URL the browser used, behind any proxy or host
        # name, and never carries the request's query.
        action=metadata.AUTHORIZE_PATH.rsplit("/", 1)[-1],
        hidden=hidden,
        headers=headers,
    )
    if new:
        server.csrf.set_cookie(response, nonce)
    return response


def _error_page(request: web.Request, error: _PageError) -> web.Response:
    note_reason(request, "oauth-request-invalid")
    return render(error.status, "This authorization request cannot be used", error=error.message)


def _error_redirect(
    server: AuthorizationServer,
    redirect_uri: str,
    state: str | None,
    error: _RedirectError,
    kind: type[web.HTTPFound] | type[web.HTTPSeeOther],
) -> NoReturn:
    answer = {"error": error.error, "error_description": error.description, "iss": server.issuer}
    if state is not None:
        answer["state"] = state
    raise kind(_with_query(redirect_uri, answer), headers=_NO_STORE)


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    return uri + ("&" if urlsplit(uri).query else "?") + urlencode(params)


# token and revocation endpoints -------------------------------------------------------------
async def _token(request: web.Request) -> web.Response:
    grants = request.app[OAUTH_SERVER].grants
    try:
        form = await _read_form(request)
        client_id = _client_id(request, form)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            pair = await grants.exchange_code(
                client_id,
                form.get("code", ""),
                form.get("redirect_uri"),
                form.get("code_verifier"),
                form.get("resource"),
            )
        elif grant_type == "refresh_token":
            pair = await grants.refresh(
                client_id, form.get("refresh_token", ""), form.get("resource")
            )
        else:
            raise UnsupportedGrantTypeError(f"grant_type {grant_type!r} is not supported")
    except OAuth2Error as exc:
        note_reason(request, f"oauth-{exc.error}")
        return _oauth_error(exc)
    except _BodyRefused as exc:
        return _json({"error": "invalid_request", "error_description": str(exc)}, 413)
    return _json(
        {
            "access_token": pair.access_token,
            "token_type": "Bearer",
            "expires_in": pair.expires_in,
            "refresh_token": pair.refresh_token,
            "scope": "mcp:invoke",
        },
        200,
    )


async def _revoke(request: web.Request) -> web.Response:
    grants = request.app[OAUTH_SERVER].grants
    try:
        form = await _read_form(request)
        token = form.get("token")
        if not token:
            raise InvalidRequestError("token is required")
        await grants.revoke(token, form.get("client_id") or _basic_client_id(request))
    except OAuth2Error as exc:
        return _oauth_error(exc)
    except _BodyRefused as exc:
        return _json({"error": "invalid_request", "error_description": str(exc)}, 413)
    return web.Response(status=200, headers={**CORS_HEADERS, **_NO_STORE})


def _client_id(request: web.Request, form: Mapping[str, str]) -> str:
    """The public client's id: in the body (method "none"), or as the user of HTTP Basic
    (clients that insist on sending it there; no secret is ever checked, none was issued)."""
    client_id = form.get("client_id") or _basic_client_id(request)
    if not client_id:
        raise InvalidClientError("client_id is required")
    return client_id


def _basic_client_id(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return None
    return unquote(user) or None


def _oauth_error(exc: OAuth2Error) -> web.Response:
    status = exc.status_code or 400
    return _json(dict(exc.get_body()), status)


def _json(body: Mapping[str, Any], status: int) -> web.Response:
    return web.json_response(dict(body), status=status, headers={**CORS_HEADERS, **_NO_STORE})


# bounded request bodies ----------------------------------------------------------------------
class _BodyRefused(Exception):
    """The body is too large."""


async def _read_body(request: web.Request) -> bytes:
    """The body within MCPGW_BODY_TIMEOUT_S (408 problem) and `MAX_BODY_BYTES`."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise _BodyRefused(f"the body is larger than {MAX_BODY_BYTES} bytes")
    raw = await read_bounded(request, request.read)
    if len(raw) > MAX_BODY_BYTES:
        raise _BodyRefused(f"the body is larger than {MAX_BODY_BYTES} bytes")
    return raw


async def _read_form(request: web.Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body; a parameter sent twice is refused."""
    if request.content_type != _FORM:
        raise InvalidRequestError(f"send the parameters as {_FORM}")
    raw = await _read_body(request)
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError("the form body cannot be read") from None
    return _single_values(pairs)


def _single_values(pairs: Any) -> dict[str, str]:
    """The parameters as a dict; OAuth parameters must not be repeated (RFC 6749 3.1)."""
    values: dict[str, str] = {}
    for count, (name, value) in enumerate(pairs, 1):
        if count > MAX_FIELDS:
            raise InvalidRequestError("the request has too many parameters")
        if name in values:
            raise InvalidRequestError(f"the parameter {name[:40]!r} is repeated")
        values[name] = value
    return values


def _message(exc: Exception) -> str:
    if isinstance(exc, OAuth2Error):
        return exc.description or exc.error
    return str(exc)
