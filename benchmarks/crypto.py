"""Field encryption cost, side by side in one run: the targets of issue 4.

1. **One value** (a 40-character string): encrypt+decrypt with raw ``AESGCM``
   (fresh nonce, no associated data: the floor), with soc2kit (typed encode,
   place-bound AAD, decrypt, decode), and with sqlalchemy-utils
   ``StringEncryptedType(String, key, AesGcmEngine)`` (``process_bind_param``
   then ``process_result_value``). Also the blind index of one value.
2. **ORM on SQLite**: insert N rows through ``kit.sessions()`` and select them
   back, for a plaintext ``String(320)`` model, a soc2kit ``Encrypted(String(320))``
   model and a sqlalchemy-utils model (uuid7 primary keys for all three).
3. **Re-encryption job**: ``kit.encryption.reencrypt(Model)`` after
   ``kit.keys.rotate()``, on PostgreSQL (``SOC2KIT_TEST_POSTGRES_URL``, else an
   embedded ``pgserver``) and on SQLite, for each batch size.

Variants are interleaved per repetition (their order rotating), and figures are
medians; ratios are medians of the per-repetition ratios.

    .venv/bin/python benchmarks/crypto.py [--quick] [--skip-postgres] [--write docs/performance.md]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import os
import platform
import shlex
import sqlite3
import statistics
import sys
import tempfile
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
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import FastAPI
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy_utils import StringEncryptedType  # type: ignore[import-untyped]
from sqlalchemy_utils.types.encrypted.encrypted_type import (  # type: ignore[import-untyped]
    AesGcmEngine,
)

import soc2kit
from soc2kit.crypto import (
    BlindIndexKey,
    DataKey,
    Encrypted,
    FieldContext,
    blind_index,
    decode_value,
    decrypt,
    encode_value,
    encrypt,
    uuid7,
)
from soc2kit.db import normalize_url

logging.disable(logging.WARNING)
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # pgserver's platformdirs

T = TypeVar("T")
UTILS_KEY = os.urandom(32)  # sqlalchemy-utils derives its AES key with SHA-256 on every call
FULL = {
    "calls": 20_000,
    "repeats": 9,
    "rows": 10_000,
    "orm_repeats": 7,
    "job_rows": 20_000,
    "job_repeats": 5,
}
QUICK = {
    "calls": 2_000,
    "repeats": 3,
    "rows": 1_000,
    "orm_repeats": 3,
    "job_rows": 2_000,
    "job_repeats": 2,
}


# models ---------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class PlainRow(Base):
    __tablename__ = "bench_plain"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    email: Mapped[str] = mapped_column(sa.String(320))


class Soc2kitRow(Base):
    __tablename__ = "bench_soc2kit"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    email: Mapped[str] = mapped_column(Encrypted(sa.String(320)))


class UtilsRow(Base):
    __tablename__ = "bench_sqlalchemy_utils"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    email: Mapped[str] = mapped_column(StringEncryptedType(sa.String(320), UTILS_KEY, AesGcmEngine))


ORM_VARIANTS: dict[str, type[PlainRow | Soc2kitRow | UtilsRow]] = {
    "plaintext": PlainRow,
    "soc2kit": Soc2kitRow,
    "sqlalchemy-utils": UtilsRow,
}


def emails(n: int) -> list[str]:
    """``n`` distinct 40-character addresses."""
    return [f"customer-{i:09d}@benchmark.example.org" for i in range(n)]


def rotated(items: Sequence[T], shift: int) -> list[T]:
    """``items`` rotated left by ``shift`` (so each variant takes every position in turn)."""
    k = shift % len(items)
    return [*items[k:], *items[:k]]


def ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Per-repetition ratios a/b."""
    return [x / y for x, y in zip(a, b, strict=True)]


# 1. one value -----------------------------------------------------------------------------


@dataclass
class FieldResult:
    calls: int
    repeats: int
    us: dict[str, list[float]]  # µs per call, one sample per repetition


