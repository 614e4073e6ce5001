"""Records each `tools/call` of one MCP request into the replica's call buffer.

The endpoint puts a `CallRecorder` on a request whose body holds a `tools/call`; the places
that learn a call's outcome report it here: the method itself (ok, tool_error, error, denied:
gateway/dispatch.py), the rate limit (the endpoint for one message, dispatch for a batch's
members), and the endpoint again for a call the transport refused before dispatch (error).
`call_outcome` reads the outcome back, for whatever else describes the request.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.call_log.buffer import CallBuffer
from settings_api.store import ToolCall
from settings_api.use_cases.call_log import MAX_RUN_ID

log = logging.getLogger(__name__)

RUN_ID_HEADER = "X-Run-Id"
# An unknown tool's name is the client's text: longer names are cut when recorded.
MAX_TOOL_NAME = 256


class CallOutcome(enum.StrEnum):
    OK = "ok"
    TOOL_ERROR = "tool_error"  # a result with isError: true
    ERROR = "error"  # a JSON-RPC error, the gateway's or the upstream's
    RATE_LIMITED = "rate_limited"
    DENIED = "denied"  # a tool this integration does not expose


def canonical_arguments(arguments: Any) -> str:
    """The arguments as JSON with sorted keys, compact separators and no ASCII escaping: the
    text `argumentsSha256` is taken of (UTF-8)."""
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def arguments_sha256(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(slots=True)
class CallTiming:
    """One call being run: when it started, and its outcome once the code that learns it sets
    it (a call that ends without one, by an exception or a cancellation, is an `error`)."""

    at: int = 0  # epoch ms
    started: float = 0.0  # perf_counter
    outcome: CallOutcome = CallOutcome.ERROR


@dataclass(slots=True)
class CallRecorder:
    """The calls of one MCP request: who made them, where, under which run."""

    buffer: CallBuffer
    url: str
    api_key_id: str
    tenant_id: str
    integration_id: str
    request_id: str | None
    run_id: str | None
    recorded: int = 0
    # The last call's outcome: a single tools/call's outcome, once known.
    outcome: CallOutcome | None = None

    @staticmethod
    def start() -> CallTiming:
        return CallTiming(time.time_ns() // 1_000_000, time.perf_counter())

    def finish(self, params: Any, timing: CallTiming) -> None:
        """Record a call `start` timed, with the outcome it ended with."""
        elapsed_ms = int((time.perf_counter() - timing.started) * 1000)
        self.record(params, timing.outcome, timing.at, elapsed_ms)

    def refused(self, body: Any, outcome: CallOutcome) -> None:
        """Record every `tools/call` request in `body` (a message or a batch) with `outcome`:
        they were answered without being run."""
        at = time.time_ns() // 1_000_000
        for message in body if isinstance(body, list) else (body,):
            if is_call_request(message):
                self.record(message.get("params"), outcome, at, 0)

    def settle(self, body: Any) -> None:
        """After the answer: a `tools/call` request that recorded nothing was refused by the
        transport before dispatch (session, headers, version): an `error`."""
        if self.recorded == 0:
            self.refused(body, CallOutcome.ERROR)

    def record(self, params: Any, outcome: CallOutcome, at: int, duration_ms: int) -> None:
        """Add one call to the buffer; never raises (recording must not fail a call)."""
        self.recorded += 1
        self.outcome = outcome
        try:
            self.buffer.add(self._entry(params, outcome, at, duration_ms))
        except Exception:
            log.exception("could not record a tools/call (request %s)", self.request_id)

    def _entry(self, params: Any, outcome: CallOutcome, at: int, duration_ms: int) -> ToolCall:
        name = params.get("name") if isinstance(params, dict) else None
        arguments = params.get("arguments") if isinstance(params, dict) else None
        canonical = canonical_arguments({} if arguments is None else arguments)
        return ToolCall(
            tenant_id=self.tenant_id,
            integration_id=self.integration_id,
            at=at,
            url=self.url,
            api_key_id=self.api_key_id,
            tool=_storable(name[:MAX_TOOL_NAME]) if isinstance(name, str) else None,
            outcome=outcome.value,
            duration_ms=duration_ms,
            request_id=self.request_id,
            run_id=self.run_id,
            arguments_sha256=arguments_sha256(canonical),
            arguments=canonical if self.url == "test" else None,
        )


def _storable(text: str) -> str:
    """`text` without NUL, which Postgres cannot store: one such row would fail its whole
    batch, other tenants' calls with it. (The arguments' JSON escapes it already.)"""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def is_call_request(message: Any) -> bool:
    """A `tools/call` with an id (a notification is never answered, nor logged unless run)."""
    return isinstance(message, dict) and message.get("method") == "tools/call" and "id" in message


def run_id_of(request: web.Request) -> str | None:
    value = request.headers.get(RUN_ID_HEADER)
    return _storable(value[:MAX_RUN_ID]) if value else None


CALLS: web.RequestKey[CallRecorder] = web.RequestKey("mcpgw_calls", CallRecorder)


def recorder_of(request: web.Request) -> CallRecorder | None:
    """The request's recorder; None when it holds no `tools/call` or nothing records."""
    return request.get(CALLS)


def call_outcome(request: web.Request) -> CallOutcome | None:
    """The outcome of the request's (last) `tools/call`, once known."""
    recorder = request.get(CALLS)
    return recorder.outcome if recorder is not None else None
