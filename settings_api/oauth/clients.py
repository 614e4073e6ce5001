"""OAuth clients: dynamic registration (RFC 7591) and client ID metadata documents (an https
client_id URL whose JSON document names the client and its redirect URIs).

Every client is public (token_endpoint_auth_method "none", PKCE): the gateway never issues a
client secret. Redirect URIs are https, or http on a loopback host (native apps)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from authlib.oauth2.rfc7591 import ClientMetadataClaims
from joserfc.errors import JoseError

from settings_api.store import OAuthClient, Store
from settings_api.use_cases.store_access import now_ms, translated

log = logging.getLogger(__name__)

MAX_REDIRECT_URIS = 10
MAX_URI_LENGTH = 2000
MAX_CLIENT_NAME = 200
SUPPORTED_GRANTS = frozenset({"authorization_code", "refresh_token"})
REGISTERED = "registered"
METADATA_DOCUMENT = "metadata_document"
_LOOPBACK_NAMES = frozenset({"localhost"})
# A registered client that has no code or token a day after registering is dropped (a few per
# registration), so an open registration endpoint cannot fill the store.
IDLE_CLIENT_MS = 86_400_000
PRUNE_BATCH = 10


class ClientMetadataInvalid(Exception):
    """Client metadata the gateway refuses; `error` is the RFC 7591 error code."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class ClientUnavailable(Exception):
    """A client ID metadata document could not be fetched or is not acceptable (a fixed
    phrase: the page shows it)."""


def redirect_uri_problem(uri: object) -> str | None:
    """Why `uri` cannot be a redirect URI (None: it can): https, or http on loopback only, no
    fragment, no credentials."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_LENGTH or not uri.isascii():
        return "a redirect URI must be an ASCII URL of at most 2000 characters"
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError:
        return f"{uri!r} is not a URL"
    if parts.fragment or "#" in uri:
        return "a redirect URI must not have a fragment"
    if parts.username is not None or parts.password is not None:
        return "a redirect URI must not carry credentials"
    if not host:
        return "a redirect URI needs a host"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _is_loopback(host):
        return None
    return "a redirect URI must use https, or http on a loopback address (127.0.0.1, [::1])"


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def metadata_document_url_problem(client_id: str) -> str | None:
    """Why `client_id` cannot name a client ID metadata document (None: it can)."""
    if len(client_id) > MAX_URI_LENGTH or not client_id.isascii():
        return "the client_id URL is too long"
    try:
        parts = urlsplit(client_id)
        parts.port  # noqa: B018
    except ValueError:
        return "the client_id is not a URL"
    if parts.scheme != "https" or not parts.hostname:
        return "a client_id URL must use https"
    if not parts.path or parts.path == "/":
        return "a client_id URL must have a path"
    if parts.fragment or "#" in client_id or parts.username or parts.password:
        return "a client_id URL must not have a fragment or credentials"
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return "a client_id URL must not have dot segments"
    return None


@dataclass(frozen=True, slots=True)
class ClientMetadata:
    """What the gateway keeps of a client's metadata."""

    client_name: str | None
    redirect_uris: list[str]


def validate_metadata(body: Any, *, document: bool) -> ClientMetadata:
    """The client metadata in `body` (RFC 7591 section 2) checked against the gateway's rules;
    `document`: it is a client ID metadata document (a secret-based method is refused there,
    while registration simply answers with "none")."""
    if not isinstance(body, dict):
        raise ClientMetadataInvalid("invalid_client_metadata", "the metadata must be an object")
    uris = body.get("redirect_uris")
    if not isinstance(uris, list) or not uris:
        raise ClientMetadataInvalid("invalid_redirect_uri", "redirect_uris must list the URIs")
    if len(uris) > MAX_REDIRECT_URIS:
        raise ClientMetadataInvalid(
            "invalid_redirect_uri", f"at most {MAX_REDIRECT_URIS} redirect URIs"
        )
    for uri in uris:
        problem = redirect_uri_problem(uri)
        if problem is not None:
            raise ClientMetadataInvalid("invalid_redirect_uri", problem)
    # The redirect URIs are checked first: their errors have their own code.
    try:
        ClientMetadataClaims(dict(body), {}).validate()
    except (JoseError, ValueError) as exc:
        raise ClientMetadataInvalid("invalid_client_metadata", str(exc)) from None
    method = body.get("token_endpoint_auth_method")
    if document and method not in (None, "none"):
        raise ClientMetadataInvalid(
            "invalid_client_metadata", "only public clients (token_endpoint_auth_method none)"
        )
    for name, allowed in (("grant_types", SUPPORTED_GRANTS), ("response_types", {"code"})):
        values = body.get(name)
        if values is not None and (
            not isinstance(values, list) or not set(values).issubset(allowed)
        ):
            raise ClientMetadataInvalid(
                "invalid_client_metadata", f"{name} may only hold {', '.join(sorted(allowed))}"
            )
    client_name = body.get("client_name")
    if client_name is not None and (
        not isinstance(client_name, str) or len(client_name) > MAX_CLIENT_NAME
    ):
        raise ClientMetadataInvalid(
            "invalid_client_metadata", f"client_name must be a string of at most {MAX_CLIENT_NAME}"
        )
    return ClientMetadata(client_name or None, list(uris))


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """Bounds of one client ID metadata document fetch and of the cache."""

    timeout_s: float = 5.0
    max_bytes: int = 16 * 1024
    ttl_s: float = 300.0
    failure_ttl_s: float = 30.0
    max_cached: int = 1000
    max_inflight: int = 8


