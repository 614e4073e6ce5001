"""What a client sends in a malformed request never comes back in a log line or an answer.

Raw sockets, because aiohttp's client will not send these requests: oversized header lines,
non-ASCII keys, NUL bytes and non-UTF-8 bytes in the request line. Each test runs a live app
and looks at every log record (message, fields and traceback) and every byte of the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import JWT_SECRET, make_settings
from net import new_address
from processes import GatewayProcess

from settings_api import keys
from settings_api.config import Settings

CALL = "/v1/tenants/acme/integrations/crm/mcp:call"
SETTINGS_PATH = "/v1/tenants/acme/integrations"
LIMIT = 4  # failed authentications per address before it is throttled
JUNK = " " + "x" * 9000  # past aiohttp's default 8190-byte header line


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # One backend is enough: nothing here reaches the store.
    return make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'store.db'}",
        MCPGW_AUTH_FAILURE_LIMIT=str(LIMIT),
        MCPGW_AUTH_FAILURE_WINDOW_S="30",
        MCPGW_TRUST_FORWARDED="true",
    )


async def exchange(client: TestClient, request: bytes) -> bytes:
    """Send `request` on a new connection; everything the server answered until it closed
    the connection (or 5 s passed)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def mcp_post(*headers: bytes, path: bytes = CALL.encode()) -> bytes:
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        b"MCP-Protocol-Version: 2025-11-25\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def settings_get(*headers: bytes) -> bytes:
    return (
        b"GET " + SETTINGS_PATH.encode() + b" HTTP/1.1\r\nHost: gw.test\r\n"
        b"Connection: close\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"
    )


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def problem_of(answer: bytes) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head, head
    return json.loads(body)  # type: ignore[no-any-return]


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as any handler could write it: message, fields, traceback."""
    formatter = logging.Formatter()
    return "\n".join(
        f"{r.levelname} {r.name} {r.getMessage()} {getattr(r, 'fields', '')} "
        f"{formatter.formatException(r.exc_info) if r.exc_info else ''} "
        f"{r.exc_text or ''}"
        for r in caplog.records
    )


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """No ERROR record and no traceback: a client's malformed request is not our failure."""
    for record in caplog.records:
        assert record.levelno < logging.ERROR, logged(caplog)
        assert record.exc_info is None and not record.exc_text, logged(caplog)


@pytest.mark.parametrize("header", [b"Authorization: Bearer ", b"X-API-Key: "])
async def test_a_key_in_an_oversized_header_is_never_echoed_or_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture, header: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    key = keys.mint().raw
    answer = await exchange(client, mcp_post(header + key.encode() + JUNK.encode()))
    assert status_of(answer) == 401
    assert problem_of(answer)["reason"] == "malformed"
    assert key not in answer.decode("latin-1")
    assert key not in logged(caplog)
    assert_quiet(caplog)


async def test_a_jwt_in_an_oversized_header_is_never_echoed_or_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture, token: Callable[..., str]
) -> None:
    caplog.set_level(logging.DEBUG)
    jwt = token("acme")
    answer = await exchange(client, settings_get(f"Authorization: Bearer {jwt}{JUNK}".encode()))
    assert status_of(answer) == 401
    problem_of(answer)
    text = answer.decode("latin-1") + logged(caplog)
    for part in (jwt, *jwt.split(".")):
        assert part not in text
    assert_quiet(caplog)


