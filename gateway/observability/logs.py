"""Log formats: one JSON object per line (`MCPGW_LOG_FORMAT=json`, the default of `serve`) or
plain text for humans.

Every record of the process goes through the same handler. A record may carry structured
fields in `record.fields` (a dict; the request log does): JSON lines put them at the top level,
text lines append them as `key=value`. Records emitted while a request is handled carry its
`request_id` (a context variable set by the request middleware), so a traceback can be tied to
the request line and to the `requestId` the client saw.

Nothing here adds data to a record: secrets stay out of logs because no code logs them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any, TextIO

ACCESS_LOGGER = "mcp_gateway.access"
REQUEST_ID_VAR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mcpgw_request_id", default=None)

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))  # ASCII-only output
_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _timestamp(record: logging.LogRecord) -> str:
    whole = int(record.created)
    if _second[0] != whole:
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second[0] = whole
    return f"{_second[1]}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", "request_id"?, <fields>..., "exc"?}` on one line.

    ASCII-only JSON: control characters and lone surrogates from request paths are escaped,
    so a line can neither be split nor fail to encode."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname,
                               "logger": record.name, "msg": record.getMessage()}
        request_id = REQUEST_ID_VAR.get()
        if request_id is not None:
            doc["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return _ENCODER.encode(doc)


class TextFormatter(logging.Formatter):
    """The classic one-line format, with a record's fields appended as `key=value`."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if not isinstance(fields, dict):
            fields = {}
        request_id = REQUEST_ID_VAR.get()
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


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be 'json' or 'text', not {fmt!r}")
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> logging.Handler:
    """Route every record of the process to `stream` (stderr) in `fmt` ("json" | "text"),
    replacing the root logger's handlers. Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    return handler
