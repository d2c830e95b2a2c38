"""Tampering with the sealed audit log the way a database administrator could.

Every helper works on SQLite and PostgreSQL and goes straight to the tables:
nothing here goes through soc2kit's own code paths except the Merkle helpers.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

import soc2kit
from soc2kit.audit.checkpoints import NoteVerifier, Signer
from soc2kit.audit.events import canonical_json
from soc2kit.audit.merkle import Frontier, leaf_hash
from soc2kit.audit.verify import VerifyReport

EVENTS = "soc2kit_audit_events"
TREE = "soc2kit_audit_tree"
CHECKPOINTS = "soc2kit_audit_checkpoints"
STATE = "soc2kit_audit_state"
INBOX = "soc2kit_audit_inbox"
APPEND_ONLY = (EVENTS, TREE, CHECKPOINTS)


# building a log ---------------------------------------------------------------------------


def new_kit(make_settings: Callable[..., soc2kit.Settings], **overrides: Any) -> soc2kit.Kit:
    return soc2kit.install(FastAPI(), make_settings(**overrides))


def record_batches(kit: soc2kit.Kit, *batches: int) -> list[str]:
    """Record ``batches[i]`` events then flush (one checkpoint per batch); the event ids."""
    ids: list[str] = []
    for size in batches:
        for _ in range(size):
            event = kit.audit.record("t.e", action="x", outcome="success", n=len(ids))
            ids.append(event.event_id)
        kit.audit.flush()
    return ids


def verifier_of(kit: soc2kit.Kit) -> NoteVerifier:
    assert kit.audit.sealer is not None
    return kit.audit.sealer.signer.verifier()


def seed_byte_key(byte: int, name: str = "auditor") -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(bytes([byte]) * 32))


def key_whose_base64_has(plus: bool, skip: int = 0) -> tuple[int, Signer]:
    """A fixed key (and its seed byte) whose verifier key's base64 does or does not hold '+'.

    Half of all Ed25519 keys have a '+' there, which from_vkey refuses (a bug
    test_sealer.py shows); tests that round-trip a vkey pick one without.
    """
    for byte in range(256):
        signer = seed_byte_key(byte)
        if ("+" in signer.vkey.split("+", 2)[2]) is plus:
            if skip == 0:
                return byte, signer
            skip -= 1
    raise AssertionError("no such key")


# the append-only triggers -----------------------------------------------------------------


def allow_tampering(engine: sa.Engine) -> None:
    """Get past the append-only triggers as the tables' owner / a DBA would."""
    with engine.begin() as conn:
        for table in APPEND_ONLY:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            else:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_update")
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_delete")


# reading ------------------------------------------------------------------------------------


def events(engine: sa.Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT seq, event FROM {EVENTS} ORDER BY seq")).all()
    return [(int(seq), text) for seq, text in rows]


def event_text(engine: sa.Engine, seq: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.text(f"SELECT event FROM {EVENTS} WHERE seq = :s"),
                {"s": seq},
            ).scalar_one()
        )


def leaf(engine: sa.Engine, index: int) -> bytes:
    with engine.connect() as conn:
        return bytes(
            conn.execute(
                sa.text(f"SELECT hash FROM {TREE} WHERE level = 0 AND idx = :i"),
                {"i": index},
            ).scalar_one()
        )


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def checkpoint_rows(engine: sa.Engine) -> list[tuple[int, int, str]]:
    """(id, size, note) of every checkpoint in the database, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, size, note FROM {CHECKPOINTS} ORDER BY id")).all()
    return [(int(i), int(s), str(n)) for i, s, n in rows]


@dataclass(frozen=True)
class State:
    size: int
    root: bytes
    frontier: bytes


def state(engine: sa.Engine) -> State:
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT size, root, frontier FROM {STATE} WHERE id = 1")).one()
    return State(int(row.size), bytes(row.root), bytes(row.frontier))


# tampering ------------------------------------------------------------------------------------


def set_event_text(engine: sa.Engine, seq: int, text: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {EVENTS} SET event = :e WHERE seq = :s"),
            {"e": text, "s": seq},
        )


def change_field(text: str, **changes: Any) -> str:
    """The event's canonical JSON with some fields changed (a plausible edit)."""
    data = json.loads(text)
    data.update(changes)
    changed = canonical_json(data)
    assert changed != text
    return changed


def modify_event(engine: sa.Engine, seq: int) -> None:
    set_event_text(engine, seq, change_field(event_text(engine, seq), outcome="failure"))


def delete_event(engine: sa.Engine, seq: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {EVENTS} WHERE seq = :s"), {"s": seq})


def set_leaf(engine: sa.Engine, index: int, value: bytes, level: int = 0) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {TREE} SET hash = :h WHERE level = :l AND idx = :i"),
            {"h": value, "l": level, "i": index},
        )


