"""The store interface: named queries written once, over two sibling backends.

A backend (Postgres, SQLite) only supplies connections, transactions and its SQL dialect;
`StoreSession` turns the statements in `queries` into typed records for both of them.
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any, Protocol

from mcp_core.redaction import has_secrets, redact
from settings_api.secrets_box import (
    SecretBox,
    open_headers,
    open_url,
    reseal_headers,
    reseal_url,
    seal_headers,
    seal_url,
    worst,
)
from settings_api.store import queries as q
from settings_api.store.models import (
    AccessTokenBinding,
    AuditEvent,
    CallQuery,
    Config,
    Integration,
    KeyBinding,
    McpSettings,
    OAuthClient,
    OAuthClientUse,
    OAuthCode,
    OAuthToken,
    SimulatorFixture,
    ToolCall,
)

Row = Mapping[str, Any]


class StoreError(Exception):
    """Base of store failures."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached (or did not answer within the configured timeout)."""


class StoreConflictError(StoreError):
    """A uniqueness or foreign-key rule of the schema refused the write."""


class StoreDataError(StoreError):
    """The database refused a value (e.g. out of its column type's range)."""


class Connection(Protocol):
    """The primitives a backend provides; `sql` is already in the backend's dialect."""

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]: ...

    async def execute(self, sql: str, *args: Any) -> int: ...

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """`sql` once per row, in one round trip where the driver can."""
        ...


def _integration(row: Row) -> Integration:
    return Integration(
        row["tenant_id"], row["integration_id"], row["name"], row["created_at"], row["modified_at"]
    )


def _config(row: Row, secrets: SecretBox | None) -> Config:
    headers = open_headers(row["upstream_headers"], secrets)
    url, url_error = open_url(row["upstream_url"], row["upstream_url_sealed"], secrets)
    return Config(
        row["config_id"],
        row["tenant_id"],
        row["integration_id"],
        url,
        headers.values,
        json.loads(row["tools"]),
        row["created_at"],
        row["synced_at"],
        headers.error or url_error,
    )


def _settings(row: Row) -> McpSettings:
    return McpSettings(
        row["tenant_id"],
        row["integration_id"],
        bool(row["enabled"]),
        row["config_id"],
        json.loads(row["exposed_tool_ids"]),
        row["description"],
        row["api_key_id"],
        row["key_prefix"],
        row["created_at"],
        row["modified_at"],
        row["fixtures_version"],
    )


def _fixture(row: Row) -> SimulatorFixture:
    return SimulatorFixture(
        row["tenant_id"],
        row["integration_id"],
        row["tool_id"],
        json.loads(row["rules"]),
        row["created_at"],
        row["modified_at"],
    )


def _tool_ids(text: str | None) -> list[str] | None:
    return None if text is None else json.loads(text)


def _key(row: Row) -> KeyBinding:
    return KeyBinding(
        row["key_id"],
        row["key_hash"],
        row["key_prefix"],
        row["tenant_id"],
        row["integration_id"],
        row["scope"],
        row["created_at"],
        row["revoked_at"],
        row["label"],
        row["expires_at"],
        _tool_ids(row["tool_ids"]),
        row["last_used_at"],
    )


def _audit(row: Row) -> AuditEvent:
    return AuditEvent(
        row["seq"],
        row["event_id"],
        row["tenant_id"],
        row["actor"],
        row["action"],
        row["target"],
        row["at"],
        json.loads(row["details"]),
    )


def _oauth_client(row: Row) -> OAuthClient:
    return OAuthClient(
        row["client_id"],
        row["kind"],
        row["client_name"],
        json.loads(row["redirect_uris"]),
        row["created_at"],
    )


def _oauth_code(row: Row) -> OAuthCode:
    return OAuthCode(**{f.name: row[f.name] for f in fields(OAuthCode)})


