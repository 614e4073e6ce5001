"""testUrl executor, placeholder edition.

PLACEHOLDER: :class:`PlaceholderSimulator` stands in until the real simulator (``simulator/``:
input validation, schema-driven results, tenant fixtures, latency and scripted errors) lands
and replaces it behind the same :class:`~gateway.context.ToolExecutor` seam. It only keeps the
contract's invariants: deterministic, side-effect free, never touches the network.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from gateway.context import RequestContext

__all__ = ["PlaceholderSimulator", "canonical_json", "minimal_instance"]

_MAX_DEPTH = 32


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept as is: the same value gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class PlaceholderSimulator:
    """PLACEHOLDER testUrl executor, replaced by the real simulator (``simulator/``).

    The result names the tool, the canonical JSON of the arguments and a short digest of
    (tenant, integration, tool, arguments, fixtures version, ``ctx.simulator_seed``), so it is
    byte-identical for the same inputs on every replica and after restarts, and the
    ``X-Simulator-Seed`` varies it. With an ``outputSchema`` the result also carries a minimal
    ``structuredContent`` (see :func:`minimal_instance`), whose JSON is the first text block.
    Arguments are not validated here (the real simulator does). No I/O of any kind.
    """

    async def call_tool(
        self,
        ctx: RequestContext,
        tool: Mapping[str, Any],
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        name = str(tool.get("name", ""))
        args_json = canonical_json(arguments)
        view = ctx.integration
        material = canonical_json(
            [
                view.tenant_id,
                view.integration_id,
                name,
                args_json,
                view.fixtures_version,
                ctx.simulator_seed,
            ]
        )
        digest = hashlib.sha256(material.encode()).hexdigest()[:16]
        summary = (
            f"[simulated] tool {json.dumps(name, ensure_ascii=False)} called with {args_json} "
            f"(placeholder result, digest {digest})"
        )
        schema = tool.get("outputSchema")
        if not isinstance(schema, dict):
            return {"content": [{"type": "text", "text": summary}], "isError": False}
        structured = minimal_instance(schema)
        if not isinstance(structured, dict):  # an outputSchema describes an object
            structured = {}
        return {
            "content": [
                {"type": "text", "text": canonical_json(structured)},
                {"type": "text", "text": summary},
            ],
            "structuredContent": structured,
            "isError": False,
        }


def minimal_instance(schema: Any, root: Any = None) -> Any:
    """A small instance of a JSON Schema, valid for simple schemas.

    ``const``/``enum`` give their first value; an object gets its required properties (each
    minimal), an array ``minItems`` minimal items, a string ``minLength`` "x"s (else ""), a
    number the value nearest 0 within its bounds, a boolean ``false``. Local ``$ref``s,
    ``allOf`` (merged) and ``anyOf``/``oneOf`` (first branch) are followed; ``pattern``,
    ``format`` and the like are not.
    """
    return _instance(schema, schema if root is None else root, 0)


def _instance(schema: Any, root: Any, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return {}  # a boolean schema (true accepts {}), or a cycle of required properties
    schema = _resolve(schema, root, depth)
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return copy.deepcopy(enum[0])
    kind = _type_of(schema)
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        return _array(schema, root, depth)
    if kind == "string":
        length = schema.get("minLength")
        return "x" * length if isinstance(length, int) and length > 0 else ""
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {}  # no type and no hint: {} is valid for an unconstrained schema


def _resolve(schema: dict[str, Any], root: Any, depth: int) -> dict[str, Any]:
    """Follow a local $ref, merge allOf, take the first anyOf/oneOf branch."""
    for _ in range(_MAX_DEPTH):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            target = _pointer(root, ref[1:])
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = _merge(rest, target) if isinstance(target, dict) else rest
            continue
        if isinstance(schema.get("allOf"), list):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for sub in schema["allOf"]:
                if isinstance(sub, dict):
                    merged = _merge(merged, sub)
            schema = merged
            continue
        for keyword in ("anyOf", "oneOf"):
            branches = schema.get(keyword)
            if isinstance(branches, list) and branches and isinstance(branches[0], dict):
                rest = {k: v for k, v in schema.items() if k != keyword}
                schema = _merge(rest, branches[0])
                break
        else:
            return schema
    return schema


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if key == "properties" and isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        elif key == "required" and isinstance(merged.get(key), list) and isinstance(value, list):
            merged[key] = list(dict.fromkeys([*merged[key], *value]))
        else:
            merged.setdefault(key, value)
    return merged


def _pointer(root: Any, pointer: str) -> Any:
    node = root
    for raw in pointer.split("/")[1:] if pointer else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        concrete = [k for k in kind if isinstance(k, str) and k != "null"]
        return concrete[0] if concrete else ("null" if "null" in kind else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _object(schema: dict[str, Any], root: Any, depth: int) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    additional = schema.get("additionalProperties")
    result: dict[str, Any] = {}
    required = schema.get("required")
    for name in required if isinstance(required, list) else []:
        if not isinstance(name, str) or name in result:
            continue
        sub = properties.get(name, additional if isinstance(additional, dict) else {})
        result[name] = _instance(sub, root, depth + 1)
    return result


def _array(schema: dict[str, Any], root: Any, depth: int) -> list[Any]:
    count = schema.get("minItems")
    count = count if isinstance(count, int) and count > 0 else 0
    prefix = schema.get("prefixItems")
    prefix = prefix if isinstance(prefix, list) else []
    items = schema.get("items")
    result = []
    for index in range(count):
        sub = prefix[index] if index < len(prefix) else items
        result.append(_instance(sub if isinstance(sub, dict) else {}, root, depth + 1))
    return result


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    def bound(key: str) -> float | None:
        value = schema.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok and math.isfinite(value) else None

    low, high = bound("minimum"), bound("maximum")
    xlow, xhigh = bound("exclusiveMinimum"), bound("exclusiveMaximum")
    value: float = 0.0
    if low is not None and value < low:
        value = low
    if xlow is not None and value <= xlow:
        value = xlow + 1
    if high is not None and value > high:
        value = high
    if xhigh is not None and value >= xhigh:
        value = xhigh - 1
    step = bound("multipleOf")
    if step and step > 0 and value != 0:
        value = math.ceil(value / step) * step
    if integer:
        return math.ceil(value) if value >= 0 else math.floor(value)
    return int(value) if value.is_integer() else value