def measure_field(calls: int, repeats: int) -> FieldResult:
    """Encrypt+decrypt of one 40-char value (raw, soc2kit, sqlalchemy-utils), blind index."""
    key = os.urandom(32)
    raw = AESGCM(key)
    data_key = DataKey(1, key)
    keys = {1: data_key}
    index_key = BlindIndexKey(1, os.urandom(32))
    ctx = FieldContext("customers", "email", "acme", "0190a000-0000-7000-8000-000000000001")
    utils = StringEncryptedType(sa.String, UTILS_KEY, AesGcmEngine)
    dialect = sqlite_dialect.dialect()
    text = "y" * 40
    raw_plain = text.encode()

    def raw_roundtrip() -> object:
        nonce = os.urandom(12)
        return raw.decrypt(nonce, raw.encrypt(nonce, raw_plain, None), None).decode()

    def soc2kit_roundtrip() -> object:
        return decode_value(decrypt(keys, encrypt(data_key, encode_value(text), ctx), ctx))

    def utils_roundtrip() -> object:
        return utils.process_result_value(utils.process_bind_param(text, dialect), dialect)

    def index() -> object:
        return blind_index(index_key, text, ctx, "casefold")

    variants: dict[str, Callable[[], object]] = {
        "raw": raw_roundtrip,
        "soc2kit": soc2kit_roundtrip,
        "sqlalchemy-utils": utils_roundtrip,
        "blind_index": index,
    }
    for name in ("raw", "soc2kit", "sqlalchemy-utils"):
        assert variants[name]() == text, name
    for fn in variants.values():
        for _ in range(2000):
            fn()
    us: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(repeats):
        for name in rotated(list(variants), rep):
            fn = variants[name]
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            us[name].append((time.perf_counter() - start) / calls * 1e6)
    return FieldResult(calls, repeats, us)


# kits -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_kit(url: str, data_dir: Path) -> Iterator[soc2kit.Kit]:
    """A kit on ``url`` with the benchmark tables and loaded keys; shut down afterwards."""
    kit = soc2kit.install(
        FastAPI(),
        soc2kit.Settings(environment="test", database_url=url, data_dir=data_dir),
    )
    try:
        Base.metadata.create_all(kit.engine)
        kit.keys.load(create=True)
        yield kit
    finally:
        kit.shutdown()


@contextlib.contextmanager
def postgres(workdir: Path) -> Iterator[tuple[str | None, str]]:
    """(URL of a fresh database, about the server), or (None, why there is none)."""
    admin_url = os.environ.get("SOC2KIT_TEST_POSTGRES_URL", "")
    source = "`SOC2KIT_TEST_POSTGRES_URL`" if admin_url else "embedded `pgserver`"
    with contextlib.ExitStack() as stack:  # drop the database, then stop the server
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
            name = "bench_" + uuid.uuid4().hex[:12]
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                show = {
                    setting: str(conn.execute(sa.text(f"SHOW {setting}")).scalar())
                    for setting in ("server_version", "fsync", "synchronous_commit")
                }
        except Exception as exc:
            reason = (str(exc).splitlines() or [""])[0]
            yield None, f"{source} unavailable: {type(exc).__name__}: {reason}"
            return

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        stack.callback(drop)
        url = normalize_url(admin_url).set(database=name).render_as_string(hide_password=False)
        where = "on the same machine, default configuration" if "pgserver" in source else ""
        yield (
            url,
            (
                f"PostgreSQL {show['server_version'].split()[0]} (fsync={show['fsync']}, "
                f"synchronous_commit={show['synchronous_commit']}), {source} {where}".rstrip()
            ),
        )


# 2. ORM insert + select ------------------------------------------------------------------------


@dataclass
class OrmResult:
    rows: int
    repeats: int
    insert_ms: dict[str, list[float]] = field(default_factory=dict)
    select_ms: dict[str, list[float]] = field(default_factory=dict)
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # process CPU, insert+select

    def total_ms(self, name: str) -> list[float]:
        return [a + b for a, b in zip(self.insert_ms[name], self.select_ms[name], strict=True)]


