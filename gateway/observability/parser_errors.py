"""Requests aiohttp's HTTP parser refuses leave no bytes of theirs in the logs.

aiohttp answers a request it cannot parse (a header line past `max_field_size`, a NUL or
control byte in a header, a non-UTF-8 byte in the request line, …) with 400 itself, before any
middleware runs, and logs the parser's exception with its traceback at ERROR on the
`aiohttp.server` logger. That exception's message quotes the offending line (its first 100
bytes, or all of it), so the API key or JWT of an `Authorization` header would reach the log.
`ParserErrorFilter`, on that logger, rewrites such a record into one INFO line that names only
the kind of error and the status answered; aiohttp's other records pass unchanged.
"""

from __future__ import annotations

import logging

from aiohttp.http import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"  # the logger aiohttp's request handler reports errors on
MESSAGE = "request refused by the HTTP parser"


class ParserErrorFilter(logging.Filter):
    """Turns aiohttp's record of an unparsable request into a one-line INFO record without
    the request's bytes (no message text from the exception, no traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        record.msg, record.args = MESSAGE, ()
        # The exception's class and code are fixed by aiohttp; its message is the client's.
        record.__dict__["fields"] = {"error": type(exc).__name__, "status": exc.code}
        # A malformed request is the client's mistake, as a 4xx access line is: not an
        # error of the service (aiohttp itself logs some of them at DEBUG; those stay).
        record.levelno = min(record.levelno, logging.INFO)
        record.levelname = logging.getLevelName(record.levelno)
        record.exc_info = record.exc_text = record.stack_info = None
        # The logger let the record through at its old level; at the new one it may not
        # (MCPGW_LOG_LEVEL=WARNING), and handlers usually leave levels to the loggers.
        return logging.getLogger(record.name).isEnabledFor(record.levelno)


def protect_parser_logs() -> None:
    """Install `ParserErrorFilter` on aiohttp's server logger (once per process)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, ParserErrorFilter) for f in logger.filters):
        logger.addFilter(ParserErrorFilter())
