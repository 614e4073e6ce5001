"""Strings that match a tool schema's `pattern`, within length bounds, from a seeded stream.

rstr's `xeger` writes the candidates. It takes every decision from the `random.Random` it is
given, so `_Draws` (a seeded `Random`) is where this module steers it:

- determinism: xeger picks a negated class's character from a list built in set order (which
  PYTHONHASHSEED changes), so a choice among a class's characters is made in sorted order
  (and among its printable ones when it has any: no tabs or newlines for `[^a-z]`);
- length: xeger draws each repeat count with `randint(min, max)`; a count is either drawn
  near the minimum (the plausible default) or placed at a fraction of its range, and that
  fraction is searched by bisection until the string lands in [minLength, maxLength];
- cost: the counts drawn for one candidate, weighted by the pattern's length, and the class
  members xeger lists are bounded and spent from the call's step budget, so `(a{100}){100}`,
  `{1000000}` or `[\\x00-\\U0010ffff]{100}` is refused before a long string is built.

Lookarounds are zero-width, but xeger writes their content as text: the pattern without them
is tried first, then the pattern itself. Every candidate is verified against the real pattern
(`re.search`'s meaning, within a time bound: simulator/patterns.py) and the length bounds;
other attempts use derived seeds, and the caller gets None rather than a string that does
not match.
"""

from __future__ import annotations

import importlib
import random
import re
import string
from collections.abc import Iterator
from typing import Any

import rstr

from simulator import words as W
from simulator.budget import spend
from simulator.canonical import Seeded
from simulator.patterns import search

MAX_LENGTH = 10_000  # longer strings are not generated (None)
# What one candidate may cost: repeat counts drawn, each times the pattern's length (a bound
# on the characters one repetition writes, literals included).
MAX_WORK = 10 * MAX_LENGTH
# Listing this many members of a class costs about as much as writing one character.
_MEMBERS_PER_CHARACTER = 8
_SOFT_REPEAT = 8  # extra repetitions beyond the minimum when nothing asks for more
_FIT_STEPS = 12  # bisection steps towards the length bounds
# xeger caps `*`, `+` and `{n,}` at this many repeats: as many as the longest string allowed,
# so that the length bounds, not xeger, decide.
_XEGER: Any = importlib.import_module("rstr.xeger")  # the module (`rstr.xeger` is a function)
_XEGER.STAR_PLUS_LIMIT = MAX_LENGTH
# `.`, `\s` and `\W` without control characters or set-ordered alphabets.
_ALPHABETS = {
    "printable": string.ascii_letters + string.digits,
    "whitespace": " ",
    "nonword": "".join(
        sorted(
            set(string.printable)
            - set(string.ascii_letters + string.digits + "_" + string.whitespace)
        )
    ),
}
_LOOKAROUNDS = ("(?=", "(?!", "(?<=", "(?<!")


class _TooLong(Exception):
    """A candidate would cost more than `MAX_WORK`."""