def orm_round(kit: soc2kit.Kit, model: type[Any], values: list[str]) -> tuple[float, float, float]:
    """Insert ``values`` in one session and commit, then select every row.

    Returns (insert, select, CPU time of both) in ms.
    """
    cpu = time.process_time()
    start = time.perf_counter()
    with kit.sessions() as session:
        session.add_all([model(email=v) for v in values])
        session.commit()
    inserted = time.perf_counter()
    with kit.sessions() as session:
        read = [row.email for row in session.scalars(sa.select(model))]
    selected = time.perf_counter()
    cpu = time.process_time() - cpu
    if sorted(read) != values:
        raise RuntimeError(f"{model.__name__}: the rows read back differ from those written")
    with kit.sessions() as session:
        session.execute(sa.delete(model))
        session.commit()
    return (inserted - start) * 1e3, (selected - inserted) * 1e3, cpu * 1e3


def measure_orm(workdir: Path, rows: int, repeats: int) -> OrmResult:
    """Interleaved ORM insert+select of ``rows`` rows per variant, on one SQLite file."""
    values = emails(rows)
    result = OrmResult(rows, repeats)
    with bench_kit(f"sqlite:///{workdir / 'orm.db'}", workdir / "orm-data") as kit:
        for model in ORM_VARIANTS.values():  # warm-up: statement caches, mapper setup
            orm_round(kit, model, values[: min(rows, 1000)])
        for name in ORM_VARIANTS:
            result.insert_ms[name] = []
            result.select_ms[name] = []
            result.cpu_ms[name] = []
        for rep in range(repeats):
            for name in rotated(list(ORM_VARIANTS), rep):
                insert_ms, select_ms, cpu_ms = orm_round(kit, ORM_VARIANTS[name], values)
                result.insert_ms[name].append(insert_ms)
                result.select_ms[name].append(select_ms)
                result.cpu_ms[name].append(cpu_ms)
    return result


# 3. re-encryption job ---------------------------------------------------------------------------


@dataclass
class JobRun:
    database: str
    rows: int
    repeats: int
    rows_per_s: dict[int, list[float]]  # batch size -> one sample per repetition


def measure_reencrypt(
    database: str, url: str, data_dir: Path, rows: int, repeats: int, batch_sizes: list[int]
) -> JobRun:
    """Rows/s of ``kit.encryption.reencrypt`` after a rotation, per batch size (interleaved)."""
    values = emails(rows)
    run = JobRun(database, rows, repeats, {size: [] for size in batch_sizes})
    with bench_kit(url, data_dir) as kit:
        for start in range(0, rows, 5000):
            with kit.sessions() as session:
                session.add_all([Soc2kitRow(email=v) for v in values[start : start + 5000]])
                session.commit()

        def job(batch_size: int) -> float:
            kit.keys.rotate()
            began = time.perf_counter()
            result = kit.encryption.reencrypt(Soc2kitRow, batch_size=batch_size)
            seconds = time.perf_counter() - began
            if not (result.finished and result.remaining == 0 and result.changed == rows):
                raise RuntimeError(f"{database}: the job did not rewrite every row: {result}")
            return rows / seconds

        job(batch_sizes[0])  # warm-up
        for rep in range(repeats):
            for size in rotated(batch_sizes, rep):
                run.rows_per_s[size].append(job(size))
        with kit.sessions() as session:
            read = sorted(row.email for row in session.scalars(sa.select(Soc2kitRow)))
        if read != values:
            raise RuntimeError(f"{database}: the rows read back after re-encryption differ")
    return run


# report ------------------------------------------------------------------------------------------


