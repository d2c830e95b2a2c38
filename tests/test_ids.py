"""UUIDv7 ids: layout, order, uniqueness, and a random pool that never repeats bytes."""

from __future__ import annotations

import os
import uuid

from soc2kit._ids import RandomPool, uuid7, uuid7_str


def test_uuid7_layout_and_order() -> None:
    pool = RandomPool(size=64)  # refilled every six ids: exercises the refill path
    ids = [uuid7_str(pool) for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        value = uuid.UUID(text)
        assert value.version == 7 and value.variant == uuid.RFC_4122
    prefixes = [i[:13] for i in ids]  # the 48-bit millisecond part never goes backwards
    assert prefixes == sorted(prefixes)
    assert uuid7().version == 7


def test_random_pool_hands_out_fresh_bytes_and_refills_after_fork() -> None:
    pool = RandomPool(size=32)
    chunks = [pool(10) for _ in range(50)]
    assert all(len(c) == 10 for c in chunks)
    assert len(set(chunks)) == len(chunks)
    assert len(pool(100)) == 100  # larger than the pool: drawn directly

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's buffered bytes
        os.write(write, pool(10))
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 10)
    os.close(read)
    os.close(write)
    assert child != pool(10)
