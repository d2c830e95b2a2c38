"""Operations on encrypted data at rest: status, re-encryption, encrypting legacy plaintext.

The jobs work on the table directly (SQLAlchemy Core, raw stored values), in
primary-key order and in batches:

* each batch is read, rewritten in memory, and written back with
  compare-and-swap updates (``WHERE column IS NOT DISTINCT FROM <value read>``),
  so a row the application changed meanwhile is never overwritten with stale
  data; the batch is then re-read and repeated until none of its rows needs work;
* the checkpoint (last primary key, counters) is written after each batch, so an
  interrupted run resumes where it stopped (a batch run twice is harmless: the
  compare-and-swap finds nothing left to do);
* at the end a full verification counts what is left (rows on old keys, or
  plaintext) and records it; only a count of zero lets a key be retired.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapper

from soc2kit.authn.principal import Principal
from soc2kit.crypto import aead
from soc2kit.crypto import orm as fle
from soc2kit.crypto.codec import decode_value, encode_value
from soc2kit.crypto.errors import CryptoError, DecryptionError, KeyDestroyedError
from soc2kit.crypto.keyring import GLOBAL_SCOPE, Keyring
from soc2kit.db.schema import encryption_jobs

log = logging.getLogger("soc2kit.crypto")

Mode = Literal["reencrypt", "encrypt-existing"]
Progress = Callable[[int, int], None]  # (rows scanned so far, rows in the table)
_MAX_PASSES = 5


@dataclass(slots=True)
class ColumnStatus:
    """Rows per key id, plaintext and NULL counts for one encrypted column."""

    model: str
    attribute: str
    table: str
    column: str
    rows_by_key: dict[str, int] = field(default_factory=dict)
    plaintext: int = 0
    null: int = 0
    stale_blind_index: int = 0
    on_inactive_keys: int = 0


@dataclass(slots=True)
class JobResult:
    job_id: str
    mode: Mode
    scanned: int
    changed: int
    remaining: int
    resumed_from: Any
    dry_run: bool
    finished: bool
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.scanned / self.seconds if self.seconds > 0 else 0.0


class FieldEncryption:
    """``kit.encryption``: attach engines, report status, run the re-encryption jobs."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def attach(self, engine: Any) -> None:
        """Let sessions on ``engine`` read and write encrypted columns."""
        fle.attach(engine, self.keyring)

    # status ----------------------------------------------------------------------
    def status(self, model: type[Any], *, engine: Engine | None = None) -> list[ColumnStatus]:
        plan = _Plan(model, self.keyring)
        active = self._active_ids()
        blind_version = self.keyring.blind_keys()[0].version
        results = {
            e.key: ColumnStatus(model.__name__, e.key, plan.table.name, plan.column(e.key).name)
            for e in plan.spec.encrypted
        }
        with (engine or self.keyring.engine).connect() as conn:
            for row in _scan(conn, plan, None, 5000):
                for e in plan.spec.encrypted:
                    raw = row[e.key]
                    status = results[e.key]
                    if raw is None:
                        status.null += 1
                        continue
                    blob = _header(raw)
                    if blob is None:
                        status.plaintext += 1
                        continue
                    key_id = int.from_bytes(blob[1:5], "big")
                    hex_id = f"{key_id:08x}"
                    status.rows_by_key[hex_id] = status.rows_by_key.get(hex_id, 0) + 1
                    if key_id not in active:
                        status.on_inactive_keys += 1
                for b in plan.spec.blind:
                    value = row[b.key]
                    if (value is None) != (row[b.source] is None) or (
                        value is not None and value[0] != blind_version
                    ):
                        results[b.source].stale_blind_index += 1
        return list(results.values())

    def rows_on_key(self, key_id: int, models: Sequence[type[Any]], *, engine: Any = None) -> int:
        """How many stored values (or blind indexes, for an index key) in ``models`` use it."""
        info = self.keyring.key_info(key_id)
        if info is None:
            raise CryptoError(f"no data key with id {key_id:08x}")
        total = 0
        for model in models:
            plan = _Plan(model, self.keyring)
            with (engine or self.keyring.engine).connect() as conn:
                for row in _scan(conn, plan, None, 5000):
                    if info.purpose == "bidx":
                        total += sum(
                            1
                            for b in plan.spec.blind
                            if row[b.key] is not None and row[b.key][0] == info.version
                        )
                        continue
                    for e in plan.spec.encrypted:
                        blob = None if row[e.key] is None else _header(row[e.key])
                        if blob is not None and int.from_bytes(blob[1:5], "big") == key_id:
                            total += 1
        return total

    def retire(
        self,
        key_id: int,
        models: Sequence[type[Any]] | None = None,
        *,
        engine: Engine | None = None,
        actor: Principal | str | None = "system",
    ) -> None:
        """Verify that no row of ``models`` uses ``key_id``, then retire it.

        ``models`` defaults to every mapped model with encrypted columns; a model
        left out of an explicit list is named in a warning, since retiring makes
        its rows under that key unreadable.
        """
        known = [m.class_ for m in fle.encrypted_mappers()]
        if models is None:
            models = known
        if not models:
            raise CryptoError("no model with encrypted columns to verify: name them")
        unchecked = sorted(m.__name__ for m in known if m not in models)
        if unchecked:
            log.warning(
                "retiring key %08x without checking these models: %s",
                key_id,
                ", ".join(unchecked),
            )
        remaining = self.rows_on_key(key_id, models, engine=engine)
        self.keyring.retire(key_id, remaining_rows=remaining, actor=actor)

    def _active_ids(self) -> set[int]:
        return {
            k.key_id
            for k in self.keyring.list_keys()
            if k.state.value == "ACTIVE" and k.purpose == "enc"
        }

    # jobs ----------------------------------------------------------------------------
    def reencrypt(self, model: type[Any], **options: Any) -> JobResult:
        """Rewrite values on non-active keys (and stale blind indexes) under the active keys."""
        return self._run(model, "reencrypt", **options)

    def encrypt_existing(self, model: type[Any], **options: Any) -> JobResult:
        """Encrypt legacy plaintext left in encrypted columns, and fill their blind indexes."""
        return self._run(model, "encrypt-existing", **options)

    def _run(
        self,
        model: type[Any],
        mode: Mode,
        *,
        engine: Engine | None = None,
        batch_size: int = 1000,
        rows_per_second: float | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
        max_batches: int | None = None,
        restart: bool = False,
        actor: Principal | str | None = "system",
    ) -> JobResult:
        if not 1 <= batch_size <= 100_000:
            raise CryptoError("batch_size is 1..100000")
        if rows_per_second is not None and rows_per_second <= 0:
            raise CryptoError("rows_per_second must be positive")
        plan = _Plan(model, self.keyring)
        data_engine = engine or self.keyring.engine
        job_id = f"{mode}:{plan.spec.encrypted[0].table}"
        started = time.perf_counter()
        with data_engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(plan.table)).scalar_one()
        if dry_run:
            with data_engine.connect() as conn:
                need = sum(1 for row in _scan(conn, plan, None, batch_size) if plan.work(row, mode))
            return JobResult(job_id, mode, total, 0, need, None, True, False, _since(started))
        last_pk, scanned, changed = self._checkpoint(job_id, mode, plan, restart)
        resumed_from = last_pk
        self._audit(
            "crypto.job.started", actor, job_id, resumed=resumed_from is not None, mode=mode
        )
        batches = 0
        finished = False
        while True:
            if max_batches is not None and batches >= max_batches:
                break
            with data_engine.connect() as conn:
                rows = list(_scan(conn, plan, last_pk, batch_size, limit=batch_size))
            if not rows:
                finished = True
                break
            batch_changed = self._batch(data_engine, plan, rows, mode)
            last_pk = plan.pk_of(rows[-1])
            scanned += len(rows)
            changed += batch_changed
            self._save_checkpoint(job_id, last_pk, scanned, changed)
            batches += 1
            if progress is not None:
                progress(min(scanned, total), total)
            if rows_per_second is not None:
                # Pace the job: each batch takes at least len(rows)/rate seconds.
                time.sleep(len(rows) / rows_per_second)
        remaining = -1
        if finished:
            with data_engine.connect() as conn:
                remaining = sum(1 for row in _scan(conn, plan, None, 5000) if plan.work(row, mode))
            self._finish(job_id, remaining)
            self._audit(
                "crypto.job.finished",
                actor,
                job_id,
                mode=mode,
                scanned=scanned,
                changed=changed,
                remaining=remaining,
            )
        return JobResult(
            job_id,
            mode,
            scanned,
            changed,
            remaining,
            resumed_from,
            False,
            finished,
            _since(started),
        )

    def _batch(self, engine: Engine, plan: _Plan, rows: list[dict[str, Any]], mode: Mode) -> int:
        """Rewrite one batch with compare-and-swap; re-read and repeat until none needs work."""
        changed = 0
        pending = rows
        for _attempt in range(_MAX_PASSES):
            updates = []
            for row in pending:
                new = plan.rewrite(row, mode)
                if new is not None:
                    updates.append(new)
            if not updates:
                return changed
            with engine.begin() as conn:
                conn.execute(plan.cas_update(), updates)
            changed += len(updates)
            # Rows the application changed in between kept its values: look again.
            with engine.connect() as conn:
                pending = [
                    r for r in plan.reread(conn, [u["_pk"] for u in updates]) if plan.work(r, mode)
                ]
            if not pending:
                return changed
        raise CryptoError(f"{len(pending)} rows kept changing during the batch: run the job again")

    # checkpoints -------------------------------------------------------------------------
    def _checkpoint(
        self, job_id: str, mode: Mode, plan: _Plan, restart: bool
    ) -> tuple[Any, int, int]:
        now = datetime.now(UTC)
        with self.keyring.engine.begin() as conn:
            row = conn.execute(
                sa.select(encryption_jobs).where(encryption_jobs.c.job_id == job_id)
            ).first()
            if row is not None and row.status == "running" and not restart:
                last = None if row.last_pk is None else plan.decode_pk(row.last_pk)
                return last, int(row.rows_scanned), int(row.rows_changed)
            values = {
                "mode": mode,
                "target": plan.target,
                "last_pk": None,
                "rows_scanned": 0,
                "rows_changed": 0,
                "status": "running",
                "started_at": now,
                "updated_at": now,
                "finished_at": None,
                "remaining_after": None,
            }
            if row is None:
                conn.execute(encryption_jobs.insert().values(job_id=job_id, **values))
            else:
                conn.execute(
                    encryption_jobs.update()
                    .where(encryption_jobs.c.job_id == job_id)
                    .values(**values)
                )
        return None, 0, 0

    def _save_checkpoint(self, job_id: str, last_pk: Any, scanned: int, changed: int) -> None:
        with self.keyring.engine.begin() as conn:
            conn.execute(
                encryption_jobs.update()
                .where(encryption_jobs.c.job_id == job_id)
                .values(
                    last_pk=json.dumps(_jsonable(last_pk)),
                    rows_scanned=scanned,
                    rows_changed=changed,
                    updated_at=datetime.now(UTC),
                )
            )

    def _finish(self, job_id: str, remaining: int) -> None:
        now = datetime.now(UTC)
        with self.keyring.engine.begin() as conn:
            conn.execute(
                encryption_jobs.update()
                .where(encryption_jobs.c.job_id == job_id)
                .values(
                    status="finished", finished_at=now, updated_at=now, remaining_after=remaining
                )
            )

    def jobs(self) -> list[dict[str, Any]]:
        with self.keyring.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(encryption_jobs)).all()]

    def _audit(self, event: str, actor: Any, job_id: str, **extra: Any) -> None:
        self.keyring._audit.record(
            event,
            action=event.rsplit(".", 1)[-1],
            outcome="success",
            actor=actor,
            resource_type="encryption_job",
            resource_id=job_id,
            **extra,
        )


