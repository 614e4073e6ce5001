"""Request metadata headers of the modern transport (2026-07-28 streamable HTTP), and `Accept`.

Modern clients mirror body fields into headers so intermediaries can route without parsing
the body: `MCP-Protocol-Version` (= `_meta` version), `Mcp-Method` (= `method`), `Mcp-Name`
(= `params.name` / `params.uri`) and, for `tools/call`, one `Mcp-Param-{token}` per argument
whose schema property carries `x-mcp-header`. A server that reads the body must reject any
disagreement (HTTP 400, JSON-RPC -32020), so that what an intermediary routed on is what runs.
Values that are not plain header-safe ASCII travel as `=?base64?{base64 of UTF-8}?=`.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDictProxy

from mcp_core.errors import HEADER_MISMATCH, McpError
from mcp_core.headers import (
    METHOD_HEADER,
    NAME_FIELDS,
    NAME_HEADER,
    PARAM_HEADER_PREFIX,
    PROTOCOL_VERSION_HEADER,
    encode_value,
)
from mcp_core.tool_headers import header_annotations

_SENTINEL = re.compile(r"=\?base64\?(?P<payload>.*)\?=", re.DOTALL)
_HEADER_SAFE = re.compile(r"[\t\x20-\x7e]*")
_INTEGER = re.compile(r"-?[0-9]+(?:\.0+)?")


class HeaderMismatch(McpError):
    """A header disagrees with the body, is missing where required, or is malformed: the
    request's answer (-32020; 400 in the modern era)."""

    def __init__(self, reason: str) -> None:
        super().__init__(HEADER_MISMATCH, f"Header mismatch: {reason}")


def decode_value(value: str) -> str | None:
    """A header value with the base64 sentinel removed; None when the sentinel is corrupt or
    the plain value carries characters a header value cannot."""
    if "=?" not in value:  # the usual plain value: no sentinel to look for
        return (
            value
            if value.isascii() and (value.isprintable() or _HEADER_SAFE.fullmatch(value))
            else None
        )
    match = _SENTINEL.fullmatch(value)
    if match is None:
        return value if _HEADER_SAFE.fullmatch(value) else None
    payload = match.group("payload")
    try:
        raw = base64.b64decode(payload, validate=True)
        # Only the canonical encoding of a value is accepted: one value, one spelling.
        if base64.b64encode(raw).decode("ascii") != payload:
            return None
        return raw.decode("utf-8")
    except ValueError:  # binascii.Error, non-ASCII payload, UnicodeDecodeError
        return None


def _single(headers: CIMultiDictProxy[str], name: str) -> str | None:
    values = headers.getall(name, ())
    if len(values) > 1:
        # First-copy and last-copy readers would disagree about what was routed.
        raise HeaderMismatch(f"the {name} header appears more than once")
    return values[0] if values else None


def check_routing_headers(
    headers: CIMultiDictProxy[str], message: Mapping[str, Any], version: Any
) -> None:
    """`MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` against a modern request body."""
    header_version = _single(headers, PROTOCOL_VERSION_HEADER)
    if header_version is None:
        raise HeaderMismatch(f"the {PROTOCOL_VERSION_HEADER} header is required")
    if header_version != version:
        raise HeaderMismatch(
            f"the {PROTOCOL_VERSION_HEADER} header ({header_version!r}) does "
            f"not match params._meta's protocol version ({version!r})"
        )
    method = message["method"]
    header_method = _single(headers, METHOD_HEADER)
    if header_method is None:
        raise HeaderMismatch(f"the {METHOD_HEADER} header is required")
    if header_method != method:
        raise HeaderMismatch(
            f"the {METHOD_HEADER} header ({_short(header_method)!r}) does not "
            f"match the body's method ({_short(method)!r})"
        )
    field = NAME_FIELDS.get(method)
    if field is None:
        return
    params = message.get("params")
    body_name = params.get(field) if isinstance(params, dict) else None
    header_name = _single(headers, NAME_HEADER)
    if not isinstance(body_name, str):
        return  # an invalid body: the method answers -32602
    if header_name is None:
        raise HeaderMismatch(f"the {NAME_HEADER} header is required for {method}")
    decoded = decode_value(header_name)
    if decoded is None:
        raise HeaderMismatch(f"the {NAME_HEADER} header is malformed")
    if decoded != body_name:
        raise HeaderMismatch(
            f"the {NAME_HEADER} header ({_short(decoded)!r}) does not match "
            f"params.{field} ({_short(body_name)!r})"
        )


# --- Mcp-Param-* (x-mcp-header) --------------------------------------------------------------


def check_param_headers(
    headers: CIMultiDictProxy[str], tool: Mapping[str, Any], arguments: Any
) -> None:
    """Each `Mcp-Param-*` header of a `tools/call` against the argument it mirrors: present
    together (and equal after decoding) or absent together."""
    annotations = header_annotations(tool.get("inputSchema"))
    if not annotations:
        return
    if not isinstance(arguments, dict):
        arguments = {}
    for path, token, kind in annotations:
        name = PARAM_HEADER_PREFIX + token
        raw = _single(headers, name)
        value = _value_at(arguments, path)
        where = ".".join(path)
        if value is None:
            if raw is not None:
                raise HeaderMismatch(f"the {name} header is present but argument {where!r} is not")
            continue
        rendered = _render(value)
        if raw is None:
            if rendered is None:
                continue  # not a primitive: nothing a client could have mirrored
            raise HeaderMismatch(f"the {name} header is required: argument {where!r} is set")
        decoded = decode_value(raw)
        if decoded is None:
            raise HeaderMismatch(f"the {name} header is malformed")
        if rendered is None or not _same(kind, value, rendered, decoded):
            raise HeaderMismatch(f"the {name} header does not match argument {where!r}")


def param_headers(tool: Mapping[str, Any], arguments: Mapping[str, Any]) -> dict[str, str]:
    """The `Mcp-Param-*` headers a modern client sends with a `tools/call` of `tool`: one per
    annotated argument that is present, encoded as the transport says."""
    headers: dict[str, str] = {}
    for path, token, _ in header_annotations(tool.get("inputSchema")) or ():
        rendered = _render(_value_at(arguments, path))
        if rendered is not None:
            headers[PARAM_HEADER_PREFIX + token] = encode_value(rendered)
    return headers


def _value_at(arguments: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = arguments
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _render(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # an int beyond the interpreter's digit limit
            return None
    return None


def _same(kind: str, value: Any, rendered: str, decoded: str) -> bool:
    if (
        kind == "integer"
        and not isinstance(value, bool)
        and isinstance(value, int | float)
        and _INTEGER.fullmatch(decoded)
    ):
        # Integers compare as numbers: "42" matches 42 and 42.0.
        if isinstance(value, float) and not value.is_integer():
            return False
        return int(decoded.partition(".")[0]) == int(value)
    return decoded == rendered


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# --- Accept ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)  # clients send a handful of distinct Accept values
def accepted_types(accept: str | None) -> tuple[bool, bool]:
    """(accepts application/json, accepts text/event-stream) for an `Accept` header.
    No header accepts JSON only."""
    if not accept:
        return True, False
    json_ok = sse_ok = False
    for item in accept.split(","):
        media, _, params = item.partition(";")
        media = media.strip().lower()
        if _zero_quality(params):
            continue
        if media in ("application/json", "application/*", "*/*"):
            json_ok = True
        if media == "text/event-stream":  # streams only for clients that name it
            sse_ok = True
    return json_ok, sse_ok


def _zero_quality(params: str) -> bool:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip()) <= 0
            except ValueError:
                return False
    return False
