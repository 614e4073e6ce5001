"""Validation of tool catalogs (inline in a config, or read from an upstream MCP server)."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from mcp_core.json_limits import MAX_JSON_DEPTH, depth_reason, too_deep
from settings_api.problems import FieldError
from simulator.canonical import finite_json

# MCP 2025-11-25: tool names are 1-128 characters of A-Z a-z 0-9 _ - .
TOOL_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
MAX_TOOLS = 1000
# A tool (schemas and annotations included) nests at most this deep, wherever it comes from:
# schema checks, argument validation, the simulator and every re-encoding recurse over it.
MAX_TOOL_DEPTH = MAX_JSON_DEPTH


def normalize_tools(
    tools: Any, field: str = "tools"
) -> tuple[list[dict[str, Any]], list[FieldError]]:
    """Check a catalog; return it (with a default `inputSchema`) and every problem found."""
    errors: list[FieldError] = []
    if not isinstance(tools, list):
        return [], [FieldError(field, "must be an array of tools")]
    if len(tools) > MAX_TOOLS:
        errors.append(FieldError(field, f"at most {MAX_TOOLS} tools"))
    seen: set[str] = set()
    result = []
    for index, tool in enumerate(tools[:MAX_TOOLS]):
        where = f"{field}[{index}]"
        if not isinstance(tool, dict):
            errors.append(FieldError(where, "must be an object"))
            continue
        if too_deep(tool, MAX_TOOL_DEPTH):
            errors.append(FieldError(where, depth_reason(MAX_TOOL_DEPTH, "the tool")))
            continue  # the checks below would recurse through all of it
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            errors.append(
                FieldError(
                    f"{where}.name", "must be 1-128 characters of A-Z, a-z, 0-9, '_', '-', '.'"
                )
            )
        elif name in seen:
            errors.append(FieldError(f"{where}.name", f"duplicate tool name {name!r}"))
        else:
            seen.add(name)
        if not finite_json(tool):
            errors.append(
                FieldError(where, "contains a number JSON cannot carry (NaN or out of range)")
            )
        tool = dict(tool)
        tool.setdefault("inputSchema", {"type": "object"})
        for key in ("inputSchema", "outputSchema"):
            if key in tool:
                problem = _schema_problem(tool[key])
                if problem:
                    errors.append(FieldError(f"{where}.{key}", problem))
        result.append(tool)
    return result, errors


def _schema_problem(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return "must be a JSON Schema object"
    if schema.get("type", "object") != "object":
        return "must describe an object (type: object)"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        # Named by the rule, never quoting the schema: an upstream's catalog may echo secrets
        # (e.g. the header values we sent) and this message ends up in a response.
        keyword = next((p for p in exc.absolute_path if isinstance(p, str)), None)
        where = f" in {keyword!r}" if keyword in _KEYWORDS else ""
        return f"not a valid JSON Schema (breaks the {exc.validator!r} rule{where})"
    return None


_KEYWORDS = frozenset(Draft202012Validator.META_SCHEMA.get("properties", {})) | frozenset(
    {
        "properties",
        "items",
        "required",
        "type",
        "additionalProperties",
        "patternProperties",
        "$defs",
        "enum",
        "const",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "prefixItems",
        "$ref",
    }
)
