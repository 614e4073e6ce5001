"""One console request as a client of the settings API: its token through the API's own auth
(`settings_api.app.authorize`: throttle, JWT, rate limit, tenant grant), its form with the CSRF
check, and the service the REST routes use."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from multidict import MultiDictProxy

from console.session import csrf_token, token_of, valid_csrf
from settings_api.app import authorize
from settings_api.http import read_bounded
from settings_api.jwt_auth import Principal
from settings_api.problems import (
    FieldError,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from settings_api.routes import SERVICE
from settings_api.schemas import ID_PATTERN, full_match
from settings_api.service import SettingsService

__all__ = [
    "FormData",
    "Visit",
    "field",
    "field_message",
    "integration_id",
    "problem_messages",
    "read_form",
    "visit",
    "visit_form",
]

FormData = MultiDictProxy[str | bytes | bytearray | web.FileField]


@dataclass(frozen=True, slots=True)
class Visit:
    """A signed-in request on one tenant."""

    request: web.Request
    token: str
    principal: Principal
    tenant: str
    limit_headers: dict[str, str]

    @property
    def service(self) -> SettingsService:
        return self.request.app[SERVICE]

    @property
    def actor(self) -> str:
        return self.principal.subject

    @property
    def csrf(self) -> str:
        return csrf_token(self.request, self.token)


async def visit(request: web.Request) -> Visit:
    """The request's session on the path's tenant, or the settings API's refusal."""
    token = token_of(request)
    if token is None:
        raise Unauthorized("sign in with a settings-API token", error=None)
    tenant = request.match_info["tenant"]
    principal, limit_headers = await authorize(request, token, tenant)
    return Visit(request, token, principal, tenant, limit_headers)


async def read_form(request: web.Request) -> FormData:
    """The request's form, bounded in size (the app's body limit) and time."""
    return await read_bounded(request, request.post)


async def visit_form(request: web.Request) -> tuple[Visit, FormData]:
    """A state-changing request: the session, its form, and the form's CSRF token checked."""
    found = await visit(request)
    form = await read_form(request)
    if not valid_csrf(request, found.token, form.get("csrf")):
        raise Forbidden("the form is not from this console session: reload the page and retry")
    return found, form


def integration_id(request: web.Request) -> str:
    """The path's integration id; one that could never have been created does not exist."""
    integration = request.match_info["integration"]
    if not full_match(ID_PATTERN, integration):
        raise NotFound(f"integration {integration!r} does not exist")
    return integration


def field(form: FormData, name: str) -> str:
    """A text field of the form ('' when absent or a file)."""
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def problem_messages(problem: Exception) -> list[str]:
    """What to show next to a form for a refused change, in words."""
    if isinstance(problem, ValidationFailed):
        return [field_message(e) for e in problem.field_errors]
    return [str(getattr(problem, "detail", problem))]


def field_message(error: FieldError) -> str:
    """A field's error in words, naming the field."""
    return f"{error.field}: {error.message}" if error.field else error.message
