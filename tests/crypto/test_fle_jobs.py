"""Re-encryption and encrypt-existing jobs: completeness, checkpoints, concurrency, pacing."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, mapped_column
from tests.conftest import audit_rows
from tests.crypto.fle_models import Customer, Legacy

import soc2kit
from soc2kit.crypto import DecryptionError, Encrypted
from soc2kit.errors import ConfigurationError


def add_customers(kit: soc2kit.Kit, n: int, *, prefix: str = "c") -> dict[uuid.UUID, str]:
    """n customers with service-key values only (email, birth date); returns id -> email."""
    with kit.sessions() as s:
        people = [
            Customer(email=f"{prefix}{i}@example.com", birth_date=date(1980, 1 + i % 12, 1))
            for i in range(n)
        ]
        s.add_all(people)
        s.commit()
        return {c.id: c.email for c in people}


def read_emails(kit: soc2kit.Kit) -> dict[uuid.UUID, str]:
    with kit.sessions() as s:
        return {c.id: c.email for c in s.scalars(sa.select(Customer))}


def raw_customers(kit: soc2kit.Kit) -> dict[uuid.UUID, tuple[Any, ...]]:
    with kit.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, email, email_bidx, birth_date FROM customers"))
        return {
            uuid.UUID(str(r[0])): tuple(None if v is None else bytes(v) for v in r[1:])
            for r in rows
        }


def key_of(raw: bytes) -> int:
    return int.from_bytes(raw[1:5], "big")


def status_of(kit: soc2kit.Kit, model: type[Any], attribute: str) -> Any:
    (status,) = [s for s in kit.encryption.status(model) if s.attribute == attribute]
    return status


# reencrypt ----------------------------------------------------------------------------


def test_reencrypt_after_rotate_moves_every_row_to_the_active_key(kit):
    written = add_customers(kit, 30)
    kit.keys.rotate()
    active = f"{kit.keys.active_key_id():08x}"
    assert active not in status_of(kit, Customer, "email").rows_by_key

    result = kit.encryption.reencrypt(Customer, batch_size=7)

    assert result.finished and result.remaining == 0
    assert result.scanned == 30 and result.changed == 30
    for attribute in ("email", "birth_date"):
        status = status_of(kit, Customer, attribute)
        assert status.rows_by_key == {active: 30}
        assert status.on_inactive_keys == 0
    assert read_emails(kit) == written


def test_reencrypt_records_a_finished_job_and_audit_events(kit):
    add_customers(kit, 12)
    kit.keys.rotate()

    result = kit.encryption.reencrypt(Customer, batch_size=5, actor="ops")

    (job,) = kit.encryption.jobs()
    assert job["job_id"] == result.job_id
    assert job["status"] == "finished"
    assert job["remaining_after"] == 0
    assert job["rows_scanned"] == 12
    events = [e for e in audit_rows(kit) if e["event_type"].startswith("crypto.job.")]
    assert [e["event_type"] for e in events] == ["crypto.job.started", "crypto.job.finished"]
    assert {e["resource_id"] for e in events} == {result.job_id}
    assert events[1]["extra"]["remaining"] == 0


def test_dry_run_counts_rows_needing_work_and_writes_nothing(kit):
    add_customers(kit, 10)
    kit.keys.rotate()
    add_customers(kit, 4, prefix="new")  # already on the active key
    before = raw_customers(kit)

    result = kit.encryption.reencrypt(Customer, dry_run=True)

    assert result.dry_run and not result.finished
    assert result.remaining == 10
    assert result.changed == 0
    assert raw_customers(kit) == before
    assert kit.encryption.jobs() == []
    assert not [e for e in audit_rows(kit) if e["event_type"].startswith("crypto.job.")]


def test_job_stopped_by_max_batches_resumes_from_its_checkpoint(kit):
    written = add_customers(kit, 50)
    old = kit.keys.active_key_id()
    kit.keys.rotate()
    ordered = sorted(written)

    first = kit.encryption.reencrypt(Customer, batch_size=10, max_batches=2)
    assert not first.finished and first.scanned == 20
    (job,) = kit.encryption.jobs()
    assert job["status"] == "running"
    on_old = [cid for cid, raw in raw_customers(kit).items() if key_of(raw[0]) == old]
    assert sorted(on_old) == ordered[20:]

    calls: list[tuple[int, int]] = []
    second = kit.encryption.reencrypt(Customer, batch_size=10, progress=lambda *a: calls.append(a))

    assert second.resumed_from is not None
    assert second.resumed_from[0] == ordered[19]
    assert len(calls) == 3  # the 30 rows left, in 3 batches: nothing scanned twice
    (job,) = kit.encryption.jobs()
    assert job["rows_scanned"] == 50
    assert second.finished and second.remaining == 0
    assert read_emails(kit) == written


def test_progress_callback_interrupt_leaves_a_checkpoint_the_next_run_resumes(kit):
    written = add_customers(kit, 30)
    kit.keys.rotate()
    ordered = sorted(written)

    def interrupt(scanned: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        kit.encryption.reencrypt(Customer, batch_size=10, progress=interrupt)

    (job,) = kit.encryption.jobs()
    assert job["status"] == "running" and job["rows_scanned"] == 10
    result = kit.encryption.reencrypt(Customer, batch_size=10)
    assert result.resumed_from is not None
    assert result.resumed_from[0] == ordered[9]
    assert result.finished and result.remaining == 0
    assert kit.encryption.jobs()[0]["rows_scanned"] == 30
    assert read_emails(kit) == written


def test_concurrent_application_writes_are_never_lost(kit):
    n = 40
    last = add_customers(kit, n)
    kit.keys.rotate()
    ids = sorted(last)
    stop = threading.Event()
    errors: list[BaseException] = []
    writes_during_job = [0]
    job_running = threading.Event()

    def writer() -> None:
        rnd = random.Random(1234)
        i = 0
        try:
            while not stop.is_set():
                cid = rnd.choice(ids)
                value = f"w{i}@example.com"
                i += 1
                with kit.sessions() as s:
                    s.get(Customer, cid).email = value
                    s.commit()
                last[cid] = value  # only after the commit succeeded
                if job_running.is_set():
                    writes_during_job[0] += 1
                # A busy application, not a livelock: an unpaced writer starves the job of
                # SQLite's write lock until a row exhausts its compare-and-swap retries.
                time.sleep(0.003)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    job_thread = threading.get_ident()

    def widen_the_race(conn, cursor, statement, parameters, context, executemany) -> None:
        # Between reading a batch and writing it back, give the writer time to land
        # on the same rows: exactly the window the compare-and-swap must cover. Only
        # a batch's first write (all its rows): the retry passes stay fast, so a row
        # the writer keeps hitting cannot exhaust the job's retries.
        if (
            threading.get_ident() == job_thread
            and executemany
            and len(parameters) >= 6
            and statement.lstrip().startswith("UPDATE customers")
        ):
            time.sleep(0.05)

    sa.event.listen(kit.engine, "before_cursor_execute", widen_the_race)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        job_running.set()
        result = kit.encryption.reencrypt(Customer, batch_size=8, rows_per_second=200)
        job_running.clear()
    finally:
        stop.set()
        thread.join(30)
        sa.event.remove(kit.engine, "before_cursor_execute", widen_the_race)
    assert not thread.is_alive()
    assert errors == []
    assert result.finished
    assert writes_during_job[0] >= 5  # the writer really overlapped the job

    final = kit.encryption.reencrypt(Customer)
    assert final.remaining == 0
    assert read_emails(kit) == last
    active = kit.keys.active_key_id()
    for cid, (email, _bidx, birth) in raw_customers(kit).items():
        assert key_of(email) == active and key_of(birth) == active, cid
    with kit.sessions() as s:  # blind indexes follow the writer's values
        for cid in random.Random(5).sample(ids, 5):
            found = s.scalars(
                sa.select(Customer.id).where(Customer.email.bidx_eq(last[cid], tenant="acme"))
            ).all()
            assert found == [cid]


def test_rows_per_second_paces_the_job(kit):
    add_customers(kit, 100)
    kit.keys.rotate()

    started = time.perf_counter()
    result = kit.encryption.reencrypt(Customer, batch_size=25, rows_per_second=200)
    elapsed = time.perf_counter() - started

    assert result.finished and result.scanned == 100
    assert elapsed >= 0.4
    assert result.seconds >= 0.4


def test_blind_index_rotation_then_reencrypt_recomputes_every_blind_index(kit):
    written = add_customers(kit, 12)
    assert status_of(kit, Customer, "email").stale_blind_index == 0
    emails_before = {cid: raw[0] for cid, raw in raw_customers(kit).items()}

    kit.keys.rotate(purpose="bidx")
    version = kit.keys.blind_keys()[0].version
    assert status_of(kit, Customer, "email").stale_blind_index == 12

    result = kit.encryption.reencrypt(Customer, batch_size=5)

    assert result.remaining == 0
    assert status_of(kit, Customer, "email").stale_blind_index == 0
    raw = raw_customers(kit)
    assert {r[1][0] for r in raw.values()} == {version}
    assert {cid: r[0] for cid, r in raw.items()} == emails_before  # values were not resealed
    with kit.sessions() as s:
        for cid, email in written.items():
            found = s.scalars(
                sa.select(Customer.id).where(Customer.email.bidx_eq(email.upper(), tenant="acme"))
            ).all()
            assert found == [cid]


# encrypt-existing ---------------------------------------------------------------------


def insert_plaintext(kit: soc2kit.Kit, table: str, values: dict[int, str]) -> None:
    with kit.engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {table} (id, ssn) VALUES (:id, :ssn)"),
            [{"id": k, "ssn": v} for k, v in values.items()],
        )


LEGACY = {i: f"{100 + i:03d}-45-{6000 + i:04d}" for i in range(1, 21)}


def read_legacy(kit: soc2kit.Kit) -> dict[int, str]:
    with kit.sessions() as s:
        return {r.id: r.ssn for r in s.scalars(sa.select(Legacy))}


def test_plaintext_window_reads_legacy_values_and_counts_them(kit):
    insert_plaintext(kit, "legacy", LEGACY)

    assert read_legacy(kit) == LEGACY
    assert kit.keys.plaintext_reads == {("legacy", "ssn"): len(LEGACY)}
    status = status_of(kit, Legacy, "ssn")
    assert status.plaintext == len(LEGACY)
    assert status.stale_blind_index == len(LEGACY)


def test_encrypt_existing_encrypts_every_row_and_fills_blind_indexes(kit):
    insert_plaintext(kit, "legacy", LEGACY)

    result = kit.encryption.encrypt_existing(Legacy, batch_size=6)

    assert result.finished and result.remaining == 0 and result.changed == len(LEGACY)
    with kit.engine.connect() as conn:
        raw = dict(conn.execute(sa.text("SELECT id, ssn FROM legacy")).all())
        bidx = dict(conn.execute(sa.text("SELECT id, ssn_bidx FROM legacy")).all())
    assert all(v.startswith("e1:") for v in raw.values())
    assert not any(v in "".join(raw.values()) for v in LEGACY.values())
    assert all(b is not None for b in bidx.values())
    assert read_legacy(kit) == LEGACY
    assert kit.keys.plaintext_reads == {}  # nothing was read as plaintext any more
    status = status_of(kit, Legacy, "ssn")
    assert status.plaintext == 0 and status.stale_blind_index == 0
    with kit.sessions() as s:
        for row_id, ssn in LEGACY.items():
            found = s.scalars(sa.select(Legacy.id).where(Legacy.ssn.bidx_eq(ssn))).all()
            assert found == [row_id]


def _expired_model() -> tuple[type[DeclarativeBase], type[Any]]:
    """A model whose plaintext window ended two days ago (own registry: dispose it after)."""
    until = datetime.now(UTC).date() - timedelta(days=2)

    class ExpiredBase(DeclarativeBase):
        pass

    class PastWindowRecord(ExpiredBase):
        __tablename__ = "past_window_records"
        id = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
        ssn = mapped_column(
            Encrypted(sa.String(20), storage="text", allow_plaintext_until=until), nullable=True
        )

    return ExpiredBase, PastWindowRecord


def test_plaintext_after_the_window_is_a_decryption_error(kit):
    base, model = _expired_model()
    try:
        base.metadata.create_all(kit.engine)
        insert_plaintext(kit, "past_window_records", {1: "123-45-6789"})

        with kit.sessions() as s, pytest.raises(DecryptionError):
            s.get(model, 1)
        assert kit.keys.plaintext_reads == {}
        failed = [e for e in audit_rows(kit) if e["event_type"] == "crypto.decrypt.failed"]
        assert failed and failed[-1]["resource_type"] == "past_window_records"
    finally:
        base.registry.dispose()
        del base, model


def test_startup_refuses_a_mapped_model_whose_plaintext_window_ended(make_kit):
    kit = make_kit()
    base, model = _expired_model()
    try:
        with pytest.raises(ConfigurationError, match=r"PastWindowRecord\.ssn"):
            kit.startup()
    finally:
        base.registry.dispose()
        del base, model
    kit.startup()  # the same kit starts once the model is gone (Legacy's 2099 window is open)
