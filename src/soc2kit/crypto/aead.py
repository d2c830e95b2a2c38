"""Ciphertext format v1: AES-256-GCM bound to where the value lives.

Binary layout (documented with test vectors in docs/encryption-format.md)::

    0      1   format byte 0xE1 (randomised AEAD v1)
    1      4   key id, uint32 big-endian (names the data key: no trial decryption)
    5      12  random nonce
    17     n   AES-256-GCM ciphertext of the typed plaintext (see codec.py)
    17+n   16  GCM tag

The associated data is rebuilt on every read and never stored: a
length-prefixed encoding of ``b"soc2kit:fle:v1"``, the 5 header bytes, and the
tenant, table, column and row identity of the value. A ciphertext copied to
another row, column, table or tenant therefore fails to authenticate. Each
(data key, tenant, table, column) gets its own HKDF-SHA256 subkey.
"""

from __future__ import annotations

import base64
import os
import struct
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from soc2kit.crypto.errors import DecryptionError, UnknownKeyError

FORMAT_V1 = 0xE1
TEXT_PREFIX = "e1:"
HEADER_LEN = 5
NONCE_LEN = 12
TAG_LEN = 16
MIN_LEN = HEADER_LEN + NONCE_LEN + 1 + TAG_LEN  # at least the one-byte type tag
_AAD_LABEL = b"soc2kit:fle:v1"
_ENC_INFO = b"soc2kit:fle:enc:v1"


def pae(*parts: bytes) -> bytes:
    """Pre-authentication encoding (as in PASETO): count, then each part length-prefixed.

    Unambiguous: ("ab", "c") and ("a", "bc") never encode the same.
    """
    out = [struct.pack(">Q", len(parts))]
    for part in parts:
        out.append(struct.pack(">Q", len(part)))
        out.append(part)
    return b"".join(out)


@dataclass(frozen=True, slots=True)
class FieldContext:
    """Where a value lives: its logical table and column, tenant and row identity.

    Logical names are stable aliases, so renaming a table or column in the
    schema does not break decryption. ``row`` is None only for models that
    opted out of row binding.
    """

    table: str
    column: str
    tenant: str | None = None
    row: str | None = None

    def scope(self) -> bytes:
        return pae(_b(self.tenant), self.table.encode(), self.column.encode())

    def aad(self, header: bytes) -> bytes:
        return _aad(header, _place(self), _b(self.row))


def _place(context: FieldContext) -> bytes:
    """The PAE parts of the AAD for tenant, table and column (without the count)."""
    return b"".join(
        struct.pack(">Q", len(p)) + p
        for p in (_b(context.tenant), context.table.encode(), context.column.encode())
    )


# PAE of the AAD's six parts, split so the per-place middle can be cached:
# count, label, header | tenant, table, column | row.
_AAD_HEAD = (
    struct.pack(">Q", 6)
    + struct.pack(">Q", len(_AAD_LABEL))
    + _AAD_LABEL
    + struct.pack(">Q", HEADER_LEN)
)


def _aad(header: bytes, place: bytes, row: bytes) -> bytes:
    return _AAD_HEAD + header + place + struct.pack(">Q", len(row)) + row


def _b(value: str | None) -> bytes:
    # None and "" must differ: a one-byte marker distinguishes them.
    return b"\x00" if value is None else b"\x01" + value.encode()


@dataclass(slots=True)
class DataKey:
    """A 256-bit data key and its id. Subkeys per (tenant, table, column) are cached.

    The material never appears in repr or errors.
    """

    key_id: int
    material: bytes = field(repr=False)
    _subkeys: OrderedDict[tuple[str | None, str, str], tuple[AESGCM, bytes]] = field(
        default_factory=OrderedDict, repr=False
    )

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFFFFFFFF:
            raise ValueError("key_id must fit in 32 bits")
        if len(self.material) != 32:
            raise ValueError("data keys are 32 bytes (AES-256)")

    def aead(self, context: FieldContext) -> AESGCM:
        return self._place(context)[0]

    def _place(self, context: FieldContext) -> tuple[AESGCM, bytes]:
        """The subkey's AEAD and the encoded place, cached per (tenant, table, column)."""
        key = (context.tenant, context.table, context.column)
        cached = self._subkeys.get(key)
        if cached is not None:
            return cached
        scope = context.scope()
        subkey = HKDF(hashes.SHA256(), 32, salt=None, info=_ENC_INFO + scope).derive(self.material)
        entry = (AESGCM(subkey), _place(context))
        self._subkeys[key] = entry
        if len(self._subkeys) > 4096:
            self._subkeys.popitem(last=False)
        return entry


