"""API key format, checksum and hashing (docs/mcp-endpoints.md)."""

from __future__ import annotations

import hashlib
import re
import zlib

import pytest

from settings_api.keys import (
    KEY_LEN,
    KEY_PREFIX_LEN,
    PREFIX,
    SCOPE,
    InvalidKeyFormat,
    check_format,
    hash_key,
    mint,
    verify_hash,
)

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_SHAPE = re.compile(r"^mcpk_[0-9A-Za-z]{38}$")


def _base62_crc32(random_part: str) -> str:
    """The documented checksum, computed independently of the implementation."""
    number, digits = zlib.crc32(random_part.encode()), []
    for _ in range(6):
        number, rem = divmod(number, 62)
        digits.append(BASE62[rem])
    return "".join(reversed(digits))


def test_minted_key_has_the_documented_shape() -> None:
    key = mint()
    assert len(key.raw) == 43 == KEY_LEN
    assert key.raw.startswith("mcpk_") and PREFIX == "mcpk_"
    assert KEY_SHAPE.match(key.raw)
    random_part, check = key.raw[5:37], key.raw[37:]
    assert len(random_part) == 32 and len(check) == 6
    assert check == _base62_crc32(random_part)
    check_format(key.raw)
    assert SCOPE == "mcp:invoke"


def test_key_prefix_is_the_first_twelve_characters() -> None:
    key = mint()
    assert KEY_PREFIX_LEN == 12
    assert key.key_prefix == key.raw[:12]
    assert key.key_prefix.startswith("mcpk_") and len(key.key_prefix) == 12


def test_key_id_is_a_uuid_and_not_derived_from_the_secret() -> None:
    key = mint()
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", key.key_id
    )
    assert key.raw[5:] not in key.key_id


def test_hash_is_sha256_hex_of_the_raw_key() -> None:
    key = mint()
    expected = hashlib.sha256(key.raw.encode()).hexdigest()
    assert key.key_hash == hash_key(key.raw) == expected
    assert re.fullmatch(r"[0-9a-f]{64}", key.key_hash)
    assert key.raw not in key.key_hash


def test_verify_hash_accepts_the_key_and_rejects_any_other() -> None:
    key, other = mint(), mint()
    assert verify_hash(key.raw, key.key_hash)
    assert not verify_hash(other.raw, key.key_hash)
    assert not verify_hash(key.raw, other.key_hash)
    assert not verify_hash(key.raw, key.key_hash.upper())
    assert not verify_hash(key.raw, "")


def test_every_single_character_change_is_rejected_by_the_checksum_or_shape() -> None:
    raw = mint().raw
    for position in range(len(raw)):
        for replacement in {BASE62[(BASE62.find(raw[position]) + 1) % 62], "_", "-"}:
            if replacement == raw[position]:
                continue
            changed = raw[:position] + replacement + raw[position + 1 :]
            with pytest.raises(InvalidKeyFormat):
                check_format(changed)


def test_a_wrong_checksum_is_rejected_even_with_the_right_shape() -> None:
    raw = mint().raw
    bad_check = _base62_crc32(raw[5:37] + "x")
    assert bad_check != raw[37:]
    forged = raw[:37] + bad_check
    assert KEY_SHAPE.match(forged)
    with pytest.raises(InvalidKeyFormat, match="checksum"):
        check_format(forged)


def test_a_hand_built_key_with_a_valid_checksum_passes() -> None:
    random_part = "A" * 32
    check_format("mcpk_" + random_part + _base62_crc32(random_part))


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "mcpk_",
        "mcpk",
        "Bearer mcpk_" + "a" * 38,
        "MCPK_" + "a" * 38,
        "mcpx_" + "a" * 38,
        "mcpk_" + "a" * 37,
        "mcpk_" + "a" * 39,
        "mcpk_" + "a" * 37 + "!",
        "mcpk_" + "a" * 37 + " ",
        "mcpk_" + "é" * 38,
        " mcpk_" + "a" * 37,
    ],
)
def test_malformed_strings_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidKeyFormat):
        check_format(raw)


def test_transposed_characters_are_rejected() -> None:
    raw = mint().raw
    body = raw[5:37]
    swap = next(i for i in range(len(body) - 1) if body[i] != body[i + 1])
    swapped = body[:swap] + body[swap + 1] + body[swap] + body[swap + 2 :]
    with pytest.raises(InvalidKeyFormat):
        check_format("mcpk_" + swapped + raw[37:])


def test_many_minted_keys_are_unique_and_valid() -> None:
    keys = [mint() for _ in range(2000)]
    assert len({k.raw for k in keys}) == len(keys)
    assert len({k.key_hash for k in keys}) == len(keys)
    assert len({k.key_id for k in keys}) == len(keys)
    for key in keys:
        check_format(key.raw)
    # The random part uses the whole alphabet (not, say, only hex digits).
    assert set("".join(k.raw[5:37] for k in keys)) == set(BASE62)
