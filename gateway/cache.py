"""Per-replica cache of key → binding, OAuth access token → binding, and integration →
data-plane view.

A warm request runs no SQL: one SHA-256 and two dict lookups. An access token's entry goes
with its integration's keys: rotating or revoking the key that approved it, disabling MCP or
deleting the integration publish the change that drops both. Entries are dropped when a change
is published (gateway/invalidation.py), expire on a bounded TTL, and are all flushed when the
change feed is (re)established. While it is lost (subscription down, or its heartbeats not
coming back: Redis not relaying publishes), entries are trusted for at most `degraded_ttl_s`,
so a change this replica never heard of is still honoured within about two seconds
(docs/revocation.md). When the store cannot be reached, an expired entry keeps serving
(stale-if-error): warm keys keep working through a database outage, and the store is asked
again at most once per `store_retry_s` meanwhile, so a hung store does not cost every warm
request a store timeout.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.context import IntegrationView, KeyEntry
from gateway.observability import metrics
from gateway.state import AuthFailure
from settings_api import keys
from settings_api.changes import Change
from settings_api.oauth import tokens
from settings_api.problems import StoreUnavailable
from settings_api.service import McpSnapshot, SettingsService, now_ms
from simulator import parse_fixture

log = logging.getLogger(__name__)

T = TypeVar("T")
IntegrationKey = tuple[str, str]
_MISS: Any = object()  # no servable entry
_KEY_ENDED = {"revoked": "this API key was revoked", "expired": "this API key expired"}
_TOKEN_KEY_ENDED = {
    "revoked": "the API key that approved this access token was revoked",
    "expired": "the API key that approved this access token expired",
}


@dataclass(frozen=True, slots=True)
class _TokenEntry:
    """What an access token resolved to: its approving key (whose end and narrowing it
    inherits), the one URL it was issued for, when it expires (epoch ms), and whether it was
    revoked (or its key had ended) when read."""

    key: KeyEntry
    resource: str
    expires_at: int
    revoked: bool


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    loaded_at: float


class _Lru(Generic[T]):
    """A bounded mapping with single-flight loads that an invalidation can outrun safely."""

    def __init__(self, max_entries: int, kind: str = "key") -> None:
        self.kind = kind  # the `cache` label of the hit/miss metrics
        self._data: OrderedDict[Any, _Entry[T]] = OrderedDict()
        self._max = max_entries
        self._loading: dict[Any, asyncio.Future[T]] = {}
        # Bumped by every invalidation: a load that started before one must not store
        # what it read (it may be the very key that was just revoked).
        self.epoch = 0

    def get(self, key: Any) -> _Entry[T] | None:
        entry = self._data.get(key)
        if entry is not None:
            self._data.move_to_end(key)
        return entry

    def put(self, key: Any, value: T, epoch: int) -> None:
        if epoch != self.epoch:
            return
        self._data[key] = _Entry(value, time.monotonic())
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def drop(self, key: Any) -> None:
        self.epoch += 1
        self._data.pop(key, None)

    def drop_where(self, predicate: Callable[[T], bool]) -> None:
        self.epoch += 1
        for key in [k for k, entry in self._data.items() if predicate(entry.value)]:
            del self._data[key]

    def clear(self) -> None:
        self.epoch += 1
        self._data.clear()

    async def load(self, key: Any, loader: Callable[[], Awaitable[T]]) -> T:
        """Run `loader` once for concurrent misses of the same key."""
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        epoch = self.epoch
        try:
            value = await loader()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # the waiters (if any) re-raise it; don't warn when none
            raise
        else:
            self.put(key, value, epoch)
            future.set_result(value)
            return value
        finally:
            del self._loading[key]


class UseLog:
    """When each key id (or token hash) was last used since the previous `take`: written to
    the store in batches, not once per request."""

    def __init__(self) -> None:
        self._used: dict[str, int] = {}

    def note(self, what: str, at: int) -> None:
        self._used[what] = at

    def take(self) -> dict[str, int]:
        """Id → last use (epoch ms) since the previous call."""
        taken, self._used = self._used, {}
        return taken

    def restore(self, used: dict[str, int]) -> None:
        """Put back uses that could not be written (newer ones win)."""
        for what, at in used.items():
            self._used.setdefault(what, at)


class GatewayCache:
    """The data plane's `Resolver`: authenticates keys and serves integration views."""

    def __init__(
        self,
        service: SettingsService,
        *,
        ttl_s: float = 30.0,
        degraded_ttl_s: float = 1.0,
        negative_ttl_s: float = 5.0,
        store_retry_s: float = 1.0,
        max_entries: int = 100_000,
    ) -> None:
        self._service = service
        self.ttl_s = ttl_s
        self.degraded_ttl_s = degraded_ttl_s
        self.negative_ttl_s = negative_ttl_s
        # After the store failed, expired entries are served without asking it again until
        # then: a hung store costs one timeout per `store_retry_s`, not one per request.
        self.store_retry_s = store_retry_s
        self._store_retry_at = 0.0
        self._keys: _Lru[KeyEntry | None] = _Lru(max_entries, "key")
        self._views: _Lru[IntegrationView | None] = _Lru(max_entries, "integration")
        self._tokens: _Lru[_TokenEntry | None] = _Lru(max_entries, "token")
        # The change feed says whether invalidations are reaching us.
        self.subscribed = True
        self.key_use = UseLog()  # API keys, by key id (a token's use counts for its key)
        self.token_use = UseLog()  # access tokens, by hash

    # Resolver ------------------------------------------------------------------------------
    async def authenticate(self, raw_key: str | None) -> KeyEntry:
        if not raw_key:
            raise AuthFailure(
                "missing",
                "send the integration's API key as 'Authorization: Bearer <key>' "
                "or 'X-API-Key: <key>'",
            )
        # The cheap part of the format check first: hashing needs ASCII, and a client's
        # non-ASCII "key" must be a counted 401 like any other malformed one, not a 500.
        if not keys.has_key_shape(raw_key):
            raise AuthFailure("malformed", "not an mcp-gateway API key")
        key_hash = keys.hash_key(raw_key)
        entry = self._fresh(self._keys, key_hash)
        if entry is _MISS:
            # Only keys that passed this check are ever looked up and cached, so a cached
            # hash needs no second check.
            try:
                keys.check_format(raw_key)
            except keys.InvalidKeyFormat as exc:
                raise AuthFailure("malformed", str(exc)) from None
            entry = await self._load(self._keys, key_hash, lambda: self._load_key(key_hash))
        if entry is None:
            raise AuthFailure("unknown", "unknown API key")
        now = now_ms()
        if entry.revoked_at is not None or entry.expires_at is not None:
            refusal = entry.refusal(now)
            if refusal is not None:
                raise AuthFailure(refusal, _KEY_ENDED[refusal])
        self.key_use.note(entry.key_id, now)
        return entry

    async def authenticate_token(self, raw_token: str, resource: str) -> KeyEntry:
        token_hash = tokens.hash_token(raw_token)
        entry = self._fresh(self._tokens, token_hash)
        if entry is _MISS:
            entry = await self._load(self._tokens, token_hash, lambda: self._load_token(token_hash))
        if entry is None:
            raise AuthFailure("unknown", "unknown access token")
        now = now_ms()
        refusal = entry.key.refusal(now)
        if refusal is not None:
            raise AuthFailure(refusal, _TOKEN_KEY_ENDED[refusal])
        if entry.revoked:
            raise AuthFailure(
                "revoked", "this access token, or the API key that approved it, was revoked"
            )
        if now >= entry.expires_at:
            raise AuthFailure("expired", "this access token expired; refresh it")
        if entry.resource != resource:
            raise AuthFailure(
                "wrong-resource", "this access token was issued for another MCP endpoint"
            )
        self.key_use.note(entry.key.key_id, now)
        self.token_use.note(token_hash, now)
        return entry.key

    async def integration(self, tenant: str, integration: str) -> IntegrationView | None:
        key = (tenant, integration)
        view = self._fresh(self._views, key)
        if view is _MISS:
            view = await self._load(self._views, key, lambda: self._load_view(tenant, integration))
        return view

    # invalidation --------------------------------------------------------------------------
    async def apply(self, change: Change) -> None:
        """Forget what a committed change made stale (a ChangeFeed subscriber)."""
        target = (change.tenant_id, change.integration_id)
        self._views.drop(target)
        # Every key entry bound to the integration goes (rotation, deletion and disabling
        # alike), and so do negative entries: a key just minted may have been looked up early.
        self._keys.drop_where(lambda e: e is None or (e.tenant_id, e.integration_id) == target)
        # Its access tokens too: they die with the key that approved them, and a token
        # revoked through the authorization server publishes the same change.
        self._tokens.drop_where(
            lambda e: e is None or (e.key.tenant_id, e.key.integration_id) == target
        )

    def flush(self) -> None:
        """Forget everything (the change subscription reconnected: changes may have been lost)."""
        self._keys.clear()
        self._views.clear()
        self._tokens.clear()

    # internals -----------------------------------------------------------------------------
    def _fresh(self, lru: _Lru[T], key: Any) -> Any:
        """The entry's value when it may be served without asking the store, else `_MISS`
        (a warm request stays synchronous here)."""
        entry = lru.get(key)
        if entry is None:
            return _MISS
        now = time.monotonic()
        ttl = self.ttl_s if self.subscribed else self.degraded_ttl_s
        if entry.value is None:
            ttl = min(ttl, self.negative_ttl_s)
        if now - entry.loaded_at < ttl or (entry.value is not None and now < self._store_retry_at):
            metrics.cache_lookup(lru.kind, hit=True)
            return entry.value
        return _MISS

    async def _load(self, lru: _Lru[T], key: Any, loader: Callable[[], Awaitable[T]]) -> T:
        """The miss path, after `_fresh` found nothing servable: ask the store (stale entries
        still serve while it is down)."""
        entry = lru.get(key)
        metrics.cache_lookup(lru.kind, hit=False)
        try:
            value = await lru.load(key, loader)
        except StoreUnavailable:
            self._store_retry_at = time.monotonic() + self.store_retry_s
            if entry is not None and entry.value is not None:
                log.warning("store unavailable: serving a cached entry past its TTL")
                return entry.value
            raise
        self._store_retry_at = 0.0
        return value

    async def _load_key(self, key_hash: str) -> KeyEntry | None:
        binding = await self._service.find_key(key_hash)
        if binding is None or not hmac.compare_digest(binding.key_hash, key_hash):
            return None
        return KeyEntry(
            binding.key_id,
            binding.tenant_id,
            binding.integration_id,
            binding.scope,
            binding.revoked_at,
            binding.expires_at,
            None if binding.tool_ids is None else frozenset(binding.tool_ids),
        )

    async def _load_token(self, token_hash: str) -> _TokenEntry | None:
        binding = await self._service.find_access_token(token_hash)
        if binding is None or not hmac.compare_digest(binding.token_hash, token_hash):
            return None
        key = KeyEntry(
            binding.key_id,
            binding.tenant_id,
            binding.integration_id,
            binding.scope,
            binding.key_revoked_at,
            binding.key_expires_at,
            None if binding.key_tool_ids is None else frozenset(binding.key_tool_ids),
        )
        return _TokenEntry(key, binding.resource, binding.expires_at, binding.revoked)

    async def _load_view(self, tenant: str, integration: str) -> IntegrationView | None:
        snapshot = await self._service.mcp_snapshot(tenant, integration)
        if snapshot is None:
            return None
        if snapshot.fixtures:
            # Fixtures were checked when written (their verdicts are remembered by content),
            # but another replica may still have to check them once: not on the event loop.
            return await asyncio.to_thread(view_of, snapshot)
        return view_of(snapshot)


