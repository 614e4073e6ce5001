"""One store contract, proven against both backends (docs/architecture.md).

Every test runs on SQLite and on Postgres through the `database_url` fixture; the store is
created with `create_store`, exactly as the service does.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from settings_api.keys import SCOPE, mint
from settings_api.secrets_box import SecretBox, seal_url
from settings_api.store import (
    Config,
    KeyBinding,
    McpSettings,
    Store,
    StoreConflictError,
    create_store,
)
from settings_api.store.base import migration_files

T0 = 1_764_000_000_000
# Header values are encrypted at rest (tests/test_secrets_at_rest.py checks the stored form).
SECRETS = SecretBox(["contract-test-secret-key-" + "k" * 32])


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """An open, migrated store on the parametrized backend."""
    s = create_store(database_url, secrets=SECRETS)
    await s.open()
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


def _key(tenant: str = "acme", integration: str = "crm", at: int = T0) -> KeyBinding:
    minted = mint()
    return KeyBinding(
        minted.key_id, minted.key_hash, minted.key_prefix, tenant, integration, SCOPE, at, None
    )


def _config(
    tenant: str = "acme",
    integration: str = "crm",
    *,
    config_id: str | None = None,
    headers: dict[str, str] | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> Config:
    return Config(
        config_id or str(uuid.uuid4()),
        tenant,
        integration,
        "https://up.example/mcp",
        headers if headers is not None else {"Authorization": "Bearer s3cret"},
        tools if tools is not None else [{"name": "search", "inputSchema": {}}],
        T0,
        None,
    )


async def _integration(store: Store, integration: str = "crm", tenant: str = "acme") -> None:
    async with store.transaction() as tx:
        assert await tx.insert_integration(tenant, integration, integration.upper(), T0)


# migrations ----------------------------------------------------------------------------------
async def test_migrations_apply_every_version_once_and_a_second_run_applies_nothing(
    fresh_database_url: str,
) -> None:
    shipped = [
        version
        for version, _ in migration_files(
            "postgres" if fresh_database_url.startswith("postgresql") else "sqlite"
        )
    ]
    assert shipped and shipped == sorted(shipped)
    store = create_store(fresh_database_url)
    await store.open()
    try:
        assert await store.migrate() == shipped
        assert await store.migrate() == []
        # The schema is really there: the named queries work.
        async with store.reader() as session:
            assert await session.list_integrations("acme", "", 10) == []
    finally:
        await store.close()
    # A new process (a new store) also finds nothing to do.
    again = create_store(fresh_database_url)
    await again.open()
    try:
        assert await again.migrate() == []
    finally:
        await again.close()


def test_both_backends_ship_the_same_migration_versions() -> None:
    assert [v for v, _ in migration_files("postgres")] == [v for v, _ in migration_files("sqlite")]


# integrations --------------------------------------------------------------------------------
async def test_integration_insert_get_and_duplicate_insert_is_refused_quietly(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.insert_integration("acme", "crm", "CRM", T0) is True
        assert await tx.insert_integration("acme", "crm", "Other", T0 + 1) is False
    async with store.reader() as session:
        found = await session.get_integration("acme", "crm")
        assert await session.get_integration("acme", "nope") is None
        assert await session.get_integration("other-tenant", "crm") is None
    assert found is not None
    assert (found.tenant_id, found.integration_id, found.name) == ("acme", "crm", "CRM")
    assert found.created_at == found.modified_at == T0


async def test_integrations_list_in_id_order_with_after_paging_per_tenant(store: Store) -> None:
    async with store.transaction() as tx:
        for name in ("delta", "alpha", "charlie", "bravo", "echo"):
            await tx.insert_integration("acme", name, name.title(), T0)
        await tx.insert_integration("globex", "aardvark", "Not acme's", T0)
    async with store.reader() as session:
        first = await session.list_integrations("acme", "", 2)
        second = await session.list_integrations("acme", first[-1].integration_id, 2)
        third = await session.list_integrations("acme", second[-1].integration_id, 2)
        rest = await session.list_integrations("acme", third[-1].integration_id, 2)
        everything = await session.list_integrations("acme", "", 100)
    assert [i.integration_id for i in first] == ["alpha", "bravo"]
    assert [i.integration_id for i in second] == ["charlie", "delta"]
    assert [i.integration_id for i in third] == ["echo"]
    assert rest == []
    assert [i.integration_id for i in everything] == ["alpha", "bravo", "charlie", "delta", "echo"]


async def test_rename_changes_name_and_modified_time_only(store: Store) -> None:
    await _integration(store)
    async with store.transaction() as tx:
        await tx.rename_integration("acme", "crm", "Customer data", T0 + 5)
    async with store.reader() as session:
        found = await session.get_integration("acme", "crm")
    assert found is not None
    assert found.name == "Customer data"
    assert (found.created_at, found.modified_at) == (T0, T0 + 5)


async def test_delete_integration_cascades_to_configs_and_settings(store: Store) -> None:
    await _integration(store, "crm")
    await _integration(store, "billing")
    config = _config()
    async with store.transaction() as tx:
        await tx.insert_config(config)
        await tx.insert_config(_config(integration="billing"))
    async with store.transaction() as tx:
        assert await tx.delete_integration("acme", "crm") is True
        assert await tx.delete_integration("acme", "crm") is False
    async with store.reader() as session:
        assert await session.get_integration("acme", "crm") is None
        assert await session.get_config("acme", "crm", config.config_id) is None
        assert await session.list_configs("acme", "crm", "", 10) == []
        assert await session.get_settings("acme", "crm") is None
        # The sibling integration is untouched.
        assert await session.get_settings("acme", "billing") is not None
        assert len(await session.list_configs("acme", "billing", "", 10)) == 1
    # Recreating the id starts from a clean slate.
    await _integration(store, "crm")
    async with store.reader() as session:
        assert await session.list_configs("acme", "crm", "", 10) == []


# configs -------------------------------------------------------------------------------------
async def test_config_headers_and_tools_round_trip_exactly(store: Store) -> None:
    await _integration(store)
    headers = {"Authorization": 'Bearer tök€n "quoted"', "X-Empty": "", "x-lower": "a\nb"}
    tools = [
        {
            "name": "search_contacts",
            "title": "Search — contacts ✓",
            "description": "Finds people.\nMultiline.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "maxLength": 200},
                    "limit": {"type": "integer", "default": 10},
                    "ratio": {"type": "number", "default": 0.25},
                },
                "required": ["query", "limit"],
            },
            "annotations": {"readOnlyHint": True, "destructiveHint": False, "extra": None},
        },
        {
            "name": "create_contact",
            "inputSchema": {"type": "object"},
            "outputSchema": {"type": "object", "properties": {"id": {"type": "string"}}},
            "_meta": {"nested": [1, 2.5, [], {}, "x"]},
        },
        # JSON bodies may carry a lone surrogate escape; it must store and load unchanged.
        {"name": "odd_text", "description": "lone \ud800 surrogate, NUL-free", "inputSchema": {}},
    ]
    config = _config(headers=headers, tools=tools)
    async with store.transaction() as tx:
        await tx.insert_config(config)
    async with store.reader() as session:
        found = await session.get_config("acme", "crm", config.config_id)
    assert found == config
    assert found.upstream_headers == headers
    assert found.tools == tools
    # Exactly: key order too (clients show a schema's properties in the order given).
    assert json.dumps(found.tools) == json.dumps(tools)
    assert list(found.upstream_headers) == list(headers)
    assert found.tool_names == ["search_contacts", "create_contact", "odd_text"]
    assert found.upstream_header_names == ["Authorization", "X-Empty", "x-lower"]


async def test_config_url_credentials_round_trip_and_are_never_kept_in_clear(store: Store) -> None:
    await _integration(store)
    url = "https://bot:pa55-word@up.example/mcp?token=t0k3n-value&v=2"
    config = replace(_config(), upstream_url=url)
    async with store.transaction() as tx:
        await tx.insert_config(config)
    async with store.reader() as session:
        found = await session.get_config("acme", "crm", config.config_id)
        listed = await session.list_configs("acme", "crm", "", 10)
    assert found == config and listed == [config]
    assert found.upstream_url == url  # what the clients connect to
    assert found.shown_url == "https://bot:***@up.example/mcp?token=***&v=***"
    assert "pa55-word" not in repr(found) and "t0k3n-value" not in repr(found)
    with pytest.raises(RuntimeError, match="unencrypted"):
        seal_url(url, None)  # a store without a SecretBox refuses, as for header values


async def test_config_without_upstream_and_with_sync_time_round_trips(store: Store) -> None:
    await _integration(store)
    config = Config("c-inline", "acme", "crm", None, {}, [], T0, T0 + 1)
    async with store.transaction() as tx:
        await tx.insert_config(config)
    async with store.reader() as session:
        assert await session.get_config("acme", "crm", "c-inline") == config


async def test_configs_are_scoped_to_their_integration_and_listed_in_id_order(store: Store) -> None:
    await _integration(store, "crm")
    await _integration(store, "billing")
    ids = ["c3", "c1", "c4", "c2"]
    async with store.transaction() as tx:
        for config_id in ids:
            await tx.insert_config(_config(config_id=config_id))
        await tx.insert_config(_config(integration="billing", config_id="c0"))
    async with store.reader() as session:
        page1 = await session.list_configs("acme", "crm", "", 3)
        page2 = await session.list_configs("acme", "crm", page1[-1].config_id, 3)
        assert await session.get_config("acme", "billing", "c1") is None
        assert await session.get_config("acme", "crm", "c0") is None
        assert await session.get_config("globex", "crm", "c1") is None
    assert [c.config_id for c in page1] == ["c1", "c2", "c3"]
    assert [c.config_id for c in page2] == ["c4"]


async def test_update_config_tools_replaces_catalog_and_sync_time(store: Store) -> None:
    await _integration(store)
    config = _config()
    async with store.transaction() as tx:
        await tx.insert_config(config)
    new_tools = [
        {"name": "a", "inputSchema": {"type": "object"}},
        {"name": "b", "inputSchema": {"type": "object"}, "description": "ß"},
    ]
    async with store.transaction() as tx:
        await tx.update_config_tools("acme", "crm", config.config_id, new_tools, T0 + 9)
    async with store.reader() as session:
        found = await session.get_config("acme", "crm", config.config_id)
    assert found is not None
    assert found.tools == new_tools
    assert found.synced_at == T0 + 9
    assert found.upstream_headers == config.upstream_headers


async def test_config_for_an_unknown_integration_is_refused_by_the_schema(store: Store) -> None:
    with pytest.raises(StoreConflictError):
        async with store.transaction() as tx:
            await tx.insert_config(_config(integration="ghost"))
    async with store.reader() as session:
        assert await session.list_configs("acme", "ghost", "", 10) == []


# settings ------------------------------------------------------------------------------------
async def test_settings_row_is_created_with_the_integration_disabled_and_empty(
    store: Store,
) -> None:
    await _integration(store)
    async with store.reader() as session:
        settings = await session.get_settings("acme", "crm")
        assert await session.get_settings("acme", "nope") is None
    assert settings == McpSettings("acme", "crm", False, None, [], None, None, None, T0, T0)


async def test_settings_update_round_trips_and_reports_the_bound_key_prefix(store: Store) -> None:
    await _integration(store)
    config = _config()
    key = _key()
    async with store.transaction() as tx:
        await tx.insert_config(config)
        await tx.insert_key(key)
        current = await tx.lock_settings("acme", "crm")
        assert current is not None
        await tx.update_settings(
            McpSettings(
                "acme",
                "crm",
                True,
                config.config_id,
                ["search", "zeta", "alpha"],
                "Use wisely ✓",
                key.key_id,
                None,
                current.created_at,
                T0 + 3,
            )
        )
    async with store.reader() as session:
        settings = await session.get_settings("acme", "crm")
    assert settings == McpSettings(
        "acme",
        "crm",
        True,
        config.config_id,
        ["search", "zeta", "alpha"],
        "Use wisely ✓",
        key.key_id,
        key.key_prefix,
        T0,
        T0 + 3,
    )
    assert settings.enabled is True


async def test_lock_settings_of_an_unknown_integration_is_none(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.lock_settings("acme", "ghost") is None


# keys ----------------------------------------------------------------------------------------
async def test_key_insert_lookup_by_hash_and_revoke(store: Store) -> None:
    await _integration(store)
    key = _key()
    async with store.transaction() as tx:
        await tx.insert_key(key)
    async with store.reader() as session:
        assert await session.get_key_by_hash(key.key_hash) == key
        assert await session.get_key_by_hash("0" * 64) is None
        assert await session.live_keys("acme", "crm") == [key]
    async with store.transaction() as tx:
        assert await tx.revoke_live_keys("acme", "crm", T0 + 7) == 1
        assert await tx.revoke_live_keys("acme", "crm", T0 + 8) == 0  # already revoked
    async with store.reader() as session:
        revoked = await session.get_key_by_hash(key.key_hash)
        assert await session.live_keys("acme", "crm") == []
    assert revoked is not None
    assert revoked.revoked_at == T0 + 7
    assert (revoked.key_id, revoked.tenant_id, revoked.integration_id, revoked.scope) == (
        key.key_id,
        "acme",
        "crm",
        SCOPE,
    )


async def test_revoke_live_keys_touches_only_that_integration(store: Store) -> None:
    crm, billing, other_tenant = _key(), _key(integration="billing"), _key(tenant="globex")
    async with store.transaction() as tx:
        for key in (crm, billing, other_tenant):
            await tx.insert_key(key)
    async with store.transaction() as tx:
        assert await tx.revoke_live_keys("acme", "crm", T0 + 1) == 1
    async with store.reader() as session:
        assert await session.live_keys("acme", "billing") == [billing]
        assert await session.live_keys("globex", "crm") == [other_tenant]


async def test_schema_refuses_a_second_live_key_for_one_integration(store: Store) -> None:
    first, second = _key(), _key()
    async with store.transaction() as tx:
        await tx.insert_key(first)
    with pytest.raises(StoreConflictError):
        async with store.transaction() as tx:
            await tx.insert_key(second)
    # Both inside one transaction: refused too, and nothing of it is kept.
    third, fourth = _key(integration="billing"), _key(integration="billing")
    with pytest.raises(StoreConflictError):
        async with store.transaction() as tx:
            await tx.insert_key(third)
            await tx.insert_key(fourth)
    async with store.reader() as session:
        assert await session.live_keys("acme", "crm") == [first]
        assert await session.get_key_by_hash(second.key_hash) is None
        assert await session.live_keys("acme", "billing") == []
        assert await session.get_key_by_hash(third.key_hash) is None
    # Once the live key is revoked, a new one is accepted.
    async with store.transaction() as tx:
        await tx.revoke_live_keys("acme", "crm", T0 + 1)
        await tx.insert_key(second)
    async with store.reader() as session:
        assert await session.live_keys("acme", "crm") == [second]


async def test_schema_refuses_a_duplicate_key_hash(store: Store) -> None:
    key = _key()
    async with store.transaction() as tx:
        await tx.insert_key(key)
        await tx.revoke_live_keys("acme", "crm", T0 + 1)
    clash = KeyBinding(
        str(uuid.uuid4()), key.key_hash, key.key_prefix, "acme", "crm", SCOPE, T0 + 2, None
    )
    with pytest.raises(StoreConflictError):
        async with store.transaction() as tx:
            await tx.insert_key(clash)


def _labelled(label: str, **fields: Any) -> KeyBinding:
    return replace(_key(), label=label, **fields)


async def test_labelled_keys_live_beside_the_default_one(store: Store) -> None:
    default = _key()
    narrowed = replace(
        _labelled("CI job", expires_at=T0 + 60_000, tool_ids=["a", "b"]), created_at=T0 + 1
    )
    plain = replace(_labelled("laptop"), created_at=T0 + 2)
    async with store.transaction() as tx:
        for key in (default, narrowed, plain):
            await tx.insert_key(key)
    async with store.reader() as session:
        assert await session.live_keys("acme", "crm", T0) == [default, narrowed, plain]
        assert await session.get_key_by_hash(narrowed.key_hash) == narrowed
    assert narrowed.ends_at == T0 + 60_000 and plain.ends_at is None
    assert narrowed.ended(T0 + 60_000) and not narrowed.ended(T0 + 59_999)


async def test_ending_default_keys_with_a_grace_leaves_the_others_and_never_lengthens_it(
    store: Store,
) -> None:
    default, other = _key(), replace(_labelled("laptop"), created_at=T0 + 1)
    async with store.transaction() as tx:
        await tx.insert_key(default)
        await tx.insert_key(other)
        assert await tx.end_default_keys("acme", "crm", T0 + 10_000) == 1
        successor = _key(at=T0 + 2)
        await tx.insert_key(successor)  # the one-default index counts unrevoked keys only
    async with store.reader() as session:
        live = await session.live_keys("acme", "crm", T0 + 9_999)
        assert [k.key_id for k in live] == [default.key_id, other.key_id, successor.key_id]
        assert live[0].revoked_at == T0 + 10_000
        ended = await session.live_keys("acme", "crm", T0 + 10_000)
        assert [k.key_id for k in ended] == [other.key_id, successor.key_id]
    async with store.transaction() as tx:
        # A later end does not lengthen a running grace; an earlier one cuts it short.
        assert await tx.end_default_keys("acme", "crm", T0 + 20_000) == 1  # the successor
        assert await tx.end_default_keys("acme", "crm", T0 + 5_000) == 2
    async with store.reader() as session:
        found = await session.get_key_by_hash(default.key_hash)
        assert found is not None and found.revoked_at == T0 + 5_000
        assert [k.key_id for k in await session.live_keys("acme", "crm", T0 + 5_000)] == [
            other.key_id
        ]


async def test_revoke_key_ends_one_key_of_that_integration_only(store: Store) -> None:
    crm, billing = _labelled("ci"), replace(_key(integration="billing"), label="ci")
    async with store.transaction() as tx:
        await tx.insert_key(crm)
        await tx.insert_key(billing)
        assert not await tx.revoke_key("acme", "billing", crm.key_id, T0 + 1)
        assert not await tx.revoke_key("globex", "crm", crm.key_id, T0 + 1)
        assert await tx.revoke_key("acme", "crm", crm.key_id, T0 + 1)
        assert not await tx.revoke_key("acme", "crm", crm.key_id, T0 + 2)  # already ended
    async with store.reader() as session:
        assert await session.live_keys("acme", "crm", T0 + 1) == []
        assert await session.live_keys("acme", "billing", T0 + 1) == [billing]


# transactions --------------------------------------------------------------------------------
class _Boom(Exception):
    pass


async def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    with pytest.raises(_Boom):
        async with store.transaction() as tx:
            await tx.insert_integration("acme", "crm", "CRM", T0)
            await tx.insert_config(_config())
            await tx.insert_key(_key())
            await tx.insert_audit("e1", "acme", "alice", "integration.created", "crm", T0, {})
            raise _Boom
    async with store.reader() as session:
        assert await session.get_integration("acme", "crm") is None
        assert await session.get_settings("acme", "crm") is None
        assert await session.list_configs("acme", "crm", "", 10) == []
        assert await session.live_keys("acme", "crm") == []
        assert await session.list_audit("acme", 2**62, 10) == []
    # The store is still usable after the rollback.
    await _integration(store)
    async with store.reader() as session:
        assert await session.get_integration("acme", "crm") is not None


async def test_a_conflict_rolls_back_the_writes_before_it(store: Store) -> None:
    await _integration(store)
    async with store.transaction() as tx:
        await tx.insert_key(_key())
    with pytest.raises(StoreConflictError):
        async with store.transaction() as tx:
            await tx.rename_integration("acme", "crm", "Renamed", T0 + 1)
            await tx.insert_audit("e-conflict", "acme", "bob", "x", "crm", T0, {})
            await tx.insert_key(_key())
    async with store.reader() as session:
        found = await session.get_integration("acme", "crm")
        assert await session.list_audit("acme", 2**62, 10) == []
    assert found is not None and found.name == "CRM"


async def test_a_write_is_visible_to_readers_only_after_commit(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.insert_integration("acme", "crm", "CRM", T0)
        async with store.reader() as session:
            assert await session.get_integration("acme", "crm") is None
    async with store.reader() as session:
        assert await session.get_integration("acme", "crm") is not None


# audit ---------------------------------------------------------------------------------------
async def test_audit_lists_newest_first_per_tenant_with_before_seq_paging(store: Store) -> None:
    async with store.transaction() as tx:
        for n in range(5):
            await tx.insert_audit(
                f"acme-{n}",
                "acme",
                "alice",
                f"action.{n}",
                "crm",
                T0 + n,
                {"n": n, "names": ["a", "b"], "nested": {"ok": True}},
            )
            await tx.insert_audit(f"globex-{n}", "globex", "eve", "x", "y", T0, {})
    async with store.reader() as session:
        page1 = await session.list_audit("acme", 2**62, 2)
        page2 = await session.list_audit("acme", page1[-1].seq, 2)
        page3 = await session.list_audit("acme", page2[-1].seq, 2)
        page4 = await session.list_audit("acme", page3[-1].seq, 2)
    events = page1 + page2 + page3
    assert [e.event_id for e in events] == [f"acme-{n}" for n in (4, 3, 2, 1, 0)]
    assert [e.seq for e in events] == sorted((e.seq for e in events), reverse=True)
    assert len(page3) == 1 and page4 == []
    newest = events[0]
    assert (newest.tenant_id, newest.actor, newest.action, newest.target, newest.at) == (
        "acme",
        "alice",
        "action.4",
        "crm",
        T0 + 4,
    )
    assert newest.details == {"n": 4, "names": ["a", "b"], "nested": {"ok": True}}


async def test_audit_event_ids_are_unique(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.insert_audit("same", "acme", "a", "x", "t", T0, {})
    with pytest.raises(StoreConflictError):
        async with store.transaction() as tx:
            await tx.insert_audit("same", "acme", "a", "x", "t", T0, {})


# persistence ---------------------------------------------------------------------------------
async def test_data_survives_close_and_reopen(database_url: str) -> None:
    first = create_store(database_url, secrets=SECRETS)
    await first.open()
    await first.migrate()
    key = _key()
    config = _config()
    try:
        async with first.transaction() as tx:
            await tx.insert_integration("acme", "crm", "CRM", T0)
            await tx.insert_config(config)
            await tx.insert_key(key)
            await tx.insert_audit(
                "e1", "acme", "alice", "integration.created", "crm", T0, {"name": "CRM"}
            )
    finally:
        await first.close()
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        assert await asyncio.to_thread(os.path.getsize, path) > 0

    second = create_store(database_url, secrets=SECRETS)
    await second.open()
    try:
        assert await second.migrate() == []
        async with second.reader() as session:
            integration = await session.get_integration("acme", "crm")
            assert await session.get_config("acme", "crm", config.config_id) == config
            assert await session.get_key_by_hash(key.key_hash) == key
            assert await session.get_settings("acme", "crm") is not None
            [event] = await session.list_audit("acme", 2**62, 10)
    finally:
        await second.close()
    assert integration is not None and integration.name == "CRM"
    assert event.details == {"name": "CRM"}


async def test_a_second_store_on_the_same_database_sees_committed_writes(database_url: str) -> None:
    one, two = create_store(database_url), create_store(database_url)
    await one.open()
    await two.open()
    try:
        await one.migrate()
        assert await two.migrate() == []
        async with one.transaction() as tx:
            await tx.insert_integration("acme", "crm", "CRM", T0)
        async with two.reader() as session:
            assert await session.get_integration("acme", "crm") is not None
        async with two.transaction() as tx:
            await tx.rename_integration("acme", "crm", "Renamed", T0 + 1)
        async with one.reader() as session:
            found = await session.get_integration("acme", "crm")
        assert found is not None and found.name == "Renamed"
    finally:
        await one.close()
        await two.close()


async def test_ping_answers_on_an_open_store(store: Store) -> None:
    await store.ping()
