"""`mcp-gateway demo` as a user runs it: a real process on a temporary data dir, its printed
key and URLs used with the official MCP SDK client and with the printed curl line, the client
configurations parsed, Ctrl-C / SIGTERM, and a second run on the same data dir."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from net import free_port
from processes import CLI

from gateway.demo import SHUTDOWN_TIMEOUT_S

pytestmark = pytest.mark.slow

READY_LINE = "Serving until Ctrl-C."
TOOLS = ["search_contacts", "get_contact", "create_note", "list_deals"]


class Demo:
    """One `mcp-gateway demo` process; `values` holds its `name: value` lines."""

    def __init__(
        self, tmp_path: Path, data_dir: Path, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
        base.update({"MCPGW_DATA_DIR": str(data_dir), **(env or {})})
        self.stderr_path = tmp_path / f"demo-{self.port}.err"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [CLI, "demo", "--port", str(self.port), *extra],
            env=base,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_ready(self, timeout_s: float = 30.0) -> Demo:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"demo not ready in {timeout_s} s:\n{self.output()}") from None
            if line is None:
                raise AssertionError(f"demo exited {self.proc.wait()}:\n{self.output()}")
            self.lines.append(line)
            if line == READY_LINE:
                return self

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def value(self, name: str) -> str:
        prefix = f"{name}: "
        found = [line[len(prefix) :] for line in self.lines if line.startswith(prefix)]
        assert len(found) == 1, (name, self.text)
        return found[0]

    def snippet(self, heading_start: str) -> Any:
        """The JSON printed after the line starting with `heading_start`."""
        index = next(i for i, line in enumerate(self.lines) if line.startswith(heading_start))
        rest = "\n".join(self.lines[index + 1 :])
        value, _ = json.JSONDecoder().raw_decode(rest)
        return value

    def output(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.text + "\n--- stderr ---\n" + self.stderr_path.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout_s: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"demo did not stop on {sig.name}:\n{self.output()}") from None
        while self._queue.get(timeout=5) is not None:  # the rest of stdout
            pass
        self._stderr.close()
        return self.proc.returncode


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def demo(tmp_path: Path, data_dir: Path) -> Iterator[Demo]:
    running = Demo(tmp_path, data_dir).wait_ready()
    try:
        yield running
    finally:
        running.stop(signal.SIGKILL)


async def sdk_session(url: str, key: str, mode: str) -> tuple[httpx2.AsyncClient, Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return http, Client(
        streamable_http_client(url, http_client=http), mode=mode, read_timeout_seconds=10
    )


def run_curl(line: str) -> dict[str, Any]:
    assert line.startswith("curl ") and "\n" not in line
    done = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, timeout=15, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def curl_line(demo: Demo) -> str:
    return next(line for line in demo.lines if line.startswith("curl "))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_printed_key_works_with_the_sdk_on_both_urls(demo: Demo, mode: str) -> None:
    key, call_url, test_url = demo.value("API key"), demo.value("callUrl"), demo.value("testUrl")
    assert key.startswith("mcpk_") and len(key) == 43
    base = f"http://127.0.0.1:{demo.port}/v1/tenants/demo/integrations/crm"
    assert (call_url, test_url) == (f"{base}/mcp:call", f"{base}/mcp:test")

    http, client = await sdk_session(call_url, key, mode)
    async with http, client:
        listed = await client.list_tools()
        assert [t.name for t in listed.tools] == TOOLS
        assert all(t.output_schema for t in listed.tools)
        found = await client.call_tool("search_contacts", {"query": "lovelace"})
        assert not found.is_error
        assert found.structured_content == {
            "contacts": [
                {
                    "id": "c_001",
                    "name": "Ada Lovelace",
                    "email": "ada@analytical-engines.example",
                    "company": "Analytical Engines Ltd",
                    "title": "Head of Research",
                }
            ],
            "total": 1,
        }
        note = await client.call_tool("create_note", {"contactId": "c_001", "body": "hi"})
        assert not note.is_error, note
        contact = await client.call_tool("get_contact", {"contactId": "c_001"})
        assert "hi" in [n["body"] for n in contact.structured_content["notes"]]
        bad = await client.call_tool("get_contact", {})  # the upstream validates arguments
        assert bad.is_error

    http, client = await sdk_session(test_url, key, mode)
    async with http, client:
        assert [t.name for t in (await client.list_tools()).tools] == TOOLS
        deals = await client.call_tool("list_deals", {"stage": "proposal"})
        assert not deals.is_error  # the simulator: output validated by the SDK's schema check
        assert isinstance(deals.structured_content["deals"], list)


def test_printed_curl_token_and_client_configs_work(demo: Demo) -> None:
    key, call_url = demo.value("API key"), demo.value("callUrl")
    answer = run_curl(curl_line(demo))
    result = answer["result"]
    assert result["isError"] is False
    assert [c["name"] for c in result["structuredContent"]["contacts"]] == [
        "Ada Lovelace",
        "Adam Smith",
    ]  # from the example upstream, not the simulator

    assert demo.snippet("Cursor") == {
        "mcpServers": {"crm-demo": {"url": call_url, "headers": {"Authorization": f"Bearer {key}"}}}
    }
    assert demo.snippet("Claude Desktop") == {
        "mcpServers": {
            "crm-demo": {
                "command": "npx",
                "args": ["-y", "mcp-remote", call_url, "--header", "Authorization:${AUTH_HEADER}"],
                "env": {"AUTH_HEADER": f"Bearer {key}"},
            }
        }
    }
    # without a header: mcp-remote runs the OAuth flow; the connector steps name the callUrl
    assert demo.snippet("mcp-remote:") == {
        "mcpServers": {"crm-demo": {"command": "npx", "args": ["-y", "mcp-remote", call_url]}}
    }
    (paste_step,) = [line for line in demo.lines if line.startswith("  2. ")]
    assert f"paste {call_url} as the remote MCP server URL" in paste_step

    token = demo.value("settings-API token")
    settings_api = demo.value("settings API")
    done = subprocess.run(
        ["curl", "-s", "-H", f"Authorization: Bearer {token}", f"{settings_api}/crm/mcp"],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    settings = json.loads(done.stdout)
    assert settings["enabled"] is True and settings["exposedToolIds"] == TOOLS
    assert settings["keyPrefix"] == key[:12]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_console_line_and_its_sign_in_link_that_works_once(demo: Demo) -> None:
    console = demo.value("console")
    assert console == f"http://127.0.0.1:{demo.port}/console"
    link = demo.value("console sign-in link")
    assert link.startswith(console + "/sign-in/")
    assert demo.value("settings-API token") not in link
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        opener.open(link, timeout=10)
    except urllib.error.HTTPError as first:
        assert first.code == 303
        assert first.headers["Location"] == "/console/tenants/demo"
        assert "HttpOnly" in first.headers["Set-Cookie"]
    else:
        raise AssertionError("the sign-in link did not redirect")
    with pytest.raises(urllib.error.HTTPError) as again:
        opener.open(link, timeout=10)
    assert again.value.code == 400
    assert "used already or it expired" in again.value.read().decode()


def test_sigint_stops_cleanly_and_a_second_run_reuses_the_data_dir(
    tmp_path: Path, data_dir: Path
) -> None:
    first = Demo(tmp_path, data_dir).wait_ready()
    try:
        old_key = first.value("API key")
        assert "(created)" in first.lines[0]
        assert run_curl(curl_line(first))["result"]["isError"] is False
    finally:
        started = time.monotonic()
        status = first.stop(signal.SIGINT)
    assert status == 0, first.output()
    # Nothing left in flight: the servers close without waiting out their shutdown timeout.
    assert time.monotonic() - started < SHUTDOWN_TIMEOUT_S
    assert "Traceback" not in first.output()

    second = Demo(tmp_path, data_dir).wait_ready()
    try:
        new_key = second.value("API key")
        assert new_key != old_key
        assert "reused" in second.lines[0]
        # The example upstream listens on a new port: the config follows it.
        assert run_curl(curl_line(second))["result"]["isError"] is False
        stale = run_curl(curl_line(second).replace(new_key, old_key))
        assert stale["status"] == 401 and stale["reason"] == "revoked", stale
    finally:
        status = second.stop(signal.SIGTERM)
    assert status == 0, second.output()
    assert "Traceback" not in second.output()


def test_fixed_upstream_port_and_public_url(tmp_path: Path, data_dir: Path) -> None:
    upstream_port = free_port()
    for run in range(2):  # the second run re-reads the same upstream URL's catalog
        demo = Demo(
            tmp_path,
            data_dir,
            "--upstream-port",
            str(upstream_port),
            env={"MCPGW_PUBLIC_URL": "https://mcp.example.com/"},
        ).wait_ready()
        try:
            assert f"http://127.0.0.1:{upstream_port}/mcp" in demo.lines[1]
            call_url = demo.value("callUrl")
            assert call_url == ("https://mcp.example.com/v1/tenants/demo/integrations/crm/mcp:call")
            local = curl_line(demo).replace(
                "https://mcp.example.com", f"http://127.0.0.1:{demo.port}"
            )
            assert run_curl(local)["result"]["isError"] is False, run
        finally:
            assert demo.stop() == 0


def test_busy_port_fails_with_a_message(tmp_path: Path, data_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [CLI, "demo", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "MCPGW_DATA_DIR": str(data_dir)},
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