def _oauth_token(row: Row) -> OAuthToken:
    values = {f.name: row[f.name] for f in fields(OAuthToken)}
    values["key_revoked"] = bool(values["key_revoked"])
    return OAuthToken(**values)


def _call(row: Row) -> ToolCall:
    return ToolCall(
        row["tenant_id"],
        row["integration_id"],
        row["at"],
        row["url"],
        row["api_key_id"],
        row["tool"],
        row["outcome"],
        row["duration_ms"],
        row["request_id"],
        row["run_id"],
        row["arguments_sha256"],
        row["arguments"],
        row["id"],
    )


def _dump(value: Any) -> str:
    # Key order is kept: a tool's schema (e.g. the order of its properties) is relayed to
    # clients exactly as the tenant or the upstream wrote it.
    return json.dumps(value, separators=(",", ":"))


class StoreSession:
    """Named queries on one connection; inside a transaction when opened by `Store.transaction`.

    Upstream header values and URL credentials are encrypted with `secrets` when a config is
    written and decrypted when it is read (settings_api/secrets_box.py): the only place that
    sees both forms."""

    def __init__(
        self,
        conn: Connection,
        lock_clause: str,
        secrets: SecretBox | None = None,
        job_lock: str = q.NO_JOB_LOCK,
    ) -> None:
        self._conn = conn
        self._lock = lock_clause
        self._secrets = secrets
        self._job_lock = job_lock

    async def ping(self) -> None:
        await self._conn.fetchrow(q.PING)

    # integrations
    async def get_integration(
        self, tenant: str, integration: str, *, for_update: bool = False
    ) -> Integration | None:
        sql = q.GET_INTEGRATION.format(lock=self._lock if for_update else "")
        row = await self._conn.fetchrow(sql, tenant, integration)
        return _integration(row) if row else None

    async def list_integrations(self, tenant: str, after: str, limit: int) -> list[Integration]:
        rows = await self._conn.fetch(q.LIST_INTEGRATIONS, tenant, after, limit)
        return [_integration(r) for r in rows]

    async def insert_integration(self, tenant: str, integration: str, name: str, now: int) -> bool:
        """Insert with its (disabled) MCP settings row; False when it already exists."""
        if not await self._conn.execute(q.INSERT_INTEGRATION, tenant, integration, name, now):
            return False
        await self._conn.execute(q.INSERT_SETTINGS, tenant, integration, now)
        return True

    async def rename_integration(self, tenant: str, integration: str, name: str, now: int) -> None:
        await self._conn.execute(q.RENAME_INTEGRATION, tenant, integration, name, now)

    async def delete_integration(self, tenant: str, integration: str) -> bool:
        return bool(await self._conn.execute(q.DELETE_INTEGRATION, tenant, integration))

    # configs
    async def insert_config(self, config: Config) -> None:
        shown_url, sealed_url = seal_url(config.upstream_url, self._secrets)
        await self._conn.execute(
            q.INSERT_CONFIG,
            config.config_id,
            config.tenant_id,
            config.integration_id,
            shown_url,
            seal_headers(config.upstream_headers, self._secrets),
            _dump(config.tools),
            config.created_at,
            config.synced_at,
            sealed_url,
        )

    async def get_config(self, tenant: str, integration: str, config_id: str) -> Config | None:
        row = await self._conn.fetchrow(q.GET_CONFIG, tenant, integration, config_id)
        return _config(row, self._secrets) if row else None

    async def list_configs(
        self, tenant: str, integration: str, after: str, limit: int
    ) -> list[Config]:
        rows = await self._conn.fetch(q.LIST_CONFIGS, tenant, integration, after, limit)
        return [_config(r, self._secrets) for r in rows]

    async def reseal_config_headers(
        self, after: str, limit: int, report: RotationReport
    ) -> str | None:
        """Re-encrypt the header values and URL credentials of up to `limit` configs (every
        tenant) whose id sorts after `after` with the first key, rows locked; returns the last
        id seen (None: done)."""
        if self._secrets is None:
            raise RuntimeError("rotating secrets needs a SecretBox")
        sql = q.LOCK_CONFIG_HEADERS.format(lock=self._lock)
        rows = await self._conn.fetch(sql, after, limit)
        for row in rows:
            stored, outcome = reseal_headers(row["upstream_headers"], self._secrets)
            if stored is not None:
                await self._conn.execute(q.UPDATE_CONFIG_HEADERS, row["config_id"], stored)
            url, url_outcome = reseal_url(
                row["upstream_url"], row["upstream_url_sealed"], self._secrets
            )
            if url is not None:
                await self._conn.execute(q.UPDATE_CONFIG_URL, row["config_id"], *url)
            report.count(worst(outcome, url_outcome), row["config_id"])
        return rows[-1]["config_id"] if len(rows) == limit else None

    async def redact_audit_urls(self, after: int, limit: int, report: RotationReport) -> int | None:
        """Redact the upstream URL of up to `limit` config.created events (every tenant) after
        seq `after`, recorded before URLs were redacted; returns the last seq seen (None: done)."""
        rows = await self._conn.fetch(q.LOCK_CONFIG_AUDIT.format(lock=self._lock), after, limit)
        for row in rows:
            details = json.loads(row["details"])
            url = details.get("upstreamUrl") if isinstance(details, dict) else None
            if isinstance(url, str) and has_secrets(url):
                details["upstreamUrl"] = redact(url)
                await self._conn.execute(q.UPDATE_AUDIT_DETAILS, row["seq"], _dump(details))
                report.audit_redacted += 1
        return rows[-1]["seq"] if len(rows) == limit else None

    async def update_config_tools(
        self,
        tenant: str,
        integration: str,
        config_id: str,
        tools: list[dict[str, Any]],
        synced_at: int,
    ) -> None:
        await self._conn.execute(
            q.UPDATE_CONFIG_TOOLS, tenant, integration, config_id, _dump(tools), synced_at
        )

    # MCP settings and keys
    async def get_settings(self, tenant: str, integration: str) -> McpSettings | None:
        row = await self._conn.fetchrow(q.SETTINGS_SELECT, tenant, integration)
        return _settings(row) if row else None

    async def lock_settings(self, tenant: str, integration: str) -> McpSettings | None:
        """Take the integration's settings row lock, then read it (None: no such integration)."""
        sql = q.LOCK_SETTINGS.format(lock=self._lock)
        if await self._conn.fetchrow(sql, tenant, integration) is None:
            return None
        return await self.get_settings(tenant, integration)

    async def update_settings(self, s: McpSettings) -> None:
        await self._conn.execute(
            q.UPDATE_SETTINGS,
            s.tenant_id,
            s.integration_id,
            s.enabled,
            s.config_id,
            _dump(s.exposed_tool_ids),
            s.description,
            s.api_key_id,
            s.modified_at,
        )

    async def unbind_key(self, tenant: str, integration: str) -> None:
        await self._conn.execute(q.UNBIND_KEY, tenant, integration)

    async def insert_key(self, key: KeyBinding) -> None:
        await self._conn.execute(
            q.INSERT_KEY,
            key.key_id,
            key.key_hash,
            key.key_prefix,
            key.tenant_id,
            key.integration_id,
            key.scope,
            key.created_at,
            key.label,
            key.expires_at,
            None if key.tool_ids is None else _dump(key.tool_ids),
        )

    async def revoke_live_keys(self, tenant: str, integration: str, now: int) -> int:
        """End every key of the integration that has not ended (a grace period included)."""
        return await self._conn.execute(q.REVOKE_LIVE_KEYS, tenant, integration, now)

    async def end_default_keys(self, tenant: str, integration: str, at: int) -> int:
        """End the integration's default keys at `at` (now, or the end of a grace period)."""
        return await self._conn.execute(q.END_DEFAULT_KEYS, tenant, integration, at)

    async def revoke_key(self, tenant: str, integration: str, key_id: str, now: int) -> bool:
        """End one key now; False when the integration has no such key not ended."""
        return bool(await self._conn.execute(q.REVOKE_KEY, tenant, integration, key_id, now))

    async def live_keys(
        self, tenant: str, integration: str, now: int | None = None
    ) -> list[KeyBinding]:
        """The integration's keys not revoked at `now` (default: the clock), expired ones
        included, oldest first."""
        at = time.time_ns() // 1_000_000 if now is None else now
        return [_key(r) for r in await self._conn.fetch(q.LIVE_KEYS, tenant, integration, at)]

    async def touch_key(self, key_id: str, used_at: int) -> None:
        await self._conn.execute(q.TOUCH_KEY, key_id, used_at)

    async def get_key_by_hash(self, key_hash: str) -> KeyBinding | None:
        row = await self._conn.fetchrow(q.GET_KEY_BY_HASH, key_hash)
        return _key(row) if row else None

    # simulator fixtures
    async def get_fixture(
        self, tenant: str, integration: str, tool: str
    ) -> SimulatorFixture | None:
        row = await self._conn.fetchrow(q.GET_FIXTURE, tenant, integration, tool)
        return _fixture(row) if row else None

    async def list_fixtures(self, tenant: str, integration: str) -> list[SimulatorFixture]:
        return [_fixture(r) for r in await self._conn.fetch(q.LIST_FIXTURES, tenant, integration)]

    async def put_fixture(
        self, tenant: str, integration: str, tool: str, rules: list[dict[str, Any]], now: int
    ) -> None:
        await self._conn.execute(q.UPSERT_FIXTURE, tenant, integration, tool, _dump(rules), now)

    async def delete_fixture(self, tenant: str, integration: str, tool: str) -> bool:
        return bool(await self._conn.execute(q.DELETE_FIXTURE, tenant, integration, tool))

    async def bump_fixtures_version(self, tenant: str, integration: str) -> None:
        await self._conn.execute(q.BUMP_FIXTURES_VERSION, tenant, integration)

    # OAuth (settings_api/oauth/grants.py)
    async def upsert_oauth_client(self, client: OAuthClient) -> None:
        await self._conn.execute(
            q.UPSERT_OAUTH_CLIENT,
            client.client_id,
            client.kind,
            client.client_name,
            _dump(client.redirect_uris),
            client.created_at,
        )

    async def get_oauth_client(self, client_id: str) -> OAuthClient | None:
        row = await self._conn.fetchrow(q.GET_OAUTH_CLIENT, client_id)
        return _oauth_client(row) if row else None

    async def insert_oauth_code(self, code: OAuthCode) -> None:
        await self._conn.execute(
            q.INSERT_OAUTH_CODE,
            code.code_hash,
            code.client_id,
            code.redirect_uri,
            code.code_challenge,
            code.key_id,
            code.tenant_id,
            code.integration_id,
            code.resource,
            code.family_id,
            code.created_at,
            code.expires_at,
        )

    async def get_oauth_code(self, code_hash: str) -> OAuthCode | None:
        row = await self._conn.fetchrow(q.GET_OAUTH_CODE, code_hash)
        return _oauth_code(row) if row else None

    async def use_oauth_code(self, code_hash: str, now: int) -> bool:
        """Mark a code used; False when it was used already (a replay)."""
        return bool(await self._conn.execute(q.USE_OAUTH_CODE, code_hash, now))

    async def delete_expired_oauth_codes(self, now: int) -> int:
        return await self._conn.execute(q.DELETE_EXPIRED_OAUTH_CODES, now)

    async def delete_idle_oauth_clients(self, created_before: int, limit: int) -> int:
        return await self._conn.execute(q.DELETE_IDLE_OAUTH_CLIENTS, created_before, limit)

    async def delete_expired_oauth_tokens(self, expired_before: int, limit: int) -> int:
        return await self._conn.execute(q.DELETE_EXPIRED_OAUTH_TOKENS, expired_before, limit)

    async def insert_oauth_token(self, token: OAuthToken) -> None:
        await self._conn.execute(
            q.INSERT_OAUTH_TOKEN,
            token.token_hash,
            token.kind,
            token.family_id,
            token.client_id,
            token.key_id,
            token.tenant_id,
            token.integration_id,
            token.resource,
            token.created_at,
            token.expires_at,
        )

    async def get_oauth_token(self, token_hash: str, now: int) -> OAuthToken | None:
        """The token; `key_revoked` when its approving key had ended at `now`."""
        row = await self._conn.fetchrow(q.GET_OAUTH_TOKEN, token_hash, now)
        return _oauth_token(row) if row else None

    async def get_access_token(self, token_hash: str, now: int) -> AccessTokenBinding | None:
        row = await self._conn.fetchrow(q.GET_ACCESS_TOKEN, token_hash, now)
        if row is None:
            return None
        return AccessTokenBinding(
            row["token_hash"],
            row["key_id"],
            row["tenant_id"],
            row["integration_id"],
            row["scope"],
            row["resource"],
            row["expires_at"],
            bool(row["revoked"]),
            row["key_revoked_at"],
            row["key_expires_at"],
            _tool_ids(row["key_tool_ids"]),
        )

    async def use_refresh_token(self, token_hash: str, now: int) -> bool:
        """Spend a refresh token; False when it was spent or revoked already."""
        return bool(await self._conn.execute(q.USE_REFRESH_TOKEN, token_hash, now))

    async def revoke_oauth_token(self, token_hash: str, now: int) -> int:
        return await self._conn.execute(q.REVOKE_OAUTH_TOKEN, token_hash, now)

    async def revoke_oauth_family(self, family_id: str, now: int) -> int:
        return await self._conn.execute(q.REVOKE_OAUTH_FAMILY, family_id, now)

    async def revoke_oauth_client_tokens(
        self, tenant: str, integration: str, client_id: str, now: int
    ) -> int:
        return await self._conn.execute(
            q.REVOKE_OAUTH_CLIENT_TOKENS, tenant, integration, client_id, now
        )

    async def touch_oauth_token(self, token_hash: str, used_at: int) -> None:
        await self._conn.execute(q.TOUCH_OAUTH_TOKEN, token_hash, used_at)

    async def list_oauth_client_uses(
        self, tenant: str, integration: str, now: int, after: str, limit: int
    ) -> list[OAuthClientUse]:
        rows = await self._conn.fetch(
            q.LIST_OAUTH_CLIENT_USES, tenant, integration, now, after, limit
        )
        return [
            OAuthClientUse(
                r["client_id"],
                r["client_name"],
                json.loads(r["redirect_uris"]) if r["redirect_uris"] else [],
                r["first_used_at"],
                r["last_used_at"],
            )
            for r in rows
        ]

    # audit
    async def insert_audit(
        self,
        event_id: str,
        tenant: str,
        actor: str,
        action: str,
        target: str,
        at: int,
        details: dict[str, Any],
    ) -> None:
        await self._conn.execute(
            q.INSERT_AUDIT, event_id, tenant, actor, action, target, at, _dump(details)
        )

    async def list_audit(self, tenant: str, before_seq: int, limit: int) -> list[AuditEvent]:
        rows = await self._conn.fetch(q.LIST_AUDIT, tenant, before_seq, limit)
        return [_audit(r) for r in rows]

    # the tool-call log
    async def insert_calls(self, calls: Sequence[ToolCall]) -> None:
        await self._conn.execute_many(
            q.INSERT_CALL,
            [
                (
                    c.tenant_id,
                    c.integration_id,
                    c.at,
                    c.url,
                    c.api_key_id,
                    c.tool,
                    c.outcome,
                    c.duration_ms,
                    c.request_id,
                    c.run_id,
                    c.arguments_sha256,
                    c.arguments,
                )
                for c in calls
            ],
        )

    async def list_calls(self, tenant: str, integration: str, page: CallQuery) -> list[ToolCall]:
        at, seq = page.before
        rows = await self._conn.fetch(
            q.LIST_CALLS, tenant, integration, page.limit, at, seq, page.url, page.run_id
        )
        return [_call(r) for r in rows]

    async def delete_calls_before(self, at: int, limit: int) -> int:
        """Delete up to `limit` calls older than `at`; how many were deleted."""
        return await self._conn.execute(q.DELETE_OLD_CALLS, at, limit)

    async def try_job_lock(self, job: int) -> bool:
        """Whether this transaction holds `job`'s lock (released at commit); False when
        another transaction, on any replica, holds it now."""
        row = await self._conn.fetchrow(self._job_lock, job)
        return bool(row and row["locked"])


