"""An example upstream MCP server: a small CRM (contacts, notes, deals) from in-memory data.

`mcp-gateway demo` runs it in-process and binds an integration to it, so the gateway's callUrl
has a real MCP server behind it. It is a complete server of the Streamable HTTP transport in the
legacy protocol era (2025-11-25, 2025-06-18, 2025-03-26, and 2024-11-05 with results cut down
to that version's schema, as the gateway does), one endpoint at ``/mcp``:

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
``isError: false``, ``structuredContent`` and the same JSON as a text block, in the shape the
simulator answers testUrl with (mcp_core/results.py). Notes created with ``create_note``
live as long as the server.

Modules: `catalog` (the tools' schemas), `data` (the sample records), `crm` (the tools over
that data), `sessions` (the MCP session table), `server` (the HTTP transport and JSON-RPC).
"""

from gateway.example_upstream.catalog import TOOLS
from gateway.example_upstream.crm import Crm
from gateway.example_upstream.server import MAX_BODY_BYTES, ExampleUpstream

__all__ = ["MAX_BODY_BYTES", "TOOLS", "Crm", "ExampleUpstream"]
