"""The sealer: one contiguous sequence under concurrency, checkpoints, anchors, proofs."""

from __future__ import annotations

import gc
import json
import os
import random
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.audit.tamper_helpers import (
    EVENTS,
    INBOX,
    change_field,
    checkpoint_rows,
    count,
    events,
    key_whose_base64_has,
    new_kit,
    record_batches,
    state,
    verifier_of,
)

import soc2kit
from soc2kit.audit import verify as verify_module
from soc2kit.audit.checkpoints import Checkpoint, NoteVerifier, Signer
from soc2kit.audit.sealer import _LOCK_KEY
from soc2kit.audit.setup import build_trail
from soc2kit.audit.trail import AuditTrail
from soc2kit.audit.verify import check_proof, verify_log
from soc2kit.db import create_engine


@pytest.fixture
def kit(database_url: str, make_settings: Callable[..., soc2kit.Settings]) -> Iterator[soc2kit.Kit]:
    k = new_kit(make_settings, database_url=database_url)
    yield k
    gc.collect()  # connections a failing verify leaked (see test_tamper.py)
    k.shutdown()


@pytest.fixture
def sqlite_kit(make_settings: Callable[..., soc2kit.Settings]) -> Iterator[soc2kit.Kit]:
    k = new_kit(make_settings)
    yield k
    gc.collect()
    k.shutdown()


@pytest.fixture
def second_trail(kit: soc2kit.Kit) -> Iterator[AuditTrail]:
    """Another replica: its own engine, sink and sealer over the same database and key."""
    engine = create_engine(kit.settings.database_url)
    trail = build_trail(kit.settings, engine)
    yield trail
    trail.close()
    engine.dispose()


