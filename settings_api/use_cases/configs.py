"""Configs: an upstream URL and headers with a tool catalog, given inline or read from the
upstream (catalog reads bounded per tenant)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from mcp_core.headers import refused_header
from settings_api.bulkhead import DEFAULT_MAX_INFLIGHT, Bulkhead
from settings_api.changes import Change
from settings_api.problems import (
    Conflict,
    FieldError,
    NotFound,
    SecretsUnreadable,
    TooManyRequests,
    UpstreamFailed,
    ValidationFailed,
)
from settings_api.store import Config, Store
from settings_api.tools import normalize_tools
from settings_api.use_cases import audit
from settings_api.use_cases.integrations import Integrations
from settings_api.use_cases.publishing import ChangePublisher
from settings_api.use_cases.store_access import now_ms, translated

log = logging.getLogger(__name__)

CatalogFetcher = Callable[[str, Mapping[str, str]], Awaitable[list[dict[str, Any]]]]
# Raises UpstreamNotAllowed when the egress policy refuses the URL's address.
UpstreamCheck = Callable[[str], Awaitable[None]]


async def no_check(url: str) -> None:
    """The upstream check that allows every URL."""
    return None


class Configs:
    """An integration's configs."""

    def __init__(
        self,
        store: Store,
        publisher: ChangePublisher,
        integrations: Integrations,
        fetch_catalog: CatalogFetcher,
        check_upstream: UpstreamCheck = no_check,
        *,
        max_catalog_reads: int = DEFAULT_MAX_INFLIGHT,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.integrations = integrations
        self._fetch_catalog = fetch_catalog
        self._check_upstream = check_upstream
        # Catalog reads in flight per tenant (MCPGW_UPSTREAM_MAX_INFLIGHT): one tenant's slow
        # upstreams cannot hold up every other tenant's config creation and syncs.
        self._catalog_reads = Bulkhead(max_catalog_reads)

    async def create(
        self,
        actor: str,
        tenant: str,
        integration: str,
        upstream_url: str | None,
        upstream_headers: dict[str, str],
        tools: list[dict[str, Any]] | None,
    ) -> Config:
        """Create a config with inline tools, or with the catalog read from the upstream."""
        await self.integrations.get(tenant, integration)  # 404 before any upstream traffic
        if upstream_url is not None and (why := _url_problem(upstream_url)) is not None:
            raise ValidationFailed([FieldError("upstreamUrl", why)])
        refused = [
            FieldError(f"upstreamHeaders.{name}", "is set by the gateway, not by a config")
            for name in upstream_headers
            if refused_header(name)
        ]
        if refused:
            raise ValidationFailed(refused)
        if upstream_url is not None:
            # Inline tools too: the data plane will call this URL.
            await self._check_upstream(upstream_url)
        if tools is None:
            if upstream_url is None:
                raise ValidationFailed([FieldError("tools", "give tools, or an upstreamUrl")])
            catalog = await self._read_catalog(tenant, upstream_url, upstream_headers)
            synced_at: int | None = now_ms()
        else:
            catalog, errors = normalize_tools(tools)
            if errors:
                raise ValidationFailed(errors)
            synced_at = None
        config = Config(
            str(uuid.uuid4()),
            tenant,
            integration,
            upstream_url,
            dict(upstream_headers),
            catalog,
            now_ms(),
            synced_at,
        )
        async with translated(), self.store.transaction() as tx:
            if await tx.get_integration(tenant, integration, for_update=True) is None:
                raise NotFound(f"integration {integration!r} does not exist")
            await tx.insert_config(config)
            await audit.record(
                tx,
                tenant,
                actor,
                "config.created",
                f"{integration}/{config.config_id}",
                {
                    "upstreamUrl": config.shown_url,
                    "upstreamHeaderNames": config.upstream_header_names,
                    "toolCount": len(catalog),
                },
            )
        return config

    async def get(self, tenant: str, integration: str, config_id: str) -> Config:
        """The config; 404 when it or its integration does not exist."""
        async with translated(), self.store.reader() as session:
            found = await session.get_config(tenant, integration, config_id)
            if found is None and await session.get_integration(tenant, integration) is None:
                raise NotFound(f"integration {integration!r} does not exist")
        if found is None:
            raise NotFound(f"config {config_id!r} does not exist")
        return found

    async def page(self, tenant: str, integration: str, after: str, limit: int) -> list[Config]:
        """A page of the integration's configs, by id after `after`."""
        await self.integrations.get(tenant, integration)
        async with translated(), self.store.reader() as session:
            return await session.list_configs(tenant, integration, after, limit)

    async def sync_tools(self, actor: str, tenant: str, integration: str, config_id: str) -> Config:
        """Re-read the upstream catalog of a config."""
        config = await self.get(tenant, integration, config_id)
        if config.upstream_url is None:
            raise Conflict("this config has inline tools and no upstreamUrl to sync from")
        if config.headers_error is not None:
            log.error("config %s/%s/%s: %s", tenant, integration, config_id, config.headers_error)
            raise SecretsUnreadable(
                f"cannot sync: {config.headers_error}; restore the key in "
                "MCPGW_SECRET_KEY, or create a new config"
            )
        await self._check_upstream(config.upstream_url)  # the policy may have changed since
        catalog = await self._read_catalog(tenant, config.upstream_url, config.upstream_headers)
        synced_at = now_ms()
        async with translated(), self.store.transaction() as tx:
            if await tx.get_config(tenant, integration, config_id) is None:
                raise NotFound(f"config {config_id!r} does not exist")
            await tx.update_config_tools(tenant, integration, config_id, catalog, synced_at)
            await audit.record(
                tx,
                tenant,
                actor,
                "config.synced",
                f"{integration}/{config_id}",
                {"toolCount": len(catalog)},
            )
        await self.publisher.publish(Change(tenant, integration))
        return replace(config, tools=catalog, synced_at=synced_at)

    async def _read_catalog(
        self, tenant: str, url: str, headers: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        if not self._catalog_reads.try_enter(tenant):
            limit = self._catalog_reads.limit
            raise TooManyRequests(
                f"this tenant already has {limit} upstream catalog reads in "
                "flight, its limit (MCPGW_UPSTREAM_MAX_INFLIGHT); retry when "
                "one has finished",
                limit=limit,
            )
        try:
            catalog = await self._fetch_catalog(url, headers)
        finally:
            self._catalog_reads.leave(tenant)
        tools, errors = normalize_tools(catalog, "upstream tools")
        if errors:
            raise UpstreamFailed(
                "the upstream's tool catalog is invalid: "
                + "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
            )
        return tools


def _url_problem(url: str) -> str | None:
    """Why the clients could not connect to `url` (None: they can try). Built from the rule,
    never from the URL, which may hold credentials."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # ValueError when it is not a number from 0 to 65535
    except ValueError:
        return "is not a URL the gateway can connect to (check the host and port)"
    if not parts.hostname:
        return "has no host"
    return None
