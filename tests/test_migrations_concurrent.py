"""Replicas starting together on one fresh database (docs/configuration.md `serve`/`migrate`).

Real `mcp-gateway` processes, started at the same moment against a brand-new Postgres database
and a brand-new SQLite file: migrations are applied exactly once and every process succeeds.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import asyncpg
import pytest
from conftest import JWT_SECRET
from net import free_port
from processes import CLI

from settings_api.store.base import migration_files

pytestmark = pytest.mark.slow

DEADLINE_S = 30.0


def _env(tmp_path: Path, database_url: str, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
    env.update(
        {
            "MCPGW_DATA_DIR": str(tmp_path / f"data-{name}"),
            "MCPGW_DATABASE_URL": database_url,
            "MCPGW_JWT_SECRET": JWT_SECRET,
            "MCPGW_LOG_LEVEL": "WARNING",
        }
    )
    return env


def _applied_versions(database_url: str) -> list[int]:
    """Every row of schema_migrations (duplicates included), in order."""
    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            return [
                row[0]
                for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")
            ]
        finally:
            conn.close()

    async def fetch() -> list[int]:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
            return [row["version"] for row in rows]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def _shipped(database_url: str) -> list[int]:
    dialect = "sqlite" if database_url.startswith("sqlite:///") else "postgres"
    return [version for version, _ in migration_files(dialect)]


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_two_migrate_processes_started_together_apply_each_version_once(
    tmp_path: Path, fresh_database_url: str
) -> None:
    procs = [
        subprocess.Popen(
            [CLI, "migrate"],
            env=_env(tmp_path, fresh_database_url, name),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [proc.communicate(timeout=DEADLINE_S) for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0], outputs
    stdout = [out for out, _ in outputs]
    # One of them applied the migrations, the other found the database up to date.
    assert sorted("applied migrations" in out for out in stdout) == [False, True], stdout
    assert sum("database is up to date" in out for out in stdout) == 1, stdout
    shipped = _shipped(fresh_database_url)
    assert _applied_versions(fresh_database_url) == shipped

    # A third run later is a no-op.
    again = subprocess.run(
        [CLI, "migrate"],
        env=_env(tmp_path, fresh_database_url, "c"),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "database is up to date" in again.stdout
    assert _applied_versions(fresh_database_url) == shipped


def test_two_serve_processes_started_together_on_a_fresh_database_both_become_ready(
    tmp_path: Path, fresh_database_url: str
) -> None:
    ports = [free_port(), free_port()]
    while ports[1] == ports[0]:
        ports[1] = free_port()
    logs = [tmp_path / f"serve-{n}.log" for n in range(2)]
    procs = []
    try:
        for n, port in enumerate(ports):
            with logs[n].open("w") as log:
                procs.append(
                    subprocess.Popen(
                        [CLI, "serve", "--port", str(port)],
                        env=_env(tmp_path, fresh_database_url, str(n)),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

        pending = dict(enumerate(ports))
        ready: dict[int, dict[str, object]] = {}
        deadline = time.monotonic() + DEADLINE_S
        while pending and time.monotonic() < deadline:
            for n, port in list(pending.items()):
                assert procs[n].poll() is None, (
                    f"serve #{n} exited with {procs[n].returncode}: {logs[n].read_text()}"
                )
                try:
                    status, body = _get(f"http://127.0.0.1:{port}/readyz")
                except (OSError, ValueError):
                    continue  # not listening yet
                if status == 200:
                    ready[n] = body
                    del pending[n]
            if pending:
                time.sleep(0.1)  # polling interval, bounded by the deadline
        assert not pending, {n: logs[n].read_text() for n in pending}
        for body in ready.values():
            assert body["status"] == "ready"
            assert body["checks"] == {"store": "ok"}
        assert _applied_versions(fresh_database_url) == _shipped(fresh_database_url)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    # SIGTERM is a clean shutdown.
    assert [proc.returncode for proc in procs] == [0, 0], [log.read_text() for log in logs]


@pytest.mark.parametrize("command", [["migrate"], ["serve", "--port", "0"]])
def test_an_unusable_sqlite_file_fails_fast_with_a_message(
    tmp_path: Path, command: list[str]
) -> None:
    bad = tmp_path / "not-a-database.db"
    bad.write_bytes(b"this is not an SQLite database\n" * 200)
    result = subprocess.run(
        [CLI, *command],
        env=_env(tmp_path, f"sqlite:///{bad}", "bad"),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot open SQLite database" in result.stderr
    assert "Traceback" not in result.stderr
