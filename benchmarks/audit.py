"""Sealed audit log throughput, side by side in one run: the targets of the audit issue.

1. **Floor**: plain inserts of 300-byte JSON rows into a scratch table, one
   transaction with ``executemany`` and one commit per row (the issue's
   reference: ~37,600 and ~4,900 rows/s on PostgreSQL).
2. **Sealing**: 4 writer threads feed ``soc2kit_audit_inbox`` while one
   ``Sealer`` seals (events sealed per second, target ≥ 10,000/s on
   PostgreSQL); the writers go through ``kit.audit.record(...,
   durability="informational")`` (one shared sink) or submit pre-built events
   to a sink each. Also the sealer alone: ``seal_all()`` on a full inbox.
3. **Verification**: ``verify_log`` on a sealed log of N events (events
   verified per second, target ≥ 100,000/s on PostgreSQL).
4. **Critical events**: a one-row business transaction with and without
   ``kit.audit.record_in(conn, ...)`` (added p50/p99 per transaction, and the
   number of statements the event adds: at most one INSERT), and a standalone
   critical ``kit.audit.record(...)`` (its own transaction).

Every part runs on PostgreSQL (``SOC2KIT_TEST_POSTGRES_URL``, else an embedded
``pgserver``) and on SQLite. Variants are interleaved per repetition (their
order rotating); figures are medians over repetitions (min to max).

    .venv/bin/python benchmarks/audit.py [--quick] [--events N] [--repeats R]
        [--skip-postgres] [--write docs/performance.md]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.metadata
import json
import logging
import os
import platform
import pstats
import shlex
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from bench_report import write_section
from fastapi import FastAPI
from sqlalchemy.engine import Engine

import soc2kit
from soc2kit.audit.events import AuditEvent, canonical_json
from soc2kit.audit.sealer import Sealer
from soc2kit.audit.sink import SqlAuditSink
from soc2kit.audit.verify import verify_log
from soc2kit.crypto import uuid7
from soc2kit.db import normalize_url

logging.disable(logging.WARNING)
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # pgserver's platformdirs

T = TypeVar("T")
FULL = {"events": 100_000, "repeats": 5, "commit_rows": 2_000, "txns": 2_000}
QUICK = {"events": 10_000, "repeats": 3, "commit_rows": 300, "txns": 300}
REFERENCE = {"executemany": 37_600, "commit per row": 4_900}  # rows/s, from the issue
SEAL_TARGET = 10_000  # events sealed per second, PostgreSQL
VERIFY_TARGET = 100_000  # events verified per second, PostgreSQL
ROUND_TIMEOUT = 900.0  # seconds: a sealing round that takes longer is a failure


def rotated(items: Sequence[T], shift: int) -> list[T]:
    """``items`` rotated left by ``shift`` (so each variant takes every position in turn)."""
    k = shift % len(items)
    return [*items[k:], *items[:k]]


def json_row(n: int = 300) -> str:
    """A JSON object of exactly ``n`` bytes."""
    base = {"event_id": str(uuid7()), "action": "read", "outcome": "success", "pad": ""}
    pad = n - len(json.dumps(base, separators=(",", ":")))
    base["pad"] = "x" * pad
    text = json.dumps(base, separators=(",", ":"))
    assert len(text.encode()) == n, len(text)
    return text


def prebuilt_events(n: int, writer: int, kit: soc2kit.Kit) -> list[tuple[AuditEvent, str]]:
    """``n`` informational events as ``record`` builds them (same fields), with payloads."""
    out = []
    for i in range(n):
        event = AuditEvent(
            event_id=str(uuid7()),
            occurred_at=datetime.now(UTC),
            event_type="document.read",
            action="read",
            outcome="success",
            service=kit.settings.service_name,
            environment=kit.settings.environment,
            actor_type="user",
            actor_id=f"user-{writer:05d}",
            request_id=uuid.uuid4().hex,
            resource_type="document",
            resource_id=str(i),
        )
        out.append((event, canonical_json(event.to_dict())))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run_threads(
    targets: list[Callable[[], None]], barrier: threading.Barrier
) -> tuple[list[threading.Thread], list[BaseException]]:
    """Start ``targets`` in threads: (the threads, the list their exceptions go to).

    A failing thread breaks ``barrier``, so the others do not wait for it forever.
    """
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    return threads, errors


# databases ----------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server(workdir: Path) -> Iterator[tuple[str | None, str]]:
    """(admin URL, about the server) or (None, why there is none)."""
    admin_url = os.environ.get("SOC2KIT_TEST_POSTGRES_URL", "")
    source = "`SOC2KIT_TEST_POSTGRES_URL`" if admin_url else "embedded `pgserver`"
    with contextlib.ExitStack() as stack:  # stop the server last
        try:
            if not admin_url:
                import pgserver

                server = pgserver.get_server(  # type: ignore[attr-defined]
                    workdir / "pgdata", cleanup_mode="delete"
                )
                stack.callback(server.cleanup)
                admin_url = str(server.get_uri())
            admin = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
            stack.callback(admin.dispose)
            with admin.connect() as conn:
                show = {
                    setting: str(conn.execute(sa.text(f"SHOW {setting}")).scalar())
                    for setting in ("server_version", "fsync", "synchronous_commit")
                }
        except Exception as exc:
            reason = (str(exc).splitlines() or [""])[0]
            yield None, f"{source} unavailable: {type(exc).__name__}: {reason}"
            return
        where = " on the same machine, its default configuration" if "pgserver" in source else ""
        yield (
            admin_url,
            f"PostgreSQL {show['server_version'].split()[0]} (fsync={show['fsync']}, "
            f"synchronous_commit={show['synchronous_commit']}), {source}{where}",
        )


@contextlib.contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    """URL of a new database on the server, dropped afterwards."""
    admin = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    name = "bench_" + uuid.uuid4().hex[:12]
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield normalize_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def bench_kit(url: str, data_dir: Path) -> Iterator[soc2kit.Kit]:
    """A kit on ``url`` (migrations run by ``install``), shut down afterwards.

    ``startup()`` is not called, so no background sealer runs: the benchmark
    drives the kit's ``Sealer`` itself.
    """
    kit = soc2kit.install(
        FastAPI(),
        soc2kit.Settings(environment="test", database_url=url, data_dir=data_dir),
    )
    try:
        yield kit
    finally:
        kit.shutdown()


def sealer_of(kit: soc2kit.Kit) -> Sealer:
    sealer = kit.audit.sealer
    if sealer is None:
        raise RuntimeError("the kit's audit trail has no sealer")
    return sealer


def marks(engine: Engine, sql: str) -> str:
    """``sql`` with ``?`` placeholders turned into the driver's."""
    return sql if engine.dialect.name == "sqlite" else sql.replace("?", "%s")


