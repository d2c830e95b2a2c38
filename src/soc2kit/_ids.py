"""UUIDv7 identifiers (RFC 9562): time-ordered, so audit rows index well.

Hand-written because the standard library only gains ``uuid.uuid7`` in Python
3.14; we use it there. 48 bits of Unix milliseconds, then 74 random bits.
"""

from __future__ import annotations

import os
import time
import uuid

_stdlib_uuid7 = getattr(uuid, "uuid7", None)


def uuid7() -> uuid.UUID:
    """Return a new random UUIDv7."""
    if _stdlib_uuid7 is not None:  # pragma: no cover - Python 3.14+
        result: uuid.UUID = _stdlib_uuid7()
        return result
    return uuid.UUID(int=_uuid7_int())


def uuid7_str() -> str:
    """``str(uuid7())`` without building a UUID object (it is on every request's path)."""
    h = f"{_uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _uuid7_int() -> int:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b (62 bits)
    return value
