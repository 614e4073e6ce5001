"""Strings for a schema: formats, plausible text for the property's name, and pattern strings
(simulator/regex.py), within minLength/maxLength."""

from __future__ import annotations

import json
from typing import Any

from simulator import formats, hints, regex
from simulator import words as W
from simulator.canonical import Seeded
from simulator.generation_errors import GenerationError, TooLarge
from simulator.hints import Hint
from simulator.merging import PATTERNS
from simulator.patterns import search

MAX_STRING = 10_000  # minLength: what one answer may cost


def string_value(
    schema: dict[str, Any], s: Seeded, ptr: str, hint: Hint, who: Seeded | None
) -> str:
    """A string for `schema` (the caller validates the whole instance against the schema)."""
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    patterns = ([schema["pattern"]] if "pattern" in schema else []) + list(schema.get(PATTERNS, ()))
    fmt = schema.get("format")
    fmt = fmt if fmt in formats.CHECKS else None
    if high is not None and low > high:
        raise GenerationError(ptr, "minLength is greater than maxLength")
    if low > MAX_STRING:
        raise TooLarge(ptr, f"minLength above {MAX_STRING} is more than the simulator generates")

    def fits(text: str) -> bool:
        if len(text) < low or (high is not None and len(text) > high):
            return False
        if fmt and not formats.CHECKS[fmt](text):
            return False
        return all(search(p, text) for p in patterns)

    if fmt:
        for attempt in range(3):
            text = _format_value(fmt, hint, s.child(f"fmt{attempt}") if attempt else s, who)
            if fits(text):
                return text
    if hint.kind:
        candidates = hints.string_candidates(hint, s, who)
        for text in candidates:
            if fits(text):
                return text
        text = candidates[0]
        if not patterns and not fmt:
            text = _fit(text, low, high, s)
            if fits(text):
                return text
    if patterns:
        for attempt, pattern in enumerate(patterns):
            made = regex.generate(pattern, s.child(f"re{attempt}"), low, high)
            if made is not None and fits(made):
                return made
        raise GenerationError(
            ptr,
            "no string matching pattern"
            f"{'s' if len(patterns) > 1 else ''} "
            f"{', '.join(json.dumps(p) for p in patterns)} within "
            "the length bounds could be generated",
        )
    if fmt:
        raise GenerationError(ptr, f"no {fmt} fits minLength/maxLength")
    text = _fit(hints.words(s, s.rng.randrange(1, 3)), low, high, s)
    if fits(text):
        return text
    raise GenerationError(ptr, "no string fits minLength/maxLength")


def _format_value(fmt: str, hint: Hint, s: Seeded, who: Seeded | None) -> str:
    match fmt:
        case "date":
            return formats.gen_date(s)
        case "date-time":
            return formats.gen_date_time(s)
        case "time":
            return formats.gen_time(s)
        case "email":
            return hints.email(s, who)
        case "uri":
            return hints.url(s, hint.noun, image=hint.kind == "image_url")
        case "uuid":
            return formats.gen_uuid(s)
        case "ipv4":
            return formats.gen_ipv4(s)
        case "ipv6":
            return formats.gen_ipv6(s)
    return hints.hostname(s)


def _fit(text: str, low: int, high: int | None, s: Seeded) -> str:
    if high is not None and len(text) > high:
        cut = text[:high].rstrip()
        text = cut if len(cut) >= low else text[:high]
    if len(text) < low:
        more = [text] if text else []
        size = len(text)
        while size < low:
            word = s.rng.choice(W.WORDS)
            more.append(word)
            size += len(word) + 1
        text = " ".join(more)
    if high is not None and len(text) > high:
        text = text[:high]
    return text
