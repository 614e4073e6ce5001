"""The example CRM's tools over its in-memory data: arguments validated against each tool's
input schema, results as MCP CallToolResult objects."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jsonschema import Draft202012Validator

from gateway.example_upstream.catalog import CONTACT_PROPERTIES, TOOLS
from gateway.example_upstream.data import CONTACTS, DEALS, NOTES
from mcp_core.results import structured_result, text_only_result

__all__ = ["MAX_NOTES", "Crm", "ToolFailure"]

MAX_NOTES = 10_000
_CLOSED = frozenset({"closed_won", "closed_lost"})


class ToolFailure(Exception):
    """A tool ran but could not do what was asked: reported as a result with isError."""


@dataclass
class Crm:
    """The CRM's data and its tools. Each instance has its own copy of the sample data."""

    contacts: dict[str, dict[str, str]] = field(
        default_factory=lambda: {c["id"]: dict(c) for c in CONTACTS}
    )
    deals: list[dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEALS))
    notes: list[dict[str, str]] = field(default_factory=lambda: copy.deepcopy(NOTES))
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self._tools: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "search_contacts": self.search_contacts,
            "get_contact": self.get_contact,
            "create_note": self.create_note,
            "list_deals": self.list_deals,
        }
        self._validators = {t["name"]: Draft202012Validator(t["inputSchema"]) for t in TOOLS}

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """A CallToolResult for a known tool (check `name` with `has_tool` first)."""
        errors = sorted(
            self._validators[name].iter_errors(arguments),
            key=lambda e: list(map(str, e.absolute_path)),
        )
        if errors:
            lines = [
                f"{'.'.join(map(str, e.absolute_path)) or '(arguments)'}: {e.message}"
                for e in errors
            ]
            return text_only_result("Invalid arguments:\n" + "\n".join(lines), is_error=True)
        try:
            structured = self._tools[name](arguments)
        except ToolFailure as exc:
            return text_only_result(str(exc), is_error=True)
        return structured_result(structured)

    def has_tool(self, name: object) -> bool:
        """Whether `name` is one of this CRM's tools."""
        return isinstance(name, str) and name in self._tools

    def search_contacts(self, args: dict[str, Any]) -> dict[str, Any]:
        """Contacts whose name, email or company contains the query, up to the limit."""
        query = args["query"].strip().casefold()
        found = [
            c
            for c in self.contacts.values()
            if any(query in c[k].casefold() for k in ("name", "email", "company"))
        ]
        limit = args.get("limit", 10)
        return {"contacts": [_summary(c) for c in found[:limit]], "total": len(found)}

    def get_contact(self, args: dict[str, Any]) -> dict[str, Any]:
        """One contact with its notes and open deals."""
        contact = self._contact(args["contactId"])
        return {
            "contact": dict(contact),
            "notes": [dict(n) for n in self.notes if n["contactId"] == contact["id"]],
            "openDeals": [
                self._deal(d)
                for d in self.deals
                if d["contactId"] == contact["id"] and d["stage"] not in _CLOSED
            ],
        }

    def create_note(self, args: dict[str, Any]) -> dict[str, Any]:
        """A new note on a contact, kept as long as this CRM."""
        contact = self._contact(args["contactId"])
        body = args["body"].strip()
        if not body:
            raise ToolFailure("The note's body is blank.")
        if len(self.notes) >= MAX_NOTES:
            raise ToolFailure(
                f"This demo CRM holds at most {MAX_NOTES} notes; restart it to reset."
            )
        created = self.clock().replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        note = {
            "id": f"n_{len(self.notes) + 1:03d}",
            "contactId": contact["id"],
            "body": body,
            "createdAt": created,
        }
        self.notes.append(note)
        return {"note": dict(note)}

    def list_deals(self, args: dict[str, Any]) -> dict[str, Any]:
        """Deals matching the filters, largest first, with their total."""
        deals = [
            d
            for d in self.deals
            if ("stage" not in args or d["stage"] == args["stage"])
            and ("contactId" not in args or d["contactId"] == args["contactId"])
            and d["amount"] >= args.get("minAmount", 0)
        ]
        deals.sort(key=lambda d: (-d["amount"], d["id"]))
        return {
            "deals": [self._deal(d) for d in deals],
            "totalAmount": sum(d["amount"] for d in deals),
        }

    def _contact(self, contact_id: str) -> dict[str, str]:
        contact = self.contacts.get(contact_id)
        if contact is None:
            raise ToolFailure(f"No contact with id {contact_id!r}; search_contacts finds ids.")
        return contact

    def _deal(self, deal: dict[str, Any]) -> dict[str, Any]:
        return {**deal, "company": self.contacts[deal["contactId"]]["company"]}


def _summary(contact: dict[str, str]) -> dict[str, str]:
    return {k: contact[k] for k in CONTACT_PROPERTIES}