@pytest.mark.parametrize(
    "line",
    [
        b"Authorization: Bearer %s " + b"x" * 20_000,  # past even our header line bound
        b"Authorization: Bearer %s\x00",  # a NUL byte: aiohttp's own 400
        b"Authorization: Bearer %s\x01",  # a control byte: llhttp's 400
        b"X-API-Key: %s\x7f",
    ],
    ids=["too-long", "nul", "control", "del"],
)
async def test_requests_the_parser_refuses_leave_no_key_in_the_logs(
    client: TestClient, caplog: pytest.LogCaptureFixture, line: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    key = keys.mint().raw
    answer = await exchange(client, mcp_post(line.replace(b"%s", key.encode())))
    assert status_of(answer) == 400
    assert key not in logged(caplog)
    assert_quiet(caplog)
    # One line says what happened, in words of ours.
    refused = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(refused) == 1 and refused[0].getMessage() == "request refused by the HTTP parser"
    assert refused[0].fields["status"] == 400  # type: ignore[attr-defined]


async def test_a_refused_request_is_not_logged_below_the_configured_level(
    client: TestClient,
) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()  # level NOTSET: the loggers decide, as in `serve`
    handler.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # MCPGW_LOG_LEVEL=WARNING
    try:
        answer = await exchange(client, mcp_post(b"X-API-Key: " + b"k" * 20_000))
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
    assert status_of(answer) == 400
    assert [r for r in records if r.name == "aiohttp.server"] == []


@pytest.mark.parametrize(
    "raw",
    ["mcpk_é".encode(), b"mcpk_\xff\xfe", "ключ".encode(), ("mcpk_" + "é" * 38).encode()],
    ids=["short-utf8", "non-utf8", "cyrillic", "right-length"],
)
async def test_a_non_ascii_key_is_a_counted_401(
    client: TestClient, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    address = new_address().encode()
    for _ in range(LIMIT):
        answer = await exchange(
            client, mcp_post(b"Authorization: Bearer " + raw, b"X-Forwarded-For: " + address)
        )
        assert status_of(answer) == 401, answer
        assert problem_of(answer)["reason"] == "malformed"
    # Counted like any malformed key: the address is now throttled, whatever it sends.
    answer = await exchange(client, mcp_post(b"X-API-Key: " + raw, b"X-Forwarded-For: " + address))
    assert status_of(answer) == 429
    assert problem_of(answer)["type"].endswith("/auth-throttled")
    assert_quiet(caplog)


async def test_invalid_bytes_in_the_path_are_a_quiet_400(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await exchange(
        client,
        b"GET /v1/\xff\xfe/integrations HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
    )
    assert status_of(answer) == 400
    assert "\\xff" not in logged(caplog) and "\udcff" not in logged(caplog)
    assert_quiet(caplog)
    # Percent-encoded, they are a path like any other: no such route, a problem answer.
    for path in (b"/v1/%ff%fe", b"/v1/tenants/%ff%fe/integrations", CALL.encode() + b"%ff"):
        answer = await exchange(client, mcp_post(path=path))
        assert 400 <= status_of(answer) < 500
        problem_of(answer)
    assert_quiet(caplog)


@pytest.mark.slow  # starts a gateway process
def test_serve_logs_one_clean_json_line_per_request_it_cannot_parse(tmp_path: Path) -> None:
    # The real process: its JSON log handler, aiohttp's own server, run_app's options.
    proc = GatewayProcess(
        tmp_path,
        "serve",
        {
            "MCPGW_DATA_DIR": str(tmp_path / "data"),
            "MCPGW_JWT_SECRET": JWT_SECRET,
            "MCPGW_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        },
    )
    key = keys.mint().raw.encode()
    requests = [
        mcp_post(b"Authorization: Bearer " + key + b" " + b"x" * 20_000),
        mcp_post(b"X-API-Key: " + key + b"\x00"),
        b"GET /v1/\xff\xfe HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    ]
    try:
        proc.wait_ready()
        for request in requests:
            with socket.create_connection(("127.0.0.1", proc.port), timeout=5) as sock:
                sock.sendall(request)
                answer = b"".join(iter(lambda: sock.recv(65536), b""))
                assert status_of(answer) == 400
    finally:
        proc.stop()
    output = proc.log_path.read_bytes()
    assert key not in output and b"Traceback" not in output and b"\\xff" not in output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")]
    refused = [line for line in lines if line["msg"] == "request refused by the HTTP parser"]
    assert [(line["level"], line["status"]) for line in refused] == [("INFO", 400)] * 3
