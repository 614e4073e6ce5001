"""`mcp-gateway serve --workers N`: worker processes on one port (SO_REUSEPORT), a fresh
Postgres database and Redis. Both workers answer; a rotation made through one is honoured by
the other at once; a killed worker is replaced; SIGTERM stops them all; without Redis the
command refuses to start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import JWT_SECRET, REDIS_URL, make_settings
from faults import Client
from net import free_port
from processes import CLI
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.shared_metrics import SNAPSHOT_INTERVAL_S
from gateway.server import build_app
from gateway.workers import Supervisor, _Worker
from settings_api.app import STORE
from settings_api.config import ConfigError, load_settings

pytestmark = pytest.mark.slow

TOOLS = [{"name": "search_contacts", "inputSchema": {"type": "object"}}]


class Workers:
    """`mcp-gateway serve --workers N` on a free port; output in a log file."""

    def __init__(self, tmp_path: Path, env: dict[str, str], count: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"workers-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [CLI, "serve", "--port", str(self.port), "--workers", str(count)],
            env={**base, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 30.0) -> Workers:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}:\n{self.log()}")
            if "workers (pids" in self.log():  # the supervisor's line once all are serving
                return self
            time.sleep(0.05)
        raise AssertionError(f"not ready in {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def pid_of_new_connection(self) -> int:
        # urllib opens a new connection per request: the kernel picks a worker for each.
        with urllib.request.urlopen(self.url + "/healthz", timeout=5) as resp:
            return int(json.load(resp)["pid"])

    def pids(self, count: int = 2, attempts: int = 200, *, tolerate: bool = False) -> set[int]:
        seen: set[int] = set()
        for _ in range(attempts):
            try:
                seen.add(self.pid_of_new_connection())
            except OSError:  # a connection queued on a worker that was just killed
                if not tolerate:
                    raise
            if len(seen) >= count:
                break
        return seen

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"did not stop on SIGTERM:\n{self.log()}") from None
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def env(tmp_path: Path, fresh_pg_url: str) -> dict[str, str]:
    (tmp_path / "tmp").mkdir()  # where the supervisor makes its metrics directory
    return {
        "TMPDIR": str(tmp_path / "tmp"),
        "MCPGW_DATABASE_URL": fresh_pg_url,
        "MCPGW_REDIS_URL": REDIS_URL,
        "MCPGW_DATA_DIR": str(tmp_path / "data"),
        "MCPGW_JWT_SECRET": JWT_SECRET,
        "MCPGW_PUBLIC_URL": "http://gateway.test",
    }


@pytest.fixture
def workers(tmp_path: Path, env: dict[str, str]) -> Iterator[Workers]:
    running = Workers(tmp_path, env).wait_ready()
    try:
        yield running
    finally:
        running.stop()


def readyz_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # an exited orphan stays a zombie until init reaps it (not every init does)
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


class Pinned(Client):
    """A client holding one keep-alive connection, hence always the same worker."""

    def __init__(self, workers: Workers) -> None:
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=10)
        )
        super().__init__(http, workers)  # type: ignore[arg-type] # a Client needs only a url
        self.base = workers.url

    async def pid(self) -> int:
        async with self.http.get(self.base + "/healthz") as resp:
            return int((await resp.json())["pid"])

    async def list_tools_status(self, key: str, session: str) -> int:
        return (await self.list_tools(key, session, url="test"))[0]


@pytest.fixture
async def pinned(workers: Workers) -> AsyncIterator[dict[int, Pinned]]:
    """One pinned client per worker pid."""
    by_pid: dict[int, Pinned] = {}
    spare: list[Pinned] = []
    try:
        for _ in range(100):
            client = Pinned(workers)
            pid = await client.pid()
            if pid in by_pid:
                spare.append(client)
            else:
                by_pid[pid] = client
            if len(by_pid) == 2:
                break
        assert len(by_pid) == 2, "connections never reached both workers"
        yield by_pid
    finally:
        for client in [*by_pid.values(), *spare]:
            await client.http.close()


def test_both_workers_answer_with_their_own_pid(workers: Workers) -> None:
    pids = workers.pids()
    assert len(pids) == 2, workers.log()
    assert workers.proc.pid not in pids  # the supervisor serves nothing itself

    def request_lines_by_worker() -> set[int]:
        lines = [
            json.loads(line)
            for line in workers.log().splitlines()
            if line.startswith("{") and '"path":"/healthz"' in line
        ]
        return {line["worker"] for line in lines}

    deadline = time.monotonic() + 5  # log lines are flushed within 0.2 s
    while request_lines_by_worker() != {0, 1}:  # every request line names its worker
        assert time.monotonic() < deadline, workers.log()
        time.sleep(0.1)


async def test_metrics_count_every_workers_requests_whichever_worker_answers(
    pinned: dict[int, Pinned],
) -> None:
    # The fixture's health checks count too: read the totals, then add known numbers.
    (first, second), pids = pinned.values(), list(pinned)

    async def healthz_total(client: Pinned) -> tuple[float, set[str]]:
        async with client.http.get(client.base + "/metrics") as resp:
            text = await resp.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        total = sum(
            s.value
            for s in families["mcpgw_http_requests"].samples
            if s.name == "mcpgw_http_requests_total" and s.labels["route"] == "healthz"
        )
        workers = {s.labels["worker"] for s in families["mcpgw_build_info"].samples}
        return total, workers

    await asyncio.sleep(SNAPSHOT_INTERVAL_S + 0.5)  # every worker has written its counts
    before, _ = await healthz_total(first)
    for _ in range(3):
        assert await first.pid() == pids[0]
    for _ in range(5):
        assert await second.pid() == pids[1]
    await asyncio.sleep(SNAPSHOT_INTERVAL_S + 0.5)
    for client in (first, second, first):
        total, workers = await healthz_total(client)
        assert total == before + 8, "a scrape shows one worker's requests only"
        assert workers == {"0", "1"}  # gauges stay per worker


async def test_rotation_through_one_worker_is_honoured_by_the_other(
    pinned: dict[int, Pinned],
) -> None:
    a, b = pinned.values()
    old_key = await a.enable(tools=TOOLS)

    session = await b.initialize(old_key, url="test")
    assert await b.list_tools_status(old_key, session) == 200  # b's cache holds the old key

    new_key = (await a.settings("POST", "/mcp:rotateKey"))["apiKey"]
    started = time.monotonic()
    while await b.list_tools_status(old_key, session) != 401:
        assert time.monotonic() - started < 1.0, "the rotation did not reach the other worker"
        await asyncio.sleep(0.01)
    assert await b.list_tools_status(new_key, await b.initialize(new_key, url="test")) == 200
    assert {await a.pid(), await b.pid()} == set(pinned), "a client changed worker"


def test_a_killed_worker_is_replaced_and_sigterm_stops_everything(
    workers: Workers, tmp_path: Path
) -> None:
    first = workers.pids()
    assert len(first) == 2
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while True:
        current = workers.pids(attempts=50, tolerate=True)
        if len(current) == 2 and victim not in current:
            break
        assert time.monotonic() < deadline, workers.log()
        time.sleep(0.1)
    assert workers.proc.poll() is None
    assert "restarting it" in workers.log()
    # The killed worker's metrics snapshot stays (its counts still add up); all go at exit.
    (metrics_dir,) = (tmp_path / "tmp").glob("mcpgw-metrics-*")
    deadline = time.monotonic() + 5
    while len(list(metrics_dir.glob("worker-*.json"))) < 3:
        assert time.monotonic() < deadline, sorted(p.name for p in metrics_dir.iterdir())
        time.sleep(0.1)

    started = time.monotonic()
    workers.proc.send_signal(signal.SIGTERM)
    while readyz_status(workers.url) != 503:  # every worker drains: not ready, still serving
        assert time.monotonic() - started < 1.5, workers.log()
        time.sleep(0.02)
    assert workers.stop() == 0, workers.log()
    # Grace (2 s) + in-flight requests (at most 10 s) + a little; the log says what waited.
    assert time.monotonic() - started < 15, workers.log()
    assert not [pid for pid in current if alive(pid)], "orphan workers"
    assert "Traceback" not in workers.log()
    assert not metrics_dir.exists()


def test_workers_without_redis_refuse_to_start(tmp_path: Path, env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "MCPGW_REDIS_URL"}
    done = subprocess.run(
        [CLI, "serve", "--port", str(free_port()), "--workers", "2"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers > 1 needs MCPGW_REDIS_URL" in done.stderr


def test_busy_port_fails_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [CLI, "serve", "--port", str(port), "--workers", "2"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


# ---------------------------------------------------------------------- the restart budget


class _FakeProc:
    def __init__(self, pid: int) -> None:
        self.pid = pid


def test_restart_budget_is_bounded_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    supervisor = Supervisor(
        host="127.0.0.1", port=1, role="all", count=1, max_restarts=2, window_s=60
    )
    spawned: list[int] = []
    monkeypatch.setattr(supervisor, "_spawn", spawned.append)
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    worker = _Worker(0, _FakeProc(42), None)  # type: ignore[arg-type]
    assert supervisor._restart(worker, 1) and supervisor._restart(worker, 1)
    assert not supervisor._restart(worker, 1)  # a third crash within the minute: give up
    clock[0] += 61
    assert supervisor._restart(worker, 1)  # the window moved on
    assert spawned == [0, 0, 0]


# ---------------------------------------------------------------------- pool sizing


@pytest.mark.parametrize("raw", ["0", "-3", "ten", "2.5"])
def test_db_pool_size_is_validated(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_DB_POOL_SIZE": raw})
    assert any(p.startswith("MCPGW_DB_POOL_SIZE=") for p in error.value.problems)


async def test_db_pool_size_bounds_each_process_pool(
    tmp_path: Path, pg_database_url: str, aiohttp_client: Any
) -> None:
    assert load_settings({"MCPGW_DATA_DIR": str(tmp_path)}).db_pool_size == 10
    settings = make_settings(tmp_path, pg_database_url, MCPGW_DB_POOL_SIZE="3")
    client = await aiohttp_client(build_app(settings))
    pool = client.app[STORE]._pool  # type: ignore[attr-defined]
    assert pool.get_max_size() == 3


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path, env: dict[str, str]) -> None:
    running = Workers(tmp_path, env).wait_ready()
    pids = running.pids()
    assert len(pids) == 2
    running.proc.kill()  # SIGKILL: no chance to stop the workers itself
    running.proc.wait(5)
    deadline = time.monotonic() + 10
    while [pid for pid in pids if alive(pid)]:
        assert time.monotonic() < deadline, f"orphans {pids}:\n{running.log()}"
        time.sleep(0.1)
    running.stop()


def test_a_serving_process_freezes_start_up_and_collects_young_objects_less_often() -> None:
    # `serve` and every worker run this start-up hook. Run in a process of its own: freezing
    # would keep this test process's objects out of the collector for good.
    code = (
        "import asyncio, gc, sys\n"
        "from gateway.server import YOUNG_COLLECTION_THRESHOLD, tune_collector\n"
        "before = gc.get_threshold()\n"
        "asyncio.run(tune_collector(None))\n"
        "after = gc.get_threshold()\n"
        "print(before[0], after[0], YOUNG_COLLECTION_THRESHOLD,"
        " before[1:] == after[1:], gc.get_freeze_count() > 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    # The interpreter's own young threshold differs by version (700 up to 3.12, 2000 in 3.13).
    before, after, tuned = (int(value) for value in out[:3])
    assert before < tuned and after == tuned, out
    assert out[3:] == ["True", "True"], out  # older generations untouched; start-up frozen
