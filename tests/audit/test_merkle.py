"""RFC 9162 Merkle hashing and proofs against the RFC 6962 reference vectors, plus properties."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from soc2kit.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "rfc6962_merkle.json").read_text())
LEAVES = [leaf_hash(bytes.fromhex(h)) for h in VECTORS["leaves_hex"]]


def lookup_for(leaves: list[bytes]):  # type: ignore[no-untyped-def]
    """Perfect-subtree lookup built the way the sealer stores nodes."""
    nodes: dict[tuple[int, int], bytes] = {(0, i): leaf for i, leaf in enumerate(leaves)}
    frontier = Frontier()
    for leaf in leaves:
        done: list[tuple[int, int, bytes]] = []
        frontier.append(leaf, done)
        nodes.update({(level, index): h for level, index, h in done})
    return lambda level, index: nodes[(level, index)]


def test_roots_match_the_reference_for_every_size() -> None:
    assert EMPTY_ROOT.hex() == VECTORS["roots_hex"][0]
    for size in range(0, 9):
        assert root_of(LEAVES[:size]).hex() == VECTORS["roots_hex"][size]


def test_inclusion_proofs_match_the_reference() -> None:
    node = lookup_for(LEAVES)
    for case in VECTORS["inclusion"]:
        proof = inclusion_proof(case["index"], case["size"], node)
        assert [p.hex() for p in proof] == case["proof"]
        root = bytes.fromhex(VECTORS["roots_hex"][case["size"]])
        assert verify_inclusion(case["index"], case["size"], LEAVES[case["index"]], proof, root)
        assert not verify_inclusion(case["index"], case["size"], LEAVES[0][::-1], proof, root)


def test_consistency_proofs_match_the_reference() -> None:
    node = lookup_for(LEAVES)
    for case in VECTORS["consistency"]:
        first, second = case["first"], case["second"]
        proof = consistency_proof(first, second, node)
        assert [p.hex() for p in proof] == case["proof"]
        roots = VECTORS["roots_hex"]
        assert verify_consistency(
            first, second, proof, bytes.fromhex(roots[first]), bytes.fromhex(roots[second])
        )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70, unique=True), st.data())
def test_every_proof_verifies_and_any_change_fails(blobs: list[bytes], data: st.DataObject) -> None:
    leaves = [leaf_hash(b) for b in blobs]
    node = lookup_for(leaves)
    size = len(leaves)
    root = root_of(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, size, node)
    assert verify_inclusion(index, size, leaves[index], proof, root)
    forged = leaf_hash(blobs[index] + b"!")
    assert not verify_inclusion(index, size, forged, proof, root)
    if size > 1:
        assert not verify_inclusion((index + 1) % size, size, leaves[index], proof, root)
    first = data.draw(st.integers(1, size))
    first_root = root_of(leaves[:first])
    cproof = consistency_proof(first, size, node)
    assert verify_consistency(first, size, cproof, first_root, root)
    if first < size:
        # A rewritten history (one early leaf changed) is inconsistent with the old head.
        rewritten = [leaf_hash(b"x"), *leaves[1:]]
        assert not verify_consistency(
            first,
            size,
            consistency_proof(first, size, lookup_for(rewritten)),
            first_root,
            root_of(rewritten),
        ) or first_root == root_of(rewritten[:first])


def test_the_frontier_survives_packing() -> None:
    frontier = Frontier()
    for leaf in LEAVES[:7]:
        frontier.append(leaf)
    again = Frontier.unpack(7, frontier.packed())
    again.append(LEAVES[7])
    assert again.root().hex() == VECTORS["roots_hex"][8]
