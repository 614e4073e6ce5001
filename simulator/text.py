"""Text results for tools without an `outputSchema`: what such a tool would say, naming the tool
and its arguments (written from the canonical arguments, so key order cannot change a byte)."""

from __future__ import annotations

import json
from typing import Any

from simulator import hints
from simulator.canonical import Seeded, normalize
from simulator.hints import Hint

_LIST = {"list", "search", "find", "query", "browse", "lookup", "filter", "scan", "discover"}
_GET = {
    "get",
    "fetch",
    "read",
    "retrieve",
    "describe",
    "show",
    "view",
    "check",
    "inspect",
    "load",
    "download",
    "open",
    "status",
    "info",
    "details",
}
_CREATE = {
    "create",
    "add",
    "new",
    "insert",
    "register",
    "submit",
    "upload",
    "schedule",
    "book",
    "make",
    "generate",
    "start",
    "import",
    "save",
    "log",
    "record",
}
_UPDATE = {
    "update",
    "edit",
    "set",
    "modify",
    "patch",
    "rename",
    "assign",
    "move",
    "change",
    "close",
    "resolve",
    "complete",
    "mark",
    "approve",
    "reject",
    "enable",
    "merge",
    "tag",
    "label",
    "upsert",
    "sync",
    "refresh",
}
_DELETE = {
    "delete",
    "remove",
    "cancel",
    "archive",
    "revoke",
    "unsubscribe",
    "disable",
    "destroy",
    "purge",
    "clear",
    "stop",
}
_SEND = {
    "send",
    "notify",
    "email",
    "message",
    "reply",
    "post",
    "publish",
    "share",
    "invite",
    "forward",
    "broadcast",
    "sms",
    "text",
    "call",
    "ping",
}
_PAST = {
    "create": "Created",
    "add": "Added",
    "new": "Created",
    "insert": "Inserted",
    "register": "Registered",
    "submit": "Submitted",
    "upload": "Uploaded",
    "schedule": "Scheduled",
    "book": "Booked",
    "update": "Updated",
    "edit": "Updated",
    "set": "Updated",
    "rename": "Renamed",
    "assign": "Assigned",
    "move": "Moved",
    "close": "Closed",
    "resolve": "Resolved",
    "complete": "Completed",
    "mark": "Marked",
    "approve": "Approved",
    "reject": "Rejected",
    "delete": "Deleted",
    "remove": "Removed",
    "cancel": "Cancelled",
    "archive": "Archived",
    "revoke": "Revoked",
    "disable": "Disabled",
    "enable": "Enabled",
    "send": "Sent",
    "post": "Posted",
    "publish": "Published",
    "share": "Shared",
    "invite": "Invited",
    "reply": "Replied to",
    "forward": "Forwarded",
    "start": "Started",
    "stop": "Stopped",
    "import": "Imported",
    "save": "Saved",
    "merge": "Merged",
    "sync": "Synced",
    "refresh": "Refreshed",
}
_PERSON = {
    "contact",
    "user",
    "customer",
    "member",
    "employee",
    "person",
    "lead",
    "people",
    "attendee",
    "candidate",
    "patient",
    "student",
    "client",
    "author",
    "owner",
    "agent",
}
_TASK = {
    "ticket",
    "issue",
    "task",
    "bug",
    "incident",
    "case",
    "todo",
    "story",
    "request",
    "item",
    "card",
    "deal",
    "opportunity",
}
_EVENT = {"event", "meeting", "appointment", "booking", "reservation", "call", "session"}
_FILE = {"file", "document", "doc", "attachment", "report", "page", "note", "image", "photo"}
_MESSAGE = {"message", "email", "mail", "sms", "notification", "comment", "reply", "post"}
_MONEY = {
    "order",
    "invoice",
    "payment",
    "charge",
    "transaction",
    "refund",
    "subscription",
    "quote",
    "product",
    "price",
}
_ARG_CHARS = 60


def _argument_text(arguments: Any) -> str:
    arguments = normalize(arguments)
    if not isinstance(arguments, dict) or not arguments:
        return "no arguments" if not arguments else _brief(arguments)
    return ", ".join(f"{key}={_brief(arguments[key])}" for key in sorted(arguments))