def version(dist: str) -> str:
    """The installed version of ``dist``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    """Markdown bullets: cores, CPU model, platform, load, versions."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"- Machine: {usable} usable cores ({os.cpu_count()} CPUs), `{cpu}`, "
        f"{platform.platform()}. Load average (1/5/15 min) after the run: "
        f"{load}.\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"cryptography {version('cryptography')}, SQLAlchemy {version('sqlalchemy')}, "
        f"sqlalchemy-utils {version('sqlalchemy-utils')}, soc2kit {version('soc2kit')}, "
        f"SQLite {sqlite3.sqlite_version}, psycopg {version('psycopg')}."
    )


def command_line() -> str:
    """The command as run, paths relative to the working directory."""
    shown = [os.path.relpath(a) if Path(a).is_absolute() else a for a in sys.argv]
    python = os.path.relpath(sys.executable) if sys.executable else "python"
    return shlex.join([python, *shown])


def spread(values: Sequence[float], fmt: str, unit: str = "") -> str:
    """``median (min to max)``, each formatted with ``fmt`` and followed by ``unit``."""
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"{med:{fmt}}{unit} ({lo:{fmt}}{unit} to {hi:{fmt}}{unit})"


def verdict(ok: bool) -> str:
    """PASS or MISS, in bold."""
    return "**PASS**" if ok else "**MISS**"


@dataclass
class Report:
    command: str
    minutes: float
    field: FieldResult
    orm: OrmResult | None
    jobs: list[JobRun]
    postgres: str  # where PostgreSQL came from, or why it was skipped
    batch_sizes: list[int]


