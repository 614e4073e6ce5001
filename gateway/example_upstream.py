"""An example upstream MCP server: a small CRM (contacts, notes, deals) from in-memory data.

`mcp-gateway demo` runs it in-process and binds an integration to it, so the gateway's callUrl
has a real MCP server behind it. It is a complete server of the Streamable HTTP transport in the
legacy protocol era (2025-11-25, 2025-06-18, 2025-03-26), one endpoint at ``/mcp``:

- ``POST`` carries one JSON-RPC message (a batch only on 2025-03-26). ``initialize`` negotiates
  the version (the client's when supported, else the latest) and returns an ``Mcp-Session-Id``;
  every later request must send it (missing → 400, unknown or ended → 404). Notifications and
  responses → 202. ``ping``, ``tools/list`` (cursor-paginated) and ``tools/call`` are served;
  any other method → ``-32601``.
- ``DELETE`` with the session id ends the session (204). ``GET`` → 405: this server never
  starts a stream of its own.
- An ``Origin`` other than a loopback one → 403 (DNS-rebinding defence: the server is meant to
  listen on 127.0.0.1), an unsupported ``MCP-Protocol-Version`` → 400, a body that is not
  ``application/json`` → 415, over 1 MiB → 413.

Answers are ``application/json``, or one server-sent event for a client that accepts only
``text/event-stream``. Every tool has an ``inputSchema`` and an ``outputSchema``; arguments are
validated (failures are tool results with ``isError: true``), and results carry
``structuredContent`` plus the same JSON as a text block. Notes created with ``create_note``
live as long as the server.
"""

from __future__ import annotations

import collections
import copy
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from jsonschema import Draft202012Validator

__all__ = ["PROTOCOL_VERSIONS", "TOOLS", "Crm", "ExampleUpstream"]

PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
SERVER_INFO = {"name": "example-crm", "title": "Example CRM", "version": "1.0.0"}
INSTRUCTIONS = (
    "A small CRM: find contacts with search_contacts, read one with get_contact, "
    "record a note with create_note, and review the pipeline with list_deals."
)
MAX_BODY_BYTES = 1024 * 1024
MAX_SESSIONS = 1000
SESSION_IDLE_S = 3600.0
MAX_NOTES = 10_000
PAGE_SIZE = 50
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# JSON-RPC error codes
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
SESSION_NOT_FOUND = -32001

# --------------------------------------------------------------------------- tool catalog

STAGES = ["prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"]

_CONTACT_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "description": "Contact id, e.g. c_001"},
    "name": {"type": "string"},
    "email": {"type": "string", "format": "email"},
    "company": {"type": "string"},
    "title": {"type": "string", "description": "Job title"},
}
_CONTACT = {
    "type": "object",
    "required": list(_CONTACT_PROPERTIES),
    "properties": _CONTACT_PROPERTIES,
}
_NOTE = {
    "type": "object",
    "required": ["id", "contactId", "body", "createdAt"],
    "properties": {
        "id": {"type": "string"},
        "contactId": {"type": "string"},
        "body": {"type": "string"},
        "createdAt": {"type": "string", "format": "date-time"},
    },
}
_DEAL = {
    "type": "object",
    "required": [
        "id",
        "name",
        "contactId",
        "company",
        "stage",
        "amount",
        "currency",
        "expectedCloseDate",
    ],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "contactId": {"type": "string"},
        "company": {"type": "string"},
        "stage": {"type": "string", "enum": STAGES},
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"]},
        "expectedCloseDate": {"type": "string", "format": "date"},
    },
}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "search_contacts",
        "title": "Search contacts",
        "description": "Find contacts whose name, email or company contains the query "
        "(case-insensitive).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "description": "Text to look for, e.g. 'ada' or 'orbital'",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 50,
                    "default": 10,
                    "description": "Most contacts to return",
                },
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        "outputSchema": {
            "type": "object",
            "required": ["contacts", "total"],
            "properties": {
                "contacts": {"type": "array", "items": _CONTACT},
                "total": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Matches before the limit was applied",
                },
            },
        },
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    },
    {
        "name": "get_contact",
        "title": "Get a contact",
        "description": "One contact with its phone number, notes and open deals.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "contactId": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "description": "Contact id, e.g. c_001",
                }
            },
            "required": ["contactId"],
            "additionalProperties": False,
        },
        "outputSchema": {
            "type": "object",
            "required": ["contact", "notes", "openDeals"],
            "properties": {
                "contact": {
                    "type": "object",
                    "required": [*_CONTACT_PROPERTIES, "phone"],
                    "properties": {**_CONTACT_PROPERTIES, "phone": {"type": "string"}},
                },
                "notes": {"type": "array", "items": _NOTE},
                "openDeals": {"type": "array", "items": _DEAL},
            },
        },
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    },
    {
        "name": "create_note",
        "title": "Add a note",
        "description": "Record a note on a contact (e.g. a call summary).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "contactId": {"type": "string", "minLength": 1, "maxLength": 64},
                "body": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 2000,
                    "description": "The note's text",
                },
            },
            "required": ["contactId", "body"],
            "additionalProperties": False,
        },
        "outputSchema": {"type": "object", "required": ["note"], "properties": {"note": _NOTE}},
        "annotations": {
            "readOnlyHint": False,
            "destructiveHint": False,
            "idempotentHint": False,
            "openWorldHint": False,
        },
    },
    {
        "name": "list_deals",
        "title": "List deals",
        "description": "Deals in the pipeline, optionally filtered by stage, contact or "
        "minimum amount; largest first.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "stage": {"type": "string", "enum": STAGES},
                "contactId": {"type": "string", "minLength": 1, "maxLength": 64},
                "minAmount": {"type": "number", "minimum": 0},
            },
            "additionalProperties": False,
        },
        "outputSchema": {
            "type": "object",
            "required": ["deals", "totalAmount"],
            "properties": {
                "deals": {"type": "array", "items": _DEAL},
                "totalAmount": {
                    "type": "number",
                    "minimum": 0,
                    "description": "Sum of the listed deals' amounts",
                },
            },
        },
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    },
]

