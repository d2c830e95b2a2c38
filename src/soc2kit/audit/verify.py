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

from soc2kit.audit.checkpoints import Checkpoint, CheckpointError, DirectoryAnchor, NoteVerifier
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
    anchor: DirectoryAnchor | None = None,
    max_checkpoint_age: float = 900.0,
    max_backlog_age: float = 60.0,
) -> VerifyReport:
    checks: list[Check] = []
    failures: list[_Failure] = []
    incomplete: list[str] = []

    def fail(seq: int, reason: str) -> None:
        failures.append(_Failure(seq, reason))

    with engine.connect() as conn:
        # 1. checkpoints in the database: signature, origin, monotonic sizes
        db_checkpoints: list[Checkpoint] = []
        bad_signature = 0
        for row in conn.execute(
            sa.select(audit_checkpoints.c.size, audit_checkpoints.c.note).order_by(
                audit_checkpoints.c.id
            )
        ):
            try:
                cp = verifier.verify(row.note)
            except CheckpointError as exc:
                bad_signature += 1
                fail(int(row.size), f"checkpoint at size {row.size}: {exc}")
                continue
            if cp.origin != origin:
                fail(cp.size, f"checkpoint at size {cp.size} is for another log ({cp.origin!r})")
                continue
            if cp.size != int(row.size):
                fail(cp.size, f"checkpoint row says size {row.size}, its signed note {cp.size}")
                continue
            if db_checkpoints and cp.size < db_checkpoints[-1].size:
                fail(
                    cp.size,
                    f"checkpoint sizes go backwards ({db_checkpoints[-1].size} -> {cp.size})",
                )
            db_checkpoints.append(cp)
        checks.append(
            Check(
                "signatures",
                "fail" if bad_signature else "pass",
                f"{len(db_checkpoints)} checkpoints verified, {bad_signature} refused",
            )
        )

        # 2. the anchor store
        anchored: list[Checkpoint] = []
        if anchor is not None:
            for note in anchor.notes():
                try:
                    anchored.append(verifier.verify(note))
                except CheckpointError as exc:
                    fail(0, f"anchored checkpoint refused: {exc}")
        # 3. events, leaves, continuity, roots
        by_size: dict[int, list[Checkpoint]] = {}
        for cp in [*db_checkpoints, *anchored]:
            by_size.setdefault(cp.size, []).append(cp)
        frontier = Frontier()
        checked = 0
        sizes = sorted(by_size)
        next_cp = 0
        while next_cp < len(sizes) and sizes[next_cp] == 0:
            next_cp += 1
        events = _events(conn)
        leaves = _leaves(conn)
        expected = 1
        for seq, text in events:
            if seq != expected:
                fail(expected, f"seq {expected} is missing (next event is seq {seq})")
                break
            leaf = leaf_hash(text.encode("utf-8"))
            stored = next(leaves, None)
            if stored is None or stored[0] != seq - 1:
                fail(seq, f"seq {seq} has no sealed leaf in the tree")
                break
            if stored[1] != leaf:
                fail(seq, f"seq {seq}: the event does not match its sealed leaf hash")
                break
            frontier.append(leaf)
            checked += 1
            expected += 1
            while next_cp < len(sizes) and sizes[next_cp] == frontier.size:
                root = frontier.root()
                for cp in by_size[sizes[next_cp]]:
                    if cp.root != root:
                        fail(
                            seq,
                            f"the tree root at checkpoint size {cp.size} does not match the "
                            f"events up to seq {seq} (events were changed, reordered or forged)",
                        )
                next_cp += 1
            if failures:
                break
        else:
            extra = next(leaves, None)
            if extra is not None:
                fail(extra[0] + 1, f"seq {extra[0] + 1} has a sealed leaf but no event (deleted)")
        size = frontier.size if not failures else expected - 1
        checks.append(
            Check(
                "leaves",
                "fail" if failures else "pass",
                f"{checked} events recomputed, sequence contiguous from 1"
                if not failures
                else failures[0].reason,
            )
        )

        # 4. checkpoints beyond the events: truncation or a rolled-back database
        highest = max((cp.size for cp in [*db_checkpoints, *anchored]), default=0)
        if not failures and highest > size:
            fail(
                size + 1,
                f"tail truncation: a checkpoint covers {highest} events but the database holds "
                f"{size}",
            )
        db_sizes = {(cp.size, cp.root) for cp in db_checkpoints}
        missing = sorted(cp.size for cp in anchored if (cp.size, cp.root) not in db_sizes)
        if missing and not failures:
            fail(
                missing[0], f"anchored checkpoint at size {missing[0]} is missing from the database"
            )
        if anchor is not None:
            checks.append(
                Check(
                    "anchors",
                    "fail" if missing else "pass",
                    f"{len(anchored)} anchored checkpoints, "
                    f"{len(missing)} missing from the database",
                )
            )
        else:
            incomplete.append("no anchor store: truncation of the newest events is not checked")
            checks.append(Check("anchors", "incomplete", "no anchor store given"))

        # 5. the tree state the sealer keeps
        state = conn.execute(
            sa.select(audit_state.c.size, audit_state.c.root).where(audit_state.c.id == 1)
        ).first()
        if state is None:
            fail(1, "the tree state row is missing")
        elif not failures and (int(state.size) != size or bytes(state.root) != frontier.root()):
            fail(
                min(int(state.size), size) + 1,
                f"the tree state (size {state.size}) does not match the {size} sealed events",
            )

        # 6. freshness and backlog
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
            unsigned = size - latest.size
            checks.append(
                Check(
                    "freshness",
                    "incomplete" if stale else "pass",
                    f"latest checkpoint size {latest.size}, {age:.0f}s old; "
                    f"{max(unsigned, 0)} events sealed after it",
                )
            )
        backlog, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(audit_inbox.c.occurred_at))
        ).one()
        if backlog:
            oldest_at = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age = (datetime.now(UTC) - oldest_at).total_seconds()
            if age > max_backlog_age:
                incomplete.append(f"{backlog} events unsealed, oldest {age:.0f}s")
            detail = f"{backlog} events waiting, oldest {age:.1f}s"
        else:
            detail = "empty"
        checks.append(
            Check(
                "backlog",
                "incomplete" if backlog and "unsealed" in " ".join(incomplete) else "pass",
                detail,
            )
        )

    if failures:
        first = min(failures, key=lambda f: f.seq if f.seq > 0 else 1 << 62)
        return VerifyReport(False, checked, first.seq or None, first.reason, "fail", checks)
    if incomplete:
        return VerifyReport(False, checked, None, "; ".join(incomplete), "incomplete", checks)
    return VerifyReport(True, checked, None, None, "pass", checks)


def _events(conn: Connection) -> Iterator[tuple[int, str]]:
    result = conn.execution_options(yield_per=5000).execute(
        sa.select(audit_events.c.seq, audit_events.c.event).order_by(audit_events.c.seq)
    )
    for seq, text in result:
        yield int(seq), text


def _leaves(conn: Connection) -> Iterator[tuple[int, bytes]]:
    # A second connection: two server-side cursors streamed side by side.
    result = (
        conn.engine.connect()
        .execution_options(yield_per=5000)
        .execute(
            sa.select(audit_tree.c.idx, audit_tree.c.hash)
            .where(audit_tree.c.level == 0)
            .order_by(audit_tree.c.idx)
        )
    )
    for idx, value in result:
        yield int(idx), bytes(value)


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
