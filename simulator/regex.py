"""Strings that match a regular expression, within length bounds, from a seeded stream.

A bounded generator over the parse tree of Python's own `re` (the engine jsonschema's `pattern`
uses). Every node knows its (min, max) width, so repeat counts are chosen to land inside
[minLength, maxLength] instead of hoping for it. Covered: literals, classes (ranges, negation,
\\d \\w \\s and their negations), `.`, alternation, groups, backreferences, conditionals, greedy /
lazy / possessive repeats, atomic groups and anchors. Lookarounds and word boundaries are treated
as zero-width and left to the final check: every candidate is verified against the pattern
(`re.search`'s meaning, within a time bound: simulator/patterns.py) and the length bounds,
other attempts use derived seeds, and the caller gets None rather than a string that does not
match.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as P  # type: ignore[attr-defined]

from simulator import words as W
from simulator.canonical import Seeded
from simulator.patterns import search

INF = 10**9
MAX_LENGTH = 10_000  # longer strings are not generated (None)
_SOFT_REPEAT_CHARS = 8  # extra repetitions beyond the minimum when nothing asks for more
_SOFT_REPEAT_GROUPS = 3
_ALNUM = string.ascii_letters + string.digits
_PUNCT = " _-.@:/,;!?#$%&*+=~()[]{}<>'\"^`|\\"
_CATEGORY_RES = {
    C.CATEGORY_DIGIT: re.compile(r"\d"),
    C.CATEGORY_NOT_DIGIT: re.compile(r"\D"),
    C.CATEGORY_SPACE: re.compile(r"\s"),
    C.CATEGORY_NOT_SPACE: re.compile(r"\S"),
    C.CATEGORY_WORD: re.compile(r"\w"),
    C.CATEGORY_NOT_WORD: re.compile(r"\W"),
}


class Unsupported(Exception):
    """The pattern uses a construct this generator does not cover."""


class _Node:
    __slots__ = ("a", "b", "c", "kind", "wmax", "wmin")

    def __init__(self, kind: str, wmin: int, wmax: int, a: object = None, b: object = None,
                 c: object = None) -> None:
        self.kind, self.wmin, self.wmax = kind, wmin, min(wmax, INF)
        self.a, self.b, self.c = a, b, c


def _member(items: list[tuple[object, object]], ch: str) -> bool:
    code = ord(ch)
    negate = False
    hit = False
    for op, av in items:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            hit = hit or code == av
        elif op is C.RANGE:
            hit = hit or av[0] <= code <= av[1]  # type: ignore[index]
        elif op is C.CATEGORY:
            hit = hit or _CATEGORY_RES[av].match(ch) is not None
        else:
            raise Unsupported(f"class item {op}")
    return hit != negate


def _set_node(items: list[tuple[object, object]], explicit: bool) -> _Node:
    """A one-character node. Explicit, non-negated classes may yield any printable member;
    negations and `.` prefer letters and digits."""
    negated = any(op is C.NEGATE for op, _ in items)
    if explicit and not negated:
        pool = "".join(ch for ch in _ALNUM + _PUNCT if _member(items, ch))
    else:
        pool = "".join(ch for ch in _ALNUM if _member(items, ch)) or "".join(
            ch for ch in _PUNCT if _member(items, ch))
    ranges: list[tuple[int, int]] = []
    if not pool:
        if negated:
            pool = "".join(chr(c) for c in range(0xA1, 0x2FF) if _member(items, chr(c)))
        else:
            for op, av in items:
                if op is C.LITERAL:
                    ranges.append((av, av))  # type: ignore[arg-type]
                elif op is C.RANGE:
                    ranges.append(av)  # type: ignore[arg-type]
            ranges = [(lo, hi) for lo, hi in ranges if not 0xD800 <= lo <= hi <= 0xDFFF]
    if not pool and not ranges:
        raise Unsupported("a character class with no usable member")
    return _Node("set", 1, 1, pool, tuple(ranges))


def _compile(data: object, groups: dict[int, _Node]) -> _Node:
    items = [_compile_item(op, av, groups) for op, av in data]  # type: ignore[attr-defined]
    items = [item for item in items if item.kind != "empty"]
    if len(items) == 1:
        return items[0]
    wmin = sum(i.wmin for i in items)
    wmax = sum(i.wmax for i in items)
    # Suffix sums of the widths, for distributing a length target left to right.
    suffix_min = [0] * (len(items) + 1)
    suffix_max = [0] * (len(items) + 1)
    for index in range(len(items) - 1, -1, -1):
        suffix_min[index] = suffix_min[index + 1] + items[index].wmin
        suffix_max[index] = min(INF, suffix_max[index + 1] + items[index].wmax)
    return _Node("seq", wmin, wmax, items, suffix_min, suffix_max)


def _compile_item(op: object, av: object, groups: dict[int, _Node]) -> _Node:
    if op is C.LITERAL:
        return _Node("lit", 1, 1, chr(av))  # type: ignore[arg-type]
    if op is C.NOT_LITERAL:
        return _set_node([(C.NEGATE, None), (C.LITERAL, av)], explicit=False)
    if op is C.ANY:
        return _set_node([(C.NEGATE, None), (C.LITERAL, 10)], explicit=False)
    if op is C.IN:
        return _set_node(list(av), explicit=True)  # type: ignore[call-overload]
    if op is C.CATEGORY:
        return _set_node([(C.CATEGORY, av)], explicit=False)
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", C.MAX_REPEAT)):
        low, high, sub = av  # type: ignore[misc]
        node = _compile(sub, groups)
        high = INF if high is C.MAXREPEAT or high >= INF else high
        return _Node("rep", low * node.wmin, high * node.wmax, node, low, high)
    if op is C.SUBPATTERN:
        group, _add, _del, sub = av  # type: ignore[misc]
        node = _compile(sub, groups)
        if group is None:
            return node
        groups[group] = node
        return _Node("group", node.wmin, node.wmax, node, group)
    if op is getattr(C, "ATOMIC_GROUP", None):
        return _compile(av, groups)
    if op is C.BRANCH:
        branches = [_compile(sub, groups) for sub in av[1]]  # type: ignore[index]
        return _Node("alt", min(b.wmin for b in branches), max(b.wmax for b in branches),
                     branches)
    if op is C.GROUPREF:
        target = groups.get(av)  # type: ignore[arg-type]
        if target is None:
            raise Unsupported("a reference to a group defined later")
        return _Node("ref", target.wmin, target.wmax, av)
    if op is C.GROUPREF_EXISTS:
        group, yes, no = av  # type: ignore[misc]
        yes_node = _compile(yes, groups)
        no_node = _compile(no, groups) if no is not None else _Node("empty", 0, 0)
        return _Node("cond", min(yes_node.wmin, no_node.wmin), max(yes_node.wmax, no_node.wmax),
                     group, yes_node, no_node)
    if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
        return _Node("empty", 0, 0)
    raise Unsupported(str(op))


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> _Node | None:
    """The pattern's generator tree; None when `re` refuses the pattern or it uses what the
    generator does not cover."""
    try:
        re.compile(pattern)
        return _compile(P.parse(pattern), {})
    except (re.error, Unsupported, RecursionError, TypeError, ValueError, KeyError):
        return None


def _gen(node: _Node, lo: int, hi: int, rng: object, groups: dict[int, str]) -> str:
    kind = node.kind
    if kind == "lit":
        return node.a  # type: ignore[return-value]
    if kind == "set":
        pool: str = node.a  # type: ignore[assignment]
        if pool:
            return rng.choice(pool)  # type: ignore[attr-defined]
        low, high = rng.choice(node.b)  # type: ignore[attr-defined]
        code = rng.randint(low, high)  # type: ignore[attr-defined]
        return chr(code if not 0xD800 <= code <= 0xDFFF else low)
    if kind == "seq":
        items: list[_Node] = node.a  # type: ignore[assignment]
        suffix_min: list[int] = node.b  # type: ignore[assignment]
        suffix_max: list[int] = node.c  # type: ignore[assignment]
        parts = []
        acc = 0
        for index, item in enumerate(items):
            a = max(item.wmin, lo - acc - suffix_max[index + 1])
            b = min(item.wmax, hi - acc - suffix_min[index + 1])
            if a > b:
                a = b = max(item.wmin, min(item.wmax, b))
            text = _gen(item, a, b, rng, groups)
            acc += len(text)
            parts.append(text)
        return "".join(parts)
    if kind == "rep":
        sub: _Node = node.a  # type: ignore[assignment]
        rmin: int = node.b  # type: ignore[assignment]
        rmax: int = node.c  # type: ignore[assignment]
        kmin, kmax = rmin, rmax
        if sub.wmax > 0 and lo > 0:
            kmin = max(kmin, -(-lo // sub.wmax))
        if sub.wmin > 0:
            kmax = min(kmax, hi // sub.wmin)
        if kmin > kmax:
            kmin = kmax = max(rmin, min(kmax, rmax))
        soft = _SOFT_REPEAT_CHARS if sub.wmax <= 1 else _SOFT_REPEAT_GROUPS
        count = rng.randint(kmin, min(kmax, max(kmin, rmin + soft)))  # type: ignore[attr-defined]
        parts = []
        acc = 0
        for index in range(count):
            remaining = count - index - 1
            a = max(sub.wmin, lo - acc - remaining * sub.wmax)
            b = min(sub.wmax, hi - acc - remaining * sub.wmin)
            if a > b:
                a = b = sub.wmin
            text = _gen(sub, a, b, rng, groups)
            acc += len(text)
            parts.append(text)
        return "".join(parts)
    if kind == "alt":
        branches: list[_Node] = node.a  # type: ignore[assignment]
        fits = [b for b in branches if b.wmin <= hi and b.wmax >= lo]
        return _gen(rng.choice(fits or branches), lo, hi, rng, groups)  # type: ignore[attr-defined]
    if kind == "group":
        text = _gen(node.a, lo, hi, rng, groups)  # type: ignore[arg-type]
        groups[node.b] = text  # type: ignore[index]
        return text
    if kind == "ref":
        return groups.get(node.a, "")  # type: ignore[call-overload]
    if kind == "cond":
        branch = node.b if node.a in groups else node.c
        return _gen(branch, lo, hi, rng, groups)  # type: ignore[arg-type]
    return ""


def satisfies(pattern: str, value: str, min_length: int = 0,
              max_length: int | None = None) -> bool:
    if len(value) < min_length or (max_length is not None and len(value) > max_length):
        return False
    return search(pattern, value)


def generate(pattern: str, seeded: Seeded, min_length: int = 0, max_length: int | None = None,
             attempts: int = 8) -> str | None:
    """A string `s` with `re.search(pattern, s)` and min_length <= len(s) <= max_length, or
    None when none was found (unsupported construct, or contradicting bounds)."""
    root = _compiled(pattern)
    if root is None or root.wmin > MAX_LENGTH or min_length > MAX_LENGTH:
        return None
    hi = INF if max_length is None else max_length
    for attempt in range(attempts):
        rng = seeded.child(attempt).rng
        text = _gen(root, min_length, hi, rng, {})
        if len(text) <= hi and search(pattern, text):
            if len(text) >= min_length:
                return text
            # An unanchored pattern matches inside a longer string: pad it with words.
            filler = " ".join(rng.choice(W.WORDS) for _ in range(min_length // 4 + 2))
            pad = "x" * (min_length - len(text))
            for candidate in ((text + " " + filler)[:min_length],
                              (filler + " " + text)[-min_length:], text + pad, pad + text):
                if satisfies(pattern, candidate, min_length, max_length):
                    return candidate
    return None
