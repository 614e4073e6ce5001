"""What can go wrong when talking to an upstream MCP server, as one error type with a stable
reason (:data:`UPSTREAM_ERROR_REASONS`, also the metrics' labels), and the messages a tenant
may see."""

from __future__ import annotations

import logging
import re

import aiohttp

__all__ = [
    "UNREACHABLE_MESSAGE",
    "UPSTREAM_ERROR_REASONS",
    "AddressRefused",
    "UpstreamError",
    "connect_error",
    "quote",
    "too_large",
]

logger = logging.getLogger(__name__)

UPSTREAM_ERROR_REASONS: tuple[str, ...] = (
    "connect",
    "timeout",
    "http-status",
    "invalid-response",
    "jsonrpc-error",
    "too-large",
    "too-many-pages",
    "not-allowed",
)
# What a tenant learns of any failure to connect or to get an HTTP answer: one message for a
# closed port, a reset, a TLS failure or a non-HTTP answer, so that errors cannot map what
# listens where (the gateway's log keeps the detail).
UNREACHABLE_MESSAGE = "the upstream could not be reached or did not answer as an MCP server"

# Longest piece of upstream-provided text copied into an error message.
_MAX_QUOTED_CHARS = 200
_CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f]")


class AddressRefused(OSError):
    """A connector's refusal to connect to an address on policy (settings_api/egress.py): an
    ``OSError``, so that the HTTP client treats it as a connection failure (aiohttp wraps it,
    ``os_error`` keeps it). `message` is what a tenant may see, `reason` what the log says."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class UpstreamError(Exception):
    """The upstream MCP server could not be read; `reason` is a short stable slug.

    Reasons: see :data:`UPSTREAM_ERROR_REASONS`. ``status`` is the HTTP status for
    ``http-status`` errors (the data plane needs it to spot an expired session, 404).
    """

    def __init__(self, reason: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"UpstreamError({self.reason!r}, {self.message!r})"


def connect_error(exc: BaseException) -> UpstreamError:
    """A failure to connect or to get an HTTP answer, as a tenant may see it: ``not-allowed``
    for a policy's refusal (:class:`AddressRefused`), else ``connect`` with the neutral message."""
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(cause, AddressRefused):
        logger.info("upstream address refused by the egress policy: %s", cause.reason)
        return UpstreamError("not-allowed", cause.message)
    # Only exception types (and OS error text) go to the log: aiohttp messages can embed the
    # URL, which may carry credentials of its own.
    detail = type(exc).__name__
    if cause is not exc:
        detail = f"{detail} ({type(cause).__name__})"
    if isinstance(cause, OSError) and cause.strerror:
        detail = f"{detail}: {cause.strerror}"
    logger.info("upstream unreachable: %s", detail)
    return UpstreamError("connect", UNREACHABLE_MESSAGE)


def too_large(max_body_bytes: int) -> UpstreamError:
    return UpstreamError("too-large", f"upstream answer exceeds {max_body_bytes} bytes")


def quote(text: str) -> str:
    """Upstream-provided text made safe for a one-line message: clipped, no control chars."""
    clean = _CONTROL_CHARS_RE.sub(" ", text)
    if len(clean) > _MAX_QUOTED_CHARS:
        clean = clean[:_MAX_QUOTED_CHARS] + "…"
    return repr(clean)