def sealed_size(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT size FROM soc2kit_audit_state").scalar_one())


def inbox_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM soc2kit_audit_inbox").scalar_one())


# 1. floor: plain inserts --------------------------------------------------------------------


@dataclass
class Baseline:
    rows: int
    commit_rows: int
    rows_per_s: dict[str, list[float]] = field(default_factory=dict)


def measure_baseline(engine: Engine, rows: int, commit_rows: int, repeats: int) -> Baseline:
    """300-byte JSON rows into a scratch table: one executemany, or one commit per row."""
    pg = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE bench_baseline (id "
            + ("BIGSERIAL" if pg else "INTEGER")
            + " PRIMARY KEY, event TEXT NOT NULL)"
        )
    insert = marks(engine, "INSERT INTO bench_baseline (event) VALUES (?)")
    payload = json_row(300)
    result = Baseline(rows, commit_rows, {name: [] for name in REFERENCE})

    def clear() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE bench_baseline" if pg else "DELETE FROM bench_baseline")

    def executemany(n: int) -> float:
        params = [(payload,)] * n
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.exec_driver_sql(insert, params)
        return n / (time.perf_counter() - start)

    def per_row(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            with engine.begin() as conn:
                conn.exec_driver_sql(insert, (payload,))
        return n / (time.perf_counter() - start)

    executemany(min(rows, 1000))  # warm-up
    per_row(min(commit_rows, 50))
    clear()
    variants: dict[str, Callable[[], float]] = {
        "executemany": lambda: executemany(rows),
        "commit per row": lambda: per_row(commit_rows),
    }
    for rep in range(repeats):
        for name in rotated(list(variants), rep):
            result.rows_per_s[name].append(variants[name]())
            clear()
    return result


# 2. sealing ---------------------------------------------------------------------------------


@dataclass
class PipelineSample:
    events: int
    sealed_s: float  # start to the last event sealed
    submitted_s: float  # start to the last writer call returning
    inserted_s: float  # start to every event in the inbox (sink flushed)
    seal_calls: int

    @property
    def rate(self) -> float:
        return self.events / self.sealed_s


def pipeline_round(kit: soc2kit.Kit, events: int, writers: int, mode: str) -> PipelineSample:
    """``writers`` threads feed the inbox while one thread seals; until all ``events`` sealed.

    ``mode`` "record": each writer calls ``kit.audit.record(..., durability="informational")``
    (the kit's one sink and its writer thread insert the batches). "sink": each writer
    submits pre-built events to its own ``SqlAuditSink`` (its own writer thread and
    connection), so event building is out of the timed region.
    """
    sealer = sealer_of(kit)
    sealer.seal_all()
    if inbox_count(kit.engine):
        raise RuntimeError("the inbox is not empty before a round")
    per_writer = events // writers
    total = per_writer * writers
    barrier = threading.Barrier(writers + 2)
    sinks: list[SqlAuditSink] = []
    batches: list[list[tuple[AuditEvent, str]]] = []
    if mode == "sink":
        sinks = [SqlAuditSink(kit.engine) for _ in range(writers)]
        batches = [prebuilt_events(per_writer, w, kit) for w in range(writers)]
    finished: list[float] = []
    lock = threading.Lock()
    sealed = 0
    calls = 0
    deadline = time.monotonic() + ROUND_TIMEOUT

    def record_writer(w: int) -> Callable[[], None]:
        def run() -> None:
            actor = f"user-{w:05d}"
            record = kit.audit.record
            barrier.wait()
            for i in range(per_writer):
                record(
                    "document.read",
                    action="read",
                    outcome="success",
                    actor=actor,
                    resource_type="document",
                    resource_id=i,
                    durability="informational",
                )
            with lock:
                finished.append(time.perf_counter())

        return run

    def sink_writer(w: int) -> Callable[[], None]:
        def run() -> None:
            sink, batch = sinks[w], batches[w]
            barrier.wait()
            for event, payload in batch:
                sink.submit(event, payload)
            with lock:
                finished.append(time.perf_counter())
            sink.flush(timeout=ROUND_TIMEOUT)

        return run

    def seal_loop() -> None:
        nonlocal sealed, calls
        barrier.wait()
        while sealed < total:
            n = sealer.seal_once()
            calls += 1
            sealed += n
            if n == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sealing round timed out: {sealed} of {total} sealed")
                time.sleep(0.001)

    make = record_writer if mode == "record" else sink_writer
    threads, errors = run_threads([*(make(w) for w in range(writers)), seal_loop], barrier)
    with contextlib.suppress(threading.BrokenBarrierError):  # a thread failed: see errors
        barrier.wait()
    start = time.perf_counter()
    for t in threads[:writers]:
        t.join()
    if mode == "record":
        kit.audit.sink.flush(timeout=ROUND_TIMEOUT)
    inserted = time.perf_counter()
    threads[-1].join()
    end = time.perf_counter()
    for sink in sinks:
        sink.close()
    if errors:
        raise errors[0]
    if sealed != total:
        raise RuntimeError(f"{mode}: {sealed} events sealed, {total} written")
    return PipelineSample(total, end - start, max(finished) - start, inserted - start, calls)


def fill_inbox(kit: soc2kit.Kit, events: int) -> None:
    """Put ``events`` pre-built events into the inbox through the kit's sink (not timed)."""
    sink = kit.audit.sink
    for event, payload in prebuilt_events(events, 0, kit):
        sink.submit(event, payload)
    sink.flush(timeout=ROUND_TIMEOUT)


def sealer_round(kit: soc2kit.Kit, events: int) -> float:
    """Fill the inbox with ``events``, then time ``seal_all()``; events sealed per second."""
    sealer = sealer_of(kit)
    sealer.seal_all()
    fill_inbox(kit, events)
    start = time.perf_counter()
    n = sealer.seal_all()
    seconds = time.perf_counter() - start
    if n != events:
        raise RuntimeError(f"seal_all sealed {n} events, {events} were waiting")
    return n / seconds


@dataclass
class Sealing:
    events: int
    writers: int
    pipeline: dict[str, list[PipelineSample]] = field(default_factory=dict)
    alone: list[float] = field(default_factory=list)  # events/s
    log_size: int = 0  # events in the log at the end
    event_bytes: float = 0.0  # mean length of a sealed event's JSON


PIPELINES = {
    "record": 'writers call `kit.audit.record(..., durability="informational")`, one sink',
    "sink": "writers submit pre-built events, a `SqlAuditSink` each",
}


def measure_sealing(kit: soc2kit.Kit, events: int, writers: int, repeats: int) -> Sealing:
    result = Sealing(events, writers, {name: [] for name in PIPELINES})
    pipeline_round(kit, min(events, 2000), writers, "record")  # warm-up
    sealer_round(kit, min(events, 2000))
    variants = [*PIPELINES, "alone"]
    for rep in range(repeats):
        for name in rotated(variants, rep):
            if name == "alone":
                result.alone.append(sealer_round(kit, events))
            else:
                result.pipeline[name].append(pipeline_round(kit, events, writers, name))
    result.log_size = sealed_size(kit.engine)
    with kit.engine.connect() as conn:
        mean = conn.exec_driver_sql("SELECT avg(length(event)) FROM soc2kit_audit_events")
        result.event_bytes = float(mean.scalar_one())
    return result


# 3. verification ----------------------------------------------------------------------------


@dataclass
class Verification:
    events: int  # events checked per run
    rates: list[float]  # events/s
    status: str


def verify_once(kit: soc2kit.Kit) -> tuple[float, int, str]:
    """One ``verify_log`` of the kit's log: (seconds, events checked, status)."""
    sealer = sealer_of(kit)
    verifier = sealer.signer.verifier()
    start = time.perf_counter()
    report = verify_log(
        sealer.engine,
        verifier,
        origin=sealer.origin,
        anchor=sealer.anchor,
        max_checkpoint_age=kit.settings.audit_max_checkpoint_age_seconds,
    )
    seconds = time.perf_counter() - start
    if report.status == "fail":
        raise RuntimeError(f"verify_log failed: {report.reason}")
    return (
        seconds,
        report.checked,
        f"{report.status}" + (f" ({report.reason})" if report.reason else ""),
    )


def prepare_verify_log(kit: soc2kit.Kit, events: int) -> None:
    """A sealed log of ``events`` events with a signed, anchored checkpoint."""
    sealer = sealer_of(kit)
    for start in range(0, events, 50_000):
        fill_inbox(kit, min(50_000, events - start))
        sealer.seal_all()
    sealer.seal_all(checkpoint=True)


def measure_verify(kit: soc2kit.Kit, repeats: int) -> Verification:
    verify_once(kit)  # warm-up (and the database's cache)
    rates = []
    checked = 0
    status = ""
    for _ in range(repeats):
        seconds, checked, status = verify_once(kit)
        rates.append(checked / seconds)
    return Verification(checked, rates, status)


# 4. critical events -------------------------------------------------------------------------


CRITICAL = {
    "plain": "business transaction: one INSERT, commit",
    "plain + INSERT": "the same with a second business INSERT (control)",
    "record_in": "the same + `kit.audit.record_in(conn, ...)` (critical, same transaction)",
    "record": "standalone critical `kit.audit.record(...)` (its own transaction)",
}


@dataclass
class Critical:
    txns: int
    repeats: int
    us: dict[str, list[list[float]]] = field(default_factory=dict)  # per rep, per call: wall
    cpu_us: dict[str, list[list[float]]] = field(default_factory=dict)  # the same: thread CPU
    statements: dict[str, int] = field(default_factory=dict)  # statements executed

    def p(self, name: str, q: float, *, cpu: bool = False) -> list[float]:
        """The ``q`` quantile of each repetition."""
        return [percentile(samples, q) for samples in (self.cpu_us if cpu else self.us)[name]]

    def added(self, name: str, q: float, *, cpu: bool = False) -> list[float]:
        """Per repetition: the ``q`` quantile of ``name`` minus that of "plain"."""
        return [
            a - b
            for a, b in zip(self.p(name, q, cpu=cpu), self.p("plain", q, cpu=cpu), strict=True)
        ]


def measure_critical(kit: soc2kit.Kit, txns: int, repeats: int) -> Critical:
    """Latency per transaction of the variants, interleaved call by call."""
    engine = kit.engine
    pg = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE bench_orders (id "
            + ("BIGSERIAL" if pg else "INTEGER")
            + " PRIMARY KEY, customer TEXT NOT NULL, amount INTEGER NOT NULL, "
            "payload TEXT NOT NULL)"
        )
    insert = marks(engine, "INSERT INTO bench_orders (customer, amount, payload) VALUES (?, ?, ?)")
    payload = json_row(300)
    audit = kit.audit
    counter = iter(range(10**9))

    def plain() -> None:
        i = next(counter)
        with engine.begin() as conn:
            conn.exec_driver_sql(insert, (f"customer-{i % 1000}", i, payload))

    def plain_twice() -> None:
        i = next(counter)
        with engine.begin() as conn:
            conn.exec_driver_sql(insert, (f"customer-{i % 1000}", i, payload))
            conn.exec_driver_sql(insert, (f"customer-{i % 1000}", -i, payload))

    def with_record_in() -> None:
        i = next(counter)
        with audit.transaction(engine) as conn:
            conn.exec_driver_sql(insert, (f"customer-{i % 1000}", i, payload))
            audit.record_in(
                conn,
                "order.created",
                action="create",
                outcome="success",
                actor=f"user-{i % 100:05d}",
                resource_type="order",
                resource_id=i,
            )

    def standalone() -> None:
        i = next(counter)
        audit.record(
            "order.created",
            action="create",
            outcome="success",
            actor=f"user-{i % 100:05d}",
            resource_type="order",
            resource_id=i,
        )

    variants: dict[str, Callable[[], None]] = dict(
        zip(CRITICAL, (plain, plain_twice, with_record_in, standalone), strict=True)
    )
    result = Critical(txns, repeats, {name: [] for name in variants}, {n: [] for n in variants})

    # Statements each variant sends (BEGIN/COMMIT are not cursor executions).
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        for name, fn in variants.items():
            seen.clear()
            fn()
            result.statements[name] = len(seen)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)

    for _ in range(50):  # warm-up
        for fn in variants.values():
            fn()
    names = list(variants)
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    for rep in range(repeats):
        samples: dict[str, list[float]] = {name: [] for name in names}
        cpu_samples: dict[str, list[float]] = {name: [] for name in names}
        for i in range(txns):
            for name in rotated(names, i + rep):
                fn = variants[name]
                c0, w0 = cpu(), wall()
                fn()
                w1, c1 = wall(), cpu()
                samples[name].append((w1 - w0) / 1e3)
                cpu_samples[name].append((c1 - c0) / 1e3)
        for name in names:
            result.us[name].append(samples[name])
            result.cpu_us[name].append(cpu_samples[name])
    sealer_of(kit).seal_all()
    return result


# profile ------------------------------------------------------------------------------------


@dataclass
class Profile:
    what: str
    seconds: float
    top: list[tuple[str, int, float, float]]  # function, calls, tottime, cumtime
    areas: dict[str, float]  # own time summed by area


AREAS = (
    "waiting for the database",
    "psycopg (client side)",
    "SQLAlchemy",
    "soc2kit",
    "SHA-256 (hashlib)",
    "other",
)


def _area(func: tuple[str, int, str]) -> str:
    """Where a profiled function belongs (see AREAS)."""
    filename, _line, name = func
    path = filename.replace("\\", "/")
    if (path.endswith("psycopg/connection.py") and name == "wait") or "sqlite3." in name:
        return AREAS[0]  # psycopg's wait polls the socket; SQLite runs inside its methods
    if "/psycopg/" in path or "psycopg_binary" in path or "psycopg" in name:
        return AREAS[1]
    if "/sqlalchemy/" in path:
        return AREAS[2]
    if "/soc2kit/" in path:
        return AREAS[3]
    if "_hashlib" in name:
        return AREAS[4]
    return AREAS[5]


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name.replace("<", "`").replace(">", "`") if name.startswith("<") else name
    path = filename.replace("\\", "/")
    for anchor in ("/site-packages/", "/src/", "/lib/python"):
        if anchor in path:
            path = path.split(anchor, 1)[1]
            break
    return f"`{path}:{line}({name})`"


def profiled(what: str, fn: Callable[[], object], top: int = 10) -> Profile:
    """cProfile of one call of ``fn``: the ``top`` functions by own time."""
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(fn)
    seconds = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    rows = []
    areas = dict.fromkeys(AREAS, 0.0)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for func, (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        rows.append((_label(func), int(ncalls), float(tottime), float(cumtime)))
        areas[_area(func)] += float(tottime)
    rows.sort(key=lambda r: r[2], reverse=True)
    return Profile(what, seconds, rows[:top], areas)


def measure_profiles(kit: soc2kit.Kit, verify_kit: soc2kit.Kit, events: int) -> list[Profile]:
    sealer = sealer_of(kit)
    sealer.seal_all()
    fill_inbox(kit, events)
    profiles = [profiled(f"`seal_all()` of {events:,} events", sealer.seal_all)]
    profiles.append(
        profiled(
            f"`verify_log` of {sealed_size(verify_kit.engine):,} events",
            lambda: verify_once(verify_kit),
        )
    )
    return profiles


# one database -------------------------------------------------------------------------------


@dataclass
class DbRun:
    database: str
    baseline: Baseline
    sealing: Sealing
    verification: Verification
    critical: Critical
    profiles: list[Profile] = field(default_factory=list)


def measure_database(
    database: str,
    url: str,
    verify_url: str,
    workdir: Path,
    args: argparse.Namespace,
    profile: bool,
) -> DbRun:
    tag = f"{database:10}"
    with (
        bench_kit(url, workdir / f"{database}-data") as kit,
        bench_kit(verify_url, workdir / f"{database}-verify-data") as verify_kit,
    ):
        baseline = measure_baseline(kit.engine, args.events, args.commit_rows, args.repeats)
        for name, rates in baseline.rows_per_s.items():
            progress(f"floor    {tag} {name:16} {statistics.median(rates):10,.0f} rows/s")
        critical = measure_critical(kit, args.txns, args.repeats)
        for name in CRITICAL:
            progress(
                f"critical {tag} {name:16} p50 {statistics.median(critical.p(name, 0.5)):8.0f} µs"
                f"  p99 {statistics.median(critical.p(name, 0.99)):8.0f} µs"
            )
        sealing = measure_sealing(kit, args.events, args.writers, args.repeats)
        for name, samples in sealing.pipeline.items():
            rate = statistics.median(s.rate for s in samples)
            progress(f"sealing  {tag} {name:16} {rate:10,.0f} events/s")
        progress(f"sealing  {tag} {'alone':16} {statistics.median(sealing.alone):10,.0f} events/s")
        prepare_verify_log(verify_kit, args.events)
        verification = measure_verify(verify_kit, args.repeats)
        rate = statistics.median(verification.rates)
        progress(f"verify   {tag} {verification.events:16,} {rate:10,.0f} events/s")
        profiles = measure_profiles(kit, verify_kit, args.events) if profile else []
    return DbRun(database, baseline, sealing, verification, critical, profiles)


# report -------------------------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def machine(load_before: str) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"- Machine: {usable} usable cores ({os.cpu_count()} CPUs), `{cpu}`, "
        f"{platform.platform()}; shared and noisy. Load average (1/5/15 min) "
        f"{load_before} before the run, {load()} after.\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"soc2kit {version('soc2kit')}, SQLAlchemy {version('sqlalchemy')}, "
        f"psycopg {version('psycopg')}, cryptography {version('cryptography')}, "
        f"SQLite {sqlite3.sqlite_version}."
    )


def command_line() -> str:
    shown = [os.path.relpath(a) if Path(a).is_absolute() else a for a in sys.argv]
    python = os.path.relpath(sys.executable) if sys.executable else "python"
    return shlex.join([python, *shown])


def spread(values: Sequence[float], fmt: str, unit: str = "") -> str:
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"{med:{fmt}}{unit} ({lo:{fmt}}{unit} to {hi:{fmt}}{unit})"


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**MISS**"


@dataclass
class Report:
    command: str
    minutes: float
    load_before: str
    runs: list[DbRun]
    postgres: str
    args: argparse.Namespace


def render(r: Report) -> str:
    a = r.args
    pg = next((run for run in r.runs if run.database == "PostgreSQL"), None)
    targets: list[tuple[str, str, str]] = []
    if pg is not None:
        s = pg.sealing
        for name, label in (
            ("record", "through `kit.audit.record`"),
            ("sink", "pre-built events, a sink per writer"),
        ):
            rate = statistics.median(x.rate for x in s.pipeline[name])
            targets.append(
                (
                    f"2. sealing on PostgreSQL with {s.writers} writer threads ({label}) "
                    f"≥ {SEAL_TARGET:,} events/s",
                    f"{rate:,.0f} events/s ({s.events:,} events per round)",
                    verdict(rate >= SEAL_TARGET),
                )
            )
        alone = statistics.median(s.alone)
        targets.append(
            (
                f"2. the sealer alone, `seal_all()` on a full inbox ≥ {SEAL_TARGET:,} events/s",
                f"{alone:,.0f} events/s",
                verdict(alone >= SEAL_TARGET),
            )
        )
        v = statistics.median(pg.verification.rates)
        targets.append(
            (
                f"3. `verify_log` on PostgreSQL ≥ {VERIFY_TARGET:,} events/s",
                f"{v:,.0f} events/s ({pg.verification.events:,} events)",
                verdict(v >= VERIFY_TARGET),
            )
        )
        c = pg.critical
        extra = c.statements["record_in"] - c.statements["plain"]
        targets.append(
            (
                "4. a critical event adds at most one INSERT to the business transaction "
                "(PostgreSQL)",
                f"{extra} statement added (counted); added per transaction p50 "
                f"{statistics.median(c.added('record_in', 0.5)):,.0f} µs, p99 "
                f"{statistics.median(c.added('record_in', 0.99)):,.0f} µs (a second business "
                f"INSERT, for comparison: p50 "
                f"{statistics.median(c.added('plain + INSERT', 0.5)):,.0f} µs, p99 "
                f"{statistics.median(c.added('plain + INSERT', 0.99)):,.0f} µs); client CPU "
                f"added p50 {statistics.median(c.added('record_in', 0.5, cpu=True)):,.0f} µs",
                verdict(extra <= 1),
            )
        )
    else:
        targets.append(("2-4. PostgreSQL targets", r.postgres, "**NOT RUN**"))

    out = [
        "## Audit log: sealing, verification, critical events\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        f"({'quick' if a.quick else 'full'} mode; the run took {r.minutes:.1f} min) with:\n",
        f"```sh\n{r.command}\n```\n",
        machine(r.load_before),
        f"- {'PostgreSQL ' if r.postgres.startswith('skipped') else ''}{r.postgres}. "
        "SQLite: a file in a temporary directory, soc2kit's engine "
        "(WAL, `synchronous=NORMAL`, so no sync at commit).",
        f"- {a.repeats} repetitions; variants interleaved in every repetition, their order "
        "rotating; figures are medians over repetitions (min to max). `--quick` runs a small "
        "version; `--help` lists the options. Kits are built with "
        '`soc2kit.install(FastAPI(), Settings(environment="test", ...))` and not started, '
        "so no background sealer runs: the benchmark drives the kit's `Sealer` itself.\n",
        "### Targets\n",
        "| target | measured | result |\n|---|---|---|",
        *(f"| {t} | {m} | {v} |" for t, m, v in targets),
        "",
    ]

    event_bytes = ", ".join(
        f"{run.sealing.event_bytes:,.0f} bytes of JSON on average in the {run.database} log"
        for run in r.runs
    )
    out += [
        "### Floor: plain inserts\n",
        "The issue's baseline: 300-byte JSON rows (`id` primary key, `event TEXT`) into a "
        f"scratch table through the kit's engine (`exec_driver_sql`). *executemany*: "
        f"{a.events:,} rows in one transaction; *commit per row*: {a.commit_rows:,} rows, one "
        "transaction each. soc2kit's events are larger "
        f"({event_bytes}) and the sealed log's tables are indexed, so this is the floor the "
        "sealing figures stand on.\n",
        "| database | variant | rows/s | µs per row | issue's reference (PostgreSQL) |",
        "|---|---|---:|---:|---:|",
    ]
    for run in r.runs:
        for name, rates in run.baseline.rows_per_s.items():
            us = [1e6 / x for x in rates]
            ref = f"~{REFERENCE[name]:,}" if run.database == "PostgreSQL" else ""
            out.append(
                f"| {run.database} | {name} | {spread(rates, ',.0f')} | "
                f"{spread(us, ',.1f')} | {ref} |"
            )
    out.append("")

    first = r.runs[0].sealing if r.runs else None
    if first is not None:
        out += [
            "### Sealing\n",
            f"Each round writes {first.events:,} events ({first.writers} writer threads, "
            f"{first.events // first.writers:,} each) while one thread calls "
            "`Sealer.seal_once()` in a loop (sleeping 1 ms when the inbox is empty) until all "
            "of them are sealed; the clock runs from the writers' start to the last event "
            'sealed. **record**: every writer calls `kit.audit.record("document.read", '
            'action="read", ..., durability="informational")`, which builds and '
            "serialises the event and queues it for the kit's one `SqlAuditSink` writer "
            "thread (batches of up to 500, one transaction each). **sink**: events built "
            "beforehand, each writer submitting to its own `SqlAuditSink` (four inserting "
            "threads and connections). **alone**: the inbox filled first (not timed), then "
            "`Sealer.seal_all()` timed (batches of 5,000: select, hash, insert events and "
            "tree nodes, delete from the inbox, sign and move the tree state, one transaction "
            "per batch). Writers, sink threads and sealer share one Python process (and its "
            "GIL) on 2 cores; in production the writers are other processes. The log keeps "
            "growing over the rounds (the last figure in the table).\n",
            "| database | variant | events sealed/s | writers done, s | inbox written, s "
            "| all sealed, s | `seal_once` calls | log size at the end |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for run in r.runs:
            s = run.sealing
            for name, samples in s.pipeline.items():
                out.append(
                    f"| {run.database} | {name} | {spread([x.rate for x in samples], ',.0f')} | "
                    f"{spread([x.submitted_s for x in samples], '.2f')} | "
                    f"{spread([x.inserted_s for x in samples], '.2f')} | "
                    f"{spread([x.sealed_s for x in samples], '.2f')} | "
                    f"{statistics.median(x.seal_calls for x in samples):,.0f} | "
                    f"{s.log_size:,} |"
                )
            secs = [s.events / x for x in s.alone]
            out.append(
                f"| {run.database} | alone | {spread(s.alone, ',.0f')} | | | "
                f"{spread(secs, '.2f')} | | {s.log_size:,} |"
            )
        out.append("")

        out += [
            "### Verification\n",
            "`verify_log` (what `kit.audit.verify()` and `soc2kit audit verify` run) on a "
            "separate database holding a sealed log of exactly "
            f"{a.events:,} events and one signed, anchored checkpoint: signatures, every leaf "
            "hash and interior node recomputed, the roots, the backlog. One warm-up run, then "
            f"{a.repeats} timed runs.\n",
            "| database | events | events verified/s | seconds per run | result |",
            "|---|---:|---:|---:|---|",
        ]
        for run in r.runs:
            ver = run.verification
            secs = [ver.events / x for x in ver.rates]
            out.append(
                f"| {run.database} | {ver.events:,} | {spread(ver.rates, ',.0f')} | "
                f"{spread(secs, '.2f')} | {ver.status} |"
            )
        out.append("")

        out += [
            "### Critical events\n",
            f"{a.txns:,} calls per variant and repetition, the variants interleaved call by "
            "call (order rotating), after 50 warm-up calls each. **plain**: `engine.begin()`, "
            "one INSERT of a row with a 300-byte text column into a scratch table, commit. "
            "**plain + INSERT** (control): the same with a second such INSERT, what one more "
            "statement costs on this database. **record_in**: **plain** inside "
            "`kit.audit.transaction(engine)` with "
            '`kit.audit.record_in(conn, "order.created", action="create", ...)` '
            "(the event commits or rolls back with the row). **record**: a standalone critical "
            '`kit.audit.record("order.created", action="create", ...)`, stored in its own '
            "transaction before it returns. p50 and p99 per repetition, medians over "
            "repetitions (min to max); *added* is the per-repetition difference to **plain** "
            "(a difference of percentiles, not a percentile of differences: at p99 mostly "
            "noise). *CPU*: the calling thread's CPU time (`time.thread_time_ns`), i.e. the "
            "client side (for SQLite, the database engine too), less sensitive to the disk and "
            "to other work on the machine. *Statements*: cursor executions counted with a "
            "`before_cursor_execute` listener (BEGIN and COMMIT not included).\n",
            "| database | variant | statements | p50, µs | p99, µs | added p50, µs "
            "| added p99, µs | CPU p50, µs | added CPU p50, µs |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for run in r.runs:
            c = run.critical
            for name in CRITICAL:
                has_added = name in ("plain + INSERT", "record_in")
                added = (
                    f"{spread(c.added(name, 0.5), ',.0f')} | {spread(c.added(name, 0.99), ',.0f')}"
                    if has_added
                    else " | "
                )
                added_cpu = spread(c.added(name, 0.5, cpu=True), ",.0f") if has_added else ""
                out.append(
                    f"| {run.database} | {name} | {c.statements[name]} | "
                    f"{spread(c.p(name, 0.5), ',.0f')} | {spread(c.p(name, 0.99), ',.0f')} | "
                    f"{added} | {spread(c.p(name, 0.5, cpu=True), ',.0f')} | {added_cpu} |"
                )
        out.append("")

    profiled_runs = [run for run in r.runs if run.profiles]
    if profiled_runs:
        run = profiled_runs[0]
        out += [
            "### Where the time goes\n",
            f"cProfile, {run.database}, one call each after the measurements (profiling "
            "slows Python code more than database waits, so shares are indicative). *Waiting "
            "for the database*: psycopg's `wait` (polling the socket while the server works) "
            "or, for SQLite, the `sqlite3` methods (the engine runs in them). Top functions by "
            "own time; *cumulative* includes callees.\n",
        ]
        for prof in run.profiles:
            total = sum(prof.areas.values()) or 1.0
            by_area = "; ".join(
                f"{name} {secs / total:.0%}" for name, secs in prof.areas.items() if secs
            )
            out += [
                f"{prof.what}: {prof.seconds:.2f} s under the profiler. Own time by area: "
                f"{by_area}.\n",
                "| function | calls | own time, s | share | cumulative, s |",
                "|---|---:|---:|---:|---:|",
                *(
                    f"| {name} | {calls:,} | {tot:.3f} | {tot / prof.seconds:.0%} | {cum:.3f} |"
                    for name, calls, tot, cum in prof.top
                ),
                "",
            ]
    return "\n".join(out)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a quick check")
    parser.add_argument(
        "--events", type=int, help="events per sealing round and in the verified log (100,000)"
    )
    parser.add_argument("--repeats", type=int, help="repetitions of every measurement (5)")
    parser.add_argument("--commit-rows", type=int, help="rows of the commit-per-row floor (2,000)")
    parser.add_argument("--txns", type=int, help="critical-event calls per variant and rep (2,000)")
    parser.add_argument("--writers", type=int, default=4, help="writer threads (4)")
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--skip-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--no-profile", action="store_true", help="no cProfile section")
    parser.add_argument("--write", type=Path, help="update this Markdown file's audit section")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main() -> None:
    args = parse_args()
    load_before = load()
    began = time.perf_counter()
    runs: list[DbRun] = []
    with tempfile.TemporaryDirectory(prefix="soc2kit-bench-") as tmp:
        workdir = Path(tmp)
        if args.skip_postgres:
            pg_note = "skipped: no PostgreSQL (`--skip-postgres`)"
        else:
            with postgres_server(workdir) as (admin_url, pg_note):
                if admin_url is None:
                    pg_note = f"skipped: no PostgreSQL ({pg_note})"
                else:
                    with fresh_postgres(admin_url) as url, fresh_postgres(admin_url) as vurl:
                        runs.append(
                            measure_database(
                                "PostgreSQL", url, vurl, workdir, args, not args.no_profile
                            )
                        )
        if pg_note.startswith("skipped"):
            print(pg_note)
        if not args.skip_sqlite:
            runs.append(
                measure_database(
                    "SQLite",
                    f"sqlite:///{workdir / 'audit.db'}",
                    f"sqlite:///{workdir / 'verify.db'}",
                    workdir,
                    args,
                    not args.no_profile and not runs,
                )
            )
    report = Report(
        command_line(), (time.perf_counter() - began) / 60, load_before, runs, pg_note, args
    )
    text = render(report)
    print(text)
    if args.write:
        write_section(args.write, "audit", text)


if __name__ == "__main__":
    main()