def render(r: Report) -> str:
    f = r.field.us
    vs_raw = ratios(f["soc2kit"], f["raw"])
    vs_utils = ratios(f["sqlalchemy-utils"], f["soc2kit"])
    bidx = statistics.median(f["blind_index"])
    targets = [
        (
            "1a. encrypt+decrypt of one 40-char value, soc2kit ≤ 2x raw `AESGCM`",
            f"{statistics.median(vs_raw):.2f}x ({statistics.median(f['soc2kit']):.2f} µs vs "
            f"{statistics.median(f['raw']):.2f} µs)",
            verdict(statistics.median(vs_raw) <= 2),
        ),
        (
            "1b. the same, soc2kit ≥ 8x faster than sqlalchemy-utils `StringEncryptedType`",
            f"{statistics.median(vs_utils):.2f}x faster "
            f"({statistics.median(f['sqlalchemy-utils']):.2f} µs vs "
            f"{statistics.median(f['soc2kit']):.2f} µs)",
            verdict(statistics.median(vs_utils) >= 8),
        ),
        ("2. blind index per value ≤ 3 µs", f"{bidx:.2f} µs", verdict(bidx <= 3)),
    ]
    if r.orm is not None:
        orm_ratio = statistics.median(
            ratios(r.orm.total_ms("soc2kit"), r.orm.total_ms("plaintext"))
        )
        targets.append(
            (
                "3. 10,000-row ORM insert+select on SQLite, `Encrypted` ≤ 1.2x plaintext",
                f"{orm_ratio:.2f}x ({r.orm.rows:,} rows)",
                verdict(orm_ratio <= 1.2),
            )
        )
    else:
        targets.append(("3. ORM insert+select on SQLite ≤ 1.2x plaintext", "not run", "—"))
    pg = [j for j in r.jobs if j.database == "PostgreSQL"]
    if pg:
        size, rates = max(pg[0].rows_per_s.items(), key=lambda kv: statistics.median(kv[1]))
        best = statistics.median(rates)
        others = ", ".join(str(s) for s in r.batch_sizes)
        targets.append(
            (
                "4. `kit.encryption.reencrypt()` on PostgreSQL ≥ 10,000 rows/s",
                f"{best:,.0f} rows/s at batch_size={size} (best of {others}; {pg[0].rows:,} rows)",
                verdict(best >= 10_000),
            )
        )
    else:
        targets.append(
            (
                "4. `kit.encryption.reencrypt()` on PostgreSQL ≥ 10,000 rows/s",
                r.postgres,
                "**NOT RUN**",
            )
        )
    out = [
        "## Field encryption\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (the run took {r.minutes:.1f} min) "
        f"with:\n\n```sh\n{r.command}\n```\n",
        machine(),
        "- Variants interleaved in every repetition, their order rotating from one repetition "
        "to the next; figures are medians (min to max); ratios are medians of the "
        "per-repetition ratios. `--quick` runs a small version; `--help` lists the options.\n",
        "### Targets\n",
        "| target | measured | result |\n|---|---|---|",
        *(f"| {t} | {m} | {v} |" for t, m, v in targets),
        "",
        "### One value\n",
        f"A 40-character string; {r.field.calls:,} calls per variant and repetition, "
        f"{r.field.repeats} repetitions. **raw**: `AESGCM.encrypt` then `decrypt`, fresh "
        "nonce, no associated data (the floor). **soc2kit**: typed encode, encrypt with the "
        "place-bound AAD and the key-id header, decrypt, decode. **sqlalchemy-utils**: "
        "`StringEncryptedType(String, key, AesGcmEngine)`, `process_bind_param` then "
        "`process_result_value` (it derives the AES key with SHA-256 and builds a `Cipher` "
        "on every call, and base64-encodes). **blind_index**: HMAC-SHA256 of the casefolded "
        "value, truncated to 16 bytes.\n",
        "| operation | µs per call | vs raw |\n|---|---:|---:|",
        *(
            f"| {name} | {spread(v, '.2f')} | "
            + ("—" if name == "blind_index" else spread(ratios(v, f["raw"]), ".2f", "x"))
            + " |"
            for name, v in f.items()
        ),
        "",
    ]
    if r.orm is not None:
        o = r.orm
        out += [
            f"### ORM: {o.rows:,} rows on SQLite\n",
            f"Through `kit.sessions()` on one SQLite file (soc2kit's engine: WAL, "
            f"`synchronous=NORMAL`); {o.repeats} repetitions. *Insert*: build {o.rows:,} "
            "objects, `add_all`, `commit` (one flush). *Select*: `select(Model)` in a new "
            "session, every `email` read. Rows are deleted (not timed) between rounds; uuid7 "
            "primary keys. **plaintext**: `String(320)`; **soc2kit**: `Encrypted(String(320))` "
            "(sealed at flush with the row's context, opened on load); **sqlalchemy-utils**: "
            "`StringEncryptedType(String(320), key, AesGcmEngine)`. All three models live on "
            "the kit's engine, so the plaintext one also passes soc2kit's ORM listeners "
            "(which find no encrypted column). The target is judged on wall time; the CPU "
            "time of the process (SQLite runs in it) is shown too, being less sensitive to "
            "other work on the machine.\n",
            "| variant | insert, ms | select, ms | insert+select, ms | vs plaintext "
            "| CPU, ms | vs plaintext, CPU |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name in ORM_VARIANTS:
            rel = ratios(o.total_ms(name), o.total_ms("plaintext"))
            rel_cpu = ratios(o.cpu_ms[name], o.cpu_ms["plaintext"])
            out.append(
                f"| {name} | {spread(o.insert_ms[name], ',.0f')} | "
                f"{spread(o.select_ms[name], ',.0f')} | {spread(o.total_ms(name), ',.0f')} | "
                f"{spread(rel, '.2f', 'x')} | {spread(o.cpu_ms[name], ',.0f')} | "
                f"{spread(rel_cpu, '.2f', 'x')} |"
            )
        out.append("")
    out += ["### Re-encryption job\n"]
    if r.jobs:
        out += [
            "`kit.keys.rotate()`, then `kit.encryption.reencrypt(Model, batch_size=...)` "
            "timed as a whole (row count, checkpoints, compare-and-swap updates, re-read of "
            "each batch, final verification scan); every row is on the previous key, so "
            "every row is rewritten. One warm-up job, then each repetition rotates and runs "
            "once per batch size. The model is the soc2kit one above (one encrypted column, "
            "no blind index).\n",
            "| database | rows | batch_size | rows/s | seconds per job |",
            "|---|---:|---:|---:|---:|",
        ]
        for j in r.jobs:
            for size, rates in j.rows_per_s.items():
                secs = [j.rows / x for x in rates]
                out.append(
                    f"| {j.database} | {j.rows:,} | {size} | {spread(rates, ',.0f')} | "
                    f"{spread(secs, '.2f')} |"
                )
        out.append("")
    skipped = r.postgres.startswith("skipped")
    out.append(f"- {'Re-encryption on PostgreSQL ' if skipped else ''}{r.postgres}.\n")
    return "\n".join(out)


def progress(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    """Options; sizes left unset take the full (or ``--quick``) defaults."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a quick check")
    parser.add_argument("--calls", type=int, help="one-value calls per repetition (20,000)")
    parser.add_argument("--repeats", type=int, help="one-value repetitions (9)")
    parser.add_argument("--rows", type=int, help="ORM rows per variant (10,000)")
    parser.add_argument("--orm-repeats", type=int, help="ORM repetitions (7)")
    parser.add_argument("--job-rows", type=int, help="rows re-encrypted per job (20,000)")
    parser.add_argument("--job-repeats", type=int, help="jobs per batch size (5)")
    parser.add_argument(
        "--batch-sizes", default="1000,2000", help="re-encryption batch sizes (1000,2000)"
    )
    parser.add_argument("--skip-orm", action="store_true", help="no ORM benchmark")
    parser.add_argument("--skip-postgres", action="store_true", help="no PostgreSQL job")
    parser.add_argument("--skip-sqlite-job", action="store_true", help="no SQLite job")
    parser.add_argument("--write", type=Path, help="update this Markdown file's crypto section")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    return args


def main() -> None:
    """Run every part, print the Markdown section, and write it when asked."""
    args = parse_args()
    began = time.perf_counter()
    field_result = measure_field(args.calls, args.repeats)
    for name, values in field_result.us.items():
        progress(f"one value   {name:16} {statistics.median(values):7.2f} µs")
    jobs: list[JobRun] = []
    orm = None
    with tempfile.TemporaryDirectory(prefix="soc2kit-bench-") as tmp:
        workdir = Path(tmp)
        if not args.skip_orm:
            orm = measure_orm(workdir, args.rows, args.orm_repeats)
            for name in ORM_VARIANTS:
                progress(f"ORM         {name:16} {statistics.median(orm.total_ms(name)):7.0f} ms")
        if not args.skip_sqlite_job:
            jobs.append(
                measure_reencrypt(
                    "SQLite",
                    f"sqlite:///{workdir / 'job.db'}",
                    workdir / "job-data",
                    args.job_rows,
                    args.job_repeats,
                    args.batch_sizes,
                )
            )
        if args.skip_postgres:
            pg_note = "skipped: no PostgreSQL (`--skip-postgres`)"
        else:
            with postgres(workdir) as (pg_url, pg_note):
                if pg_url is None:
                    pg_note = f"skipped: no PostgreSQL ({pg_note})"
                else:
                    jobs.append(
                        measure_reencrypt(
                            "PostgreSQL",
                            pg_url,
                            workdir / "pg-data",
                            args.job_rows,
                            args.job_repeats,
                            args.batch_sizes,
                        )
                    )
        if pg_note.startswith("skipped"):
            print(pg_note)
        for j in jobs:
            for size, rates in j.rows_per_s.items():
                progress(
                    f"reencrypt   {j.database:10} batch {size:5} "
                    f"{statistics.median(rates):9,.0f} rows/s"
                )
    report = Report(
        command_line(),
        (time.perf_counter() - began) / 60,
        field_result,
        orm,
        jobs,
        pg_note,
        args.batch_sizes,
    )
    text = render(report)
    print(text)
    if args.write:
        write_section(args.write, "crypto", text)


if __name__ == "__main__":
    main()
