"""JSON on the hot paths: orjson where it gives the standard library's answer, the standard
library wherever it might not.

orjson parses and serializes several times faster (measured in bench/run.py's profile). It
refuses a few inputs the standard library takes or handles differently: integers beyond 64
bits (which it reads as floats: those bodies are sent to the standard library), lone
surrogates, nesting past 1024 levels, NaN. Those are rare, so every refusal simply
falls back to the standard library, and callers keep their exact error handling and messages.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

import orjson

NOT_PARSED: Final = object()  # `fast_loads` could not decide: use the standard library

# orjson reads an integer beyond 64 bits as a float, silently (42 digits of an id would lose
# all but 17). A JSON text with a run of 19 ASCII digits anywhere (strings included: a cheap,
# conservative test) may hold one. Found by mapping every digit to "0" and looking for 19 of
# them: several times faster than a regular expression, which tries every position.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def may_hold_long_integer(text: bytes | str) -> bool:
    """Whether JSON `text` has a run of 19 digits: an integer orjson could misread, so it
    must be read with the standard library."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return len(data) >= len(_LONG_RUN) and _LONG_RUN in data.translate(_DIGITS_AS_ZERO)


def fast_loads(raw: bytes | str) -> Any:
    """The parsed value, or NOT_PARSED when orjson refuses `raw` (valid or not) or might
    answer differently from the standard library."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if may_hold_long_integer(data):  # orjson would read it as a float
        return NOT_PARSED
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return NOT_PARSED


class NotJson(ValueError):
    """Python's json accepts it; RFC 8259 (and so every store, client and upstream) does not."""


def strict_loads(raw: bytes | str) -> Any:
    """The standard library's parse, refusing what is not JSON: NaN, Infinity, and numbers no
    double can hold (1e999 would parse to Infinity and be written on as null). Raises
    ValueError (NotJson for those), RecursionError past the interpreter's depth."""
    return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)


def _reject_constant(name: str) -> Any:
    raise NotJson(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJson("a number is out of range (it is not a finite double)")
    return value


def dumps(value: Any) -> str:
    """Compact JSON, UTF-8 characters unescaped; raises TypeError/ValueError like
    `json.dumps(..., allow_nan=False)` for what cannot be JSON."""
    return dumps_bytes(value).decode()


def dumps_bytes(value: Any) -> bytes:
    """`dumps` as UTF-8 bytes (what goes on the wire, without a decode and re-encode)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: big ints, lone surrogates, unknown types, depth
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except RecursionError:
            # Nested past the interpreter's recursion limit: callers handle what cannot be JSON
            # as a ValueError (a -32603 answer), never as a crash of the request.
            raise ValueError("the value nests too deeply to be written as JSON") from None
        return text.encode("utf-8")  # lone surrogates fail here, not half-way through a write
