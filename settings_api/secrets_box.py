"""Upstream secrets at rest (header values, URL credentials): encrypted with keys from
``MCPGW_SECRET_KEY``.

Crypto is the `cryptography` package's Fernet (AES-128-CBC + HMAC-SHA256, random IV,
authenticated): nothing here is hand-rolled. Each comma-separated secret in
``MCPGW_SECRET_KEY`` becomes a Fernet key through HKDF-SHA256; the first one encrypts, every
one decrypts (`MultiFernet`), which is how keys are rotated (docs/configuration.md).

What the store keeps in ``configs.upstream_headers`` (JSON text):

- ``{"v": 1, "fernet": {"<header name>": "<Fernet token of the value>", ...}}``: the names stay
  readable (the API and the audit log show them), each value is encrypted on its own;
- a plain object ``{"<header name>": "<value>", ...}``: a row written before encryption at
  rest. It is still read, and ``mcp-gateway rotate-secrets`` encrypts it. The two cannot be
  confused: a plain object's values are all strings, an envelope's ``v`` is a number.

What it keeps of an upstream URL with secrets in it (mcp_core/redaction.py: a password,
query values): ``configs.upstream_url`` holds the redacted form (what the API shows), and
``configs.upstream_url_sealed`` the Fernet token of the whole URL (what the clients connect
to). A URL without secrets is kept as it is, with no token; so is a URL stored before
encryption at rest, which still works as written and which ``mcp-gateway rotate-secrets``
encrypts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mcp_core.redaction import has_secrets, redact

ENVELOPE_VERSION = 1
MIN_KEY_CHARS = 32
# Domain separation: the same secret derives unrelated keys for any other purpose.
_HKDF_INFO = b"mcp-gateway/upstream-headers/fernet/v1"

Outcome = Literal["current", "encrypted", "rotated", "unreadable"]
# When a config's header values and URL fare differently, the config counts as the worst.
_OUTCOME_RANK: dict[Outcome, int] = {"current": 0, "rotated": 1, "encrypted": 2, "unreadable": 3}


class SecretKeyError(ValueError):
    """``MCPGW_SECRET_KEY`` is not a usable list of keys."""


@dataclass(frozen=True, slots=True)
class OpenedHeaders:
    """Header names and values read back from the store.

    `error` says why the values could not be decrypted; `values` then maps every name to ""
    (the names are still known, the values are not)."""

    values: dict[str, str] = field(repr=False)
    error: str | None = None
    plaintext: bool = False  # stored before encryption at rest


def parse_keys(setting: str) -> list[str]:
    """The keys of a comma-separated ``MCPGW_SECRET_KEY`` (the first encrypts)."""
    keys = [key.strip() for key in setting.split(",")]
    if not any(keys):
        raise SecretKeyError("no key given")
    if not all(keys):
        raise SecretKeyError("an entry of the comma-separated list is empty")
    short = [index + 1 for index, key in enumerate(keys) if len(key) < MIN_KEY_CHARS]
    if short:
        which = ", ".join(map(str, short))
        raise SecretKeyError(
            f"key {which} is shorter than {MIN_KEY_CHARS} characters "
            "(use e.g. 48 random bytes, URL-safe base64)"
        )
    return keys


def _fernet(secret: str) -> Fernet:
    # The secrets are long random strings (MIN_KEY_CHARS), so HKDF needs no salt of its own.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Encrypts with the first key of ``MCPGW_SECRET_KEY``, decrypts with any of them."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyError("no key given")
        fernets = [_fernet(key) for key in keys]
        self._primary = fernets[0]
        self._any = MultiFernet(fernets)
        self.key_count = len(fernets)

    @classmethod
    def from_setting(cls, setting: str) -> SecretBox:
        return cls(parse_keys(setting))

    def __repr__(self) -> str:  # never the keys
        return f"SecretBox(keys={self.key_count})"

    def encrypt(self, value: str) -> str:
        return self._primary.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plaintext; `InvalidToken` when no key opens it (or it was altered)."""
        return self._any.decrypt(token.encode("ascii")).decode("utf-8")

    def is_current(self, token: str) -> bool:
        """Whether the first key opens `token` (nothing to rotate)."""
        try:
            self._primary.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def rotate(self, token: str) -> str:
        """`token` re-encrypted with the first key; `InvalidToken` when no key opens it."""
        return self._any.rotate(token.encode("ascii")).decode("ascii")


# --- the stored form ------------------------------------------------------------------------


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def seal_headers(headers: Mapping[str, str], box: SecretBox | None) -> str:
    """The stored form of `headers`: every value encrypted with the box's first key.

    Without a box only an empty header set can be stored: values never go to disk in clear."""
    if box is None:
        if headers:
            raise RuntimeError(
                "the store has no SecretBox: refusing to store upstream header values unencrypted"
            )
        return "{}"
    return _dump(
        {
            "v": ENVELOPE_VERSION,
            "fernet": {name: box.encrypt(value) for name, value in headers.items()},
        }
    )


