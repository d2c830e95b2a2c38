"""Where audit events go: the inbox of the sealed log (see sealer.py).

Events are queued and written by one background thread in batches, each batch
in its own transaction, separate from any business transaction; ``write_in``
writes inside the caller's transaction instead. The queue is
bounded; when it is full, ``submit`` blocks (back-pressure) instead of dropping.
A failed write is retried with backoff and never discarded; meanwhile the sink
reports itself unhealthy, which fails the readiness probe.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Protocol

from sqlalchemy.engine import Connection, Engine

from soc2kit.audit.events import AuditEvent
from soc2kit.db.bulk import insert_rows
from soc2kit.errors import AuditWriteError

log = logging.getLogger("soc2kit.audit.sink")


class AuditSink(Protocol):
    """What a store of audit events must offer."""

    def submit(self, event: AuditEvent, payload: str) -> None:
        """Store ``event``; may block while the sink is saturated."""

    def try_submit(self, event: AuditEvent, payload: str) -> bool:
        """Store ``event`` if that needs no waiting; False when the caller must wait."""

    def write_in(self, conn: Connection, event: AuditEvent, payload: str) -> None:
        """Write ``event`` on ``conn``, inside the caller's transaction."""

    def write_now(self, event: AuditEvent, payload: str) -> None:
        """Store ``event`` before returning, or raise AuditWriteError (critical events)."""

    def flush(self, timeout: float = 10.0) -> None: ...

    def health(self) -> str | None:
        """None when healthy, else a short reason (no secrets)."""

    def close(self, timeout: float = 10.0) -> None: ...


class SqlAuditSink:
    """Batched writer to ``soc2kit_audit_inbox`` (only INSERTs: the writer role needs no more)."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        linger_seconds: float = 0.005,
    ) -> None:
        self._engine = engine
        self._queue: queue.Queue[tuple[AuditEvent, str]] = queue.Queue(maxsize=max_queue)
        self._batch_size = batch_size
        self._linger = linger_seconds
        self._lock = threading.Condition()
        self._pending = 0
        self._error: str | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    # public API -----------------------------------------------------------
    def submit(self, event: AuditEvent, payload: str) -> None:
        self._reserve()
        self._queue.put((event, payload))  # blocks when full: back-pressure, not loss

    def try_submit(self, event: AuditEvent, payload: str) -> bool:
        self._reserve()
        try:
            self._queue.put_nowait((event, payload))
        except queue.Full:
            with self._lock:
                self._pending -= 1
                self._lock.notify_all()
            return False
        return True

    def write_in(self, conn: Connection, event: AuditEvent, payload: str) -> None:
        # Same transaction as the change it describes: both commit or neither. The
        # driver-level insert: Core's bind processing doubled the cost per transaction.
        _insert_many(conn, [(event, payload)])

    def write_now(self, event: AuditEvent, payload: str) -> None:
        # Its own short transaction on the caller's thread: durable when this returns.
        with self._lock:
            if self._closed:
                raise AuditWriteError("audit sink is closed")
        try:
            with self._engine.begin() as conn:
                _insert_many(conn, [(event, payload)])
        except Exception as exc:  # any driver error: the caller fails closed
            log.error("critical audit event not written (%s)", type(exc).__name__)
            raise AuditWriteError(f"audit write failed ({type(exc).__name__})") from None

    def _reserve(self) -> None:
        with self._lock:
            if self._closed:
                raise AuditWriteError("audit sink is closed")
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="soc2kit-audit-writer", daemon=True
                )
                self._thread.start()

    def flush(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    reason = self._error or "timed out"
                    raise AuditWriteError(f"{self._pending} audit events not written: {reason}")
                self._lock.wait(remaining)

    def health(self) -> str | None:
        with self._lock:
            if self._error is not None:
                return f"audit writes failing: {self._error}"
            if self._queue.maxsize and self._queue.qsize() >= self._queue.maxsize:
                return "audit queue full"
            return None

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def close(self, timeout: float = 10.0) -> None:
        try:
            self.flush(timeout)
        finally:
            with self._lock:
                self._closed = True
                self._lock.notify_all()

    # writer thread --------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.05
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            while True:
                try:
                    self._write(batch)
                except Exception as exc:  # any driver error: retry, never drop
                    with self._lock:
                        self._error = type(exc).__name__
                    log.error(
                        "audit batch of %d not written (%s); retrying",
                        len(batch),
                        type(exc).__name__,
                    )
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.05
                with self._lock:
                    self._error = None
                    self._pending -= len(batch)
                    self._lock.notify_all()
                break

    def _take_batch(self) -> list[tuple[AuditEvent, str]] | None:
        while True:
            try:
                first = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                with self._lock:
                    if self._closed:
                        return None
        batch = [first]
        # Linger briefly for more events: one transaction (and one wake-up of
        # this thread) per batch instead of per event under load.
        deadline = time.monotonic() + self._linger
        while len(batch) < self._batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get_nowait()
                    if remaining <= 0
                    else self._queue.get(timeout=remaining)
                )
            except queue.Empty:
                break
            batch.append(item)
        return batch

    def _write(self, batch: list[tuple[AuditEvent, str]]) -> None:
        with self._engine.begin() as conn:
            _insert_many(conn, batch, copy=True)  # this thread's own transaction


def _insert_many(
    conn: Connection, batch: list[tuple[AuditEvent, str]], *, copy: bool = False
) -> None:
    """The batch as one driver-level executemany, or COPY where ``copy`` allows it.

    Driver-level because Core's per-row bind processing cost about as much as
    the insert itself on this hot path.
    """
    sqlite = conn.dialect.name == "sqlite"
    insert_rows(conn, "soc2kit_audit_inbox", _INBOX_COLUMNS, _rows(batch, sqlite), copy=copy)


_INBOX_COLUMNS = (
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
)


def _rows(batch: list[tuple[AuditEvent, str]], sqlite: bool) -> list[tuple[Any, ...]]:
    return [
        (
            e.event_id,
            # SQLAlchemy's SQLite DATETIME storage format, so Core reads it back.
            e.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else e.occurred_at,
            e.event_type,
            e.action,
            e.outcome,
            e.actor_id,
            e.request_id,
            e.resource_type,
            e.resource_id,
            payload,
        )
        for e, payload in batch
    ]
