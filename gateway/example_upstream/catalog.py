"""The example CRM's tool catalog as tools/list lists it (each tool with an input and an output
schema), and the instructions its initialize answer gives."""

from __future__ import annotations

from typing import Any

__all__ = ["CONTACT_PROPERTIES", "INSTRUCTIONS", "STAGES", "TOOLS"]

INSTRUCTIONS = (
    "A small CRM: find contacts with search_contacts, read one with get_contact, "
    "record a note with create_note, and review the pipeline with list_deals."
)

STAGES = ["prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"]

CONTACT_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "description": "Contact id, e.g. c_001"},
    "name": {"type": "string"},
    "email": {"type": "string", "format": "email"},
    "company": {"type": "string"},
    "title": {"type": "string", "description": "Job title"},
}
_CONTACT = {
    "type": "object",
    "required": list(CONTACT_PROPERTIES),
    "properties": CONTACT_PROPERTIES,
}
_NOTE = {
    "type": "object",
    "required": ["id", "contactId", "body", "createdAt"],
    "properties": {
        "id": {"type": "string"},
        "contactId": {"type": "string"},
        "body": {"type": "string"},
        "createdAt": {"type": "string", "format": "date-time"},
    },
}
_DEAL = {
    "type": "object",
    "required": [
        "id",
        "name",
        "contactId",
        "company",
        "stage",
        "amount",
        "currency",
        "expectedCloseDate",
    ],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "contactId": {"type": "string"},
        "company": {"type": "string"},
        "stage": {"type": "string", "enum": STAGES},
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"]},
        "expectedCloseDate": {"type": "string", "format": "date"},
    },
}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "search_contacts",
        "title": "Search contacts",
        "description": "Find contacts whose name, email or company contains the query "
        "(case-insensitive).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "description": "Text to look for, e.g. 'ada' or 'orbital'",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 50,
                    "default": 10,
                    "description": "Most contacts to return",
                },
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        "outputSchema": {
            "type": "object",
            "required": ["contacts", "total"],
            "properties": {
                "contacts": {"type": "array", "items": _CONTACT},
                "total": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Matches before the limit was applied",
                },
            },
        },
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    },
    {
        "name": "get_contact",
        "title": "Get a contact",
        "description": "One contact with its phone number, notes and open deals.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "contactId": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "description": "Contact id, e.g. c_001",
                }
            },
            "required": ["contactId"],
            "additionalProperties": False,
        },
        "outputSchema": {
            "type": "object",
            "required": ["contact", "notes", "openDeals"],
            "properties": {
                "contact": {
                    "type": "object",
                    "required": [*CONTACT_PROPERTIES, "phone"],
                    "properties": {**CONTACT_PROPERTIES, "phone": {"type": "string"}},
                },
                "notes": {"type": "array", "items": _NOTE},
                "openDeals": {"type": "array", "items": _DEAL},
            },
        },
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    },
    {
        "name": "create_note",
        "title": "Add a note",
        "description": "Record a note on a contact (e.g. a call summary).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "contactId": {"type": "string", "minLength": 1, "maxLength": 64},
                "body": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 2000,
                    "description": "The note's text",
                },
            },
            "required": ["contactId", "body"],
            "additionalProperties": False,
        },
        "outputSchema": {"type": "object", "required": ["note"], "properties": {"note": _NOTE}},
        "annotations": {
            "readOnlyHint": False,
            "destructiveHint": False,
            "idempotentHint": False,
            "openWorldHint": False,
        },
    },
    {
        "name": "list_deals",
        "title": "List deals",
        "description": "Deals in the pipeline, optionally filtered by stage, contact or "
        "minimum amount; largest first.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "stage": {"type": "string", "enum": STAGES},
                "contactId": {"type": "string", "minLength": 1, "maxLength": 64},
                "minAmount": {"type": "number", "minimum": 0},
            },
            "additionalProperties": False,
        },
        "outputSchema": {
            "type": "object",
            "required": ["deals", "totalAmount"],
            "properties": {
                "deals": {"type": "array", "items": _DEAL},
                "totalAmount": {
                    "type": "number",
                    "minimum": 0,
                    "description": "Sum of the listed deals' amounts",
                },
            },
        },
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    },
]