# --------------------------------------------------------------------------- sample data

_CONTACTS: list[dict[str, str]] = [
    {
        "id": "c_001",
        "name": "Ada Lovelace",
        "email": "ada@analytical-engines.example",
        "company": "Analytical Engines Ltd",
        "title": "Head of Research",
        "phone": "+44 20 7946 0001",
    },
    {
        "id": "c_002",
        "name": "Grace Hopper",
        "email": "grace@compiler.example",
        "company": "Compiler Corp",
        "title": "CTO",
        "phone": "+1 202 555 0102",
    },
    {
        "id": "c_003",
        "name": "Alan Turing",
        "email": "alan@bletchley.example",
        "company": "Bletchley Systems",
        "title": "Principal Engineer",
        "phone": "+44 20 7946 0003",
    },
    {
        "id": "c_004",
        "name": "Katherine Johnson",
        "email": "katherine@orbital.example",
        "company": "Orbital Dynamics",
        "title": "VP Engineering",
        "phone": "+1 757 555 0104",
    },
    {
        "id": "c_005",
        "name": "Hedy Lamarr",
        "email": "hedy@spread-spectrum.example",
        "company": "Spread Spectrum Inc",
        "title": "Founder",
        "phone": "+1 310 555 0105",
    },
    {
        "id": "c_006",
        "name": "Edsger Dijkstra",
        "email": "edsger@shortest-path.example",
        "company": "Shortest Path BV",
        "title": "Chief Architect",
        "phone": "+31 20 555 0106",
    },
    {
        "id": "c_007",
        "name": "Margaret Hamilton",
        "email": "margaret@apollo-software.example",
        "company": "Apollo Software",
        "title": "Director of Software",
        "phone": "+1 617 555 0107",
    },
    {
        "id": "c_008",
        "name": "Adam Smith",
        "email": "adam@orbital.example",
        "company": "Orbital Dynamics",
        "title": "Procurement Lead",
        "phone": "+1 757 555 0108",
    },
]
_DEALS: list[dict[str, Any]] = [
    {
        "id": "d_101",
        "name": "Analytical Engines: research cluster",
        "contactId": "c_001",
        "stage": "proposal",
        "amount": 48000,
        "currency": "GBP",
        "expectedCloseDate": "2026-03-31",
    },
    {
        "id": "d_102",
        "name": "Compiler Corp: platform licence",
        "contactId": "c_002",
        "stage": "negotiation",
        "amount": 125000,
        "currency": "USD",
        "expectedCloseDate": "2026-02-15",
    },
    {
        "id": "d_103",
        "name": "Bletchley: security audit",
        "contactId": "c_003",
        "stage": "closed_won",
        "amount": 32000,
        "currency": "GBP",
        "expectedCloseDate": "2025-11-30",
    },
    {
        "id": "d_104",
        "name": "Orbital Dynamics: trajectory suite",
        "contactId": "c_004",
        "stage": "qualification",
        "amount": 210000,
        "currency": "USD",
        "expectedCloseDate": "2026-06-30",
    },
    {
        "id": "d_105",
        "name": "Orbital Dynamics: support renewal",
        "contactId": "c_008",
        "stage": "prospecting",
        "amount": 18500,
        "currency": "USD",
        "expectedCloseDate": "2026-04-15",
    },
    {
        "id": "d_106",
        "name": "Spread Spectrum: pilot",
        "contactId": "c_005",
        "stage": "closed_lost",
        "amount": 9000,
        "currency": "USD",
        "expectedCloseDate": "2025-10-01",
    },
    {
        "id": "d_107",
        "name": "Apollo Software: onboarding",
        "contactId": "c_007",
        "stage": "proposal",
        "amount": 56000,
        "currency": "USD",
        "expectedCloseDate": "2026-05-01",
    },
]
_NOTES: list[dict[str, str]] = [
    {
        "id": "n_001",
        "contactId": "c_001",
        "body": "Intro call: interested in the research "
        "cluster, wants a proposal by end of quarter.",
        "createdAt": "2025-12-02T10:15:00Z",
    },
    {
        "id": "n_002",
        "contactId": "c_002",
        "body": "Legal is reviewing the licence terms.",
        "createdAt": "2026-01-12T16:40:00Z",
    },
]
_CLOSED = frozenset({"closed_won", "closed_lost"})


