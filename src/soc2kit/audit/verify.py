"""``soc2kit audit verify``: recompute the sealed log and say whether it still holds.

Checks, in order: checkpoint signatures; the anchor store against the database
(an anchored checkpoint the database lacks, or beyond its size, is truncation
or a rolled-back database); every event's leaf hash and sequence continuity;
the tree root at every checkpoint; the tree state; the freshness of the latest
checkpoint; the unsealed backlog. The result names the first failing ``seq``.

Exit codes (CLI): 0 everything holds, 1 integrity failure, 2 incomplete or stale.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from soc2kit.audit.checkpoints import Anchor, Checkpoint, CheckpointError, NoteVerifier
from soc2kit.audit.merkle import Frontier, inclusion_proof, leaf_hash, verify_inclusion
from soc2kit.db.schema import audit_checkpoints, audit_events, audit_inbox, audit_state, audit_tree

Status = Literal["pass", "fail", "incomplete"]


@dataclass(slots=True)
class Check:
    name: str
    status: Status
    detail: str


@dataclass(slots=True)
class VerifyReport:
    """``ok`` only when every check passed; ``first_failure`` is the first bad ``seq``."""

    ok: bool
    checked: int
    first_failure: int | None
    reason: str | None
    status: Status
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "fail": 1, "incomplete": 2}[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "checked": self.checked,
            "first_failure": self.first_failure,
            "reason": self.reason,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
        }


class _Failure(Exception):
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


def verify_log(
    engine: Engine,
    verifier: NoteVerifier,
    *,
    origin: str,
    anchor: Anchor | None = None,
    max_checkpoint_age: float = 900.0,
    max_backlog_age: float = 60.0,
) -> VerifyReport:
    """Recompute the sealed log; see the module docstring for what is checked.

    Safe while a sealer runs: the tree state is read first and everything is
    checked up to its size (rows are only ever added beyond it); the state is
    read again at the end, and any event beyond *that* was not sealed.
    """
    checks: list[Check] = []
    failures: list[_Failure] = []
    incomplete: list[str] = []

    def fail(seq: int, reason: str) -> None:
        failures.append(_Failure(seq, reason))

    # The anchor store first: whatever the database shows afterwards must cover it.
    anchored: list[Checkpoint] = []
    if anchor is not None:
        for note in anchor.notes():
            try:
                cp = verifier.verify(note)
            except CheckpointError as exc:
                fail(_note_size(note), f"anchored checkpoint refused: {exc}")
                continue
            if cp.origin != origin:
                fail(cp.size, f"anchored checkpoint is for another log ({cp.origin!r})")
                continue
            anchored.append(cp)

    with engine.connect() as conn:
        state = conn.execute(
            sa.select(audit_state.c.size, audit_state.c.root, audit_state.c.note).where(
                audit_state.c.id == 1
            )
        ).first()
        if state is None:
            fail(1, "the tree state row is missing")
            size = 0
        else:
            size = int(state.size)
            if size and state.note is None:
                fail(1, "the tree state carries no signature")
            elif size:
                try:
                    signed = verifier.verify(state.note)
                except CheckpointError as exc:
                    fail(size, f"the tree state signature is refused: {exc}")
                else:
                    if signed.origin != origin:
                        fail(size, f"the tree state is signed for another log ({signed.origin!r})")
                    elif signed.size > size:
                        fail(
                            size + 1,
                            f"tail truncation: the tree state was signed at {signed.size} "
                            f"events but the database holds {size}",
                        )
                    elif signed.size < size:
                        fail(
                            signed.size + 1,
                            f"seq {signed.size + 1} onwards is not covered by the signed tree "
                            "state (appended without the signing key)",
                        )
                    elif signed.root != bytes(state.root):
                        fail(size, "the tree state's root does not match its signature")

        # Checkpoints in the database: signature, origin, sizes never going backwards.
        db_checkpoints: list[Checkpoint] = []
        refused = 0
        for row in conn.execute(
            sa.select(audit_checkpoints.c.size, audit_checkpoints.c.note).order_by(
                audit_checkpoints.c.id
            )
        ):
            try:
                cp = verifier.verify(row.note)
            except CheckpointError as exc:
                refused += 1
                fail(int(row.size), f"checkpoint at size {row.size}: {exc}")
                continue
            if cp.origin != origin:
                fail(cp.size, f"checkpoint at size {cp.size} is for another log ({cp.origin!r})")
                continue
            if cp.size != int(row.size):
                fail(cp.size, f"checkpoint row says size {row.size}, its signed note {cp.size}")
                continue
            if db_checkpoints and cp.size < db_checkpoints[-1].size:
                previous = db_checkpoints[-1].size
                fail(cp.size, f"checkpoint sizes go backwards ({previous} -> {cp.size})")
            db_checkpoints.append(cp)
        checks.append(
            Check(
                "signatures",
                "fail" if refused else "pass",
                f"{len(db_checkpoints)} checkpoints and the tree state verified, {refused} refused",
            )
        )

        # Every event up to the state's size: leaf, continuity, every interior node, roots.
        roots: dict[int, list[Checkpoint]] = {}
        for cp in (*db_checkpoints, *anchored):
            if 0 < cp.size <= size:
                roots.setdefault(cp.size, []).append(cp)
        if state is not None and size:
            roots.setdefault(size, [])
        frontier = Frontier()
        nodes = _interior_nodes(conn, size)
        stored_node = next(nodes, None)
        expected = 1
        for seq, text, stored_leaf in _events_with_leaves(conn, size):
            if seq != expected:
                fail(expected, f"seq {expected} is missing (next event is seq {seq})")
                break
            leaf = leaf_hash(text.encode("utf-8"))
            if stored_leaf is None:
                fail(seq, f"seq {seq} has no sealed leaf in the tree")
                break
            if bytes(stored_leaf) != leaf:
                fail(seq, f"seq {seq}: the event does not match its sealed leaf hash")
                break
            completed: list[tuple[int, int, bytes]] = []
            frontier.append(leaf, completed)
            for level, index, digest in completed:
                if stored_node is None or stored_node[:2] != (level, index):
                    fail(seq, f"seq {seq}: tree node ({level}, {index}) is missing")
                    break
                if stored_node[2] != digest:
                    fail(
                        seq,
                        f"seq {seq}: tree node ({level}, {index}) does not match the events "
                        "(events were changed, reordered or forged)",
                    )
                    break
                stored_node = next(nodes, None)
            if failures:
                break
            for cp in roots.get(frontier.size, ()):
                if cp.root != frontier.root():
                    fail(seq, f"the root at checkpoint size {cp.size} does not match the events")
            if failures:
                break
            expected += 1
        if not failures and frontier.size < size:
            fail(frontier.size + 1, f"seq {frontier.size + 1} is missing (the tree holds {size})")
        if not failures and state is not None and size and bytes(state.root) != frontier.root():
            fail(size, "the tree state's root does not match the events")
        checked = frontier.size

        # After the scan: anything beyond the state as it is *now* was never sealed.
        end = conn.execute(
            sa.select(audit_state.c.size).where(audit_state.c.id == 1)
        ).scalar_one_or_none()
        end_size = int(end) if end is not None else size
        beyond = conn.execute(
            sa.select(sa.func.min(audit_events.c.seq)).where(audit_events.c.seq > end_size)
        ).scalar()
        if beyond is not None and not failures:
            fail(int(beyond), f"seq {beyond} is not covered by the signed tree state (forged)")
        checks.append(
            Check(
                "leaves",
                "fail" if failures else "pass",
                failures[0].reason
                if failures
                else f"{checked} events and every tree node recomputed, sequence contiguous",
            )
        )

        # Checkpoints beyond the log: truncation, or a database rolled back to a copy.
        highest = max((cp.size for cp in (*db_checkpoints, *anchored)), default=0)
        if highest > end_size:
            fail(
                end_size + 1,
                f"tail truncation: a signed checkpoint covers {highest} events but the "
                f"database holds {end_size}",
            )
        in_db = {(cp.size, cp.root) for cp in db_checkpoints}
        missing = sorted(cp.size for cp in anchored if (cp.size, cp.root) not in in_db)
        if missing:
            fail(
                missing[0], f"anchored checkpoint at size {missing[0]} is missing from the database"
            )
        if anchor is not None:
            in_anchor = {(cp.size, cp.root) for cp in anchored}
            unanchored = [cp.size for cp in db_checkpoints if (cp.size, cp.root) not in in_anchor]
            if unanchored:
                incomplete.append(f"{len(unanchored)} checkpoints were never anchored")
            checks.append(
                Check(
                    "anchors",
                    "fail" if missing else ("incomplete" if unanchored else "pass"),
                    f"{len(anchored)} anchored checkpoints, {len(missing)} missing from the "
                    f"database, {len(unanchored)} not anchored",
                )
            )
        else:
            incomplete.append("no anchor store: truncation of the newest events is not checked")
            checks.append(Check("anchors", "incomplete", "no anchor store given"))

        # Freshness and backlog.
        latest = max(db_checkpoints, key=lambda c: (c.size, c.timestamp), default=None)
        if latest is None:
            if size:
                incomplete.append("no checkpoint has been signed yet")
            checks.append(Check("freshness", "incomplete" if size else "pass", "no checkpoint"))
        else:
            age = time.time() - latest.timestamp
            stale = age > max_checkpoint_age
            if stale:
                incomplete.append(f"latest checkpoint is {age:.0f}s old")
            checks.append(
                Check(
                    "freshness",
                    "incomplete" if stale else "pass",
                    f"latest checkpoint size {latest.size}, {age:.0f}s old; "
                    f"{max(end_size - latest.size, 0)} events sealed after it",
                )
            )
        backlog, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(audit_inbox.c.occurred_at))
        ).one()
        lagging = False
        detail = "empty"
        if backlog:
            oldest_at = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age = (datetime.now(UTC) - oldest_at).total_seconds()
            lagging = age > max_backlog_age
            if lagging:
                incomplete.append(f"{backlog} events unsealed, oldest {age:.0f}s")
            detail = f"{backlog} events waiting, oldest {age:.1f}s"
        checks.append(Check("backlog", "incomplete" if lagging else "pass", detail))

    if failures:
        first = min(failures, key=lambda f: f.seq if f.seq > 0 else 1 << 62)
        return VerifyReport(False, checked, first.seq or None, first.reason, "fail", checks)
    if incomplete:
        return VerifyReport(False, checked, None, "; ".join(incomplete), "incomplete", checks)
    return VerifyReport(True, checked, None, None, "pass", checks)


def _note_size(note: str) -> int:
    try:
        return max(int(note.split("\n")[1]), 0)
    except (IndexError, ValueError):
        return 0


def _events_with_leaves(conn: Connection, size: int) -> Iterator[tuple[int, str, Any]]:
    """Events up to ``size`` with their stored leaf, in one statement (one snapshot)."""
    leaf = audit_tree.alias("leaf")
    query = (
        sa.select(audit_events.c.seq, audit_events.c.event, leaf.c.hash)
        .select_from(
            audit_events.outerjoin(
                leaf, sa.and_(leaf.c.level == 0, leaf.c.idx == audit_events.c.seq - 1)
            )
        )
        .where(audit_events.c.seq <= size)
        .order_by(audit_events.c.seq)
    )
    for seq, text, value in conn.execution_options(yield_per=5000).execute(query):
        yield int(seq), text, value


def _interior_nodes(conn: Connection, size: int) -> Iterator[tuple[int, int, bytes]]:
    """Stored nodes of level >= 1 inside the first ``size`` leaves, in completion order."""
    edge = (audit_tree.c.idx + 1).op("<<")(audit_tree.c.level)  # the node's right edge
    query = (
        sa.select(audit_tree.c.level, audit_tree.c.idx, audit_tree.c.hash)
        .where(audit_tree.c.level >= 1, edge <= size)
        .order_by(edge, audit_tree.c.level)
    )
    for level, idx, value in conn.execution_options(yield_per=5000).execute(query):
        yield int(level), int(idx), bytes(value)


# proofs for auditors ----------------------------------------------------------------------


def prove(engine: Engine, event_id: str) -> dict[str, Any]:
    """An inclusion proof for one event against the latest checkpoint covering it."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(audit_events.c.seq, audit_events.c.event).where(
                audit_events.c.event_id == event_id
            )
        ).first()
        if row is None:
            raise LookupError("no sealed event with that id (it may still be in the inbox)")
        note = conn.execute(
            sa.select(audit_checkpoints.c.note, audit_checkpoints.c.size)
            .where(audit_checkpoints.c.size >= row.seq)
            .order_by(audit_checkpoints.c.size.desc(), audit_checkpoints.c.id.desc())
            .limit(1)
        ).first()
        if note is None:
            raise LookupError("no checkpoint covers this event yet")

        def node(level: int, index: int) -> bytes:
            value = conn.execute(
                sa.select(audit_tree.c.hash).where(
                    audit_tree.c.level == level, audit_tree.c.idx == index
                )
            ).scalar_one()
            return bytes(value)

        proof = inclusion_proof(int(row.seq) - 1, int(note.size), node)
    return {
        "seq": int(row.seq),
        "event": row.event,
        "tree_size": int(note.size),
        "proof": [p.hex() for p in proof],
        "checkpoint": note.note,
    }


def check_proof(bundle: dict[str, Any], verifier: NoteVerifier) -> bool:
    """Offline: the event is in the log whose signed checkpoint the bundle carries."""
    try:
        checkpoint = verifier.verify(bundle["checkpoint"])
        seq = int(bundle["seq"])
        if checkpoint.size != int(bundle["tree_size"]):
            return False
        proof = [bytes.fromhex(p) for p in bundle["proof"]]
        leaf = leaf_hash(str(bundle["event"]).encode("utf-8"))
    except (CheckpointError, KeyError, ValueError, TypeError):
        return False
    return verify_inclusion(seq - 1, checkpoint.size, leaf, proof, checkpoint.root)
