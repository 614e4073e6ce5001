"""The `format`s the simulator asserts and generates, checked with the standard library only.

jsonschema's own checkers depend on optional packages (and its catch-all `FormatChecker()` even
applies draft 3's `time`), so what passed would vary between machines; these do not.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from jsonschema import FormatChecker

from simulator.canonical import Seeded

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z", re.ASCII)
_TIME = re.compile(r"(\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))\Z", re.ASCII)
# WHATWG's e-mail address grammar (what browsers accept), local part at most 64 characters.
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z",
    re.ASCII,
)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`\x00-\x1f\x7f]*\Z", re.ASCII)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}\Z",
    re.ASCII,
)
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z", re.ASCII)


def is_date(value: str) -> bool:
    m = _DATE.match(value)
    if not m:
        return False
    try:
        date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return False
    return True


def is_time(value: str) -> bool:
    m = _TIME.match(value)
    if not m:
        return False
    hour, minute, second = int(m[1]), int(m[2]), int(m[3])
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second
        return False
    return m[6] is None or (int(m[6]) <= 23 and int(m[7]) <= 59)


def is_date_time(value: str) -> bool:
    if len(value) < 20 or value[10] not in "Tt":
        return False
    return is_date(value[:10]) and is_time(value[11:])


def is_email(value: str) -> bool:
    return _EMAIL.match(value) is not None


def is_uri(value: str) -> bool:
    return _URI.match(value) is not None and not _BAD_PERCENT.search(value)


def is_uuid(value: str) -> bool:
    return _UUID.match(value) is not None


def is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def is_ipv6(value: str) -> bool:
    if "%" in value:  # zone ids are not part of the textual address
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def is_hostname(value: str) -> bool:
    if not value or len(value) > 253:
        return False
    return all(_LABEL.match(label) for label in value.split("."))


CHECKS = {
    "date": is_date,
    "date-time": is_date_time,
    "time": is_time,
    "email": is_email,
    "uri": is_uri,
    "uuid": is_uuid,
    "ipv4": is_ipv4,
    "ipv6": is_ipv6,
    "hostname": is_hostname,
}


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    for name, check in CHECKS.items():

        def conforms(instance: Any, check: Any = check) -> bool:
            return not isinstance(instance, str) or check(instance)

        checker.checks(name)(conforms)
    return checker


FORMAT_CHECKER = _format_checker()
"""Asserts exactly the formats above; any other format is an annotation, as 2020-12 says."""


# ---- generation ----------------------------------------------------------------------------

_EPOCH = datetime(2023, 1, 1, tzinfo=UTC)
_SPAN_S = 4 * 365 * 86400  # 2023-01-01 .. end of 2026


def random_datetime(seeded: Seeded) -> datetime:
    return _EPOCH + timedelta(seconds=seeded.rng.randrange(_SPAN_S))


def gen_date(seeded: Seeded) -> str:
    return random_datetime(seeded).date().isoformat()


def gen_date_time(seeded: Seeded) -> str:
    return random_datetime(seeded).strftime("%Y-%m-%dT%H:%M:%SZ")


def gen_time(seeded: Seeded) -> str:
    rng = seeded.rng
    return f"{rng.randrange(8, 19):02d}:{rng.choice((0, 15, 30, 45)):02d}:00Z"


def gen_uuid(seeded: Seeded) -> str:
    return str(uuid.UUID(int=seeded.rng.getrandbits(128), version=4))


def gen_ipv4(seeded: Seeded) -> str:
    # The documentation ranges (RFC 5737): plausible, and nobody's real address.
    rng = seeded.rng
    return f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"


def gen_ipv6(seeded: Seeded) -> str:
    rng = seeded.rng
    groups = [
        "2001",
        "db8",
        *(f"{rng.getrandbits(16):x}" for _ in range(2)),
        "0",
        "0",
        f"{rng.getrandbits(16):x}",
        f"{rng.getrandbits(16):x}",
    ]
    return str(ipaddress.IPv6Address(":".join(groups)))