class ToolFailure(Exception):
    """A tool ran but could not do what was asked: reported as a result with isError."""


@dataclass
class Crm:
    """The CRM's data and its tools. Each instance has its own copy of the sample data."""

    contacts: dict[str, dict[str, str]] = field(
        default_factory=lambda: {c["id"]: dict(c) for c in _CONTACTS}
    )
    deals: list[dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(_DEALS))
    notes: list[dict[str, str]] = field(default_factory=lambda: copy.deepcopy(_NOTES))
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self._tools: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "search_contacts": self.search_contacts,
            "get_contact": self.get_contact,
            "create_note": self.create_note,
            "list_deals": self.list_deals,
        }
        self._validators = {t["name"]: Draft202012Validator(t["inputSchema"]) for t in TOOLS}

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """A CallToolResult for a known tool (check `name` with `has_tool` first)."""
        errors = sorted(
            self._validators[name].iter_errors(arguments),
            key=lambda e: list(map(str, e.absolute_path)),
        )
        if errors:
            lines = [
                f"{'.'.join(map(str, e.absolute_path)) or '(arguments)'}: {e.message}"
                for e in errors
            ]
            return _error_result("Invalid arguments:\n" + "\n".join(lines))
        try:
            structured = self._tools[name](arguments)
        except ToolFailure as exc:
            return _error_result(str(exc))
        return {
            "content": [{"type": "text", "text": json.dumps(structured)}],
            "structuredContent": structured,
            "isError": False,
        }

    def has_tool(self, name: object) -> bool:
        return isinstance(name, str) and name in self._tools

    def search_contacts(self, args: dict[str, Any]) -> dict[str, Any]:
        query = args["query"].strip().casefold()
        found = [
            c
            for c in self.contacts.values()
            if any(query in c[k].casefold() for k in ("name", "email", "company"))
        ]
        limit = args.get("limit", 10)
        return {"contacts": [_summary(c) for c in found[:limit]], "total": len(found)}

    def get_contact(self, args: dict[str, Any]) -> dict[str, Any]:
        contact = self._contact(args["contactId"])
        return {
            "contact": dict(contact),
            "notes": [dict(n) for n in self.notes if n["contactId"] == contact["id"]],
            "openDeals": [
                self._deal(d)
                for d in self.deals
                if d["contactId"] == contact["id"] and d["stage"] not in _CLOSED
            ],
        }

    def create_note(self, args: dict[str, Any]) -> dict[str, Any]:
        contact = self._contact(args["contactId"])
        body = args["body"].strip()
        if not body:
            raise ToolFailure("The note's body is blank.")
        if len(self.notes) >= MAX_NOTES:
            raise ToolFailure("This demo CRM holds at most 10000 notes; restart it to reset.")
        created = self.clock().replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        note = {
            "id": f"n_{len(self.notes) + 1:03d}",
            "contactId": contact["id"],
            "body": body,
            "createdAt": created,
        }
        self.notes.append(note)
        return {"note": dict(note)}

    def list_deals(self, args: dict[str, Any]) -> dict[str, Any]:
        deals = [
            d
            for d in self.deals
            if ("stage" not in args or d["stage"] == args["stage"])
            and ("contactId" not in args or d["contactId"] == args["contactId"])
            and d["amount"] >= args.get("minAmount", 0)
        ]
        deals.sort(key=lambda d: (-d["amount"], d["id"]))
        return {
            "deals": [self._deal(d) for d in deals],
            "totalAmount": sum(d["amount"] for d in deals),
        }

    def _contact(self, contact_id: str) -> dict[str, str]:
        contact = self.contacts.get(contact_id)
        if contact is None:
            raise ToolFailure(f"No contact with id {contact_id!r}; search_contacts finds ids.")
        return contact

    def _deal(self, deal: dict[str, Any]) -> dict[str, Any]:
        return {**deal, "company": self.contacts[deal["contactId"]]["company"]}