def _unreadable(names: Sequence[str], reason: str) -> OpenedHeaders:
    return OpenedHeaders(dict.fromkeys(names, ""), reason)


def _decode(stored: str) -> tuple[dict[str, Any], bool]:
    """(name → stored value, is it an envelope); ValueError when it is neither form."""
    document = json.loads(stored)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    version = document.get("v")
    if isinstance(version, int) and not isinstance(version, bool):
        if version != ENVELOPE_VERSION:
            raise ValueError(f"unknown envelope version {version}")
        tokens = document.get("fernet")
        if not isinstance(tokens, dict) or not all(isinstance(t, str) for t in tokens.values()):
            raise ValueError("malformed envelope")
        return tokens, True
    if not all(isinstance(v, str) for v in document.values()):
        raise ValueError("malformed header object")
    return document, False


def open_headers(stored: str, box: SecretBox | None) -> OpenedHeaders:
    """Names and values of a stored header set; never raises (see `OpenedHeaders.error`)."""
    try:
        entries, sealed = _decode(stored)
    except ValueError as exc:  # JSONDecodeError included
        return _unreadable([], f"the stored upstream headers are corrupt ({exc})")
    if not sealed:
        return OpenedHeaders(dict(entries), plaintext=True)
    if box is None:
        return _unreadable(
            list(entries), "no MCPGW_SECRET_KEY is configured to decrypt the upstream header values"
        )
    try:
        return OpenedHeaders({name: box.decrypt(token) for name, token in entries.items()})
    except (InvalidToken, UnicodeError):
        return _unreadable(
            list(entries),
            (
                "the upstream header values cannot be decrypted with MCPGW_SECRET_KEY (none of its "
                f"{box.key_count} key(s) is the one they were encrypted with)"
            ),
        )


def reseal_headers(stored: str, box: SecretBox) -> tuple[str | None, Outcome]:
    """`stored` re-encrypted with the box's first key: (new stored form or None, outcome).

    "current": already encrypted with the first key (None: nothing to write);
    "encrypted": was plaintext; "rotated": was encrypted with another key of the list;
    "unreadable": corrupt, or no key of the list opens it (None: left as it is)."""
    try:
        entries, sealed = _decode(stored)
    except ValueError:
        return None, "unreadable"
    if not sealed:
        return seal_headers(entries, box), "encrypted"
    if all(box.is_current(token) for token in entries.values()):
        return None, "current"
    try:
        rotated = {name: box.rotate(token) for name, token in entries.items()}
    except (InvalidToken, UnicodeError):
        return None, "unreadable"
    return _dump({"v": ENVELOPE_VERSION, "fernet": rotated}), "rotated"


def worst(first: Outcome, second: Outcome) -> Outcome:
    """The outcome a config counts as when its header values and its URL fared differently."""
    return first if _OUTCOME_RANK[first] >= _OUTCOME_RANK[second] else second


# --- the upstream URL -----------------------------------------------------------------------


def seal_url(url: str | None, box: SecretBox | None) -> tuple[str | None, str | None]:
    """(what ``configs.upstream_url`` holds, the sealed full URL or None) for `url`.

    Without a box only a URL without secrets can be stored: they never go to disk in clear."""
    if url is None or not has_secrets(url):
        return url, None
    if box is None:
        raise RuntimeError(
            "the store has no SecretBox: refusing to store the upstream URL's "
            "credentials unencrypted"
        )
    return redact(url), box.encrypt(url)


def open_url(
    shown: str | None, sealed: str | None, box: SecretBox | None
) -> tuple[str | None, str | None]:
    """(the URL to connect to, why it could not be decrypted); never raises.

    When it cannot be decrypted the redacted form comes back with the reason: shown, never
    used to connect (the caller refuses, as for unreadable header values)."""
    if sealed is None:
        return shown, None  # no secrets, or stored before encryption at rest: as written
    if box is None:
        return shown, (
            "no MCPGW_SECRET_KEY is configured to decrypt the upstream URL's credentials"
        )
    try:
        return box.decrypt(sealed), None
    except (InvalidToken, UnicodeError):
        return shown, (
            "the upstream URL's credentials cannot be decrypted with "
            f"MCPGW_SECRET_KEY (none of its {box.key_count} key(s) is the one they "
            "were encrypted with)"
        )


def reseal_url(
    shown: str | None, sealed: str | None, box: SecretBox
) -> tuple[tuple[str, str] | None, Outcome]:
    """The URL's columns re-encrypted with the box's first key: ((shown, sealed) or None,
    outcome), with the outcomes of `reseal_headers` ("encrypted": it was stored in clear)."""
    if sealed is None:
        if shown is None or not has_secrets(shown):
            return None, "current"
        return (redact(shown), box.encrypt(shown)), "encrypted"
    if box.is_current(sealed):
        return None, "current"
    try:
        return (shown or "", box.rotate(sealed)), "rotated"
    except (InvalidToken, UnicodeError):
        return None, "unreadable"
