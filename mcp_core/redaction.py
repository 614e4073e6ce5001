"""Secrets kept out of what the gateway shows: the credentials of an upstream URL, and secret
values an upstream echoes back in its text.

A tenant may put credentials in its ``upstreamUrl``: ``https://user:pass@host/mcp?api_key=…``.
The password and every query value are secrets (encrypted at rest with the header values,
settings_api/secrets_box.py); the API, the audit log, logs and error messages only ever show
:func:`redact`'s form, ``https://user:***@host/mcp?api_key=***``. The user name and the
query's parameter names stay readable, so a tenant can still tell its URLs apart. The URL is cut
where urllib and yarl (the clients that connect) cut it: the authority ends at the first ``/``,
``?`` or ``#``, the user information at its last ``@``, the user name at the first ``:``.
Nothing else is touched: a URL without secrets is its own redacted form, byte for byte.

Those secrets and the upstream header values may also come back in what an upstream answers
(an error message, its data): :func:`scrub` and :func:`scrub_json` mask them in that text
before it is passed on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote, unquote_plus

__all__ = [
    "MASK",
    "URL_MASK",
    "has_secrets",
    "redact",
    "redact_optional",
    "scrub",
    "scrub_json",
    "secret_pieces",
    "secret_values",
    "upstream_secrets",
]

URL_MASK = "***"  # in a URL's shown form
MASK = "[redacted]"  # in upstream text passed on
# Shorter pieces are not scrubbed: they would mangle ordinary words of the message.
_MIN_PIECE_CHARS = 4
# A value's words this long are secrets of their own ("Bearer <token>": the token).
_MIN_WORD_CHARS = 8


class _Parts(NamedTuple):
    before_authority: str  # "https://" (or "" when there is no authority)
    user: str
    password: str | None  # None: no ":" in the user information
    has_userinfo: bool
    host_and_rest: str  # host[:port]/path, up to the query
    query: str | None  # None: no "?"
    fragment: str | None  # None: no "#"


def _split(url: str) -> _Parts:
    rest, hash_sign, fragment = url.partition("#")
    rest, question_mark, query = rest.partition("?")
    start = rest.find("://")
    if start < 0:
        return _Parts(
            "",
            "",
            None,
            False,
            rest,
            query if question_mark else None,
            fragment if hash_sign else None,
        )
    start += 3
    slash = rest.find("/", start)
    end = len(rest) if slash < 0 else slash
    userinfo, at_sign, host = rest[start:end].rpartition("@")
    user, colon, password = userinfo.partition(":")
    return _Parts(
        rest[:start],
        user,
        password if colon else None,
        bool(at_sign),
        host + rest[end:],
        query if question_mark else None,
        fragment if hash_sign else None,
    )


def _query_pairs(query: str) -> list[tuple[str, str | None]]:
    """(name, value) of each ``&``-separated parameter; a bare ``token`` is a value, not a name:
    some services take the credential as the whole query."""
    pairs: list[tuple[str, str | None]] = []
    for param in query.split("&"):
        name, equals, value = param.partition("=")
        pairs.append((name, value) if equals else ("", param or None))
    return pairs


def redact(url: str) -> str:
    """`url` with its password, every query value and its fragment replaced by ``***``."""
    parts = _split(url)
    shown = parts.before_authority
    if parts.has_userinfo:
        shown += parts.user + (f":{URL_MASK}" if parts.password is not None else "") + "@"
    shown += parts.host_and_rest
    if parts.query is not None:
        params = []
        for name, value in _query_pairs(parts.query):
            if name:
                params.append(f"{name}={URL_MASK}")
            else:
                params.append(URL_MASK if value is not None else "")
        shown += "?" + "&".join(params)
    if parts.fragment is not None:
        shown += "#" + (URL_MASK if parts.fragment else "")
    return shown


def redact_optional(url: str | None) -> str | None:
    """:func:`redact`, passing None through (a config with inline tools has no URL)."""
    return None if url is None else redact(url)


def has_secrets(url: str) -> bool:
    """Whether `url` holds anything :func:`redact` hides (then it is stored encrypted)."""
    return redact(url) != url


def secret_values(url: str) -> list[str]:
    """The secrets of `url` as written and decoded, to scrub them from text an upstream echoes."""
    parts = _split(url)
    found = []
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    if parts.query:
        found += [value for _, value in _query_pairs(parts.query) if value]
        found += [unquote_plus(value) for _, value in _query_pairs(parts.query) if value]
    if parts.fragment:
        found += [parts.fragment, unquote(parts.fragment)]
    return list(dict.fromkeys(v for v in found if v))


def secret_pieces(values: Iterable[str]) -> list[str]:
    """The values and their long words, longest first (a piece inside another goes after)."""
    pieces: set[str] = set()
    for value in values:
        for piece in [value, *(p for p in value.split() if len(p) >= _MIN_WORD_CHARS)]:
            if len(piece) >= _MIN_PIECE_CHARS:
                pieces.add(piece)
    return sorted(pieces, key=len, reverse=True)


def upstream_secrets(url: str | None, headers: Mapping[str, str]) -> list[str]:
    """The pieces to scrub from what an upstream at `url`, sent `headers`, answers."""
    return secret_pieces([*headers.values(), *(secret_values(url) if url else [])])


def scrub(text: str, pieces: list[str]) -> str:
    """`text` with every piece (from :func:`secret_pieces`) replaced by the mask."""
    for piece in pieces:
        if piece in text:
            text = text.replace(piece, MASK)
    return text


def scrub_json(value: Any, pieces: list[str]) -> Any:
    """A JSON value with every string in it (keys included) scrubbed."""
    if not pieces:
        return value
    if isinstance(value, str):
        return scrub(value, pieces)
    if isinstance(value, list):
        return [scrub_json(item, pieces) for item in value]
    if isinstance(value, dict):
        return {
            scrub(k, pieces) if isinstance(k, str) else k: scrub_json(v, pieces)
            for k, v in value.items()
        }
    return value