def seqs_and_ids(engine: sa.Engine) -> tuple[list[int], list[str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT seq, event_id FROM {EVENTS} ORDER BY seq")).all()
    return [int(r.seq) for r in rows], [str(r.event_id) for r in rows]


def verify_now(kit: soc2kit.Kit, **limits: float) -> verify_module.VerifyReport:
    sealer = kit.audit.sealer
    assert sealer is not None
    return verify_log(
        kit.engine, verifier_of(kit), origin=sealer.origin, anchor=sealer.anchor, **limits
    )


def run_threads(*targets: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # surfaced below, in the test thread
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


# one sequence ------------------------------------------------------------------------------


def test_concurrent_writers_get_one_contiguous_sequence(kit: soc2kit.Kit) -> None:
    recorded: list[list[str]] = [[] for _ in range(4)]

    def writer(i: int) -> Callable[[], None]:
        # "read" successes may be queued, other actions written at once: both paths.
        action = "read" if i % 2 else "update"

        def run() -> None:
            for n in range(100):
                event = kit.audit.record("t.w", action=action, outcome="success", w=i, n=n)
                recorded[i].append(event.event_id)

        return run

    run_threads(*(writer(i) for i in range(4)))
    kit.audit.flush()
    seqs, ids = seqs_and_ids(kit.engine)
    assert seqs == list(range(1, 401))
    assert sorted(ids) == sorted(i for ids_ in recorded for i in ids_)
    assert len(set(ids)) == 400
    assert count(kit.engine, INBOX) == 0
    report = kit.audit.verify()
    assert report.ok and report.checked == 400, report


def test_two_sealers_sealing_at_once_never_fork_the_log(
    kit: soc2kit.Kit, second_trail: AuditTrail
) -> None:
    sealers = [kit.audit.sealer, second_trail.sealer]
    assert sealers[0] is not None and sealers[1] is not None
    writing = threading.Event()
    writing.set()
    sealed = [0, 0]

    def writer(trail: AuditTrail, tag: str) -> Callable[[], None]:
        def run() -> None:
            for n in range(150):
                trail.record("t.w", action="update", outcome="success", tag=tag, n=n)

        return run

    def sealer(i: int) -> Callable[[], None]:
        def run() -> None:
            while writing.is_set():
                sealed[i] += sealers[i].seal_all()  # type: ignore[union-attr]
                time.sleep(0.002)
            sealed[i] += sealers[i].seal_all()  # type: ignore[union-attr]

        return run

    def writers() -> None:
        try:
            run_threads(writer(kit.audit, "a"), writer(second_trail, "b"))
            kit.audit.sink.flush()
            second_trail.sink.flush()
        finally:
            writing.clear()

    run_threads(writers, sealer(0), sealer(1))
    kit.audit.flush()
    assert sum(sealed) == 300, sealed
    seqs, ids = seqs_and_ids(kit.engine)
    assert seqs == list(range(1, 301)) and len(set(ids)) == 300
    assert state(kit.engine).size == 300
    report = kit.audit.verify()
    assert report.ok and report.checked == 300, report


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_advisory_lock_makes_the_second_sealer_seal_nothing(kit: soc2kit.Kit) -> None:
    sealer = kit.audit.sealer
    assert sealer is not None
    for n in range(5):
        kit.audit.record("t.e", action="update", outcome="success", n=n)
    kit.audit.sink.flush()
    with kit.engine.connect() as other_replica:
        other_replica.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        assert sealer.seal_once() == 0  # the holder is sealing: this one backs off
        assert sealer.seal_all() == 0
        assert count(kit.engine, INBOX) == 5 and count(kit.engine, EVENTS) == 0
        other_replica.rollback()  # its transaction ends, and the lock with it
    assert sealer.seal_once() == 5
    assert [seq for seq, _ in events(kit.engine)] == [1, 2, 3, 4, 5]


# transactions ---------------------------------------------------------------------------------


def test_a_rolled_back_business_transaction_leaves_no_audit_record(kit: soc2kit.Kit) -> None:
    with (  # noqa: PT012 - the business code that raises is the point
        pytest.raises(RuntimeError, match="business rule"),
        kit.audit.transaction(kit.engine) as conn,
    ):
        kit.audit.record_in(conn, "t.rolled_back", action="approve", outcome="success")
        raise RuntimeError("business rule broken")
    with kit.audit.transaction(kit.engine) as conn:
        kit.audit.record_in(conn, "t.committed", action="approve", outcome="success")
    kit.audit.flush()
    assert [json.loads(text)["event_type"] for _, text in events(kit.engine)] == ["t.committed"]
    assert count(kit.engine, INBOX) == 0
    assert kit.audit.verify().ok


# checkpoints and anchors --------------------------------------------------------------------


def test_every_flush_signs_a_checkpoint_covering_every_sealed_event(kit: soc2kit.Kit) -> None:
    sealer = kit.audit.sealer
    assert sealer is not None and sealer.anchor is not None
    anchor = sealer.anchor.path

    def files() -> dict[str, tuple[int, int, int, str]]:
        found = {}
        for path in sorted(anchor.iterdir()):
            info = path.stat()
            found[path.name] = (
                stat.S_IMODE(info.st_mode),
                info.st_ino,
                info.st_mtime_ns,
                path.read_text("utf-8"),
            )
        return found

    record_batches(kit, 10)
    first = files()
    assert len(first) == 1
    record_batches(kit, 0)  # nothing new: no new checkpoint
    assert files() == first and len(checkpoint_rows(kit.engine)) == 1
    assert sealer.checkpoint() is None  # not due: grew by nothing, heartbeat far off
    for batch in (5, 7, 1):
        record_batches(kit, batch)
        rows = checkpoint_rows(kit.engine)
        assert rows[-1][1] == count(kit.engine, EVENTS) == state(kit.engine).size
    now = files()
    assert len(now) == 4
    assert {name: now[name] for name in first} == first  # earlier files untouched
    assert {mode for mode, *_ in now.values()} == {0o444}
    assert sorted(text for *_, text in now.values()) == sorted(n for *_, n in rows)
    # Publishing the same checkpoint name again never overwrites it.
    name, (_, _, _, note) = next(iter(first.items()))
    cp = verifier_of(kit).verify(note)
    sealer.anchor.publish(Checkpoint(cp.origin, cp.size, cp.root, cp.timestamp, "forged\n"))
    assert files()[name] == first[name]
    assert os.access(anchor / name, os.W_OK) is (os.geteuid() == 0)  # only root ignores 0444


def test_backlog_and_stale_checkpoints_make_verify_incomplete(kit: soc2kit.Kit) -> None:
    record_batches(kit, 5)
    assert count(kit.engine, INBOX) == 0
    assert verify_now(kit).status == "pass"
    for n in range(3):
        kit.audit.record("t.waiting", action="update", outcome="success", n=n)
    kit.audit.sink.flush()  # stored in the inbox, not sealed
    assert count(kit.engine, INBOX) == 3
    young = verify_now(kit, max_backlog_age=60.0)
    assert young.ok and young.status == "pass", young
    time.sleep(0.05)
    old = verify_now(kit, max_backlog_age=0.01)
    assert old.ok is False and old.status == "incomplete" and old.exit_code == 2, old
    assert old.first_failure is None and "3 events unsealed" in (old.reason or "")
    kit.audit.flush()
    assert count(kit.engine, INBOX) == 0
    assert verify_now(kit, max_backlog_age=0.01).status == "pass"
    time.sleep(0.02)
    stale = verify_now(kit, max_checkpoint_age=0.01)
    assert stale.status == "incomplete" and stale.exit_code == 2, stale
    assert "latest checkpoint is" in (stale.reason or "")
    assert stale.checked == 8


def test_no_anchor_store_makes_verify_incomplete(kit: soc2kit.Kit) -> None:
    record_batches(kit, 3)
    sealer = kit.audit.sealer
    assert sealer is not None
    report = verify_log(kit.engine, verifier_of(kit), origin=sealer.origin, anchor=None)
    assert report.status == "incomplete" and report.exit_code == 2
    assert "no anchor store" in (report.reason or "")


# proofs ------------------------------------------------------------------------------------------


def test_inclusion_proofs_check_out_offline_and_only_with_the_right_key(
    kit: soc2kit.Kit,
) -> None:
    ids = record_batches(kit, 20, 17)
    verifier = verifier_of(kit)
    for seq, event_id in enumerate(ids, start=1):
        bundle = kit.audit.prove(event_id)
        assert bundle["seq"] == seq and bundle["tree_size"] == 37
        assert check_proof(bundle, verifier), seq
    assert bundle["vkey"] == verifier.vkey  # for reference: auditors pass the key they trust

    rng = random.Random(20261126)
    bundle = kit.audit.prove(ids[rng.randrange(len(ids))])
    other = Signer(verifier.name, Ed25519PrivateKey.generate()).verifier()
    assert check_proof(bundle, other) is False
    assert check_proof({**bundle, "event": change_field(bundle["event"], n=-1)}, verifier) is False
    i = rng.randrange(len(bundle["proof"]))
    element = bytearray(bytes.fromhex(bundle["proof"][i]))
    element[rng.randrange(32)] ^= 1 << rng.randrange(8)
    forged_proof = [*bundle["proof"][:i], element.hex(), *bundle["proof"][i + 1 :]]
    assert check_proof({**bundle, "proof": forged_proof}, verifier) is False
    assert check_proof({**bundle, "proof": bundle["proof"][:-1]}, verifier) is False
    assert check_proof({**bundle, "seq": bundle["seq"] % 37 + 1}, verifier) is False
    assert check_proof({**bundle, "tree_size": 20}, verifier) is False
    assert check_proof({k: v for k, v in bundle.items() if k != "checkpoint"}, verifier) is False


def test_a_verifier_key_round_trips() -> None:
    _, signer = key_whose_base64_has(plus=False)
    assert NoteVerifier.from_vkey(signer.vkey).public == signer.public
    note = signer.sign("svc/audit", 3, b"\x11" * 32, 1700000000)
    assert NoteVerifier.from_vkey(signer.vkey).verify(note).size == 3


def test_a_verifier_key_whose_base64_has_a_plus_round_trips() -> None:
    _, signer = key_whose_base64_has(plus=True)
    assert NoteVerifier.from_vkey(signer.vkey).public == signer.public


# races --------------------------------------------------------------------------------------------


def test_verify_while_the_sealer_runs_raises_no_false_alarm(
    sqlite_kit: soc2kit.Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = sqlite_kit
    sealer = kit.audit.sealer
    assert sealer is not None
    record_batches(kit, 20)
    for n in range(5):
        kit.audit.record("t.e", action="update", outcome="success", n=n)
    kit.audit.sink.flush()
    rows = verify_module._events_with_leaves

    def rows_after_a_concurrent_seal(conn: sa.Connection, size: int) -> Iterator[Any]:
        sealer.seal_all()  # another thread's seal commits after the state was read
        yield from rows(conn, size)

    monkeypatch.setattr(verify_module, "_events_with_leaves", rows_after_a_concurrent_seal)
    report = verify_now(kit)
    assert report.status != "fail", report


def test_two_replicas_checkpointing_at_once_raise_no_false_alarm(
    kit: soc2kit.Kit, second_trail: AuditTrail
) -> None:
    """Checkpoints take the sealing lock: sizes never go backwards, whoever signs first."""
    import threading

    mine, theirs = kit.audit.sealer, second_trail.sealer
    assert mine is not None and theirs is not None
    stop = threading.Event()

    def replica(sealer: Any) -> None:
        while not stop.is_set():
            sealer.seal_all(checkpoint=True)

    threads = [threading.Thread(target=replica, args=(s,)) for s in (mine, theirs)]
    for thread in threads:
        thread.start()
    try:
        for n in range(60):
            kit.audit.record("t.e", action="update", outcome="success", n=n)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    kit.audit.flush()
    sizes = [size for _, size, _ in checkpoint_rows(kit.engine)]
    assert sizes == sorted(sizes)
    report = kit.audit.verify()
    assert report.ok, report
