"""Benchmark: the gateway against a bare aiohttp baseline, in one run, on this machine.

    python bench/run.py [--duration 5] [--rounds 3] [--connections 1,16,64]

Starts the baseline (bench/baseline.py), a fast stub upstream MCP server, and the gateway on
Postgres + Redis with one worker (a fresh database, dropped afterwards); drives each target with
wrk (Debian package `wrk`) and one Lua script per target, in rounds that run every target back
to back; prints, for the median round, req/s, p50, p99, errors (of all rounds) and the serving
process's CPU time per request, per target and connection count; the gateway/baseline ratios
and the p99 the gateway adds, each the median over rounds of that round's own figure (its two
measurements are seconds apart, so the machine's drift cancels out); and the gateway's RSS
after the last run. Needs PostgreSQL on 127.0.0.1:5432 and Redis on
127.0.0.1:6379. Targets are 127.0.0.1 only; every run is bounded by --duration (about 4
minutes in all by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get(
    "MCPGW_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("MCPGW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
JWT_SECRET = "bench-jwt-secret-" + "b" * 32
MODERN = "2026-07-28"


@dataclass
class Result:
    target: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float  # the serving process's CPU time per request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error status: it is up
                return
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def request(
    method: str, url: str, body: object = None, headers: dict[str, str] | None = None
) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def lua_script(path: Path, body: dict, headers: dict[str, str]) -> None:
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(json.dumps(body))}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")


def run_wrk(
    url: str, script: Path, connections: int, duration: int
) -> tuple[float, float, float, int]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+\w+)", out, re.M))
    errors = 0
    for pattern in (
        r"Non-2xx or 3xx responses: (\d+)",
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
    ):
        match = re.search(pattern, out)
        if match:
            errors += sum(int(g) for g in match.groups())
    return rps, to_ms(pct["50"]), to_ms(pct["99"]), errors


def to_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_round(results: list[Result]) -> Result:
    """The round with the median throughput (its latencies with it); errors of all rounds."""
    ordered = sorted(results, key=lambda r: r.rps)
    middle = ordered[len(ordered) // 2]
    return Result(
        middle.target,
        middle.connections,
        middle.rps,
        middle.p50_ms,
        middle.p99_ms,
        sum(r.errors for r in results),
        middle.cpu_us,
    )


# The modern (stateless) `tools/call` of the stub's `echo` tool that wrk sends to the gateway.
MODERN_CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {
        "name": "echo",
        "arguments": {"text": "hello"},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        },
    },
}


def mcp_call_headers(key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {key}",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "echo",
        "Accept": "application/json, text/event-stream",
    }


def settings_auth(env: dict[str, str]) -> dict[str, str]:
    """The settings API's Authorization header for tenant `bench` (`mcp-gateway token`)."""
    token = subprocess.run(
        [str(Path(sys.executable).with_name("mcp-gateway")), "token", "--tenant", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {"Authorization": f"Bearer {token}"}


def enabled_integration(api: str, auth: dict[str, str], upstream: str) -> str:
    """Create the integration at `api` bound to `upstream`, `echo` exposed; its API key."""
    request("PUT", api, {"name": api.rpartition("/")[2]}, auth)
    config = request("POST", api + "/configs", {"upstreamUrl": upstream}, auth)
    return str(
        request(
            "PATCH",
            api + "/mcp",
            {"enabled": True, "configId": config["configId"], "exposedToolIds": ["echo"]},
            auth,
        )["apiKey"]
    )


def start_stub_upstream(port: int) -> subprocess.Popen[bytes]:
    """bench/baseline.py as the fast stub upstream MCP server."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "bench/baseline.py"), "--port", str(port), "--upstream"]
    )


def gateway_env(
    work: Path, database: str, redis_url: str, port: int, **extra: str
) -> dict[str, str]:
    """The environment of a benchmarked `mcp-gateway serve` on `port` (extra: MCPGW_* more)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")},
        "MCPGW_DATA_DIR": str(work / "data"),
        "MCPGW_DATABASE_URL": f"{ADMIN_DSN.rpartition('/')[0]}/{database}",
        "MCPGW_REDIS_URL": redis_url,
        "MCPGW_JWT_SECRET": JWT_SECRET,
        "MCPGW_PUBLIC_URL": f"http://127.0.0.1:{port}",
        # High limits: the Redis limiter runs on every request but never refuses.
        "MCPGW_RATE_LIMIT_RPS": "1000000",
        "MCPGW_RATE_LIMIT_BURST": "1000000",
        "MCPGW_REQUEST_LIMIT_RPS": "1000000",
        "MCPGW_REQUEST_LIMIT_BURST": "1000000",
        # The stub upstream listens on loopback, which the egress policy refuses.
        "MCPGW_UPSTREAM_ALLOWED_NETWORKS": "127.0.0.1/32",
        **{f"MCPGW_{name}": value for name, value in extra.items()},
    }


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of every measurement; the median round is reported",
    )
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument(
        "--hold",
        metavar="FILE",
        type=Path,
        help="set everything up, write the targets (URL, wrk script, serving "
        "pid) and the gateway's environment to FILE as JSON, then wait "
        "for Ctrl-C instead of measuring: for profilers",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    connections = [int(c) for c in args.connections.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mcpgw-bench-"))
    database = f"mcpgw_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin(f'CREATE DATABASE "{database}"'))
    procs: list[subprocess.Popen] = []
    try:
        base_port, stub_port, gw_port = free_port(), free_port(), free_port()
        python = sys.executable
        procs.append(
            subprocess.Popen([python, str(ROOT / "bench/baseline.py"), "--port", str(base_port)])
        )
        procs.append(start_stub_upstream(stub_port))
        env = gateway_env(work, database, REDIS_URL, gw_port)
        gateway = subprocess.Popen(
            [str(Path(python).with_name("mcp-gateway")), "serve", "--port", str(gw_port)],
            env=env,
            stdout=(work / "gateway.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(gateway)
        wait_http(f"http://127.0.0.1:{base_port}/mcp")
        wait_http(f"http://127.0.0.1:{stub_port}/mcp")
        wait_http(f"http://127.0.0.1:{gw_port}/readyz")

        auth = settings_auth(env)
        api = f"http://127.0.0.1:{gw_port}/v1/tenants/bench/integrations/crm"
        key = enabled_integration(api, auth, f"http://127.0.0.1:{stub_port}/mcp")
        call = MODERN_CALL
        mcp_headers = mcp_call_headers(key)
        plain = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hello"}},
        }
        targets = {
            "baseline": (f"http://127.0.0.1:{base_port}/mcp", plain, {}),
            "stub-direct": (f"http://127.0.0.1:{stub_port}/mcp", plain, {}),
            "testUrl": (f"{api}/mcp:test", call, mcp_headers),
            "callUrl": (f"{api}/mcp:call", call, mcp_headers),
        }
        pids = {
            "baseline": procs[0].pid,
            "stub-direct": procs[1].pid,
            "testUrl": gateway.pid,
            "callUrl": gateway.pid,
        }
        scripts = {}
        for name, (url, body, headers) in targets.items():
            scripts[name] = work / f"{name}.lua"
            lua_script(scripts[name], body, headers)
            run_wrk(url, scripts[name], 16, 2)  # warm-up: caches, upstream session
        if args.hold:
            hold(
                args.hold,
                {
                    name: {"url": url, "script": str(scripts[name]), "pid": pids[name]}
                    for name, (url, _, _) in targets.items()
                },
                env,
            )
            return
        # Rounds, each running every target back to back at each connection count: a noisy
        # neighbour then slows all targets of a round alike instead of one target's whole
        # series, and the median round is reported.
        rounds: dict[tuple[str, int], list[Result]] = {}
        for round_no in range(1, args.rounds + 1):
            for conns in connections:
                for name, (url, _, _) in targets.items():
                    before = cpu_seconds(pids[name])
                    rps, p50, p99, errors = run_wrk(url, scripts[name], conns, args.duration)
                    cpu_us = (
                        (cpu_seconds(pids[name]) - before) * 1e6 / max(1.0, rps * args.duration)
                    )
                    result = Result(name, conns, rps, p50, p99, errors, cpu_us)
                    rounds.setdefault((name, conns), []).append(result)
                    print(
                        f"round {round_no} {name:12} c={conns:<3} {rps:10.0f} req/s  "
                        f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  errors {errors}  "
                        f"server CPU {cpu_us:6.1f} µs/req",
                        flush=True,
                    )
        gateway_rss = rss_mb(gateway.pid)
        results = [median_round(rounds[(name, conns)]) for name in targets for conns in connections]
        report(results, rounds, gateway_rss, connections)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        shutil.rmtree(work, ignore_errors=True)


def hold(path: Path, targets: dict[str, dict[str, object]], env: dict[str, str]) -> None:
    """Write what a profiler needs to `path` and wait for Ctrl-C or SIGTERM."""
    gateway_env = {k: v for k, v in env.items() if k.startswith("MCPGW_")}
    path.write_text(json.dumps({"targets": targets, "gateway_env": gateway_env}, indent=2))
    print(f"holding; targets in {path}; Ctrl-C ends", flush=True)
    # A shell's background job starts with SIGINT ignored: both signals end the hold.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


def paired(
    rounds: dict[tuple[str, int], list[Result]],
    num: str,
    den: str,
    conns: int,
    measure: Callable[[Result, Result], float],
) -> float:
    """The median over rounds of `measure(num's result, den's result)` within each round: the
    two were measured seconds apart, so the machine's drift between rounds cancels out."""
    return statistics.median(
        measure(a, b) for a, b in zip(rounds[(num, conns)], rounds[(den, conns)], strict=True)
    )


def report(
    results: list[Result],
    rounds: dict[tuple[str, int], list[Result]],
    gateway_rss: float,
    connections: list[int],
) -> None:
    print("\n| target | conns | req/s | p50 ms | p99 ms | errors | server CPU µs/req |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.target} | {r.connections} | {r.rps:.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.errors} | {r.cpu_us:.0f} |"
        )
    print(
        "\n| ratio (median of the rounds' ratios) | "
        + " | ".join(f"c={c}" for c in connections)
        + " |"
    )
    print("|---|" + "---|" * len(connections))
    for label, num, den in (
        ("testUrl / baseline", "testUrl", "baseline"),
        ("callUrl / stub-direct", "callUrl", "stub-direct"),
        ("callUrl / baseline", "callUrl", "baseline"),
    ):
        cells = [
            f"{paired(rounds, num, den, c, lambda a, b: a.rps / b.rps):.0%}" for c in connections
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if 16 in connections:
        added = paired(rounds, "testUrl", "baseline", 16, lambda a, b: a.p99_ms - b.p99_ms)
        print(
            f"\np99 added by the gateway (testUrl vs baseline, c=16, median of the rounds): "
            f"{added:.2f} ms"
        )
    print(f"gateway RSS after the {connections[-1]}-connection runs: {gateway_rss:.0f} MB")
    print(f"errors in all runs: {sum(r.errors for r in results)}")


if __name__ == "__main__":
    main()
