"""Capacity model: what one gateway worker costs Redis and Postgres, per request, on this machine.

    python bench/capacity.py [--duration 5] [--connections 1,16,64] [--json FILE]

Starts a private redis-server (so no other client's commands are counted), a fresh Postgres
database (dropped afterwards), the stub upstream of bench/baseline.py and one `mcp-gateway
serve` worker, then drives with wrk, at each connection count: testUrl and callUrl
`tools/call` on one key, testUrl spread over 64 keys, and a settings-API read. Per run: req/s,
the worker's CPU per request, and from the Redis server per request: EVALSHA calls (from
`INFO commandstats`), commands run (`INFO stats` total_commands_processed: the commands inside
scripts count too), round trips (read system calls of the redis-server process,
/proc/<pid>/io `syscr`: Redis reads a client socket once per readiness event, so a pipeline
that arrives whole is one) and Redis CPU; the idle load of one worker (heartbeats) is
subtracted. Postgres, in the bench database (`pg_stat_database`: transactions, where a
statement outside a transaction block is one, and rows read): per MCP request over all MCP
runs (steady state); per settings read; after a settings change and a key rotation, what a
warm worker reads again (the same reads as its 30 s refresh of an active key's cache
entries); the first request of a fresh process. The change feed: messages on `mcpgw:changes`
per settings change (a subscriber counts them) and PUBLISH calls. Needs Postgres on
127.0.0.1:5432, redis-server and wrk; about 4 minutes (Postgres publishes its counters up to
10 s late, so each Postgres figure waits 11 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis
from run import (
    ADMIN_DSN,
    MODERN_CALL,
    admin,
    cpu_seconds,
    enabled_integration,
    free_port,
    gateway_env,
    lua_script,
    mcp_call_headers,
    request,
    run_wrk,
    settings_auth,
    start_stub_upstream,
    wait_http,
)

CHANNEL = "mcpgw:changes"  # gateway/invalidation.py
# Postgres publishes a backend's counters when it has been idle for up to 10 s
# (PGSTAT_IDLE_INTERVAL): read pg_stat_database only after that long.
PG_STATS_SETTLE_S = 11.0
MANY_KEYS = 64


@dataclass
class Run:
    target: str
    connections: int
    rps: float
    errors: int
    worker_cpu_us: float
    redis_cmds: float
    redis_round_trips: float
    redis_cpu_us: float
    by_command: dict[str, float]


class RedisServer:
    """A private redis-server on a free loopback port: its counters are the gateway's alone."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
            ],
            stdout=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def snapshot(self) -> dict[str, Any]:
        """Counters now; the INFO call itself is one command and one read (subtracted)."""
        info = self.client.info("all")
        calls = {
            k.removeprefix("cmdstat_"): v["calls"] for k, v in info.items() if k[:8] == "cmdstat_"
        }
        io = Path(f"/proc/{self.proc.pid}/io").read_text()
        return {
            "commands": info["total_commands_processed"],
            "calls": calls,
            "reads": int(re.search(r"syscr: (\d+)", io).group(1)),
            "cpu": cpu_seconds(self.proc.pid),
            "at": time.monotonic(),
        }

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        calls = {
            name: n - before["calls"].get(name, 0)
            for name, n in after["calls"].items()
            if n - before["calls"].get(name, 0) > 0
        }
        calls["info"] = calls.get("info", 0) - 1
        return {
            "commands": after["commands"] - before["commands"] - 1,
            "calls": {k: v for k, v in calls.items() if v > 0},
            "reads": after["reads"] - before["reads"] - 1,
            "cpu": after["cpu"] - before["cpu"],
            "seconds": after["at"] - before["at"],
        }

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)


class Postgres:
    """Counters of one database in pg_stat_database, read from another one."""

    def __init__(self, database: str) -> None:
        self.database = database

    def snapshot(self) -> dict[str, int]:
        async def read() -> dict[str, int]:
            conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
            try:
                row = await conn.fetchrow(
                    "SELECT xact_commit + xact_rollback AS xacts, tup_returned, tup_fetched "
                    "FROM pg_stat_database WHERE datname = $1",
                    self.database,
                )
            finally:
                await conn.close()
            return dict(row)

        return asyncio.run(read())

    def backend_cpu(self) -> float:
        """CPU seconds used so far by the server processes serving this database."""

        async def pids() -> list[int]:
            conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
            try:
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database
                )
            finally:
                await conn.close()
            return [row["pid"] for row in rows]

        total = 0.0
        for pid in asyncio.run(pids()):
            try:
                total += cpu_seconds(pid)
            except FileNotFoundError:
                pass
        return total

    def settled(self) -> dict[str, int]:
        time.sleep(PG_STATS_SETTLE_S)
        return self.snapshot()


