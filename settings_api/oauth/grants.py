"""The grant logic of the authorization server: a person approves a client with the
integration's API key (a single-use code), the code becomes an access and a refresh token,
refresh tokens rotate, and tokens are revoked one by one, per client, or with their key.

Every code and token names the API key that approved it: rotating or revoking that key, or
deleting the integration, ends them (the data plane's lookup joins the key). Errors at the
token endpoint are authlib's OAuth 2 error classes (RFC 6749 section 5.2 codes)."""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from settings_api import keys
from settings_api.changes import Change
from settings_api.problems import NotFound
from settings_api.store import (
    KeyBinding,
    OAuthClient,
    OAuthClientUse,
    OAuthCode,
    OAuthToken,
    Store,
    StoreSession,
)
from settings_api.use_cases import audit
from settings_api.use_cases.publishing import ChangePublisher
from settings_api.use_cases.store_access import now_ms, translated

from .tokens import (
    has_code_shape,
    has_refresh_token_shape,
    hash_token,
    new_access_token,
    new_code,
    new_refresh_token,
)

# RFC 7636 section 4.1: the verifier's alphabet and length.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# An S256 challenge is the unpadded base64url of a SHA-256: 43 characters.
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
_ID = r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}"
_RESOURCE_PATH = re.compile(rf"/v1/tenants/({_ID})/integrations/({_ID})/mcp:(call|test)")
# Tokens are dropped a day after they expire (a few each time tokens are issued): until then
# the data plane can still say "expired" rather than "unknown".
EXPIRED_KEPT_MS = 86_400_000
PRUNE_BATCH = 10


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long codes and tokens live, in seconds (MCPGW_OAUTH_*_TTL_S)."""

    access_s: int = 3600
    refresh_s: int = 30 * 86400
    code_s: int = 60


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    """What the grant logic needs from the configuration."""

    public_url: str = "http://127.0.0.1:8080"
    lifetimes: Lifetimes = Lifetimes()


@dataclass(frozen=True, slots=True)
class Resource:
    """An integration URL (callUrl or testUrl) a client asks access to."""

    url: str
    tenant_id: str
    integration_id: str


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What the token endpoint answers with; the raw tokens exist only here."""

    access_token: str
    refresh_token: str
    expires_in: int
    resource: str


class ApprovalRefused(Exception):
    """The key typed on the consent page does not approve this request (the message is shown
    on the page: a fixed phrase, never the key)."""


def parse_resource(public_url: str, url: str) -> Resource | None:
    """The integration named by `url` when it is exactly a callUrl or testUrl of this gateway
    (MCPGW_PUBLIC_URL plus the path; the Host a request arrived on plays no part)."""
    base = public_url.rstrip("/")
    if not url.startswith(base):
        return None
    match = _RESOURCE_PATH.fullmatch(url[len(base) :])
    if match is None:
        return None
    return Resource(url, match.group(1), match.group(2))


def valid_code_challenge(challenge: str) -> bool:
    """True for what an S256 code_challenge can be."""
    return _CHALLENGE.fullmatch(challenge) is not None