@dataclass(slots=True)
class RotationReport:
    """What `Store.rotate_secrets` did, by outcome (config ids of the unreadable ones)."""

    rotated: int = 0  # encrypted with another key of the list, now with the first one
    encrypted: int = 0  # stored in plaintext before, now encrypted
    current: int = 0  # already encrypted with the first key
    unreadable: list[str] = field(default_factory=list)  # no key opens them: left as they are
    audit_redacted: int = 0  # config.created events that held a URL's credentials in clear

    def count(self, outcome: str, config_id: str) -> None:
        if outcome == "unreadable":
            self.unreadable.append(config_id)
        else:
            setattr(self, outcome, getattr(self, outcome) + 1)


class Store(ABC):
    """A database behind `StoreSession`s; created closed, opened in the app's cleanup_ctx."""

    dialect: str
    # Encrypts upstream header values at rest (set by `create_store`); without one, configs
    # with header values cannot be written.
    secrets: SecretBox | None = None

    @abstractmethod
    async def open(self) -> None:
        """Connect (pools, files)."""

    @abstractmethod
    async def close(self) -> None:
        """Release every connection."""

    @abstractmethod
    async def migrate(self) -> list[int]:
        """Apply pending numbered migrations under a lock; return the versions applied."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[StoreSession]:
        """A session inside one transaction: committed on exit, rolled back on error."""

    @abstractmethod
    def reader(self) -> AbstractAsyncContextManager[StoreSession]:
        """A session for single-statement reads of committed data."""

    async def ping(self) -> None:
        async with self.reader() as session:
            await session.ping()

    async def rotate_secrets(self, batch_size: int = 100) -> RotationReport:
        """Re-encrypt every config's header values and URL credentials with the first key, one
        transaction per batch (safe to interrupt and run again: rows already current are not
        rewritten)."""
        report = RotationReport()
        after: str | None = ""
        while after is not None:
            async with self.transaction() as tx:
                after = await tx.reseal_config_headers(after, batch_size, report)
        seq: int | None = 0
        while seq is not None:
            async with self.transaction() as tx:
                seq = await tx.redact_audit_urls(seq, batch_size, report)
        return report


_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Migrations are written once; these are the words the dialects spell differently.
_DIALECT_WORDS = {
    "postgres": {"@SERIAL_PK@": "bigserial PRIMARY KEY"},
    "sqlite": {"@SERIAL_PK@": "INTEGER PRIMARY KEY AUTOINCREMENT"},
}


def migration_files(dialect: str) -> list[tuple[int, str]]:
    """(version, SQL in `dialect`) of every shipped migration, in order."""
    folder = resources.files("settings_api.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            sql = entry.read_text(encoding="utf-8")
            for word, spelling in _DIALECT_WORDS[dialect].items():
                sql = sql.replace(word, spelling)
            found.append((int(match.group(1)), sql))
    return sorted(found)


def pending_migrations(applied: set[int], dialect: str) -> list[tuple[int, str]]:
    """The migrations of `dialect` not in `applied`, in order."""
    return [(v, sql) for v, sql in migration_files(dialect) if v not in applied]