class ChangeCounter:
    """Counts the messages published on the change channel (a subscriber, as a replica is)."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self._pubsub = redis.Redis(port=port).pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(**{CHANNEL: self._on_message})
        self._thread = self._pubsub.run_in_thread(sleep_time=0.01, daemon=True)

    def _on_message(self, _: dict[str, Any]) -> None:
        self.count += 1

    def stop(self) -> None:
        self._thread.stop()
        self._thread.join(5)
        self._pubsub.close()


def rotating_script(
    path: Path, body: dict[str, Any], headers: dict[str, str], routes: list[tuple[str, str]]
) -> None:
    """A wrk script that sends each request to the next (path, API key) of `routes`."""
    lines = [
        f"body = {json.dumps(json.dumps(body))}",
        "routes = {" + ", ".join(f"{{{json.dumps(p)}, {json.dumps(k)}}}" for p, k in routes) + "}",
        "headers = {"
        + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
        + "}",
        'headers["Content-Type"] = "application/json"',
        "i = 0",
        "request = function()",
        "  i = i % #routes + 1",
        '  headers["Authorization"] = "Bearer " .. routes[i][2]',
        '  return wrk.format("POST", routes[i][1], headers, body)',
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def many_keys(base: str, auth: dict[str, str], upstream: str, count: int) -> list[tuple[str, str]]:
    """`count` integrations of tenant bench, each enabled with its own key: (testUrl path, key)."""
    routes = []
    for i in range(count):
        path = f"/v1/tenants/bench/integrations/many-{i}"
        key = enabled_integration(base + path, auth, upstream)
        routes.append((path + "/mcp:test", key))
    return routes


def get_script(path: Path, headers: dict[str, str]) -> None:
    lines = ['wrk.method = "GET"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")


class Gateway:
    """One `mcp-gateway serve` worker, restartable on the same port (cold caches)."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cli = str(Path(sys.executable).with_name("mcp-gateway"))
        self.proc = subprocess.Popen(
            [cli, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_http(f"http://127.0.0.1:{self.port}/readyz")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (Debian packages wrk, redis-server)")
    connections = [int(c) for c in args.connections.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mcpgw-capacity-"))
    database = f"mcpgw_capacity_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin(f'CREATE DATABASE "{database}"'))
    procs: list[subprocess.Popen[bytes]] = []
    redis_server = RedisServer(work)
    gateway: Gateway | None = None
    try:
        stub_port, gw_port = free_port(), free_port()
        procs.append(start_stub_upstream(stub_port))
        env = gateway_env(
            work,
            database,
            redis_server.url,
            gw_port,
            SHUTDOWN_GRACE_S="0",
            SETTINGS_RATE_LIMIT_RPS="1000000",
            SETTINGS_RATE_LIMIT_BURST="1000000",
        )
        gateway = Gateway(env, gw_port, work / "gateway.log")
        gateway.start()
        wait_http(f"http://127.0.0.1:{stub_port}/mcp")
        auth = settings_auth(env)
        api = f"http://127.0.0.1:{gw_port}/v1/tenants/bench/integrations/crm"
        key = enabled_integration(api, auth, f"http://127.0.0.1:{stub_port}/mcp")
        call = MODERN_CALL
        mcp_headers = mcp_call_headers(key)
        targets = {"testUrl": f"{api}/mcp:test", "callUrl": f"{api}/mcp:call"}
        scripts = {}
        for name in targets:
            scripts[name] = work / f"{name}.lua"
            lua_script(scripts[name], call, mcp_headers)
        # The same testUrl call spread over many keys: one limiter script call per key.
        base = f"http://127.0.0.1:{gw_port}"
        routes = many_keys(base, auth, f"http://127.0.0.1:{stub_port}/mcp", MANY_KEYS)
        name = f"testUrl, {MANY_KEYS} keys"
        targets[name] = base + routes[0][0]
        scripts[name] = work / "many.lua"
        headers = {k: v for k, v in mcp_headers.items() if k != "Authorization"}
        rotating_script(scripts[name], call, headers, routes)
        targets["settings GET"] = f"{api}/mcp"
        scripts["settings GET"] = work / "settings.lua"
        get_script(scripts["settings GET"], auth)
        for name, url in targets.items():
            run_wrk(url, scripts[name], 16, 2)  # warm-up: caches, upstream session

        idle = idle_load(redis_server, seconds=3.0)
        print(f"idle worker: {json.dumps(idle)}", flush=True)

        postgres = Postgres(database)
        pg_before = postgres.settled()
        runs: list[Run] = []
        mcp_requests = 0.0
        for name in targets:
            if name == "settings GET":
                pg_mid = postgres.settled()
                steady = pg_delta(pg_before, pg_mid, mcp_requests)
                print(f"postgres per MCP request, steady: {json.dumps(steady)}", flush=True)
                settings_requests = 0.0
                pg_cpu = postgres.backend_cpu()
            for conns in connections:
                run = measure(
                    redis_server,
                    gateway.pid,
                    name,
                    targets[name],
                    scripts[name],
                    conns,
                    args.duration,
                    idle,
                )
                runs.append(run)
                if name == "settings GET":
                    settings_requests += run.rps * args.duration
                else:
                    mcp_requests += run.rps * args.duration
                print(json.dumps(asdict(run)), flush=True)
        pg_cpu = postgres.backend_cpu() - pg_cpu
        settings_pg = pg_delta(pg_mid, postgres.settled(), settings_requests)
        settings_pg["backend_cpu_us_per_request"] = pg_cpu * 1e6 / max(1.0, settings_requests)
        print(f"postgres per settings read: {json.dumps(settings_pg)}", flush=True)

        feed, key = change_feed(redis_server, api, auth, idle)
        mcp_headers["Authorization"] = f"Bearer {key}"
        print(f"change feed: {json.dumps(feed)}", flush=True)

        def test_call() -> None:
            request("POST", targets["testUrl"], call, mcp_headers)

        def rotate() -> None:
            answer = request("POST", api + "/mcp:rotateKey", {}, auth)
            mcp_headers["Authorization"] = f"Bearer {answer['apiKey']}"

        def patch_twice() -> None:
            for exposed in ([], ["echo"]):
                request("PATCH", api + "/mcp", {"exposedToolIds": exposed}, auth)

        # What a warm worker reads again after a change (the same reads as a TTL refresh),
        # then a fresh process: its first request, and a second one.
        cold: dict[str, dict[str, float]] = {}
        before = postgres.settled()
        steps: list[tuple[str, Callable[[], None], int]] = [
            ("two PATCH exposedToolIds (the settings API's own work)", patch_twice, 2),
            ("first request after that change (integration reloaded)", test_call, 1),
            ("rotateKey (the settings API's own work)", rotate, 1),
            ("first request with the new key (key looked up)", test_call, 1),
            ("restart: first request of a fresh process (cold)", test_call, 1),
            ("second request of that process (warm)", test_call, 1),
        ]
        for label, action, count in steps:
            if label.startswith("restart"):
                gateway.stop()
                gateway.start()
                before = postgres.settled()
            action()
            after = postgres.settled()
            cold[label] = pg_delta(before, after, count)
            before = after
        print(f"postgres, cold cache: {json.dumps(cold)}", flush=True)

        report(runs, idle, steady, settings_pg, cold, feed)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "runs": [asdict(r) for r in runs],
                        "idle": idle,
                        "postgres_steady": steady,
                        "postgres_settings_read": settings_pg,
                        "postgres_cold": cold,
                        "change_feed": feed,
                    },
                    indent=2,
                )
            )
    finally:
        if gateway is not None:
            gateway.stop()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        redis_server.stop()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        shutil.rmtree(work, ignore_errors=True)


