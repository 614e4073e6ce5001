"""Embedded SQLite backend (aiosqlite): one writer connection, one reader, WAL journal."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import aiosqlite

from settings_api.store.base import (
    Row,
    Store,
    StoreConflictError,
    StoreSession,
    StoreUnavailableError,
    pending_migrations,
)

log = logging.getLogger(__name__)


@lru_cache(maxsize=256)
def _dialect(sql: str) -> str:
    # Statements are written with Postgres' $n; SQLite understands the same numbering as ?n.
    return re.sub(r"\$(\d+)", r"?\1", sql)


def split_statements(script: str) -> list[str]:
    """Split a SQL script into complete statements (sqlite3 decides where one ends)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise ValueError("migration ends with an incomplete statement")
    return statements


class _SqliteConnection:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self._conn.execute(_dialect(sql), args) as cursor:
            # sqlite3.Row is a mapping by behaviour (row factory), not by its declared type.
            return cast(Row | None, await cursor.fetchone())

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        async with self._conn.execute(_dialect(sql), args) as cursor:
            return cast(Sequence[Row], list(await cursor.fetchall()))

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._conn.execute(_dialect(sql), args) as cursor:
            return cursor.rowcount

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(_dialect(sql), rows)


# The database holds tenants' configs and key hashes: readable by its owner only, as the
# secret files in the data dir are.
PRIVATE_MODE = 0o600


def _make_private(path: Path) -> None:
    """Create the database file owner-only before SQLite opens it, and tighten one an older
    version created looser. SQLite gives its -wal and -shm files the database file's mode;
    those an older version left are tightened too."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE))  # the mode applies if new
    for name in (str(path), f"{path}-wal", f"{path}-shm"):
        try:
            if os.stat(name).st_mode & 0o777 != PRIVATE_MODE:
                os.chmod(name, PRIVATE_MODE)
        except FileNotFoundError:
            continue  # no -wal/-shm yet
        except PermissionError:
            # Another user's file (a shared install): theirs to tighten, not a reason to stop.
            log.warning("SQLite file %s is not private (mode 0600) and not ours to change", name)


class SqliteStore(Store):
    """Store in one SQLite file; several processes may share it (BEGIN IMMEDIATE + busy timeout)."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        self._path = Path(path)
        self._timeout = timeout_s
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        # One connection runs one transaction at a time; coroutines queue here for it.
        self._write_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 5.0) -> SqliteStore:
        """`sqlite:///relative.db` or `sqlite:////absolute/path.db`."""
        return cls(url.removeprefix("sqlite:///"), timeout_s=timeout_s)

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self._path, timeout=self._timeout, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            await conn.execute("PRAGMA foreign_keys = ON")
            await self._use_wal(conn)
            await conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            # An unclosed aiosqlite connection keeps its worker thread (and the process) alive.
            await conn.close()
            raise
        return conn

    async def _use_wal(self, conn: aiosqlite.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is
        # locked" at once, without the busy handler, while another process opens the same new
        # file (replicas starting together): retry within the store timeout.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        delay = 0.005
        while True:
            try:
                await conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                # Extended result codes keep the primary code in the low byte.
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                busy = code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def open(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            _make_private(self._path)
            self._writer = await self._connect()
            self._reader = await self._connect()
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StoreUnavailableError(f"cannot open SQLite database: {exc}") from exc

    async def close(self) -> None:
        for conn in (self._writer, self._reader):
            if conn is not None:
                await conn.close()
        self._writer = self._reader = None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._writer is None:
            raise StoreUnavailableError("store is not open")
        async with self._write_lock:
            conn = self._writer
            try:
                # IMMEDIATE takes the database write lock up front, so read-then-write
                # sequences (enable, rotate) are serialized across processes too.
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailableError(f"SQLite busy: {exc}") from exc
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            else:
                await conn.commit()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreSession]:
        try:
            async with self._write() as conn:
                yield StoreSession(_SqliteConnection(conn), "", self.secrets)
        except sqlite3.IntegrityError as exc:
            raise StoreConflictError(str(exc)) from exc
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"SQLite error: {exc}") from exc

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[StoreSession]:
        if self._reader is None:
            raise StoreUnavailableError("store is not open")
        try:
            yield StoreSession(_SqliteConnection(self._reader), "", self.secrets)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"SQLite error: {exc}") from exc

    async def migrate(self) -> list[int]:
        applied_now: list[int] = []
        async with self._write() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
            )
            async with conn.execute("SELECT version FROM schema_migrations") as cursor:
                applied = {row[0] for row in await cursor.fetchall()}
            for version, sql in pending_migrations(applied, self.dialect):
                for statement in split_statements(sql):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
                applied_now.append(version)
        return applied_now
