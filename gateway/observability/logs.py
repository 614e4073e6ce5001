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

Nothing here adds data to a record: secrets stay out of logs because no code logs them.
"""

from __future__ import annotations

import contextvars
import io
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
    "mcpgw_request_id", default=None)

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))  # ASCII-only output
_second: list[Any] = [None, ""]  # the last whole second formatted, and its text
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))  # formatting them per line costs more


def _timestamp(created: float, msecs: float) -> str:
    whole = int(created)
    if _second[0] != whole:
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second[0] = whole
    return _second[1] + _MILLIS[int(msecs)]


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", "request_id"?, <fields>..., <static>..., "exc"?}` on
    one line; `static` fields (a worker's index) go on every line.

    Control characters are always escaped, so a line cannot be split; a record orjson refuses
    (a lone surrogate from a request path) is written as ASCII-only JSON instead."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        doc = _head(_timestamp(record.created, record.msecs), record.levelname, record.name,
                    record.getMessage(), _request_id_of(record))
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


def _head(ts: str, level: str, logger: str, msg: str, request_id: str | None
          ) -> dict[str, Any]:
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
            extra = " ".join(f"{k}={_text_value(v)}" for k, v in fields.items()
                             if v is not None)
            head, newline, tail = text.partition("\n")  # keep a traceback below the line
            text = f"{head} {extra}{newline}{tail}"
        return text


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        # Quote when needed; escapes (as JSON does) keep a hostile path on one line.
        return value if value.isprintable() and " " not in value and value else \
            json.dumps(value)
    return str(value)


def formatter(fmt: str, static: Mapping[str, Any] | None = None) -> logging.Formatter:
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be 'json' or 'text', not {fmt!r}")
    return JsonFormatter(static) if fmt == "json" else TextFormatter(static)


class BufferedStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to stderr through a block buffer flushed at least every `interval_s` (and at
    once for warnings and worse, and at exit): one write per batch of request lines instead
    of one system call per line, which was a measurable share of a request's CPU time."""

    def __init__(self, interval_s: float = 0.2) -> None:
        # Text goes straight through to the byte buffer (write_through), so lines written as
        # bytes by `log_fields` and as text by `emit` keep their order; the buffer has its own
        # lock, so a line is never torn by the flusher thread.
        self.buffer = io.BufferedWriter(io.FileIO(sys.stderr.fileno(), "w", closefd=False),
                                        1 << 16)
        stream = io.TextIOWrapper(self.buffer, encoding="utf-8", errors="backslashreplace",
                                  line_buffering=False, write_through=True)
        super().__init__(stream)
        self._interval_s = interval_s
        self._stop = threading.Event()
        threading.Thread(target=self._flusher, name="mcpgw-log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
        except Exception:
            self.handleError(record)

    def _flusher(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


def log_fields(logger: logging.Logger, msg: str, fields: dict[str, Any]) -> None:
    """`logger.info(msg, extra={"fields": fields})`, for the per-request line.

    When the record would only reach the JSON handler `configure_logging` installed (no
    filters, no other handler: the `serve` setup), the line is written straight to it, the
    same bytes without a LogRecord; otherwise (tests' capture handlers, the text format) the
    record goes through `logging` as usual."""
    handler = _direct_json_handler(logger)
    if handler is None:
        logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, msg, (), None,
                                        extra={"fields": fields}))
        return
    now = time.time()
    doc = _head(_timestamp(now, (now - int(now)) * 1000), "INFO", logger.name, msg,
                None if "request_id" in fields else REQUEST_ID_VAR.get())
    doc.update(fields)
    static = handler.formatter.static  # type: ignore[union-attr]
    if static:
        doc.update(static)
    handler.buffer.write(_json_bytes(doc) + b"\n")


_configured: list[logging.Handler] = []  # the handler configure_logging installed, if any


def _direct_json_handler(logger: logging.Logger) -> BufferedStderrHandler | None:
    if not _configured or not logger.isEnabledFor(logging.INFO):
        return None
    handler = _configured[0]
    node: logging.Logger | None = logger
    while node is not None and node is not logging.root:
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    root = logging.root
    if (root.filters or len(root.handlers) != 1 or root.handlers[0] is not handler
            or handler.filters or handler.level > logging.INFO
            or not isinstance(handler, BufferedStderrHandler)
            or type(handler.formatter) is not JsonFormatter):
        return None
    return handler


def configure_logging(level: str, fmt: str, stream: TextIO | None = None, *,
                      static: Mapping[str, Any] | None = None) -> logging.Handler:
    """Route every record of the process to `stream` (default: buffered stderr) in `fmt`
    ("json" | "text"), replacing the root logger's handlers; `static` fields go on every
    line (a worker's index). Returns the handler."""
    # No format here shows thread or process names: skip looking them up for every record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream) if stream is not None else BufferedStderrHandler()
    handler.setFormatter(formatter(fmt, static))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    _configured[:] = [handler]
    return handler