class _Draws(random.Random):
    """The seeded randomness one xeger candidate is written from (see the module docstring)."""

    def __init__(self, seed: int, stretch: float | None, reach: int, weight: int) -> None:
        super().__init__(seed)
        self.stretch = stretch  # None: counts near the minimum; else the fraction of the range
        self.reach = reach  # repeats beyond the minimum a stretched count may go to
        self.weight = weight  # characters one repetition may write, at most
        self.left = MAX_WORK

    def randint(self, a: int, b: int) -> int:
        if a > b:  # the pattern's minimum is beyond STAR_PLUS_LIMIT
            raise _TooLong
        if self.stretch is None:
            count = super().randint(a, min(b, a + _SOFT_REPEAT))
        else:
            count = a + round(self.stretch * (min(b, a + self.reach) - a))
        self._charge(count * self.weight)
        return count

    def choice(self, seq: Any) -> Any:
        if isinstance(seq, list) and seq and isinstance(seq[0], str):  # a class's members
            # xeger lists every member of the class for each character it writes: a wide
            # range (`[\x00-\U0010ffff]`) costs as much as writing a long string.
            self._charge(len(seq) // _MEMBERS_PER_CHARACTER)
            seq = sorted([c for c in seq if c.isprintable()] or seq, key=str)
        return super().choice(seq)

    def _charge(self, cost: int) -> None:
        # The call's step budget (simulator/budget.py) bounds all its candidates together.
        spend(cost)
        self.left -= cost
        if self.left < 0:
            raise _TooLong


def _tokens(pattern: str) -> Iterator[str]:
    """The pattern cut into escapes, whole character classes and single characters."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            j = i + 2
        elif pattern[i] == "[":
            j = i + 1
            j += pattern.startswith("^", j)
            j += pattern.startswith("]", j)  # a `]` first in a class is a member
            while j < len(pattern) and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            j += 1
        else:
            j = i + 1
        yield pattern[i:j]
        i = j


def _without_lookarounds(pattern: str) -> str:
    """`pattern` with its lookahead and lookbehind groups taken out."""
    out: list[str] = []
    depth = 0  # inside a lookaround: its parentheses still open
    at = 0
    for piece in _tokens(pattern):
        if depth:
            depth += (piece == "(") - (piece == ")")
        elif piece == "(" and pattern.startswith(_LOOKAROUNDS, at):
            depth = 1
        else:
            out.append(piece)
        at += len(piece)
    return "".join(out)


def _xeger(pattern: str, seed: int, stretch: float | None, reach: int) -> str | None:
    draws = _Draws(seed, stretch, reach, max(1, len(pattern)))
    try:
        return rstr.Rstr(draws, **_ALPHABETS).xeger(pattern)
    except (
        _TooLong,
        re.error,
        KeyError,
        IndexError,
        ValueError,
        TypeError,
        OverflowError,
        RecursionError,
    ):
        # KeyError: a construct xeger does not write (conditionals, atomic groups, possessive
        # repeats); IndexError: a class with no printable member.
        return None


def _fit(pattern: str, seed: int, low: int, high: int) -> str | None:
    """A candidate whose length lies in [low, high], found by bisecting the stretch."""
    reach = high if high < MAX_LENGTH else low + _SOFT_REPEAT
    shortest = _xeger(pattern, seed, 0.0, reach)
    if shortest is None or len(shortest) > high:
        return None
    if len(shortest) >= low:
        return shortest
    longest = _xeger(pattern, seed, 1.0, reach)
    if longest is None or len(longest) < low:
        return None  # even the longest counts fall short
    least, most = 0.0, 1.0
    for _ in range(_FIT_STEPS):
        middle = (least + most) / 2
        text = _xeger(pattern, seed, middle, reach)
        if text is None:
            return None
        if len(text) < low:
            least = middle
        elif len(text) > high:
            most = middle
        else:
            return text
    return longest if len(longest) <= high else None


def _satisfies(
    pattern: str, value: str, min_length: int = 0, max_length: int | None = None
) -> bool:
    """`value` matches `pattern` (bounded: simulator/patterns.py) and the length bounds."""
    if len(value) < min_length or (max_length is not None and len(value) > max_length):
        return False
    return search(pattern, value)


def _padded(
    pattern: str, text: str, rng: random.Random, min_length: int, max_length: int | None
) -> str | None:
    """An unanchored pattern matches inside a longer string: `text` padded with words."""
    filler = " ".join(rng.choice(W.WORDS) for _ in range(min_length // 4 + 2))
    pad = "x" * (min_length - len(text))
    for candidate in (
        (text + " " + filler)[:min_length],
        (filler + " " + text)[-min_length:],
        text + pad,
        pad + text,
    ):
        if _satisfies(pattern, candidate, min_length, max_length):
            return candidate
    return None


def generate(
    pattern: str,
    seeded: Seeded,
    min_length: int = 0,
    max_length: int | None = None,
    attempts: int = 8,
) -> str | None:
    """A string `s` with `re.search(pattern, s)` and min_length <= len(s) <= max_length, or
    None when none was found (unsupported construct, too costly, or contradicting bounds)."""
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None
    high = MAX_LENGTH if max_length is None else min(max_length, MAX_LENGTH)
    if min_length > high:
        return None
    # Lookaround content is text to xeger: the pattern without it is tried first, the pattern
    # itself second (an unanchored `(?<=@)x` is matched by the text "@x").
    stripped = _without_lookarounds(pattern)
    sources = [stripped, pattern] if stripped != pattern else [pattern]
    for attempt in range(attempts):
        rng = seeded.child(attempt).rng
        seed = rng.getrandbits(64)
        for source in list(sources):
            text = _xeger(source, seed, None, 0)
            if text is None:  # a construct xeger does not write, or too costly: any seed
                sources.remove(source)
                continue
            if not min_length <= len(text) <= high:
                fitted = _fit(source, seed, min_length, high)
                text = text if fitted is None else fitted
            if min_length <= len(text) <= high:
                if search(pattern, text):
                    return text
            elif len(text) < min_length and search(pattern, text):
                padded = _padded(pattern, text, rng, min_length, max_length)
                if padded is not None:
                    return padded
    return None
