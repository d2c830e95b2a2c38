"""The sealer: moves events from the inbox into the append-only log, in one order, for good.

Writers only INSERT into ``soc2kit_audit_inbox`` (inside business transactions
or from the background writer). One sealer at a time, in one transaction:

1. takes the lock (PostgreSQL: a transaction-level advisory lock, so any replica
   takes over when the holder dies; SQLite: the database's single write lock);
2. reads a batch of inbox rows and gives them the next contiguous ``seq``;
3. appends their leaf hashes to the RFC 9162 tree, storing every perfect
   subtree it completes (level 0 is the leaves);
4. inserts the sealed events, deletes the inbox rows, and moves the tree state
   forward with ``WHERE size = <size read>``: a second sealer that raced past
   the lock fails this compare-and-swap (and the ``seq`` primary key) instead of
   forking the log.

Checkpoints are signed at an interval, every N events and on an idle heartbeat,
stored in ``soc2kit_audit_checkpoints`` and copied to the anchor store.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from soc2kit.audit.checkpoints import Anchor, Checkpoint, Signer, parse_body
from soc2kit.audit.merkle import Frontier, leaf_hash
from soc2kit.db.bulk import insert_rows
from soc2kit.db.schema import audit_checkpoints, audit_state

log = logging.getLogger("soc2kit.audit.sealer")

_LOCK_KEY = 0x50C2_A0D1  # pg advisory lock id for "soc2kit audit sealer"
_INBOX_SELECT = (
    "SELECT id, event_id, occurred_at, event_type, action, outcome, actor_id, request_id, "
    "resource_type, resource_id, event FROM soc2kit_audit_inbox ORDER BY id LIMIT ?"
)
_EVENT_COLUMNS = (
    "seq",
    "event_id",
    "occurred_at",
    "event_type",
    "action",
    "outcome",
    "actor_id",
    "request_id",
    "resource_type",
    "resource_id",
    "event",
    "sealed_at",
)


def _sql(conn: Connection, statement: str) -> str:
    return statement if conn.dialect.name == "sqlite" else statement.replace("?", "%s")


class Sealer:
    """Seals the inbox into the log and signs checkpoints (one per deployment at a time)."""

    def __init__(
        self,
        engine: Engine,
        signer: Signer,
        *,
        origin: str,
        anchor: Anchor | None,
        batch_size: int = 5000,
        interval: float = 0.5,
        checkpoint_interval: float = 60.0,
        checkpoint_every: int = 10_000,
        heartbeat: float = 300.0,
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.origin = origin
        self.anchor = anchor
        self._batch = batch_size
        self._interval = interval
        self._checkpoint_interval = checkpoint_interval
        self._checkpoint_every = checkpoint_every
        self._heartbeat = heartbeat
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._last_seal = time.monotonic()

    def __repr__(self) -> str:
        return f"Sealer(origin={self.origin!r}, anchor={self.anchor!r})"

    # sealing ----------------------------------------------------------------------
    def seal_once(self, *, wait: bool = False) -> int:
        """Seal one batch; returns how many events were sealed (0: nothing, or not leader).

        ``wait``: queue for the lock when another replica holds it (flush, close)
        instead of leaving the work to it (the background loop).
        """
        with self._lock, self.engine.begin() as conn:
            if not self._take_lock(conn, wait=wait):
                return 0  # another replica is sealing
            state = conn.execute(
                sa.select(audit_state.c.size, audit_state.c.frontier).where(audit_state.c.id == 1)
            ).one()
            rows = conn.exec_driver_sql(
                _sql(conn, _INBOX_SELECT),
                (self._batch,),
            ).all()
            if not rows:
                return 0
            size = int(state.size)
            frontier = Frontier.unpack(size, bytes(state.frontier))
            sealed_at: Any = datetime.now(UTC)
            if conn.dialect.name == "sqlite":
                sealed_at = sealed_at.strftime("%Y-%m-%d %H:%M:%S.%f")
            events = []
            nodes: list[tuple[int, int, bytes]] = []
            for offset, row in enumerate(rows):
                leaf = leaf_hash(row.event.encode("utf-8"))
                nodes.append((0, size + offset, leaf))
                frontier.append(leaf, nodes)
                events.append((size + offset + 1, *tuple(row)[1:], sealed_at))
            insert_rows(conn, "soc2kit_audit_events", _EVENT_COLUMNS, events)
            insert_rows(conn, "soc2kit_audit_tree", ("level", "idx", "hash"), nodes)
            _delete_inbox(conn, [row.id for row in rows])
            root = frontier.root()
            moved = conn.execute(
                audit_state.update()
                .where(audit_state.c.id == 1, audit_state.c.size == size)
                .values(
                    size=frontier.size,
                    root=root,
                    frontier=frontier.packed(),
                    # Signed with every move: rows appended with database access alone
                    # (no key) cannot be made to look sealed.
                    note=self.signer.sign(self.origin, frontier.size, root),
                    updated_at=datetime.now(UTC),
                )
            ).rowcount
            if moved != 1:  # pragma: no cover - the lock makes this a backstop
                raise sa.exc.InvalidRequestError("audit tree state moved under the sealer")
        self._last_seal = time.monotonic()
        return len(rows)

    @staticmethod
    def _take_lock(conn: Connection, *, wait: bool = True) -> bool:
        """The sealer's lock for this transaction (PostgreSQL advisory, SQLite write lock)."""
        if conn.dialect.name == "postgresql":
            if wait:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                return True
            return bool(
                conn.exec_driver_sql("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,)).scalar()
            )
        # Take SQLite's write lock now, before reading the state we will move.
        conn.exec_driver_sql("UPDATE soc2kit_audit_state SET size = size WHERE id = 1")
        return True

    def seal_all(self, *, checkpoint: bool = False, wait: bool = False) -> int:
        """Seal until the inbox is empty; with ``checkpoint``, sign the new size now."""
        total = 0
        while True:
            sealed = self.seal_once(wait=wait)
            total += sealed
            if sealed < self._batch:
                break
        if checkpoint:
            self.checkpoint(force=True)
        return total

    # checkpoints -------------------------------------------------------------------
    def latest_checkpoint(self, conn: Connection) -> Checkpoint | None:
        row = conn.execute(
            sa.select(audit_checkpoints.c.note).order_by(audit_checkpoints.c.id.desc()).limit(1)
        ).first()
        if row is None:
            return None
        body = row.note.partition("\n\n")[0] + "\n"
        return parse_body(body, row.note)

    def checkpoint(self, *, force: bool = False) -> Checkpoint | None:
        """Sign the current tree head when due (or when ``force`` and it grew)."""
        now = int(time.time())
        with self._lock, self.engine.begin() as conn:
            self._take_lock(conn)  # the same order as sealing: checkpoints never go backwards
            state = conn.execute(
                sa.select(audit_state.c.size, audit_state.c.root).where(audit_state.c.id == 1)
            ).one()
            last = self.latest_checkpoint(conn)
            size = int(state.size)
            if last is not None:
                grew = size > last.size
                age = now - last.timestamp
                due = (
                    (grew and (force or age >= self._checkpoint_interval))
                    or (grew and size - last.size >= self._checkpoint_every)
                    or age >= self._heartbeat
                )
                if not due:
                    return None
            elif size == 0 and not force:
                return None
            note = self.signer.sign(self.origin, size, bytes(state.root), now)
            conn.execute(
                audit_checkpoints.insert().values(
                    size=size,
                    root=bytes(state.root),
                    timestamp=now,
                    note=note,
                    created_at=datetime.now(UTC),
                )
            )
        checkpoint = Checkpoint(self.origin, size, bytes(state.root), now, note)
        if self.anchor is not None:
            try:
                self.anchor.publish(checkpoint)
            except OSError as exc:
                # verify reports the checkpoint as not anchored; keep sealing.
                log.error("checkpoint at size %d not anchored: %s", size, type(exc).__name__)
                self._error = "anchor store unwritable"
            else:
                if self._error == "anchor store unwritable":
                    self._error = None
        return checkpoint

    # background ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="soc2kit-audit-sealer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.seal_all()
                self.checkpoint()
                if self._error != "anchor store unwritable":
                    self._error = None
            except Exception as exc:  # keep sealing; the type only, messages may hold URLs
                self._error = f"sealing failing ({type(exc).__name__})"
                log.error("audit sealing failed: %s", type(exc).__name__)

    def health(self) -> str | None:
        return self._error


def _delete_inbox(conn: Connection, ids: list[int]) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DELETE FROM soc2kit_audit_inbox WHERE id = ANY(%s)", (ids,))
        return
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))  # placeholders only: the ids are bound
        conn.exec_driver_sql(
            f"DELETE FROM soc2kit_audit_inbox WHERE id IN ({marks})",  # noqa: S608
            tuple(chunk),
        )
