"""Secret values (upstream header values, URL credentials) scrubbed from upstream text the
gateway passes on: an upstream may echo what it was sent, in an error message or its data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "scrub", "scrub_json", "secret_pieces"]

MASK = "[redacted]"
# Shorter pieces are not scrubbed: they would mangle ordinary words of the message.
_MIN_PIECE_CHARS = 4
# A value's words this long are secrets of their own ("Bearer <token>": the token).
_MIN_WORD_CHARS = 8


def secret_pieces(values: Iterable[str]) -> list[str]:
    """The values and their long words, longest first (a piece inside another goes after)."""
    pieces: set[str] = set()
    for value in values:
        for piece in [value, *(p for p in value.split() if len(p) >= _MIN_WORD_CHARS)]:
            if len(piece) >= _MIN_PIECE_CHARS:
                pieces.add(piece)
    return sorted(pieces, key=len, reverse=True)


def scrub(text: str, pieces: list[str]) -> str:
    """`text` with every piece (from :func:`secret_pieces`) replaced by the mask."""
    for piece in pieces:
        if piece in text:
            text = text.replace(piece, MASK)
    return text


def scrub_json(value: Any, pieces: list[str]) -> Any:
    """A JSON value with every string in it (keys included) scrubbed."""
    if not pieces:
        return value
    if isinstance(value, str):
        return scrub(value, pieces)
    if isinstance(value, list):
        return [scrub_json(item, pieces) for item in value]
    if isinstance(value, dict):
        return {
            scrub(k, pieces) if isinstance(k, str) else k: scrub_json(v, pieces)
            for k, v in value.items()
        }
    return value
