"""Postgres backend on an asyncpg pool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg

from settings_api.store.base import (
    Row,
    Store,
    StoreConflictError,
    StoreDataError,
    StoreSession,
    StoreUnavailableError,
    pending_migrations,
)
from settings_api.store.queries import PG_JOB_LOCK

# Any number works as long as every replica uses the same one.
_MIGRATION_LOCK_ID = 0x6D6370677731  # "mcpgw1"

_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
# While connecting, any refusal by the server (a database that does not exist, a wrong
# password, no connections left) also means the store is unavailable, not a bug.
_CANNOT_CONNECT = (*_UNAVAILABLE, asyncpg.PostgresError)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _OneLineRefillFailures(logging.Filter):
    """asyncpg's pool retries its connection floor every few seconds while Postgres is down,
    logging a warning with a 30-line traceback each time. The reason of such an outage fits on
    one line: it goes in the field `error`. Any other failure keeps its traceback.

    The retrying task is started where a connection was found missing: by a request, or by a
    lost connection's callback, which runs in the context of the request that opened it. It
    inherits that context: without `request_id = None` (gateway/observability/logs.py) every
    retry would be logged under that one request's id, long after it was answered."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = None
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, _UNAVAILABLE):
            fields = getattr(record, "fields", None)
            record.fields = {**(fields if isinstance(fields, dict) else {}), "error": _why(exc)}
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLineRefillFailures())


class _PgConnection:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        with _dropped_on_timeout(self._conn):
            return await self._conn.fetchrow(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        with _dropped_on_timeout(self._conn):
            return await self._conn.fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        with _dropped_on_timeout(self._conn):
            status = await self._conn.execute(sql, *args)
        # asyncpg returns the command tag, e.g. "UPDATE 3"; the last word is the row count.
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with _dropped_on_timeout(self._conn):
            await self._conn.executemany(sql, rows)


@contextmanager
def _dropped_on_timeout(conn: asyncpg.Connection) -> Iterator[None]:
    """A statement past the timeout means a hung server or a broken network: drop the
    connection at once. Left open, its ROLLBACK and its release back to the pool would each
    wait out the timeout again (a request would take 2-3 times MCPGW_STORE_TIMEOUT_S); the
    pool opens a new connection when one is next needed."""
    try:
        yield
    except (TimeoutError, OSError):
        conn.terminate()
        raise


class PostgresStore(Store):
    """Store on Postgres; the pool is created in `open` (called from the app's cleanup_ctx)."""

    dialect = "postgres"

    def __init__(
        self, dsn: str, *, timeout_s: float = 5.0, min_size: int = 1, max_size: int = 10
    ) -> None:
        self._dsn = dsn
        self._timeout = timeout_s
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._timeout,
                command_timeout=self._timeout,
            )
        except _CANNOT_CONNECT as exc:
            raise StoreUnavailableError(f"cannot connect to Postgres: {_why(exc)}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StoreUnavailableError("store is not open")
        pool = self._pool
        try:
            conn = await pool.acquire(timeout=self._timeout)
        except _CANNOT_CONNECT as exc:
            raise StoreUnavailableError(f"Postgres unavailable: {_why(exc)}") from exc
        try:
            try:
                with _dropped_on_timeout(conn):  # e.g. BEGIN, sent by asyncpg itself
                    yield conn
            finally:
                await pool.release(conn)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise StoreConflictError(exc.__class__.__name__) from exc
        except asyncpg.DataError as exc:
            raise StoreDataError(exc.__class__.__name__) from exc
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"Postgres unavailable: {_why(exc)}") from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreSession]:
        async with self._connection() as conn, conn.transaction():
            yield StoreSession(_PgConnection(conn), "FOR UPDATE", self.secrets, PG_JOB_LOCK)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[StoreSession]:
        async with self._connection() as conn:
            yield StoreSession(_PgConnection(conn), "", self.secrets)

    async def migrate(self) -> list[int]:
        applied_now: list[int] = []
        async with self._connection() as conn:
            # Session-level advisory lock: replicas starting together apply migrations one at a
            # time, and the later ones find nothing left to do.
            await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                rows = await conn.fetch("SELECT version FROM schema_migrations")
                for version, sql in pending_migrations({r["version"] for r in rows}, self.dialect):
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version) VALUES ($1)", version
                        )
                    applied_now.append(version)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
        return applied_now
