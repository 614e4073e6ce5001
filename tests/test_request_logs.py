"""One JSON log line per request (`mcp_gateway.access`), JSON for every other record, request
ids accepted or generated and echoed, and no secret in any line."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import JWT_SECRET, Api
from mcp_stub import StubUpstream
from processes import GatewayProcess

from gateway.observability.logs import (
    ACCESS_LOGGER,
    REQUEST_ID_VAR,
    BufferedStderrHandler,
    JsonFormatter,
    TextFormatter,
    configure_logging,
)
from settings_api import keys

CALL = "/v1/tenants/acme/integrations/crm/mcp:call"
UPSTREAM_SECRET = "Bearer upstream-secret-logs-XYZ"
TOOLS = [{"name": "search_contacts", "inputSchema": {"type": "object"}}]
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}


class Lines:
    """Every record of the process at DEBUG, rendered as the service renders it in JSON."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.handler.setLevel(logging.DEBUG)

    def all(self) -> list[dict[str, Any]]:
        text = self.stream.getvalue()
        return [json.loads(line) for line in text.splitlines()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.all() if line["logger"] == ACCESS_LOGGER]

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def lines() -> Iterator[Lines]:
    captured = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(captured.handler)
    root.setLevel(logging.DEBUG)
    try:
        yield captured
    finally:
        root.removeHandler(captured.handler)
        root.setLevel(level)


async def call(client: TestClient, method: str, path: str, **kwargs: Any) -> Any:
    async with client.request(method, path, **kwargs) as resp:
        text = await resp.text()
        return resp.status, resp.headers.get("X-Request-Id"), text


async def test_one_json_line_per_request_with_its_fields(
    client: TestClient, api: Api, lines: Lines, aiohttp_server: Any, token: Callable[..., str]
) -> None:
    stub = StubUpstream(tools=TOOLS, mode="http-500")
    upstream_url = str((await aiohttp_server(stub.app())).make_url("/mcp"))
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, config = await api.call(
        "POST",
        "/crm/configs",
        201,
        json={
            "tools": TOOLS,
            "upstreamUrl": upstream_url,
            "upstreamHeaders": {"Authorization": UPSTREAM_SECRET},
        },
    )
    key = await api.enable(config["configId"], ["search_contacts"])
    jwt = token("acme")
    bad_key = keys.mint().raw
    start = len(lines.access())

    sent: list[tuple[int, str | None]] = []
    # Settings: a given request id is kept; the query string is never logged.
    sent.append(
        (
            await call(
                client,
                "GET",
                "/v1/tenants/acme/integrations?limit=5&x=qs-secret",
                headers={"Authorization": f"Bearer {jwt}", "X-Request-Id": "given-id.1"},
            )
        )[:2]
    )
    # MCP: initialize, then a tools/call that fails upstream (logged with the request id).
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    async with client.post(
        CALL, json=init, headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"}
    ) as resp:
        assert resp.status == 200
        session = resp.headers["Mcp-Session-Id"]
        sent.append((resp.status, resp.headers["X-Request-Id"]))
    sent.append(
        (
            await call(
                client,
                "POST",
                CALL,
                json={
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": "search_contacts", "arguments": {}},
                },
                headers={
                    **MCP_HEADERS,
                    "Authorization": f"Bearer {key}",
                    "Mcp-Session-Id": session,
                    "X-Request-Id": "bad id with spaces",
                },
            )
        )[:2]
    )
    # A 401 (unknown key, sent as X-API-Key), and an unmatched path.
    sent.append(
        (
            await call(
                client,
                "POST",
                CALL,
                json={"jsonrpc": "2.0", "id": 3, "method": "ping"},
                headers={**MCP_HEADERS, "X-API-Key": bad_key},
            )
        )[:2]
    )
    sent.append((await call(client, "GET", "/nowhere?token=" + jwt))[:2])

    logged = lines.access()[start:]
    assert len(logged) == len(sent)
    for line, (status, request_id) in zip(logged, sent, strict=True):
        assert line["status"] == status and line["request_id"] == request_id
        assert line["level"] == "INFO" and line["msg"] == "request"
        assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
        assert "?" not in line["path"]
    listing, initialize, tools_call, unauthorized, unmatched = logged
    assert listing["request_id"] == "given-id.1"
    assert listing | {"duration_ms": 0, "ts": "", "client": ""} == {
        "ts": "",
        "level": "INFO",
        "logger": ACCESS_LOGGER,
        "msg": "request",
        "request_id": "given-id.1",
        "method": "GET",
        "path": "/v1/tenants/acme/integrations",
        "status": 200,
        "duration_ms": 0,
        "endpoint": "settings",
        "route": "listIntegrations",
        "outcome": "ok",
        "client": "",
        "tenant": "acme",
    }
    assert initialize["endpoint"] == "call" and initialize["rpc_method"] == "initialize"
    assert (initialize["tenant"], initialize["integration"]) == ("acme", "crm")
    assert tools_call["rpc_method"] == "tools/call"
    assert tools_call["request_id"] != "bad id with spaces"  # not sane: a new one
    assert len(tools_call["request_id"]) == 32
    assert unauthorized["status"] == 401 and unauthorized["outcome"] == "auth_failed"
    assert unauthorized["reason"] == "unknown"
    assert unauthorized["rpc_method"] is None  # refused before the body was read
    assert unmatched["endpoint"] == "other" and unmatched["route"] == "unmatched"
    assert unmatched["path"] == "/nowhere"

    # Records logged while a request runs carry its request id.
    upstream = [line for line in lines.all() if "upstream tools/call failed" in line["msg"]]
    assert [line["request_id"] for line in upstream] == [tools_call["request_id"]]

    # No secret anywhere, at DEBUG, in any logger's line. aiohttp's own access log (which
    # logs query strings) runs only under the test server: `serve` turns it off (below).
    ours = "\n".join(json.dumps(line) for line in lines.all() if line["logger"] != "aiohttp.access")
    for secret in (
        key,
        bad_key,
        jwt,
        jwt.split(".")[2],
        UPSTREAM_SECRET,
        "upstream-secret-logs",
        "qs-secret",
        JWT_SECRET,
    ):
        assert secret not in ours, secret