class OAuthGrants:
    """Codes, tokens, refresh rotation and revocation, over the store."""

    def __init__(self, store: Store, publisher: ChangePublisher, settings: OAuthSettings) -> None:
        self.store = store
        self.publisher = publisher
        self.settings = settings

    # approval ---------------------------------------------------------------------------------
    async def approve(
        self,
        client: OAuthClient,
        redirect_uri: str,
        code_challenge: str,
        resource: Resource,
        api_key: str,
    ) -> str:
        """Check that `api_key` is the live key of the resource's integration and MCP is on;
        return a single-use code bound to client, redirect URI and PKCE challenge."""
        now = now_ms()
        code = new_code()
        async with translated(), self.store.transaction() as tx:
            key = await _approving_key(tx, api_key, resource)
            if client.kind == "metadata_document":
                # Recorded so the settings API can name the client holding tokens.
                await tx.upsert_oauth_client(client)
            await tx.delete_expired_oauth_codes(now)
            # Who approved is whoever held the key: the audit names the key and the client.
            await audit.record(
                tx,
                resource.tenant_id,
                f"apiKey:{key.key_id}",
                "mcp.oauth_client_approved",
                resource.integration_id,
                {
                    "clientId": client.client_id,
                    "clientName": client.client_name,
                    "redirectHost": urlsplit(redirect_uri).netloc,
                    "resource": resource.url,
                },
            )
            await tx.insert_oauth_code(
                OAuthCode(
                    hash_token(code),
                    client.client_id,
                    redirect_uri,
                    code_challenge,
                    key.key_id,
                    resource.tenant_id,
                    resource.integration_id,
                    resource.url,
                    str(uuid.uuid4()),
                    now,
                    now + self.settings.lifetimes.code_s * 1000,
                    None,
                )
            )
        return code

    async def issue_for_key(self, api_key: str, client_id: str, resource_url: str) -> TokenPair:
        """Tokens for `client_id` on `resource_url`, approved by `api_key` at once (the same
        checks as the consent page, the same issuing as the token endpoint; for operators'
        scripts and tests that skip the browser)."""
        resource = parse_resource(self.settings.public_url, resource_url)
        if resource is None:
            raise ApprovalRefused("the resource is not an integration URL of this gateway")
        async with translated(), self.store.transaction() as tx:
            key = await _approving_key(tx, api_key, resource)
            return await self._issue(tx, client_id, key.key_id, resource, str(uuid.uuid4()))

    # token endpoint ---------------------------------------------------------------------------
    async def exchange_code(
        self,
        client_id: str,
        code: str,
        redirect_uri: str | None,
        code_verifier: str | None,
        resource_url: str | None,
    ) -> TokenPair:
        """authorization_code grant (OAuth 2.1 section 4.1.3). A code presented twice revokes
        every token it issued."""
        if not code_verifier or _VERIFIER.fullmatch(code_verifier) is None:
            raise InvalidRequestError("code_verifier is required (PKCE, S256)")
        if not has_code_shape(code):
            raise InvalidGrantError("the authorization code is not valid")
        code_hash = hash_token(code)
        now = now_ms()
        # A read first: made-up codes never take the store's write lock.
        async with translated(), self.store.reader() as session:
            known = await session.get_oauth_code(code_hash)
        if known is None or known.client_id != client_id:
            raise InvalidGrantError("the authorization code is not valid")
        async with translated(), self.store.transaction() as tx:
            found = await tx.get_oauth_code(code_hash)
            if found is None or found.client_id != client_id:
                raise InvalidGrantError("the authorization code is not valid")
            replayed = not await tx.use_oauth_code(code_hash, now)
            if replayed:
                await tx.revoke_oauth_family(found.family_id, now)
            else:
                _check_code(found, now, redirect_uri, code_verifier, resource_url)
                await _live_key(tx, found.key_id, found.tenant_id, found.integration_id)
                resource = Resource(found.resource, found.tenant_id, found.integration_id)
                return await self._issue(tx, client_id, found.key_id, resource, found.family_id)
        await self.publisher.publish(Change(found.tenant_id, found.integration_id))
        raise InvalidGrantError(
            "the authorization code was used already; the tokens it issued are revoked"
        )

    async def refresh(
        self, client_id: str, refresh_token: str, resource_url: str | None
    ) -> TokenPair:
        """refresh_token grant: the refresh token is spent and a new pair issued (rotation).
        A spent refresh token presented again revokes its whole grant (OAuth 2.1 section
        4.3.1: one of the two holders is not the client)."""
        if not has_refresh_token_shape(refresh_token):
            raise InvalidGrantError("the refresh token is not valid")
        token_hash = hash_token(refresh_token)
        now = now_ms()
        async with translated(), self.store.reader() as session:
            known = await session.get_oauth_token(token_hash, now)
        if known is None or known.kind != "refresh" or known.client_id != client_id:
            raise InvalidGrantError("the refresh token is not valid")
        async with translated(), self.store.transaction() as tx:
            found = await tx.get_oauth_token(token_hash, now)
            if found is None or found.kind != "refresh" or found.client_id != client_id:
                raise InvalidGrantError("the refresh token is not valid")
            if found.revoked_at is not None or found.key_revoked:
                raise InvalidGrantError("the refresh token is revoked")
            if found.expires_at <= now:
                raise InvalidGrantError("the refresh token expired")
            if resource_url is not None and resource_url != found.resource:
                raise InvalidGrantError("the refresh token was issued for another resource")
            replayed = not await tx.use_refresh_token(token_hash, now)
            if replayed:
                await tx.revoke_oauth_family(found.family_id, now)
            else:
                await _live_key(tx, found.key_id, found.tenant_id, found.integration_id)
                resource = Resource(found.resource, found.tenant_id, found.integration_id)
                return await self._issue(tx, client_id, found.key_id, resource, found.family_id)
        await self.publisher.publish(Change(found.tenant_id, found.integration_id))
        raise InvalidGrantError("the refresh token was used already; its grant is revoked")

    async def revoke(self, token: str, client_id: str | None) -> None:
        """RFC 7009: revoke `token` if this client holds it (a refresh token takes its whole
        grant with it); unknown tokens are not an error."""
        if not token.isascii() or len(token) > 512:
            return
        token_hash = hash_token(token)
        now = now_ms()
        async with translated(), self.store.reader() as session:
            known = await session.get_oauth_token(token_hash, now)
        if known is None or (client_id is not None and known.client_id != client_id):
            return
        async with translated(), self.store.transaction() as tx:
            found = await tx.get_oauth_token(token_hash, now)
            if found is None:
                return
            if found.kind == "refresh":
                await tx.revoke_oauth_family(found.family_id, now)
            else:
                await tx.revoke_oauth_token(token_hash, now)
        await self.publisher.publish(Change(found.tenant_id, found.integration_id))

    # settings API -----------------------------------------------------------------------------
    async def list_clients(
        self, tenant: str, integration: str, after: str, limit: int
    ) -> list[OAuthClientUse]:
        """The clients holding live tokens for the integration; 404 when it does not exist."""
        async with translated(), self.store.reader() as session:
            if await session.get_integration(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            return await session.list_oauth_client_uses(tenant, integration, now_ms(), after, limit)

    async def revoke_client(
        self, actor: str, tenant: str, integration: str, client_id: str
    ) -> None:
        """Revoke every token the client holds for the integration, confirmed on every
        replica; 404 when it holds none."""
        await self.publisher.require_feed()
        async with translated(), self.store.transaction() as tx:
            if await tx.get_integration(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            revoked = await tx.revoke_oauth_client_tokens(tenant, integration, client_id, now_ms())
            if not revoked:
                raise NotFound(f"client {client_id!r} holds no tokens for this integration")
            await audit.record(
                tx,
                tenant,
                actor,
                "mcp.oauth_client_revoked",
                integration,
                {"clientId": client_id, "revokedTokens": revoked},
            )
        await self.publisher.publish_revocation(
            Change(tenant, integration), "the client's tokens are revoked"
        )

    # ------------------------------------------------------------------------------------------
    async def _issue(
        self, tx: StoreSession, client_id: str, key_id: str, resource: Resource, family_id: str
    ) -> TokenPair:
        lifetimes = self.settings.lifetimes
        now = now_ms()
        await tx.delete_expired_oauth_tokens(now - EXPIRED_KEPT_MS, PRUNE_BATCH)
        access, refresh = new_access_token(), new_refresh_token()
        for raw, kind, ttl_s in (
            (access, "access", lifetimes.access_s),
            (refresh, "refresh", lifetimes.refresh_s),
        ):
            await tx.insert_oauth_token(
                OAuthToken(
                    hash_token(raw),
                    kind,
                    family_id,
                    client_id,
                    key_id,
                    resource.tenant_id,
                    resource.integration_id,
                    resource.url,
                    now,
                    now + ttl_s * 1000,
                    None,
                    None,
                    False,
                )
            )
        return TokenPair(access, refresh, lifetimes.access_s, resource.url)


_WRONG_KEY = "This API key does not open this integration."


async def _approving_key(tx: StoreSession, api_key: str, resource: Resource) -> KeyBinding:
    """A live key (any of the integration's, not revoked or expired) of the resource's
    integration that `api_key` is, with MCP enabled."""
    try:
        keys.check_format(api_key)
    except keys.InvalidKeyFormat:
        raise ApprovalRefused(_WRONG_KEY) from None
    key = await tx.get_key_by_hash(keys.hash_key(api_key))
    if (
        key is None
        or key.ended(now_ms())
        or (key.tenant_id, key.integration_id) != (resource.tenant_id, resource.integration_id)
    ):
        raise ApprovalRefused(_WRONG_KEY)
    settings = await tx.get_settings(resource.tenant_id, resource.integration_id)
    if settings is None or not settings.enabled:
        raise ApprovalRefused("MCP is disabled for this integration.")
    return key


async def _live_key(tx: StoreSession, key_id: str, tenant: str, integration: str) -> None:
    """Refuse the grant unless its approving key still opens the integration (neither
    revoked, past a rotation's grace period, nor expired) and MCP is enabled (deleting the key
    or the integration, rotation and disabling end every grant)."""
    settings = await tx.get_settings(tenant, integration)
    if settings is None or not settings.enabled:
        raise InvalidGrantError("the API key that approved this grant no longer opens it")
    now = now_ms()
    live = await tx.live_keys(tenant, integration, now)
    if not any(k.key_id == key_id and not k.ended(now) for k in live):
        raise InvalidGrantError("the API key that approved this grant is revoked or expired")


def _check_code(
    code: OAuthCode,
    now: int,
    redirect_uri: str | None,
    code_verifier: str,
    resource_url: str | None,
) -> None:
    if code.expires_at <= now:
        raise InvalidGrantError("the authorization code expired")
    if redirect_uri != code.redirect_uri:
        raise InvalidGrantError("redirect_uri does not match the authorization request")
    expected = create_s256_code_challenge(code_verifier)
    if not hmac.compare_digest(expected, code.code_challenge):
        raise InvalidGrantError("code_verifier does not match the code_challenge")
    if resource_url is not None and resource_url != code.resource:
        raise InvalidGrantError("resource does not match the authorization request")


__all__ = [
    "ApprovalRefused",
    "Lifetimes",
    "OAuthGrants",
    "OAuthSettings",
    "Resource",
    "TokenPair",
    "parse_resource",
    "valid_code_challenge",
]
