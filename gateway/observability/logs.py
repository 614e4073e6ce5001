"""Log formats: one JSON object per line (`MCPGW_LOG_FORMAT=json`, the default of `serve`) or
plain text for humans.

Every record of the process goes through the same handler. A record may carry structured
fields in `record.fields` (a dict; the request log does): JSON lines put them at the top level,
text lines append them as `key=value`. Records emitted while a request is handled carry its
`request_id` (a context variable set by the request middleware), so a traceback can be tied to
the request line and to the `requestId` the client saw. A record may name its own `request_id`
attribute instead (None: it belongs to no request): background work started during a request
inherits that request's context, and a filter on its logger says so (asyncpg's pool, in
settings_api/store/postgres.py).

The request log is an ordinary record of the `mcp_gateway.access` logger (its fields in
`fields`); `BufferedStderrHandler` writes records in batches rather than one write per line.

Nothing here adds data to a record: secrets stay out of logs because no code logs them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

ACCESS_LOGGER = "mcp_gateway.access"
REQUEST_ID_VAR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mcpgw_request_id", default=None
)

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))  # ASCII-only output


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", "request_id"?, <fields>..., <static>..., "exc"?}` on
    one line; `static` fields (a worker's index) go on every line.

    Control characters are always escaped, so a line cannot be split; a record orjson refuses
    (a lone surrogate from a request path) is written as ASCII-only JSON instead."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """`ts`: UTC with milliseconds (2026-01-02T03:04:05.678Z)."""
        whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{whole}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        doc = _head(
            self.formatTime(record),
            record.levelname,
            record.name,
            record.getMessage(),
            _request_id_of(record),
        )
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        doc.update(self.static)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return _json_bytes(doc).decode()


_UNSET: Any = object()


def _request_id_of(record: logging.LogRecord) -> str | None:
    """The request a record belongs to: its own `request_id` attribute when it has one (None:
    no request), else the request being handled where it was logged."""
    own = record.__dict__.get("request_id", _UNSET)
    return REQUEST_ID_VAR.get() if own is _UNSET else own  # type: ignore[no-any-return]


def _head(ts: str, level: str, logger: str, msg: str, request_id: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"ts": ts, "level": level, "logger": logger, "msg": msg}
    if request_id is not None:
        doc["request_id"] = request_id
    return doc


def _json_bytes(doc: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(doc, default=str)
    except TypeError:  # lone surrogates (from a request path) and other oddities
        return _ENCODER.encode(doc).encode()  # ASCII-only: always encodes


class TextFormatter(logging.Formatter):
    """The classic one-line format, with a record's fields (then the static ones) appended as
    `key=value`."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__(_TEXT_FORMAT)
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if not isinstance(fields, dict):
            fields = {}
        if self.static:
            fields = {**fields, **self.static}
        request_id = _request_id_of(record)
        if request_id is not None and "request_id" not in fields:
            fields = {"request_id": request_id, **fields}
        if fields:
            extra = " ".join(f"{k}={_text_value(v)}" for k, v in fields.items() if v is not None)
            head, newline, tail = text.partition("\n")  # keep a traceback below the line
            text = f"{head} {extra}{newline}{tail}"
        return text


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        # Quote when needed; escapes (as JSON does) keep a hostile path on one line.
        return value if value.isprintable() and " " not in value and value else json.dumps(value)
    return str(value)


def formatter(fmt: str, static: Mapping[str, Any] | None = None) -> logging.Formatter:
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be 'json' or 'text', not {fmt!r}")
    return JsonFormatter(static) if fmt == "json" else TextFormatter(static)


class BufferedStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to stderr through a block buffer flushed at least every `interval_s` (and at
    once for warnings and worse, and at exit): one write per batch of request lines instead
    of one system call per line."""

    def __init__(self, interval_s: float = 0.2) -> None:
        super().__init__(
            open(
                sys.stderr.fileno(),
                "w",
                buffering=1 << 16,
                encoding="utf-8",
                errors="backslashreplace",
                closefd=False,
            )
        )
        self._interval_s = interval_s
        self._stop = threading.Event()
        threading.Thread(target=self._flusher, name="mcpgw-log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        # StreamHandler.emit flushes after every record; here only warnings and worse do.
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
        except Exception:
            self.handleError(record)

    def _flusher(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush()  # under the handler's lock, as emit runs

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


def configure_logging(
    level: str, fmt: str, stream: TextIO | None = None, *, static: Mapping[str, Any] | None = None
) -> logging.Handler:
    """Route every record of the process to `stream` (default: buffered stderr) in `fmt`
    ("json" | "text"), replacing the root logger's handlers; `static` fields go on every
    line (a worker's index). Returns the handler."""
    # No format here shows thread or process names: skip looking them up for every record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream) if stream is not None else BufferedStderrHandler()
    handler.setFormatter(formatter(fmt, static))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    return handler