class ClientRegistry:
    """Finds clients: registered ones in the store, the others by their metadata document
    (fetched with the app's egress-checked HTTP client, cached per replica)."""

    def __init__(
        self,
        store: Store,
        http: aiohttp.ClientSession | None,
        limits: DocumentLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.http = http
        self.limits = limits or DocumentLimits()
        self._clock = clock
        # url → (expires at, client or the reason it is unusable)
        self._cache: OrderedDict[str, tuple[float, OAuthClient | str]] = OrderedDict()
        self._inflight = asyncio.Semaphore(self.limits.max_inflight)

    async def register(self, body: Any) -> OAuthClient:
        """RFC 7591 registration of a public client."""
        metadata = validate_metadata(body, document=False)
        client = OAuthClient(
            "mcpc_" + secrets.token_urlsafe(18),
            REGISTERED,
            metadata.client_name,
            metadata.redirect_uris,
            now_ms(),
        )
        async with translated(), self.store.transaction() as tx:
            await tx.delete_idle_oauth_clients(client.created_at - IDLE_CLIENT_MS, PRUNE_BATCH)
            await tx.upsert_oauth_client(client)
        return client

    async def find(self, client_id: str) -> OAuthClient | None:
        """The client named `client_id`; None when it is unknown. `ClientUnavailable` when its
        metadata document cannot be used."""
        if client_id.startswith("https://"):
            return await self._document_client(client_id)
        if not client_id.isascii() or len(client_id) > 64:
            return None
        async with translated(), self.store.reader() as session:
            found = await session.get_oauth_client(client_id)
        return found if found is not None and found.kind == REGISTERED else None

    async def _document_client(self, url: str) -> OAuthClient:
        problem = metadata_document_url_problem(url)
        if problem is not None:
            raise ClientUnavailable(problem)
        cached = self._cache.get(url)
        if cached is not None and cached[0] > self._clock():
            self._cache.move_to_end(url)
            return _client_or_raise(cached[1])
        if self._inflight.locked():
            raise ClientUnavailable("too many client metadata documents are being fetched")
        async with self._inflight:
            try:
                client: OAuthClient | str = await self._fetch(url)
                ttl = self.limits.ttl_s
            except ClientUnavailable as exc:
                client, ttl = str(exc), self.limits.failure_ttl_s
        self._cache[url] = (self._clock() + ttl, client)
        self._cache.move_to_end(url)
        while len(self._cache) > self.limits.max_cached:
            self._cache.popitem(last=False)
        return _client_or_raise(client)

    async def _fetch(self, url: str) -> OAuthClient:
        if self.http is None:
            raise ClientUnavailable("client metadata documents cannot be fetched here")
        limits = self.limits
        try:
            async with (
                asyncio.timeout(limits.timeout_s),
                self.http.get(
                    url, allow_redirects=False, headers={"Accept": "application/json"}
                ) as response,
            ):
                if response.status != 200:
                    raise ClientUnavailable(
                        f"the client metadata document answered HTTP {response.status}"
                    )
                if (response.content_length or 0) > limits.max_bytes:
                    raise ClientUnavailable("the client metadata document is too large")
                raw = bytearray()
                async for chunk in response.content.iter_chunked(8192):
                    raw += chunk
                    if len(raw) > limits.max_bytes:
                        raise ClientUnavailable("the client metadata document is too large")
        except TimeoutError:
            raise ClientUnavailable("the client metadata document did not arrive in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            # Includes the egress policy's refusal (a private or loopback address).
            log.info("client metadata document unreachable: %s", type(exc).__name__)
            raise ClientUnavailable("the client metadata document could not be fetched") from None
        try:
            body = json.loads(raw)
        except ValueError:
            raise ClientUnavailable("the client metadata document is not JSON") from None
        if not isinstance(body, dict) or body.get("client_id") != url:
            raise ClientUnavailable("the client metadata document names another client_id")
        try:
            metadata = validate_metadata(body, document=True)
        except ClientMetadataInvalid as exc:
            raise ClientUnavailable(
                f"the client metadata document is not acceptable: {exc.description}"
            ) from None
        return OAuthClient(
            url, METADATA_DOCUMENT, metadata.client_name, metadata.redirect_uris, now_ms()
        )


def _client_or_raise(entry: OAuthClient | str) -> OAuthClient:
    if isinstance(entry, str):
        raise ClientUnavailable(entry)
    return entry
