"""Persistence: one interface (`Store`, `StoreSession`), Postgres and SQLite side by side."""

from settings_api.store.base import (
    Store,
    StoreConflictError,
    StoreDataError,
    StoreError,
    StoreSession,
    StoreUnavailableError,
)
from settings_api.store.models import (
    AuditEvent,
    Config,
    Integration,
    KeyBinding,
    McpSettings,
    SimulatorFixture,
)


def create_store(database_url: str, *, timeout_s: float = 5.0, pool_size: int = 10) -> Store:
    """The backend for a `postgresql://` or `sqlite:///` URL (not yet opened)."""
    if database_url.startswith(("postgresql://", "postgres://")):
        from settings_api.store.postgres import PostgresStore

        return PostgresStore(database_url, timeout_s=timeout_s, max_size=pool_size)
    if database_url.startswith("sqlite:///"):
        from settings_api.store.sqlite import SqliteStore

        return SqliteStore.from_url(database_url, timeout_s=timeout_s)
    raise ValueError("database URL must start with postgresql:// or sqlite:///")


__all__ = [
    "AuditEvent", "Config", "Integration", "KeyBinding", "McpSettings", "SimulatorFixture",
    "Store",
    "StoreConflictError", "StoreDataError", "StoreError", "StoreSession",
    "StoreUnavailableError", "create_store",
]