def _summary(contact: dict[str, str]) -> dict[str, str]:
    return {k: contact[k] for k in _CONTACT_PROPERTIES}


def _error_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


# --------------------------------------------------------------------------- transport


@dataclass(slots=True)
class _Session:
    version: str
    last_seen: float


class _HttpError(Exception):
    """An answer at the HTTP level (with a JSON-RPC error body) instead of a dispatch."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class ExampleUpstream:
    """The MCP server: ``app()`` serves it at ``/mcp``; ``crm`` holds its data."""

    crm: Crm = field(default_factory=Crm)
    sessions: collections.OrderedDict[str, _Session] = field(
        default_factory=collections.OrderedDict
    )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/mcp", self._post)
        app.router.add_delete("/mcp", self._delete)
        app.router.add_get("/mcp", self._get)
        return app

    # ------------------------------------------------------------------ HTTP

    async def _get(self, request: web.Request) -> web.Response:
        return web.Response(
            status=405,
            headers={"Allow": "POST, DELETE"},
            text="this server does not open streams: POST messages\n",
        )

    async def _delete(self, request: web.Request) -> web.Response:
        try:
            _check_origin(request)
            session_id = self._session_id(request)
        except _HttpError as exc:
            return _error_response(exc)
        del self.sessions[session_id]
        return web.Response(status=204)

    async def _post(self, request: web.Request) -> web.StreamResponse:
        try:
            _check_origin(request)
            json_ok, sse_ok = _accepts(request.headers.get("Accept"))
            if not (json_ok or sse_ok):
                raise _HttpError(
                    406,
                    INVALID_REQUEST,
                    "Not Acceptable: accept application/json or text/event-stream",
                )
            if request.content_type != "application/json":
                raise _HttpError(
                    415, INVALID_REQUEST, "Unsupported Media Type: send application/json"
                )
            try:
                message = json.loads(await request.read())
            except ValueError:
                raise _HttpError(400, PARSE_ERROR, "Parse error: the body is not JSON") from None
            header_version = request.headers.get(VERSION_HEADER)
            if header_version is not None and header_version not in PROTOCOL_VERSIONS:
                raise _HttpError(
                    400,
                    INVALID_REQUEST,
                    f"Unsupported protocol version {header_version[:40]!r}; "
                    f"supported: {', '.join(PROTOCOL_VERSIONS)}",
                )
            headers: dict[str, str] = {}
            reply = self._handle_body(request, message, headers)
        except _HttpError as exc:
            return _error_response(exc)
        except web.HTTPRequestEntityTooLarge:
            return _error_response(
                _HttpError(413, INVALID_REQUEST, f"Request body over {MAX_BODY_BYTES} bytes")
            )
        if reply is None:
            return web.Response(status=202, headers=headers)
        if sse_ok and not json_ok:
            return await _send_sse(request, reply, headers)
        return web.json_response(reply, headers=headers)

    def _handle_body(self, request: web.Request, message: Any, headers: dict[str, str]) -> Any:
        """The JSON-RPC reply (object or batch array), or None when nothing answers (202)."""
        if isinstance(message, list):
            session_id = self._session_id(request)
            if self.sessions[session_id].version != "2025-03-26":
                raise _HttpError(
                    400, INVALID_REQUEST, "Batches are only part of protocol version 2025-03-26"
                )
            if not message:
                raise _HttpError(400, INVALID_REQUEST, "Invalid Request: empty batch")
            replies = [
                r
                for item in message
                if (r := self._handle_message(request, item, headers, batch=True))
            ]
            return replies or None
        return self._handle_message(request, message, headers, batch=False)

    def _handle_message(
        self, request: web.Request, message: Any, headers: dict[str, str], *, batch: bool
    ) -> dict[str, Any] | None:
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _rpc_error(None, INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
        method = message.get("method")
        if method is None and ("result" in message or "error" in message):
            return None  # a response to a request of ours: we never send any
        msg_id = message.get("id")
        if not isinstance(method, str) or (
            "id" in message and (isinstance(msg_id, bool) or not isinstance(msg_id, str | int))
        ):
            return _rpc_error(
                msg_id if isinstance(msg_id, str | int) else None,
                INVALID_REQUEST,
                "Invalid Request: bad method or id",
            )
        params = message.get("params", {})
        if not isinstance(params, dict):
            return _rpc_error(msg_id, INVALID_PARAMS, "Invalid params: must be an object")
        if method == "initialize":
            if batch:
                return _rpc_error(msg_id, INVALID_REQUEST, "initialize must not be part of a batch")
            return _rpc_result(msg_id, self._initialize(params, headers))
        if not batch:  # a batch checked the session once
            self._session_id(request)
        if "id" not in message:
            return None  # notifications (notifications/initialized, cancelled, ...)
        if method == "ping":
            return _rpc_result(msg_id, {})
        if method == "tools/list":
            return self._tools_list(msg_id, params)
        if method == "tools/call":
            name = params.get("name")
            arguments = params.get("arguments", {})
            if not isinstance(name, str) or not self.crm.has_tool(name):
                return _rpc_error(msg_id, INVALID_PARAMS, f"Unknown tool: {str(name)[:128]}")
            if not isinstance(arguments, dict):
                return _rpc_error(msg_id, INVALID_PARAMS, "arguments must be an object")
            return _rpc_result(msg_id, self.crm.call(name, arguments))
        return _rpc_error(msg_id, METHOD_NOT_FOUND, f"Method not found: {method[:100]}")

    # ------------------------------------------------------------------ sessions

    def _initialize(self, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0]
        self._expire()
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.popitem(last=False)  # the least recently used
        session_id = secrets.token_urlsafe(24)
        self.sessions[session_id] = _Session(version, time.monotonic())
        headers[SESSION_HEADER] = session_id
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
            "instructions": INSTRUCTIONS,
        }

    def _session_id(self, request: web.Request) -> str:
        """The request's live session id (refreshed), or the 400 / 404 answer."""
        session_id = request.headers.get(SESSION_HEADER)
        if not session_id:
            raise _HttpError(
                400,
                INVALID_REQUEST,
                f"Bad Request: {SESSION_HEADER} header is required (initialize first)",
            )
        self._expire()
        session = self.sessions.get(session_id)
        if session is None:
            raise _HttpError(404, SESSION_NOT_FOUND, "Session not found: initialize again")
        session.last_seen = time.monotonic()
        self.sessions.move_to_end(session_id)
        return session_id

    def _expire(self) -> None:
        horizon = time.monotonic() - SESSION_IDLE_S
        while self.sessions:
            oldest = next(iter(self.sessions.values()))
            if oldest.last_seen >= horizon:
                break
            self.sessions.popitem(last=False)

    # ------------------------------------------------------------------ methods

    def _tools_list(self, msg_id: Any, params: dict[str, Any]) -> dict[str, Any]:
        cursor = params.get("cursor")
        start = 0
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor.isdigit() or int(cursor) > len(TOOLS):
                return _rpc_error(msg_id, INVALID_PARAMS, "Invalid params: unknown cursor")
            start = int(cursor)
        end = start + PAGE_SIZE
        result: dict[str, Any] = {"tools": copy.deepcopy(TOOLS[start:end])}
        if end < len(TOOLS):
            result["nextCursor"] = str(end)
        return _rpc_result(msg_id, result)


def _check_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return
    host = urlsplit(origin).hostname
    if host not in LOOPBACK_HOSTS:
        raise _HttpError(403, INVALID_REQUEST, "Forbidden: Origin not allowed")


def _accepts(header: str | None) -> tuple[bool, bool]:
    """(JSON acceptable, SSE acceptable); no Accept header accepts anything."""
    if header is None:
        return True, True
    types = {part.split(";", 1)[0].strip().lower() for part in header.split(",")}
    anything = "*/*" in types
    return (
        anything or "application/json" in types or "application/*" in types,
        anything or "text/event-stream" in types or "text/*" in types,
    )


async def _send_sse(
    request: web.Request, reply: Any, headers: dict[str, str]
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    await resp.write(f"event: message\ndata: {json.dumps(reply)}\n\n".encode())
    await resp.write_eof()
    return resp


def _rpc_result(msg_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def _rpc_error(msg_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def _error_response(exc: _HttpError) -> web.Response:
    return web.json_response(_rpc_error(None, exc.code, exc.message), status=exc.status)