def view_of(snapshot: McpSnapshot) -> IntegrationView:
    """The data-plane view of an integration: exposed tools in the settings' order."""
    settings, config = snapshot.settings, snapshot.config
    catalog = {tool["name"]: tool for tool in config.tools} if config else {}
    exposed = tuple(catalog[name] for name in settings.exposed_tool_ids if name in catalog)
    fixtures = {}
    for stored in snapshot.fixtures:
        tool = catalog.get(stored.tool_id)
        if tool is None:
            continue  # the tool left the catalog (another config bound, or a sync)
        fixture, problems = parse_fixture({"rules": stored.rules}, tool)
        if fixture is None:
            # Valid when stored; a later sync changed the tool's outputSchema under it.
            log.warning(
                "ignoring the simulator fixture of %s/%s/%s: %s",
                stored.tenant_id,
                stored.integration_id,
                stored.tool_id,
                problems[0].message,
            )
            continue
        fixtures[stored.tool_id] = fixture
    return IntegrationView(
        tenant_id=settings.tenant_id,
        integration_id=settings.integration_id,
        name=snapshot.integration.name,
        enabled=settings.enabled,
        description=settings.description,
        config_id=settings.config_id,
        upstream_url=config.upstream_url if config else None,
        upstream_headers=(
            dict(config.upstream_headers) if config and config.headers_error is None else {}
        ),
        tools=exposed,
        tools_by_name={tool["name"]: tool for tool in exposed},
        fixtures_version=settings.fixtures_version,
        fixtures=fixtures,
        secrets_error=config.headers_error if config else None,
    )