async def test_normal_client_probes_are_quiet_and_a_401_names_its_reason(
    client: TestClient, api: Api, lines: Lines
) -> None:
    """A legacy client's GET for a server stream and an OAuth discovery probe are answered
    as before but logged at DEBUG as `not_offered`; each refused key's line says why."""
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    _, config = await api.call("POST", "/crm/configs", 201, json={"tools": TOOLS})
    _, settings = await api.call(
        "PATCH", "/crm/mcp", 200, json={"enabled": True, "configId": config["configId"]}
    )
    _, rotated = await api.call("POST", "/crm/mcp:rotateKey", 200)
    assert rotated["apiKey"] != settings["apiKey"]
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    start = len(lines.access())

    probes = [
        ("GET", CALL, {**MCP_HEADERS, "Authorization": f"Bearer {rotated['apiKey']}"}, 405),
        ("HEAD", CALL, {}, 405),
        ("GET", "/.well-known/oauth-protected-resource", {}, 404),
    ]
    for method, path, headers, status in probes:
        assert (await call(client, method, path, headers=headers))[0] == status
    refused = [
        ({}, "missing"),
        ({"Authorization": "Bearer not-a-key"}, "malformed"),
        ({"Authorization": f"Bearer {keys.mint().raw}"}, "unknown"),
        ({"Authorization": f"Bearer {settings['apiKey']}"}, "revoked"),
    ]
    for headers, _ in refused:
        status, _, _ = await call(
            client, "POST", CALL, json=ping, headers={**MCP_HEADERS, **headers}
        )
        assert status == 401

    logged = lines.access()[start:]
    assert len(logged) == len(probes) + len(refused)
    for line, (method, path, _, status) in zip(logged, probes, strict=False):
        assert (line["method"], line["path"], line["status"]) == (method, path, status)
        assert line["outcome"] == "not_offered" and line["level"] == "DEBUG"
        assert "reason" not in line
    for line, (_, reason) in zip(logged[len(probes) :], refused, strict=True):
        assert line["level"] == "INFO" and line["outcome"] == "auth_failed"
        assert line["status"] == 401 and line["reason"] == reason

    # At the service's usual INFO level the probes leave no line at all.
    access = logging.getLogger(ACCESS_LOGGER)
    saved = access.level
    access.setLevel(logging.INFO)
    try:
        before = len(lines.access())
        for method, path, headers, _ in probes:
            await call(client, method, path, headers=headers)
        assert len(lines.access()) == before
    finally:
        access.setLevel(saved)


