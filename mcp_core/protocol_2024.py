"""What a 2024-11-05 session receives: results and notifications cut down to that version's
schema (docs/mcp-endpoints.md, "Protocol 2024-11-05").

2024-11-05 predates structured results (`structuredContent`, `outputSchema`), titles, icons,
tool annotations, `_meta` on tools and content, audio and resource-link content, and the
progress `message`. Clients generated from that schema may reject what they do not know, so
each object keeps only the fields that version defines. Copies are made: results may be
cached objects shared with other sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mcp_core.json_codec import dumps
from mcp_core.versions import OLDEST_LEGACY_VERSION

__all__ = ["notification_for", "result_for"]

Shape = Callable[[dict[str, Any]], dict[str, Any]]

_ANNOTATIONS = ("audience", "priority")
_CAPABILITIES: Mapping[str, tuple[str, ...] | None] = {
    "experimental": None,  # kept as sent
    "logging": None,
    "prompts": ("listChanged",),
    "resources": ("subscribe", "listChanged"),
    "tools": ("listChanged",),
}
_NOTIFICATION_PARAMS: Mapping[str, tuple[str, ...]] = {
    "notifications/progress": ("progressToken", "progress", "total", "_meta"),
    "notifications/message": ("level", "logger", "data", "_meta"),
}


def result_for(method: str, version: str, result: dict[str, Any]) -> dict[str, Any]:
    """`result` of `method` as a session at `version` receives it (as it is but for
    2024-11-05). `initialize` is judged by the version it answers."""
    if method == "initialize":
        version = result.get("protocolVersion", version)
    if version != OLDEST_LEGACY_VERSION:
        return result
    shape = _RESULTS.get(method)
    return shape(result) if shape is not None else result


def notification_for(version: str, notification: dict[str, Any]) -> dict[str, Any]:
    """A notification relayed during a request, as a session at `version` receives it."""
    if version != OLDEST_LEGACY_VERSION:
        return notification
    fields = _NOTIFICATION_PARAMS.get(str(notification.get("method")))
    params = notification.get("params")
    if fields is None or not isinstance(params, dict):
        return notification
    return {**notification, "params": _pick(params, fields)}


# --- the objects of 2024-11-05 ------------------------------------------------------------------


def _pick(source: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: source[name] for name in fields if name in source}


def _annotated(item: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """`fields` of `item`, and its annotations reduced to audience and priority."""
    out = _pick(item, fields)
    annotations = item.get("annotations")
    if isinstance(annotations, dict):
        kept = _pick(annotations, _ANNOTATIONS)
        if kept:
            out["annotations"] = kept
    return out


def _content(item: Any) -> dict[str, Any]:
    """A content block of 2024-11-05 (text, image, embedded resource); a later kind becomes a
    text block that says what it was, so the model still learns of it."""
    if not isinstance(item, dict):
        return {"type": "text", "text": dumps(item)}
    kind = item.get("type")
    if kind == "text":
        return _annotated(item, ("type", "text"))
    if kind == "image":
        return _annotated(item, ("type", "data", "mimeType"))
    if kind == "resource":
        out = _annotated(item, ("type",))
        resource = item.get("resource")
        out["resource"] = (
            _pick(resource, ("uri", "mimeType", "text", "blob"))
            if isinstance(resource, dict)
            else resource
        )
        return out
    if kind == "resource_link":
        name = item.get("name")
        label = f"{name}: " if isinstance(name, str) and name else ""
        return _annotated(
            {**item, "type": "text", "text": f"{label}{item.get('uri')}"}, ("type", "text")
        )
    return {
        "type": "text",
        "text": f"[{kind} content omitted: protocol 2024-11-05 cannot carry it]",
    }


def _call_result(result: dict[str, Any]) -> dict[str, Any]:
    """content, isError and _meta. A result with only `structuredContent` gets it as JSON text:
    what later versions ask a server to send alongside it anyway."""
    content = result.get("content")
    if isinstance(content, list):
        blocks = [_content(item) for item in content]
    else:
        blocks = []
    if not blocks and "structuredContent" in result:
        blocks = [{"type": "text", "text": dumps(result["structuredContent"])}]
    out: dict[str, Any] = {"content": blocks}
    out.update(_pick(result, ("isError", "_meta")))
    return out


def _listing(field: str, item: Callable[[dict[str, Any]], dict[str, Any]]) -> Shape:
    """A paginated list result whose items (objects) are shaped by `item`."""

    def shape(result: dict[str, Any]) -> dict[str, Any]:
        out = _pick(result, ("nextCursor", "_meta"))
        items = result.get(field)
        out[field] = (
            [item(value) if isinstance(value, dict) else value for value in items]
            if isinstance(items, list)
            else items
        )
        return out

    return shape


def _keeping(*fields: str, annotated: bool = False) -> Callable[[dict[str, Any]], dict[str, Any]]:
    if annotated:
        return lambda value: _annotated(value, fields)
    return lambda value: _pick(value, fields)


def _prompt(prompt: dict[str, Any]) -> dict[str, Any]:
    out = _pick(prompt, ("name", "description"))
    arguments = prompt.get("arguments")
    if isinstance(arguments, list):
        argument = _keeping("name", "description", "required")
        out["arguments"] = [argument(a) if isinstance(a, dict) else a for a in arguments]
    return out


def _initialize(result: dict[str, Any]) -> dict[str, Any]:
    out = _pick(result, ("protocolVersion", "instructions", "_meta"))
    capabilities = result.get("capabilities")
    kept: dict[str, Any] = {}
    if isinstance(capabilities, dict):
        for name, fields in _CAPABILITIES.items():
            value = capabilities.get(name)
            if value is None:
                continue
            kept[name] = _pick(value, fields) if fields and isinstance(value, dict) else value
    out["capabilities"] = kept
    info = result.get("serverInfo")
    out["serverInfo"] = _pick(info, ("name", "version")) if isinstance(info, dict) else info
    return out


_RESULTS: Mapping[str, Shape] = {
    "initialize": _initialize,
    "tools/list": _listing("tools", _keeping("name", "description", "inputSchema")),
    "tools/call": _call_result,
    "resources/list": _listing(
        "resources", _keeping("uri", "name", "description", "mimeType", annotated=True)
    ),
    "resources/templates/list": _listing(
        "resourceTemplates",
        _keeping("uriTemplate", "name", "description", "mimeType", annotated=True),
    ),
    "prompts/list": _listing("prompts", _prompt),
}