def idle_load(server: RedisServer, seconds: float) -> dict[str, float]:
    """Per second, what one idle worker costs Redis (change-feed heartbeats)."""
    before = server.snapshot()
    time.sleep(seconds)
    d = server.delta(before, server.snapshot())
    return {
        "commands_per_s": d["commands"] / d["seconds"],
        "reads_per_s": d["reads"] / d["seconds"],
        "publish_per_s": d["calls"].get("publish", 0) / d["seconds"],
        **{
            f"{name}_per_s": n / d["seconds"] for name, n in d["calls"].items() if name != "publish"
        },
    }


def measure(
    server: RedisServer,
    worker_pid: int,
    name: str,
    url: str,
    script: Path,
    conns: int,
    duration: int,
    idle: dict[str, float],
) -> Run:
    before, cpu_before = server.snapshot(), cpu_seconds(worker_pid)
    rps, _, _, errors = run_wrk(url, script, conns, duration)
    cpu = cpu_seconds(worker_pid) - cpu_before
    d = server.delta(before, server.snapshot())
    n = max(1.0, rps * duration)
    # The idle load (heartbeats) goes on during the run: it is not the requests' cost.
    return Run(
        target=name,
        connections=conns,
        rps=rps,
        errors=errors,
        worker_cpu_us=cpu * 1e6 / n,
        redis_cmds=(d["commands"] - idle["commands_per_s"] * d["seconds"]) / n,
        redis_round_trips=(d["reads"] - idle["reads_per_s"] * d["seconds"]) / n,
        redis_cpu_us=d["cpu"] * 1e6 / n,
        by_command={
            k: round(v / n, 4) for k, v in sorted(d["calls"].items()) if k not in ("info",)
        },
    )


