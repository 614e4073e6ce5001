"""The `x-mcp-header` annotations of a tool's input schema (2026-07-28 streamable HTTP): which
arguments a client mirrors into `Mcp-Param-{token}` headers, and why a tool whose annotations
break the transport's rules is not offered (a conforming client must leave such a tool out of
`tools/list`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from mcp_core.headers import X_MCP_HEADER

__all__ = ["Annotation", "annotation_problem", "header_annotations"]

Annotation = tuple[tuple[str, ...], str, str]  # (property path, header token, property type)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_TYPES = frozenset({"string", "integer", "boolean"})
# JSON Schema 2020-12 keywords whose values are schemas. Only a chain of `properties` keeps a
# property "statically reachable"; any other applicator leaves the chain.
_ONE_SCHEMA = frozenset(
    {
        "items",
        "contains",
        "additionalProperties",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contentSchema",
    }
)
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAPS = frozenset({"patternProperties", "dependentSchemas", "$defs", "definitions"})

_ANNOTATIONS: dict[int, tuple[Any, tuple[Annotation, ...] | str]] = {}
_ANNOTATION_CACHE_MAX = 4096


def header_annotations(input_schema: Any) -> tuple[Annotation, ...] | None:
    """The `x-mcp-header` annotations of a tool's input schema; None when any annotation is
    invalid (conforming clients drop such a tool and send no headers for it)."""
    found = _parsed(input_schema)
    return None if isinstance(found, str) else found


def annotation_problem(input_schema: Any) -> str | None:
    """Why the schema's `x-mcp-header` annotations are invalid; None when they are valid."""
    found = _parsed(input_schema)
    return found if isinstance(found, str) else None


def _parsed(input_schema: Any) -> tuple[Annotation, ...] | str:
    cached = _ANNOTATIONS.get(id(input_schema))
    if cached is not None and cached[0] is input_schema:
        return cached[1]
    result = _annotations(input_schema)
    if len(_ANNOTATIONS) >= _ANNOTATION_CACHE_MAX:
        _ANNOTATIONS.clear()
    _ANNOTATIONS[id(input_schema)] = (input_schema, result)
    return result


def _annotations(root: Any) -> tuple[Annotation, ...] | str:
    found: list[Annotation] = []
    seen: set[str] = set()
    for path, schema in _schema_positions(root):
        if X_MCP_HEADER not in schema:
            continue
        token, kind = schema[X_MCP_HEADER], schema.get("type")
        if not path:
            return f"{X_MCP_HEADER} on a schema that is not a property reached by `properties`"
        where = ".".join(path)[:100]  # the upstream's names: bounded in what is logged
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            return f"{X_MCP_HEADER} of {where!r} is not an HTTP header-name token"
        if kind not in _HEADER_TYPES:
            return (
                f"{X_MCP_HEADER} of {where!r} is on a property of type {str(kind)[:20]!r}, "
                "not string, integer or boolean"
            )
        if token.lower() in seen:
            return f"{X_MCP_HEADER} {token!r} is used twice (case-insensitively)"
        seen.add(token.lower())
        found.append((path, token, kind))
    return tuple(found)


def _schema_positions(root: Any) -> Iterator[tuple[tuple[str, ...] | None, dict[str, Any]]]:
    """Every schema in `root` with its chain of `properties` keys (None once off the chain)."""
    stack: list[tuple[tuple[str, ...] | None, Any]] = [((), root)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield path, node
        for keyword, value in node.items():
            if keyword == "properties" and isinstance(value, dict):
                stack.extend(
                    ((*path, name) if path is not None else None, sub)
                    for name, sub in value.items()
                )
            elif keyword in _ONE_SCHEMA:
                stack.append((None, value))
            elif keyword in _SCHEMA_LISTS and isinstance(value, list):
                stack.extend((None, sub) for sub in value)
            elif keyword in _SCHEMA_MAPS and isinstance(value, dict):
                stack.extend((None, sub) for sub in value.values())
