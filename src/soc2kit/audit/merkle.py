"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their verification.

Written by hand because the Python options are unmaintained or pull in a whole
transparency-log server; the algorithms are short, specified exactly in RFC 9162
section 2.1, and checked here against the RFC 6962 reference test vectors
(tests/vectors/rfc6962_merkle.json).

* leaf hash ``SHA-256(0x00 || data)``, interior node ``SHA-256(0x01 || left || right)``;
* a tree of ``n`` leaves splits at ``k``, the largest power of two below ``n``;
* proofs are built from *perfect* subtrees (``2**level`` leaves starting at a
  multiple of ``2**level``), which the sealer stores once, so building a proof
  costs O(log n) lookups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
NodeLookup = Callable[[int, int], bytes]  # (level, index) -> hash of a perfect subtree


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The compact range of a growing tree: one hash per perfect subtree, left to right.

    Appending a leaf merges equal-sized subtrees; ``completed`` receives every
    perfect subtree finished on the way (level >= 1), which the sealer stores.
    """

    __slots__ = ("hashes", "levels", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        levels = [bit for bit in range(size.bit_length() - 1, -1, -1) if size >> bit & 1]
        if len(levels) != len(hashes):
            raise ValueError("frontier does not match the tree size")
        self.size = size
        self.levels = levels
        self.hashes = list(hashes)

    def append(self, leaf: bytes, completed: list[tuple[int, int, bytes]] | None = None) -> None:
        index = self.size
        self.levels.append(0)
        self.hashes.append(leaf)
        while len(self.levels) > 1 and self.levels[-1] == self.levels[-2]:
            right = self.hashes.pop()
            level = self.levels.pop() + 1
            merged = node_hash(self.hashes[-1], right)
            self.hashes[-1] = merged
            self.levels[-1] = level
            if completed is not None:
                completed.append((level, index >> level, merged))
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        result = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            result = node_hash(left, result)
        return result

    def packed(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def unpack(cls, size: int, data: bytes) -> Frontier:
        return cls(size, [data[i : i + 32] for i in range(0, len(data), 32)])


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (for tests and small trees)."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def subtree_hash(start: int, end: int, node: NodeLookup) -> bytes:
    """MTH(D[start:end]) from stored perfect subtrees (``start`` aligned as RFC proofs need)."""
    n = end - start
    if n < 1:
        raise ValueError("empty subtree")
    if n & (n - 1) == 0 and start % n == 0:
        return node(n.bit_length() - 1, start // n)
    k = _split(n)
    return node_hash(subtree_hash(start, start + k, node), subtree_hash(start + k, end, node))


def inclusion_proof(index: int, size: int, node: NodeLookup) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 2.1.3.1)."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the tree")

    def path(m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*path(m, start, start + k), subtree_hash(start + k, end, node)]
        return [*path(m - k, start + k, end), subtree_hash(start, start + k, node)]

    return path(index, 0, size)


def consistency_proof(first: int, second: int, node: NodeLookup) -> list[bytes]:
    """PROOF(first, D[0:second]) (RFC 9162 2.1.4.1)."""
    if not 0 < first <= second:
        raise ValueError("consistency proofs need 0 < first <= second")

    def subproof(m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [subtree_hash(start, end, node)]
        k = _split(n)
        if m <= k:
            return [*subproof(m, start, start + k, complete), subtree_hash(start + k, end, node)]
        return [*subproof(m - k, start + k, end, False), subtree_hash(start, start + k, node)]

    return subproof(first, 0, second, True)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, result = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = node_hash(p, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and result == root


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> bool:
    """RFC 9162 2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
