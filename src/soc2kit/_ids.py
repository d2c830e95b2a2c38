"""UUIDv7 identifiers (RFC 9562): time-ordered, so audit rows index well.

Hand-written because the standard library only gains ``uuid.uuid7`` in Python
3.14; we use it there. 48 bits of Unix milliseconds, then 74 random bits.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable

_stdlib_uuid7 = getattr(uuid, "uuid7", None)


def uuid7() -> uuid.UUID:
    """Return a new random UUIDv7."""
    if _stdlib_uuid7 is not None:  # pragma: no cover - Python 3.14+
        result: uuid.UUID = _stdlib_uuid7()
        return result
    return uuid.UUID(int=_uuid7_int())


class RandomPool:
    """``os.urandom`` drawn 4 KiB at a time, handed out in slices.

    ``os.urandom`` releases the GIL for its system call; with another thread
    busy (the audit writer, the sealer), getting it back costs up to the
    interpreter's switch interval, which made the random part of an event id
    the most expensive step of ``audit.record()`` (about 37 µs of 100 µs
    measured under load). Refilled after ``fork()``, so two processes never
    hand out the same bytes.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._buffer = b""
        self._pos = 0
        self._pid = os.getpid()

    def __call__(self, n: int) -> bytes:
        with self._lock:
            pid = os.getpid()
            if self._pos + n > len(self._buffer) or pid != self._pid:
                self._buffer = os.urandom(max(self._size, n))
                self._pos = 0
                self._pid = pid
            start = self._pos
            self._pos = start + n
            return self._buffer[start : start + n]


def uuid7_str(random: Callable[[int], bytes] = os.urandom) -> str:
    """``str(uuid7())`` without building a UUID object (it is on every request's path).

    Hot paths pass their own :class:`RandomPool` as ``random``.
    """
    h = f"{_uuid7_int(random):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _uuid7_int(random: Callable[[int], bytes] = os.urandom) -> int:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(random(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b (62 bits)
    return value
