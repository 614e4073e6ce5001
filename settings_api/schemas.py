"""JSON Schemas of the settings API: handlers validate with them and `/openapi.json` shows them."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

from settings_api.problems import FieldError, ValidationFailed

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"
# RFC 9110 token characters; CR/LF never allowed in values (header injection).
HEADER_NAME_PATTERN = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$"
HEADER_VALUE_PATTERN = r"^[^\r\n\x00]*$"
# Postgres text cannot hold U+0000; refuse it up front on every backend alike.
TEXT_PATTERN = r"^[^\x00]*$"

# A key's label: printable text (it is shown in lists and the audit trail).
LABEL_PATTERN = r"^[^\x00-\x1f\x7f]+$"
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31
MAX_GRACE_S = 86_400

_nullable_string = {"type": ["string", "null"]}
# A list of tool names, or null (exposedToolIds, a key's toolIds).
_TOOL_NAMES: dict[str, Any] = {
    "type": ["array", "null"],
    "uniqueItems": True,
    "maxItems": 1000,
    "items": {"type": "string", "minLength": 1, "maxLength": 128},
}


def ref(name: str) -> dict[str, str]:
    """A reference to component `name`."""
    return {"$ref": f"#/components/schemas/{name}"}


COMPONENTS: dict[str, dict[str, Any]] = {
    "IntegrationPut": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": TEXT_PATTERN}
        },
    },
    "Integration": {
        "type": "object",
        "required": ["integrationId", "name", "createdAt", "modifiedAt"],
        "properties": {
            "integrationId": {"type": "string"},
            "name": {"type": "string"},
            "createdAt": {"type": "integer", "description": "Unix epoch milliseconds"},
            "modifiedAt": {"type": "integer", "description": "Unix epoch milliseconds"},
        },
    },
    "Tool": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{1,128}$"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "inputSchema": {"type": "object"},
            "outputSchema": {"type": "object"},
            "annotations": {"type": "object"},
        },
    },
    "ConfigCreate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "upstreamUrl": {
                "type": "string",
                "pattern": r"^https?://[^\s\x00]+$",
                "maxLength": 2048,
            },
            "upstreamHeaders": {
                "type": "object",
                "maxProperties": 32,
                "propertyNames": {"pattern": HEADER_NAME_PATTERN},
                "additionalProperties": {
                    "type": "string",
                    "maxLength": 8192,
                    "pattern": HEADER_VALUE_PATTERN,
                },
                "description": "Sent to the upstream on every call. Write-only: never returned.",
            },
            "tools": {"type": "array", "maxItems": 1000, "items": ref("Tool")},
        },
    },
    "Config": {
        "type": "object",
        "required": [
            "configId",
            "upstreamUrl",
            "upstreamHeaderNames",
            "tools",
            "createdAt",
            "syncedAt",
        ],
        "properties": {
            "configId": {"type": "string"},
            "upstreamUrl": {
                **_nullable_string,
                "description": (
                    "Redacted: the password and every query value read *** (they are kept "
                    "encrypted and sent to the upstream as given)."
                ),
            },
            "upstreamHeaderNames": {"type": "array", "items": {"type": "string"}},
            "tools": {"type": "array", "items": ref("Tool")},
            "createdAt": {"type": "integer"},
            "syncedAt": {"type": ["integer", "null"]},
        },
    },
    "McpSettingsPatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "enabled": {"type": ["boolean", "null"]},
            "configId": {"type": ["string", "null"], "pattern": ID_PATTERN},
            "exposedToolIds": _TOOL_NAMES,
            "description": {"type": ["string", "null"], "maxLength": 4000, "pattern": TEXT_PATTERN},
        },
    },
    "McpSettings": {
        "type": "object",
        "required": [
            "integrationId",
            "enabled",
            "configId",
            "exposedToolIds",
            "description",
            "apiKeyId",
            "callUrl",
            "testUrl",
            "createdAt",
            "modifiedAt",
            "keyPrefix",
            "apiKey",
        ],
        "properties": {
            "integrationId": {"type": "string"},
            "enabled": {"type": "boolean"},
            "configId": _nullable_string,
            "exposedToolIds": {"type": "array", "items": {"type": "string"}},
            "description": _nullable_string,
            "apiKeyId": _nullable_string,
            "callUrl": {"type": "string"},
            "testUrl": {"type": "string"},
            "createdAt": {"type": "integer"},
            "modifiedAt": {"type": "integer"},
            "keyPrefix": _nullable_string,
            "apiKey": {
                "type": ["string", "null"],
                "description": "The raw key, only in the response that minted it.",
            },
        },
    },
    "SimulatorFixturePut": {
        "type": "object",
        "additionalProperties": False,
        "required": ["rules"],
        "properties": {"rules": {"type": "array", "maxItems": 100, "items": ref("SimulatorRule")}},
    },
    "SimulatorRule": {
        "type": "object",
        "additionalProperties": False,
        "description": "Exactly one of result or error. The first rule whose match is a subset "
        "of the call's arguments answers; an empty match is a default.",
        "properties": {
            "match": {"type": "object"},
            "result": {
                "type": "object",
                "description": "A CallToolResult; structuredContent "
                "must validate against the tool's outputSchema",
            },
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string"},
                    "data": {},
                },
            },
            "latencyMs": {"type": "integer", "minimum": 0, "maximum": 30000},
        },
    },
    "SimulatorFixture": {
        "type": "object",
        "required": ["toolId", "rules", "fixturesVersion", "createdAt", "modifiedAt"],
        "properties": {
            "toolId": {"type": "string"},
            "rules": {"type": "array", "items": ref("SimulatorRule")},
            "fixturesVersion": {
                "type": "integer",
                "description": "Bumped by every fixture change of the "
                "integration; part of the simulator's seed",
            },
            "createdAt": {"type": "integer"},
            "modifiedAt": {"type": "integer"},
        },
    },
    "AuditEvent": {
        "type": "object",
        "required": ["eventId", "actor", "action", "target", "at", "details"],
        "properties": {
            "eventId": {"type": "string"},
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "target": {"type": "string"},
            "at": {"type": "integer"},
            "details": {"type": "object"},
        },
    },
    "ApiKeyCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["label"],
        "properties": {
            "label": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "pattern": LABEL_PATTERN,
                "description": "Who or what holds the key; 'default' is the integration's own",
            },
            "expiresAt": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": MAX_EPOCH_MS,
                "description": "Unix epoch ms when the key stops working (may be past); "
                "null: never",
            },
            "toolIds": {
                **_TOOL_NAMES,
                "minItems": 1,
                "description": "The tools this key reaches (intersected with exposedToolIds); "
                "null: every exposed tool",
            },
        },
    },
    "ApiKey": {
        "type": "object",
        "required": [
            "apiKeyId",
            "label",
            "keyPrefix",
            "createdAt",
            "expiresAt",
            "toolIds",
            "lastUsedAt",
        ],
        "properties": {
            "apiKeyId": {"type": "string"},
            "label": {"type": "string"},
            "keyPrefix": {"type": "string"},
            "createdAt": {"type": "integer"},
            "expiresAt": {
                "type": ["integer", "null"],
                "description": "when it stops working (a rotated key: the end of its grace)",
            },
            "toolIds": {"type": ["array", "null"], "items": {"type": "string"}},
            "lastUsedAt": {
                "type": ["integer", "null"],
                "description": "epoch ms, written in batches (may lag a few seconds)",
            },
        },
    },
    "ApiKeyCreated": {
        "allOf": [ref("ApiKey")],
        "type": "object",
        "required": ["apiKey"],
        "properties": {
            "apiKey": {"type": "string", "description": "The raw key, only in this response."}
        },
    },
    "ApiKeyList": {
        "type": "object",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": ref("ApiKey")}},
    },
    "RotateKey": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "gracePeriodSeconds": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_GRACE_S,
                "description": "how long the previous key keeps working (default 0)",
            }
        },
    },
    "OAuthClient": {
        "type": "object",
        "required": ["clientId", "clientName", "redirectHosts", "firstUsedAt", "lastUsedAt"],
        "properties": {
            "clientId": {
                "type": "string",
                "description": "Registered client id, or the URL of its metadata document",
            },
            "clientName": {**_nullable_string, "description": "As the client named itself"},
            "redirectHosts": {"type": "array", "items": {"type": "string"}},
            "firstUsedAt": {"type": "integer"},
            "lastUsedAt": {"type": "integer"},
        },
    },
    "ToolCall": {
        "type": "object",
        "required": [
            "at",
            "url",
            "apiKeyId",
            "tool",
            "outcome",
            "durationMs",
            "requestId",
            "runId",
            "argumentsSha256",
        ],
        "properties": {
            "at": {"type": "integer", "description": "when the call arrived (epoch ms)"},
            "url": {"enum": ["call", "test"]},
            "apiKeyId": {"type": "string"},
            "tool": {"type": ["string", "null"], "description": "null: params.name not a string"},
            "outcome": {"enum": ["ok", "tool_error", "error", "rate_limited", "denied"]},
            "durationMs": {"type": "integer"},
            "requestId": _nullable_string,
            "runId": {**_nullable_string, "description": "the request's X-Run-Id header"},
            "argumentsSha256": {
                **_nullable_string,
                "description": "hex SHA-256 of the arguments as canonical JSON "
                "(sorted keys, compact, UTF-8)",
            },
            "arguments": {"description": "testUrl only: the arguments as sent"},
        },
    },
    "ToolCallPage": {
        "type": "object",
        "required": ["calls", "nextCursor"],
        "properties": {
            "calls": {"type": "array", "items": ref("ToolCall")},
            "nextCursor": _nullable_string,
        },
    },
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "requestId": {"type": "string"},
            "reason": {
                "type": "string",
                "description": (
                    "upstream-failed only: connect, timeout, http-status, invalid-response, "
                    "jsonrpc-error, too-large or too-many-pages"
                ),
            },
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    },
}


def page_of(item: str) -> dict[str, Any]:
    """Schema of a cursor-paginated list of `item`."""
    return {
        "type": "object",
        "required": ["items", "nextCursor"],
        "properties": {
            "items": {"type": "array", "items": ref(item)},
            "nextCursor": _nullable_string,
        },
    }


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    # OpenAPI patterns are ECMA-262, where a final "$" matches only at the very end; Python's
    # also matches before a trailing newline, which would let "crm\n" or "value\n" through.
    if not validator.is_type(instance, "string"):
        return
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    if not re.search(pattern, instance):
        yield ValidationError("does not match the pattern")


_Validator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def full_match(pattern: str, value: str) -> bool:
    """`value` matches an anchored schema pattern as a whole (no trailing-newline loophole)."""
    return re.fullmatch(pattern, value) is not None


@cache
def _validator(name: str) -> Any:
    # Validate against the very document OpenAPI shows, so the two can never disagree.
    return _Validator(
        {"$ref": f"#/components/schemas/{name}", "components": {"schemas": COMPONENTS}}
    )


def field_errors(name: str, body: Any) -> list[FieldError]:
    """Every way `body` violates component `name`, as field paths and messages."""
    errors = []
    for error in sorted(_validator(name).iter_errors(body), key=lambda e: list(e.path)):
        path = _path(error.absolute_path)
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            errors.append(FieldError(_join(path, missing), "is required"))
        elif error.validator == "additionalProperties" and error.validator_value is False:
            for extra in sorted(set(error.instance) - set(error.schema.get("properties", {}))):
                errors.append(FieldError(_join(path, extra), "is not a known field"))
        else:
            errors.append(FieldError(path or "(body)", _message(error)))
    return errors


def validate(name: str, body: Any) -> dict[str, Any]:
    """Return `body` if it satisfies component `name`, else raise a 422 listing every field."""
    errors = field_errors(name, body)
    if errors:
        raise ValidationFailed(errors)
    return body


_MESSAGES = {
    "minLength": "must have at least {} characters",
    "maxLength": "must have at most {} characters",
    "minItems": "must have at least {} items",
    "maxItems": "must have at most {} items",
    "maxProperties": "must have at most {} entries",
    "uniqueItems": "must not contain duplicates",
    "pattern": "has characters or a shape that is not allowed",
    "propertyNames": "has a name with characters that are not allowed",
    "enum": "must be one of {}",
    "const": "must be {}",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
}


def _message(error: Any) -> str:
    # Built from the rule, never from the value: a value may be a secret (a header value).
    if error.validator == "type":
        expected = error.validator_value
        names = " or ".join(expected) if isinstance(expected, list) else expected
        return f"must be of type {names}"
    template = _MESSAGES.get(str(error.validator))
    if template is None:
        return f"does not satisfy '{error.validator}'"
    return template.format(error.validator_value)


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