def record(msg: str, *args: Any, exc: bool = False, **fields: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("mcp_gateway.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    if fields:
        rec.fields = fields
    return rec


def test_json_lines_are_single_lines_with_exceptions_and_fields() -> None:
    line = JsonFormatter().format(
        record("hello %s", "world\nforged line", exc=True, path="/a\nb\udcff")
    )
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["msg"] == "hello world\nforged line" and doc["level"] == "WARNING"
    assert doc["logger"] == "mcp_gateway.test" and doc["ts"].endswith("Z")
    assert "ValueError: boom" in doc["exc"] and doc["path"] == "/a\nb\udcff"
    line.encode("ascii")  # never fails to encode, whatever the path held


def test_text_lines_append_fields_quoted() -> None:
    text = TextFormatter().format(record("request", status=200, path="/x y\n", none=None))
    first = text.splitlines()[0]
    assert first.endswith('request status=200 path="/x y\\n"')


def test_configure_logging_renders_every_record_as_json() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure_logging("INFO", "json", stream)
        logging.getLogger("some.library").warning("disk %d%% full", 93)
        logging.getLogger("some.library").debug("not at INFO")
        with pytest.raises(ValueError, match="log format"):
            configure_logging("INFO", "yaml", stream)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["msg"] == "disk 93% full"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_request_lines_go_through_logging() -> None:
    """Under `serve`'s setup the request line is an ordinary record of the access logger:
    the configured handler writes it as one JSON line with its fields at the top level, and
    any other handler (a capture, a filter) sees the same record."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    access = logging.getLogger(ACCESS_LOGGER)
    fields = {"status": 200, "path": "/v1/\udcff", "tenant": "acme", "n": None}
    capture = Capture()
    try:
        handler = configure_logging("INFO", "json")
        assert isinstance(handler, BufferedStderrHandler)
        out = io.StringIO()
        handler.setStream(out)
        access.addHandler(capture)
        token = REQUEST_ID_VAR.set("req-1")
        access.info("request", extra={"fields": fields})
        REQUEST_ID_VAR.reset(token)
        access.removeHandler(capture)
        handler.flush()
        [line] = out.getvalue().splitlines()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    doc = json.loads(line)
    assert doc.pop("ts").endswith("Z")
    assert doc == {
        "level": "INFO",
        "logger": ACCESS_LOGGER,
        "msg": "request",
        "request_id": "req-1",
        **fields,
    }
    [record] = capture.records
    assert record.getMessage() == "request" and record.__dict__["fields"] == fields


def test_buffered_handler_writes_in_batches() -> None:
    """Info lines wait for the periodic flush (one write per batch); a warning is written at
    once, with every line before it, in order."""
    logger = logging.getLogger("mcp_gateway.test.batches")
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def attach(interval_s: float) -> tuple[BufferedStderrHandler, io.BytesIO]:
        handler = BufferedStderrHandler(interval_s=interval_s)
        handler.setFormatter(JsonFormatter())
        sink = io.BytesIO()
        handler.setStream(io.TextIOWrapper(sink, encoding="utf-8"))
        logger.addHandler(handler)
        return handler, sink

    handler, sink = attach(3600)  # no periodic flush during this part
    try:
        logger.info("first")
        logger.info("second")
        assert sink.getvalue() == b""  # held in the buffer
        logger.warning("third")
        assert [json.loads(x)["msg"] for x in sink.getvalue().splitlines()] == [
            "first",
            "second",
            "third",
        ]
    finally:
        logger.removeHandler(handler)
        handler.close()
    handler, sink = attach(0.05)
    try:
        logger.info("fourth")
        deadline = time.monotonic() + 5
        while b"fourth" not in sink.getvalue():
            assert time.monotonic() < deadline, "never flushed"
            time.sleep(0.01)
    finally:
        logger.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_static_fields_go_on_every_line(fmt: str) -> None:
    """A worker's index: on request lines and on every other record, after the record's own
    fields."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    access = logging.getLogger(ACCESS_LOGGER)
    try:
        handler = configure_logging("INFO", fmt, static={"worker": 3})
        assert isinstance(handler, BufferedStderrHandler)
        out = io.StringIO()
        handler.setStream(out)
        access.info("request", extra={"fields": {"status": 200, "worker": "spoofed"}})
        logging.getLogger("some.library").warning("disk full")
        request_line, other_line = out.getvalue().splitlines()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    if fmt == "json":
        assert json.loads(request_line)["worker"] == 3
        assert json.loads(request_line)["status"] == 200
        assert json.loads(other_line)["worker"] == 3
    else:
        assert request_line.endswith("request status=200 worker=3")
        assert other_line.endswith("disk full worker=3")


@pytest.mark.slow  # starts a gateway process
def test_serve_writes_json_lines_and_no_aiohttp_access_log(tmp_path: Path) -> None:
    proc = GatewayProcess(
        tmp_path,
        "serve",
        {
            "MCPGW_DATA_DIR": str(tmp_path / "data"),
            "MCPGW_JWT_SECRET": JWT_SECRET,
            "MCPGW_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        },
    )
    try:
        proc.wait_ready()
        request = urllib.request.Request(
            proc.url + "/healthz?probe=1", headers={"X-Request-Id": "serve-check-1"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.headers["X-Request-Id"] == "serve-check-1"
    finally:
        proc.stop()
    output = [json.loads(line) for line in proc.log_path.read_text().splitlines() if line.strip()]
    assert not [line for line in output if line["logger"] == "aiohttp.access"]
    [health] = [line for line in output if line.get("request_id") == "serve-check-1"]
    assert health["path"] == "/healthz" and health["status"] == 200
    assert any("serving role=all" in line["msg"] for line in output)
