"""Ciphertext format v1: round trips, binding to place, tamper detection, test vectors."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from soc2kit.crypto import (
    BlindIndexKey,
    CryptoError,
    DataKey,
    DecryptionError,
    FieldContext,
    UnknownKeyError,
    blind_index,
    decode_value,
    decrypt,
    encode_value,
    encrypt,
    from_text,
    key_id_of,
    to_text,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "fle_v1.json").read_text())
KEY = DataKey(7, bytes(range(32)))
KEYS = {7: KEY}
CTX = FieldContext("customers", "email", "acme", "row-1")


def roundtrip(value: Any, ctx: FieldContext = CTX) -> Any:
    return decode_value(decrypt(KEYS, encrypt(KEY, encode_value(value), ctx), ctx))


values = st.one_of(
    st.text(),
    st.binary(),
    st.integers(),
    st.booleans(),
    st.none().map(lambda _: "x"),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.dates(),
    st.uuids(),
    st.datetimes(timezones=st.just(UTC)),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_decrypt_of_encrypt_is_identity_and_typed(value: Any) -> None:
    out = roundtrip(value)
    assert out == value and type(out) is type(value)


@pytest.mark.parametrize(
    "value", ["", "ünïcødé ✓ \U0001d518", "\x00nul", b"", 0, -(2**80), True, False]
)
def test_edge_values(value: Any) -> None:
    assert roundtrip(value) == value


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(CryptoError, match="naive"):
        encode_value(datetime(2026, 1, 1))
    aware = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert roundtrip(aware) == aware


def test_each_encryption_uses_a_fresh_nonce() -> None:
    a = encrypt(KEY, encode_value("same"), CTX)
    b = encrypt(KEY, encode_value("same"), CTX)
    assert a != b and a[5:17] != b[5:17]


@pytest.mark.parametrize(
    "moved",
    [
        FieldContext("customers", "email", "acme", "row-2"),  # another row
        FieldContext("customers", "phone", "acme", "row-1"),  # another column
        FieldContext("suppliers", "email", "acme", "row-1"),  # another table
        FieldContext("customers", "email", "globex", "row-1"),  # another tenant
        FieldContext("customers", "email", None, "row-1"),  # tenant dropped
        FieldContext("customers", "email", "", "row-1"),  # "" is not None
        FieldContext("customers", "email", "acme", None),  # row binding dropped
    ],
)
def test_a_ciphertext_moved_elsewhere_fails(moved: FieldContext) -> None:
    blob = encrypt(KEY, encode_value("ada@example.com"), CTX)
    with pytest.raises(DecryptionError):
        decrypt(KEYS, blob, moved)


def test_every_flipped_bit_is_detected() -> None:
    blob = encrypt(KEY, encode_value("ada@example.com"), CTX)
    for i in range(len(blob) * 8):
        tampered = bytearray(blob)
        tampered[i // 8] ^= 1 << (i % 8)
        with pytest.raises(DecryptionError):
            decrypt({**KEYS, int.from_bytes(tampered[1:5], "big"): KEY}, bytes(tampered), CTX)


def test_truncated_and_foreign_values_are_errors() -> None:
    blob = encrypt(KEY, encode_value("x"), CTX)
    for bad in (
        b"",
        blob[:20],
        blob[:-1],
        b"\xd1" + blob[1:],
        b"plain text value here!!!!!!!!!!!!!",
    ):
        with pytest.raises(DecryptionError):
            decrypt(KEYS, bad, CTX)


def test_unknown_key_id_is_named_without_trial_decryption() -> None:
    blob = encrypt(DataKey(0xDEADBEEF, bytes(32)), encode_value("x"), CTX)
    assert key_id_of(blob) == 0xDEADBEEF
    with pytest.raises(UnknownKeyError, match="0xdeadbeef"):
        decrypt(KEYS, blob, CTX)


def test_errors_and_reprs_never_hold_secrets() -> None:
    secret = "ada@example.com"
    blob = encrypt(KEY, encode_value(secret), CTX)
    try:
        decrypt(KEYS, blob, FieldContext("x", "y"))
    except DecryptionError as exc:
        assert secret not in str(exc) and blob.hex() not in str(exc)
    assert KEY.material.hex() not in repr(KEY) and str(list(KEY.material)) not in repr(KEY)


def test_text_form_round_trips_and_rejects_garbage() -> None:
    blob = encrypt(KEY, encode_value("x"), CTX)
    text = to_text(blob)
    assert text.startswith("e1:") and "=" not in text
    assert from_text(text) == blob
    for bad in ("x1:abc", "e1:ab=c", "e1:é"):
        with pytest.raises(DecryptionError):
            from_text(bad)


def test_unknown_type_tag_is_an_error() -> None:
    with pytest.raises(DecryptionError):
        decode_value(b"\x63abc")
    with pytest.raises(CryptoError):
        encode_value(object())


def test_keys_are_validated() -> None:
    with pytest.raises(ValueError):
        DataKey(1, b"short")
    with pytest.raises(ValueError):
        DataKey(2**32, bytes(32))


# Test vectors: checked against an independent reference written from the spec
# (docs/encryption-format.md) with raw primitives, as another language would.


def _pae(*parts: bytes) -> bytes:
    return struct.pack(">Q", len(parts)) + b"".join(struct.pack(">Q", len(p)) + p for p in parts)


def _opt(value: str | None) -> bytes:
    return b"\x00" if value is None else b"\x01" + value.encode()


def _scope(c: dict[str, Any]) -> bytes:
    return _pae(_opt(c["tenant"]), c["table"].encode(), c["column"].encode())


@pytest.mark.parametrize("vector", VECTORS["aead"], ids=lambda v: v["name"])
def test_aead_vectors_match_an_independent_reference(vector: dict[str, Any]) -> None:
    c = vector["context"]
    key = bytes.fromhex(vector["key_hex"])
    nonce = bytes.fromhex(vector["nonce_hex"])
    header = bytes([0xE1]) + vector["key_id"].to_bytes(4, "big")
    subkey = HKDF(hashes.SHA256(), 32, None, b"soc2kit:fle:enc:v1" + _scope(c)).derive(key)
    aad = _pae(
        b"soc2kit:fle:v1",
        header,
        _opt(c["tenant"]),
        c["table"].encode(),
        c["column"].encode(),
        _opt(c["row"]),
    )
    expected = (
        header + nonce + AESGCM(subkey).encrypt(nonce, bytes.fromhex(vector["plaintext_hex"]), aad)
    )
    assert expected.hex() == vector["ciphertext_hex"]
    ctx = FieldContext(c["table"], c["column"], c["tenant"], c["row"])
    data_key = DataKey(vector["key_id"], key)
    assert (
        decrypt({data_key.key_id: data_key}, from_text(vector["text"]), ctx).hex()
        == (vector["plaintext_hex"])
    )


@pytest.mark.parametrize("vector", VECTORS["blind_index"], ids=lambda v: v["name"])
def test_blind_index_vectors_match_an_independent_reference(vector: dict[str, Any]) -> None:
    c = vector["context"]
    root = bytes.fromhex(vector["key_hex"])
    info = b"soc2kit:fle:bidx:v1" + _pae(_scope(c), bytes([vector["version"]]))
    k = HKDF(hashes.SHA256(), 32, None, info).derive(root)
    import unicodedata

    normalized = unicodedata.normalize("NFKC", vector["value"]).casefold()
    mac = hmac.new(k, normalized.encode(), hashlib.sha256).digest()[: vector["length"]]
    assert (bytes([vector["version"]]) + mac).hex() == vector["index_hex"]
    ours = blind_index(
        BlindIndexKey(vector["version"], root),
        vector["value"],
        FieldContext(c["table"], c["column"], c["tenant"]),
        "casefold",
    )
    assert ours.hex() == vector["index_hex"]


def test_blind_index_keys_are_separate_per_column_tenant_and_version() -> None:
    k1 = BlindIndexKey(1, bytes(range(32)))
    k2 = BlindIndexKey(2, bytes(range(32)))
    base = FieldContext("customers", "email", "acme")
    idx = blind_index(k1, "a@b.com", base)
    assert idx == blind_index(k1, "a@b.com", FieldContext("customers", "email", "acme", "row9"))
    for other in (
        FieldContext("customers", "phone", "acme"),
        FieldContext("customers", "email", "globex"),
    ):
        assert blind_index(k1, "a@b.com", other) != idx
    assert blind_index(k2, "a@b.com", base)[1:] != idx[1:]
    assert blind_index(k1, "A@B.COM ", base, "casefold_strip") == blind_index(
        k1, "a@b.com", base, "casefold_strip"
    )
    # The encryption subkey branch never equals the index branch.
    assert KEY.aead(base) is not None and k1.key_for(base) != HKDF(
        hashes.SHA256(), 32, None, b"soc2kit:fle:enc:v1" + base.scope()
    ).derive(k1.material)


def test_uuid_rows_as_context() -> None:
    ctx = FieldContext("t", "c", None, str(uuid.uuid4()))
    assert roundtrip(Decimal("12.50"), ctx) == Decimal("12.50")
    assert roundtrip(date(2000, 1, 1), ctx) == date(2000, 1, 1)


def test_the_orm_fast_path_matches_the_reference_functions() -> None:
    from soc2kit.crypto.aead import open_at, seal_at

    key = DataKey(7, bytes(range(32)))
    ctx = FieldContext("customers", "email", "acme", "row-1")
    blob = seal_at(key, b"\x01hello", "customers", "email", "acme", "row-1")
    assert decrypt({7: key}, blob, ctx) == b"\x01hello"
    assert open_at(key, encrypt(key, b"\x01hi", ctx), "customers", "email", "acme", "row-1") == (
        b"\x01hi"
    )
    for place in (
        ("customers", "email", "acme", "row-2"),
        ("customers", "name", "acme", "row-1"),
        ("customers", "email", None, "row-1"),
        ("people", "email", "acme", "row-1"),
    ):
        with pytest.raises(DecryptionError):
            open_at(key, blob, *place)