def _since(started: float) -> float:
    return time.perf_counter() - started


def _jsonable(pk: Any) -> list[Any]:
    return [str(v) if isinstance(v, uuid.UUID) else v for v in pk]


def _header(raw: bytes | str) -> bytes | None:
    """The binary ciphertext (for its header), or None for plaintext (malformed included)."""
    try:
        return fle._ciphertext(raw)
    except DecryptionError:
        return None


class _Plan:
    """What a job needs to know about one model's table: columns, binding, raw access."""

    def __init__(self, model: type[Any], keyring: Keyring) -> None:
        mapper: Mapper[Any] = sa.inspect(model)
        spec = fle._spec(mapper)
        if spec is None:
            raise CryptoError(f"{model.__name__} has no Encrypted columns")
        self.mapper = mapper
        self.spec = spec
        self.keyring = keyring
        self.table: sa.Table = mapper.local_table  # type: ignore[assignment]
        self.target = f"{model.__module__}:{model.__qualname__}"
        self.pk_cols = [self.column(k) for k in spec.pk]
        wanted = {*spec.pk, *spec.encrypted_keys, *(b.key for b in spec.blind)}
        if spec.tenant:
            wanted.add(spec.tenant)
        wanted |= {e.type.key_scope for e in spec.encrypted if e.type.key_scope}
        self.keys = sorted(wanted)
        self.writable = [e.key for e in spec.encrypted] + [b.key for b in spec.blind]

    def column(self, key: str) -> sa.Column[Any]:
        return self.mapper.get_property(key).columns[0]  # type: ignore[no-any-return]

    def raw(self, key: str) -> Any:
        """The column with its stored type (no Encrypted processing)."""
        column = self.column(key)
        if isinstance(column.type, fle.Encrypted):
            raw_type = sa.Text() if column.type.storage == "text" else sa.LargeBinary()
            return sa.type_coerce(column, raw_type)
        if isinstance(column.type, fle.BlindIndex):
            return sa.type_coerce(column, sa.LargeBinary())
        return column

    def select(self) -> sa.Select[Any]:
        return sa.select(*(self.raw(k).label(k) for k in self.keys)).order_by(*self.pk_cols)

    def pk_of(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[k] for k in self.spec.pk)

    def decode_pk(self, text: str) -> tuple[Any, ...]:
        values = json.loads(text)
        out = []
        for column, value in zip(self.pk_cols, values, strict=True):
            try:
                python_type = column.type.python_type
            except NotImplementedError:
                python_type = type(value)
            out.append(uuid.UUID(value) if python_type is uuid.UUID else value)
        return tuple(out)

    def after(self, last_pk: tuple[Any, ...]) -> Any:
        if len(self.pk_cols) == 1:
            return self.pk_cols[0] > last_pk[0]
        return sa.tuple_(*self.pk_cols) > sa.tuple_(*(sa.literal(v) for v in last_pk))

    def reread(self, conn: Connection, pks: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        if len(self.pk_cols) == 1:
            cond = self.pk_cols[0].in_([pk[0] for pk in pks])
        else:
            cond = sa.tuple_(*self.pk_cols).in_(pks)
        return [dict(r._mapping) for r in conn.execute(self.select().where(cond))]

    # per-row logic ----------------------------------------------------------------------
    def _context(self, row: dict[str, Any], table: str, column: str) -> aead.FieldContext:
        tenant = row[self.spec.tenant] if self.spec.tenant else None
        ident: str | None = None
        if self.spec.bind_row:
            values = self.pk_of(row)
            ident = str(values[0]) if len(values) == 1 else json.dumps([str(v) for v in values])
        return aead.FieldContext(table, column, None if tenant is None else str(tenant), ident)

    def _scope(self, row: dict[str, Any], e: fle._EncAttr) -> str:
        attr = e.type.key_scope
        return GLOBAL_SCOPE if attr is None else str(row[attr])

    def work(self, row: dict[str, Any], mode: Mode) -> bool:
        """Whether ``row`` still needs this job."""
        return self.rewrite(row, mode, check_only=True) is not None

    def rewrite(
        self, row: dict[str, Any], mode: Mode, *, check_only: bool = False
    ) -> dict[str, Any] | None:
        """The CAS update parameters for ``row``, or None when it needs nothing."""
        blind_version = self.keyring.blind_keys()[0].version if self.spec.blind else 0
        stale_blind = {
            b.source
            for b in self.spec.blind
            if (row[b.key] is None) != (row[b.source] is None)
            or (row[b.key] is not None and row[b.key][0] != blind_version)
        }
        new = {k: row[k] for k in self.writable}
        plaintexts: dict[str, Any] = {}
        dirty = False
        for e in self.spec.encrypted:
            raw = row[e.key]
            if raw is None:
                continue
            blob = _header(raw)
            context = self._context(row, e.table, e.column)
            if blob is None:
                if mode != "encrypt-existing":
                    continue  # plaintext is encrypt-existing's work; status reports it
                if check_only:
                    return {}
                value = e.type.validate(fle._legacy(e.type, raw))
                reseal = True
            else:
                key_id = int.from_bytes(blob[1:5], "big")
                try:
                    reseal = mode == "reencrypt" and key_id != self.keyring.active_key_id(
                        self._scope(row, e)
                    )
                    if not reseal and e.key not in stale_blind:
                        continue
                    key = self.keyring.decryption_key(key_id)
                except KeyDestroyedError:
                    continue  # crypto-shredded: nothing to move, nothing to index
                if check_only:
                    return {}
                try:
                    value = decode_value(aead.decrypt_with_key(key, blob, context))
                except DecryptionError as exc:
                    fle._decrypt_failed(self.keyring, context, key_id, type(exc).__name__)
                    raise
            plaintexts[e.key] = value
            if reseal:
                dirty = True
                sealed = aead.encrypt(
                    self.keyring.encryption_key(self._scope(row, e)), encode_value(value), context
                )
                new[e.key] = aead.to_text(sealed) if e.type.storage == "text" else sealed
        for b in self.spec.blind:
            if b.source not in plaintexts or b.source not in stale_blind:
                continue
            tenant = self._context(row, "", "").tenant
            context = aead.FieldContext(b.table, b.column, tenant)
            new[b.key] = b.type.compute(self.keyring, plaintexts[b.source], context)
            dirty = dirty or new[b.key] != row[b.key]
        if not dirty:
            return None
        params = {f"n_{k}": new[k] for k in self.writable}
        params.update({f"o_{k}": row[k] for k in self.writable})
        params.update({f"pk_{i}": v for i, v in enumerate(self.pk_of(row))})
        params["_pk"] = self.pk_of(row)
        return params

    def cas_update(self) -> Any:
        stmt = self.table.update()
        conds = [col == sa.bindparam(f"pk_{i}") for i, col in enumerate(self.pk_cols)]
        values = {}
        for key in self.writable:
            column = self.column(key)
            raw_type = (
                sa.Text()
                if isinstance(column.type, fle.Encrypted) and column.type.storage == "text"
                else sa.LargeBinary()
            )
            conds.append(
                sa.type_coerce(column, raw_type).is_not_distinct_from(
                    sa.bindparam(f"o_{key}", type_=raw_type)
                )
            )
            values[column.name] = sa.bindparam(f"n_{key}", type_=raw_type)
        return stmt.where(*conds).values(values)


def _scan(
    conn: Connection,
    plan: _Plan,
    last_pk: tuple[Any, ...] | None,
    chunk: int,
    *,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows in primary-key order after ``last_pk``, read in chunks (keyset pagination)."""
    seen = 0
    while True:
        query = plan.select()
        if last_pk is not None:
            query = query.where(plan.after(last_pk))
        take = chunk if limit is None else min(chunk, limit - seen)
        rows = [dict(r._mapping) for r in conn.execute(query.limit(take))]
        yield from rows
        seen += len(rows)
        if len(rows) < take or (limit is not None and seen >= limit):
            return
        last_pk = plan.pk_of(rows[-1])
