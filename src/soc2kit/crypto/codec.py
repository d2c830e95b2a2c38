"""Typed plaintext: a one-byte type tag, then the value's canonical bytes. No pickle.

Decoding returns the same Python type that was encoded, so a column reads
back typed; an unknown tag is a DecryptionError (never an ``eval``).
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from soc2kit.crypto.errors import CryptoError, DecryptionError

T_STR, T_BYTES, T_INT, T_BOOL, T_DECIMAL, T_DATE, T_DATETIME, T_UUID, T_JSON, T_FLOAT = range(1, 11)


def encode_value(value: Any) -> bytes:
    """Tag and serialise ``value`` (str, bytes, int, bool, Decimal, date, aware datetime,
    UUID, float, or JSON-able dict/list)."""
    if isinstance(value, str):
        return bytes((T_STR,)) + value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes((T_BYTES,)) + bytes(value)
    if isinstance(value, bool):  # before int: bool is an int subclass
        return bytes((T_BOOL, 1 if value else 0))
    if isinstance(value, int):
        return bytes((T_INT,)) + str(value).encode("ascii")
    if isinstance(value, Decimal):
        return bytes((T_DECIMAL,)) + str(value).encode("ascii")
    if isinstance(value, float):
        return bytes((T_FLOAT,)) + repr(value).encode("ascii")
    if isinstance(value, datetime):  # before date: datetime is a date subclass
        if value.tzinfo is None:
            raise CryptoError("naive datetimes are refused: give a timezone")
        return bytes((T_DATETIME,)) + value.isoformat().encode("ascii")
    if isinstance(value, date):
        return bytes((T_DATE,)) + value.isoformat().encode("ascii")
    if isinstance(value, uuid.UUID):
        return bytes((T_UUID,)) + value.bytes
    if isinstance(value, dict | list):
        try:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            raise CryptoError("JSON value is not serialisable (or holds NaN/Infinity)") from None
        return bytes((T_JSON,)) + text.encode("utf-8")
    raise CryptoError(f"cannot encrypt values of type {type(value).__name__}")


def decode_value(data: bytes) -> Any:
    if not data:
        raise DecryptionError("empty plaintext")
    tag, body = data[0], data[1:]
    try:
        if tag == T_STR:
            return body.decode("utf-8", "surrogatepass")
        if tag == T_BYTES:
            return body
        if tag == T_BOOL and body in (b"\x00", b"\x01"):
            return body == b"\x01"
        if tag == T_INT:
            return int(body.decode("ascii"))
        if tag == T_DECIMAL:
            return Decimal(body.decode("ascii"))
        if tag == T_FLOAT:
            return float(body.decode("ascii"))
        if tag == T_DATETIME:
            return datetime.fromisoformat(body.decode("ascii"))
        if tag == T_DATE:
            return date.fromisoformat(body.decode("ascii"))
        if tag == T_UUID and len(body) == 16:
            return uuid.UUID(bytes=body)
        if tag == T_JSON:
            return json.loads(body.decode("utf-8"))
    except (ValueError, ArithmeticError):
        raise DecryptionError("plaintext does not decode as its declared type") from None
    raise DecryptionError("unknown plaintext type tag")
