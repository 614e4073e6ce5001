"""Persistence: one interface (`Store`, `StoreSession`), Postgres and SQLite side by side."""

from settings_api.secrets_box import SecretBox
from settings_api.store.base import (
    RotationReport,
    Store,
    StoreConflictError,
    StoreDataError,
    StoreError,
    StoreSession,
    StoreUnavailableError,
)
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


def create_store(
    database_url: str,
    *,
    timeout_s: float = 5.0,
    pool_size: int = 10,
    secrets: SecretBox | None = None,
) -> Store:
    """The backend for a `postgresql://` or `sqlite:///` URL (not yet opened). `secrets`
    encrypts upstream header values at rest; without it configs with header values cannot be
    written (and encrypted ones read back without their values)."""
    store: Store
    if database_url.startswith(("postgresql://", "postgres://")):
        from settings_api.store.postgres import PostgresStore

        store = PostgresStore(database_url, timeout_s=timeout_s, max_size=pool_size)
    elif database_url.startswith("sqlite:///"):
        from settings_api.store.sqlite import SqliteStore

        store = SqliteStore.from_url(database_url, timeout_s=timeout_s)
    else:
        raise ValueError("database URL must start with postgresql:// or sqlite:///")
    store.secrets = secrets
    return store


async def apply_migrations(database_url: str, *, timeout_s: float) -> list[int]:
    """Apply the pending migrations over one connection; the versions applied."""
    store = create_store(database_url, timeout_s=timeout_s, pool_size=1)
    await store.open()
    try:
        return await store.migrate()
    finally:
        await store.close()


__all__ = [
    "AccessTokenBinding",
    "AuditEvent",
    "CallQuery",
    "Config",
    "Integration",
    "KeyBinding",
    "McpSettings",
    "OAuthClient",
    "OAuthClientUse",
    "OAuthCode",
    "OAuthToken",
    "RotationReport",
    "SimulatorFixture",
    "Store",
    "StoreConflictError",
    "StoreDataError",
    "StoreError",
    "StoreSession",
    "StoreUnavailableError",
    "ToolCall",
    "apply_migrations",
    "create_store",
]
