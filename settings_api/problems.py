"""Domain errors and their RFC 9457 problem+json form.

Handlers raise meaning (`NotFound`, `ValidationFailed`, ...); the error middleware turns any
`Problem` into `application/problem+json`. The data plane maps the same classes to HTTP answers
and JSON-RPC codes, so there is one place that decides what an error looks like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

PROBLEM_BASE = "https://mcp-gateway.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One offending field: a JSON-pointer-like dotted path and what is wrong with it."""

    field: str
    message: str


class Problem(Exception):
    """Base of every error that has a defined HTTP answer."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extensions: Any
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extensions = extensions

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug

    def body(self, instance: str, request_id: str | None) -> dict[str, Any]:
        """The problem document for this error at request path `instance`."""
        doc: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        doc.update(self.extensions)
        if request_id:
            doc["requestId"] = request_id
        return doc


class BadRequest(Problem):
    status, slug, title = 400, "bad-request", "Bad request"


class MalformedJson(Problem):
    status, slug, title = 400, "malformed-json", "Malformed JSON body"


class Unauthorized(Problem):
    status, slug, title = 401, "unauthorized", "Authentication required"

    def __init__(
        self,
        detail: str | None = None,
        *,
        error: str | None = "invalid_token",
        resource_metadata: str | None = None,
    ) -> None:
        # RFC 6750: name the scheme always, and the error code only when credentials were sent.
        # RFC 9728: an MCP endpoint names its protected resource metadata, where an OAuth
        # client learns which authorization server to ask.
        challenge = 'Bearer realm="mcp-gateway"'
        if resource_metadata:
            challenge += f', resource_metadata="{resource_metadata}"'
        if error:
            challenge += f', error="{error}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(Problem):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(Problem):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class Conflict(Problem):
    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(Problem):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class RequestTimeout(Problem):
    """The request body did not arrive within `MCPGW_BODY_TIMEOUT_S`."""

    status, slug, title = 408, "request-timeout", "Request body too slow"


class UnsupportedMediaType(Problem):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class ValidationFailed(Problem):
    status, slug, title = 422, "validation-failed", "Request validation failed"

    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        self.field_errors = errors
        super().__init__(
            detail or "; ".join(f"{e.field}: {e.message}" for e in errors),
            errors=[{"field": e.field, "message": e.message} for e in errors],
        )


class UpstreamNotAllowed(ValidationFailed):
    """``upstreamUrl`` reaches an address the egress policy refuses (settings_api/egress.py).
    The detail never says what, if anything, listens there."""

    slug, title = "upstream-not-allowed", "Upstream address not allowed"

    def __init__(self, message: str) -> None:
        super().__init__([FieldError("upstreamUrl", message)])


class McpDisabled(Forbidden):
    slug, title = "mcp-disabled", "MCP is disabled for this integration"


class TooManyRequests(Problem):
    status, slug, title = 429, "too-many-requests", "Too many requests"

    def __init__(
        self, detail: str | None = None, *, retry_after_s: int = 1, **extensions: Any
    ) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)}, **extensions)


class AuthThrottled(TooManyRequests):
    """Too many failed authentications from one client address (answered before any lookup),
    which may try again in `wait_s`."""

    slug, title = "auth-throttled", "Too many failed authentications"

    def __init__(self, wait_s: float) -> None:
        retry_after = max(1, math.ceil(wait_s))
        super().__init__(
            f"too many failed authentications from this address; retry in {retry_after} s",
            retry_after_s=retry_after,
        )


class UpstreamFailed(Problem):
    status, slug, title = 502, "upstream-failed", "Upstream MCP server failed"


class ServiceUnavailable(Problem):
    status, slug, title = 503, "service-unavailable", "Service unavailable"

    def __init__(
        self, detail: str | None = None, *, retry_after_s: int = 2, **extensions: Any
    ) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)}, **extensions)


class StoreUnavailable(ServiceUnavailable):
    slug, title = "store-unavailable", "Store unavailable"


class ChangeFeedUnavailable(ServiceUnavailable):
    """A change that takes access away was refused before anything was committed: the
    replicas could not be told of it."""

    slug, title = "change-feed-unavailable", "Replicas cannot be told of changes"


class ChangeNotConfirmed(ServiceUnavailable):
    """A change that takes access away is committed, but not every replica was told yet."""

    slug, title = "change-not-confirmed", "Change committed, not yet confirmed on every replica"


class InternalError(Problem):
    status, slug, title = 500, "internal-error", "Internal error"


class SecretsUnreadable(Problem):
    """Stored secrets that MCPGW_SECRET_KEY cannot decrypt: the operator's configuration."""

    status, slug, title = 500, "secrets-unreadable", "Stored secrets cannot be decrypted"


_BY_STATUS: dict[int, type[Problem]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    503: ServiceUnavailable,
}


def for_status(status: int, detail: str | None = None) -> Problem:
    """A problem for a bare HTTP status (e.g. aiohttp's own 404/405)."""
    cls = _BY_STATUS.get(status)
    if cls is None or cls in (Unauthorized, ServiceUnavailable):
        problem = Problem(detail)
        problem.status = status  # type: ignore[misc]
        return problem
    return cls(detail)