def swap_events(engine: sa.Engine, a: int, b: int) -> None:
    """Swap the event texts of seq a and b, and their leaf hashes (self-consistent leaves)."""
    text_a, text_b = event_text(engine, a), event_text(engine, b)
    leaf_a, leaf_b = leaf(engine, a - 1), leaf(engine, b - 1)
    assert leaf_a == leaf_hash(text_a.encode()) and leaf_b == leaf_hash(text_b.encode())
    set_event_text(engine, a, text_b)
    set_event_text(engine, b, text_a)
    set_leaf(engine, a - 1, leaf_b)
    set_leaf(engine, b - 1, leaf_a)


def forge_event(engine: sa.Engine, *, move_state: bool = False) -> int:
    """Append a forged event after the last one, with a correct leaf; returns its seq.

    With ``move_state`` the tree nodes it completes and the tree state move too
    (what the sealer would have written): the forgery is then self-consistent.
    """
    with engine.begin() as conn:
        last = (
            conn.execute(sa.text(f"SELECT * FROM {EVENTS} ORDER BY seq DESC LIMIT 1"))
            .mappings()
            .one()
        )
        seq = int(last["seq"]) + 1
        event_id = str(uuid.uuid4())
        text = change_field(last["event"], event_id=event_id, action="forged")
        row = dict(last)
        row.update(seq=seq, event_id=event_id, action="forged", event=text)
        columns = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        conn.execute(sa.text(f"INSERT INTO {EVENTS} ({columns}) VALUES ({marks})"), row)
        value = leaf_hash(text.encode("utf-8"))
        nodes: list[tuple[int, int, bytes]] = [(0, seq - 1, value)]
        st = conn.execute(sa.text(f"SELECT size, frontier FROM {STATE} WHERE id = 1")).one()
        frontier = Frontier.unpack(int(st.size), bytes(st.frontier))
        frontier.append(value, nodes if move_state else None)
        for level, idx, digest in nodes:
            conn.execute(
                sa.text(f"INSERT INTO {TREE} (level, idx, hash) VALUES (:l, :i, :h)"),
                {"l": level, "i": idx, "h": digest},
            )
        if move_state:
            _write_state(conn, frontier)
    return seq


def truncate_tail(engine: sa.Engine, new_size: int) -> None:
    """Drop every event after ``new_size``, the tree nodes and DB checkpoints covering them,
    and put the tree state back to what it was at ``new_size`` (a consistent shorter log)."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {EVENTS} WHERE seq > :n"), {"n": new_size})
        doomed = [
            {"l": int(level), "i": int(idx)}
            for level, idx in conn.execute(sa.text(f"SELECT level, idx FROM {TREE}"))
            if (int(idx) + 1) << int(level) > new_size
        ]
        if doomed:
            conn.execute(
                sa.text(f"DELETE FROM {TREE} WHERE level = :l AND idx = :i"),
                doomed,
            )
        conn.execute(sa.text(f"DELETE FROM {CHECKPOINTS} WHERE size > :n"), {"n": new_size})
        frontier = Frontier()
        for (value,) in conn.execute(
            sa.text(f"SELECT hash FROM {TREE} WHERE level = 0 ORDER BY idx")
        ):
            frontier.append(bytes(value))
        assert frontier.size == new_size
        _write_state(conn, frontier)


def delete_checkpoints_above(engine: sa.Engine, size: int) -> int:
    with engine.begin() as conn:
        return conn.execute(
            sa.text(f"DELETE FROM {CHECKPOINTS} WHERE size > :n"),
            {"n": size},
        ).rowcount


def set_checkpoint_note(engine: sa.Engine, checkpoint_id: int, note: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {CHECKPOINTS} SET note = :n WHERE id = :i"),
            {"n": note, "i": checkpoint_id},
        )


def flip_signature_byte(note: str) -> str:
    """The note with one byte of its Ed25519 signature flipped (key hash intact)."""
    body, _, signature_line = note.partition("\n\n")
    dash, name, blob = signature_line.rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[4 + 10] ^= 0x01  # 4-byte key hash, then the signature
    return f"{body}\n\n{dash} {name} {base64.b64encode(bytes(raw)).decode()}\n"


def _write_state(conn: sa.Connection, frontier: Frontier) -> None:
    conn.execute(
        sa.text(
            f"UPDATE {STATE} SET size = :s, root = :r, frontier = :f, updated_at = :u WHERE id = 1"
        ).bindparams(sa.bindparam("u", type_=sa.DateTime(timezone=True))),
        {
            "s": frontier.size,
            "r": frontier.root(),
            "f": frontier.packed(),
            "u": datetime.now(UTC),
        },
    )


# asserting ------------------------------------------------------------------------------------


def assert_fails_at(report: VerifyReport, seq: int | None, *words: str) -> None:
    assert report.ok is False, report
    assert report.status == "fail", report
    assert report.exit_code == 1, report
    if seq is not None:
        assert report.first_failure == seq, report
    for word in words:
        assert word in (report.reason or "").lower(), report