def _brief(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= _ARG_CHARS else text[: _ARG_CHARS - 1] + "…"


def _split(tool: str) -> tuple[str, str]:
    words = hints.tokens(tool)
    if not words:
        return "", "item"
    if len(words) == 1:
        return words[0], "result"
    return words[0], " ".join([*words[1:-1], hints.singular(words[-1])])


def _value(kind: str, noun: str, seeded: Seeded, who: Seeded) -> str:
    return hints.string_value(Hint(kind, noun), seeded, who)


def _record(noun: str, seeded: Seeded) -> tuple[str, list[tuple[str, str]]]:
    """(id, [(field, value)...]) describing one `noun`."""
    head = noun.split()[-1] if noun else "item"
    who = seeded.child("persona")
    ident = _value("id", noun.replace(" ", "_") or "item", seeded.child("id"), who)
    fields: list[tuple[str, str]]
    if head in _PERSON:
        fields = [
            ("name", _value("person", noun, seeded, who)),
            ("email", _value("email", noun, seeded.child("email"), who)),
            ("company", _value("company", noun, seeded.child("company"), who)),
        ]
    elif head in _TASK:
        fields = [
            ("title", _value("title", noun, seeded, who)),
            ("status", _value("status", noun, seeded.child("status"), who)),
            ("assignee", _value("person", noun, seeded, who)),
        ]
    elif head in _EVENT:
        fields = [
            ("title", _value("title", noun, seeded, who)),
            ("start", _value("date_time", noun, seeded.child("start"), who)),
            ("organizer", _value("email", noun, seeded.child("email"), who)),
        ]
    elif head in _FILE:
        fields = [
            ("name", _value("filename", noun, seeded, who)),
            ("updatedAt", _value("date_time", noun, seeded.child("at"), who)),
            ("owner", _value("person", noun, seeded, who)),
        ]
    elif head in _MESSAGE:
        fields = [
            ("subject", _value("title", noun, seeded, who)),
            ("from", _value("email", noun, seeded.child("from"), who)),
            ("sentAt", _value("date_time", noun, seeded.child("at"), who)),
        ]
    elif head in _MONEY:
        fields = [
            (
                "total",
                _value("money", noun, seeded.child("total"), who)
                + " "
                + _value("currency", noun, seeded.child("currency"), who),
            ),
            ("status", _value("status", noun, seeded.child("status"), who)),
            ("createdAt", _value("date_time", noun, seeded.child("at"), who)),
        ]
    elif head in {"company", "organization", "account", "vendor", "customer_account"}:
        fields = [
            ("name", _value("company", noun, seeded, who)),
            ("city", _value("city", noun, seeded, who)),
            ("website", _value("url", noun, seeded.child("url"), who)),
        ]
    else:
        fields = [
            ("name", _value("named", noun, seeded, who)),
            ("status", _value("status", noun, seeded.child("status"), who)),
            ("updatedAt", _value("date_time", noun, seeded.child("at"), who)),
        ]
    return ident, fields


def text_result(tool: str, arguments: Any, seeded: Seeded) -> str:
    verb, noun = _split(tool)
    args = _argument_text(arguments)
    rng = seeded.rng
    if verb in _LIST:
        count = 0 if rng.random() < 0.08 else rng.randint(1, 5)
        plural = noun if noun.endswith("s") else f"{noun}s"
        if count == 0:
            return f"No {plural} found ({tool}: {args})."
        lines = [f"Found {count} {noun if count == 1 else plural} ({tool}: {args}):"]
        for index in range(count):
            ident, fields = _record(noun, seeded.child(index))
            summary = " | ".join(value for _, value in fields)
            lines.append(f"{index + 1}. {summary} (id: {ident})")
        return "\n".join(lines)
    ident, fields = _record(noun, seeded.child("record"))
    if verb in _GET or not verb:
        lines = [f"{noun.capitalize()} {ident} ({tool}: {args})"]
        lines += [f"  {name}: {value}" for name, value in fields]
        return "\n".join(lines)
    if verb in _SEND:
        recipient = _value("email", noun, seeded.child("to"), seeded.child("to"))
        return f"{_PAST.get(verb, 'Sent')} {noun} {ident} to {recipient} ({tool}: {args})."
    if verb in _CREATE or verb in _UPDATE or verb in _DELETE:
        action = _PAST.get(
            verb, f"{verb.capitalize()}d" if verb.endswith("e") else f"{verb.capitalize()}ed"
        )
        detail = "" if verb in _DELETE else f" {fields[0][0]}: {fields[0][1]}."
        return f"{action} {noun} {ident} ({tool}: {args}).{detail}"
    return f"{tool} completed ({args}). Reference: {ident}; {fields[0][0]}: {fields[0][1]}."