def pg_delta(before: dict[str, int], after: dict[str, int], requests: float) -> dict[str, float]:
    n = max(1.0, requests)
    return {
        "requests": round(requests),
        "xacts_per_request": (after["xacts"] - before["xacts"]) / n,
        "rows_returned_per_request": (after["tup_returned"] - before["tup_returned"]) / n,
        "rows_fetched_per_request": (after["tup_fetched"] - before["tup_fetched"]) / n,
    }


def change_feed(
    server: RedisServer, api: str, auth: dict[str, str], idle: dict[str, float]
) -> tuple[dict[str, float], str]:
    """Messages on the change channel, and PUBLISH calls, per settings change of two kinds;
    and the API key the rotations left."""
    counter = ChangeCounter(server.port)
    time.sleep(0.2)
    subscribers = server.client.pubsub_numsub(CHANNEL)[0][1]
    out: dict[str, float] = {"subscribers_incl_counter": subscribers}
    changes = {
        "PATCH exposedToolIds": lambda i: request(
            "PATCH", api + "/mcp", {"exposedToolIds": [] if i % 2 == 0 else ["echo"]}, auth
        ),
        "rotateKey (revoking)": lambda i: request("POST", api + "/mcp:rotateKey", {}, auth),
    }
    rounds = 6
    key = ""
    for label, change in changes.items():
        counter.count = 0
        before = server.snapshot()
        for i in range(rounds):
            key = change(i).get("apiKey", key)
        time.sleep(0.5)
        d = server.delta(before, server.snapshot())
        publishes = d["calls"].get("publish", 0) - idle["publish_per_s"] * d["seconds"]
        out[f"{label}: messages per change"] = counter.count / rounds
        out[f"{label}: PUBLISH calls per change"] = round(publishes / rounds, 2)
    counter.stop()
    return out, key


def report(
    runs: list[Run],
    idle: dict[str, float],
    steady: dict[str, float],
    settings_pg: dict[str, float],
    cold: dict[str, dict[str, float]],
    feed: dict[str, float],
) -> None:
    print(
        "\n| URL | conns | req/s (one worker) | worker CPU µs/req | Redis EVALSHA/req | "
        "Redis commands run/req (in scripts too) | Redis round trips/req | Redis CPU µs/req |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r.target} | {r.connections} | {r.rps:.0f} | {r.worker_cpu_us:.0f} | "
            f"{r.by_command.get('evalsha', 0):.2f} | {r.redis_cmds:.2f} | "
            f"{r.redis_round_trips:.2f} | {r.redis_cpu_us:.1f} |"
        )
    print(f"\nerrors in all runs: {sum(r.errors for r in runs)}")
    print(
        f"idle worker: {idle['commands_per_s']:.1f} Redis commands/s "
        f"({idle['publish_per_s']:.1f} PUBLISH/s), {idle['reads_per_s']:.1f} round trips/s"
    )
    print(
        "Postgres per MCP request, steady state: "
        f"{steady['xacts_per_request']:.5f} transactions, "
        f"{steady['rows_returned_per_request']:.4f} rows returned ({steady['requests']} requests)"
    )
    print(
        "Postgres per settings read: "
        f"{settings_pg['xacts_per_request']:.2f} transactions, "
        f"{settings_pg['rows_returned_per_request']:.1f} rows returned, "
        f"{settings_pg['backend_cpu_us_per_request']:.0f} µs of Postgres CPU"
    )
    for label, d in cold.items():
        print(
            f"Postgres, {label}: {d['xacts_per_request']:.1f} transactions, "
            f"{d['rows_returned_per_request']:.0f} rows returned, "
            f"{d['rows_fetched_per_request']:.0f} rows fetched"
        )
    for label, value in feed.items():
        print(f"change feed, {label}: {value:g}")


if __name__ == "__main__":
    main()