def header(key_id: int) -> bytes:
    return struct.pack(">BI", FORMAT_V1, key_id)


def encrypt(key: DataKey, plaintext: bytes, context: FieldContext) -> bytes:
    """Encrypt typed plaintext (see codec.encode_value) for ``context``."""
    return _encrypt(key, plaintext, context, os.urandom(NONCE_LEN))


def _encrypt(key: DataKey, plaintext: bytes, context: FieldContext, nonce: bytes) -> bytes:
    head = struct.pack(">BI", FORMAT_V1, key.key_id)
    aead, place = key._place(context)
    return head + nonce + aead.encrypt(nonce, plaintext, _aad(head, place, _b(context.row)))


def key_id_of(blob: bytes) -> int:
    """The key id a stored value names (raises DecryptionError when malformed)."""
    if len(blob) < MIN_LEN or blob[0] != FORMAT_V1:
        raise DecryptionError("not a soc2kit v1 ciphertext")
    return int.from_bytes(blob[1:HEADER_LEN], "big")


def decrypt(keys: Mapping[int, DataKey], blob: bytes, context: FieldContext) -> bytes:
    """Decrypt ``blob`` for ``context`` with the key it names from ``keys``."""
    key_id = key_id_of(blob)
    key = keys.get(key_id)
    if key is None:
        raise UnknownKeyError(f"no data key with id {key_id:#010x}")
    head, nonce, body = blob[:HEADER_LEN], blob[HEADER_LEN : HEADER_LEN + NONCE_LEN], blob[17:]
    try:
        return bytes(key.aead(context).decrypt(nonce, body, context.aad(head)))
    except InvalidTag:
        raise DecryptionError("ciphertext failed authentication") from None


def decrypt_with_key(key: DataKey, blob: bytes, context: FieldContext) -> bytes:
    """Decrypt with a key already looked up by the id ``blob`` names."""
    if key_id_of(blob) != key.key_id:
        raise UnknownKeyError("the value names another data key")
    head, nonce, body = blob[:HEADER_LEN], blob[HEADER_LEN : HEADER_LEN + NONCE_LEN], blob[17:]
    aead, place = key._place(context)
    try:
        return bytes(aead.decrypt(nonce, body, _aad(head, place, _b(context.row))))
    except InvalidTag:
        raise DecryptionError("ciphertext failed authentication") from None


def seal_at(
    key: DataKey, plaintext: bytes, table: str, column: str, tenant: str | None, row: str | None
) -> bytes:
    """:func:`encrypt` for the ORM's hot path: no FieldContext unless the subkey is new."""
    entry = key._subkeys.get((tenant, table, column))
    if entry is None:
        entry = key._place(FieldContext(table, column, tenant, row))
    aead, place = entry
    head = struct.pack(">BI", FORMAT_V1, key.key_id)
    nonce = os.urandom(NONCE_LEN)
    return head + nonce + aead.encrypt(nonce, plaintext, _aad(head, place, _b(row)))


def open_at(
    key: DataKey, blob: bytes, table: str, column: str, tenant: str | None, row: str | None
) -> bytes:
    """:func:`decrypt_with_key` for the ORM's hot path (same checks, same errors)."""
    if len(blob) < MIN_LEN or blob[0] != FORMAT_V1:
        raise DecryptionError("not a soc2kit v1 ciphertext")
    if int.from_bytes(blob[1:HEADER_LEN], "big") != key.key_id:
        raise UnknownKeyError("the value names another data key")
    entry = key._subkeys.get((tenant, table, column))
    if entry is None:
        entry = key._place(FieldContext(table, column, tenant, row))
    aead, place = entry
    try:
        return bytes(
            aead.decrypt(blob[HEADER_LEN:17], blob[17:], _aad(blob[:HEADER_LEN], place, _b(row)))
        )
    except InvalidTag:
        raise DecryptionError("ciphertext failed authentication") from None


def to_text(blob: bytes) -> str:
    """The text form for string columns: ``e1:`` + unpadded base64url."""
    return TEXT_PREFIX + base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")


def from_text(text: str) -> bytes:
    if not text.startswith(TEXT_PREFIX):
        raise DecryptionError("not a soc2kit v1 text ciphertext")
    body = text[len(TEXT_PREFIX) :]
    if not body.isascii() or "=" in body:
        raise DecryptionError("malformed text ciphertext")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        raise DecryptionError("malformed text ciphertext") from None
