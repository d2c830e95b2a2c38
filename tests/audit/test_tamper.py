"""Tampering with the sealed audit log is detected, and an untouched log always verifies.

Each attack is what a database administrator could do: get past the
append-only triggers (tamper_helpers.allow_tampering) and edit the tables.
The log under attack has 40 events sealed in two flushes, so two checkpoints
(sizes 20 and 40) are in the database and in the anchor directory.
"""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.audit.tamper_helpers import (
    APPEND_ONLY,
    CHECKPOINTS,
    EVENTS,
    INBOX,
    TREE,
    allow_tampering,
    assert_fails_at,
    checkpoint_rows,
    count,
    delete_checkpoints_above,
    delete_event,
    events,
    flip_signature_byte,
    forge_event,
    modify_event,
    new_kit,
    record_batches,
    set_checkpoint_note,
    set_leaf,
    state,
    swap_events,
    truncate_tail,
    verifier_of,
)

import soc2kit
from soc2kit.audit.checkpoints import DirectoryAnchor, Signer
from soc2kit.audit.verify import check_proof, verify_log
from soc2kit.db import create_engine

SIZES = (20, 40)  # checkpoint sizes of the log under attack


@pytest.fixture
def kit(database_url: str, make_settings: Callable[..., soc2kit.Settings]) -> Iterator[soc2kit.Kit]:
    k = new_kit(make_settings, database_url=database_url)
    yield k
    gc.collect()  # hands back connections a failing verify leaked (see the test below)
    k.shutdown()


@pytest.fixture
def sqlite_kit(make_settings: Callable[..., soc2kit.Settings]) -> Iterator[soc2kit.Kit]:
    k = new_kit(make_settings)
    yield k
    k.shutdown()


@pytest.fixture
def log40(kit: soc2kit.Kit) -> soc2kit.Kit:
    record_batches(kit, 20, 20)
    assert [size for _, size, _ in checkpoint_rows(kit.engine)] == list(SIZES)
    assert kit.audit.verify().ok
    return kit


# the triggers -------------------------------------------------------------------------------


def test_append_only_triggers_refuse_update_delete_and_truncate(kit: soc2kit.Kit) -> None:
    record_batches(kit, 5)
    statements = {
        EVENTS: "UPDATE soc2kit_audit_events SET event = event || ' '",
        TREE: "UPDATE soc2kit_audit_tree SET hash = hash",
        CHECKPOINTS: "UPDATE soc2kit_audit_checkpoints SET note = note",
    }
    pg = kit.engine.dialect.name == "postgresql"
    for table in APPEND_ONLY:
        attempts = [statements[table], f"DELETE FROM {table}"]
        if pg:
            attempts.append(f"TRUNCATE {table}")
        for statement in attempts:
            with (
                pytest.raises(sa.exc.DBAPIError, match="append-only"),
                kit.engine.begin() as conn,
            ):
                conn.exec_driver_sql(statement)
    assert count(kit.engine, EVENTS) == 5
    # Writers still only INSERT into the inbox, and the sealer still moves it.
    kit.audit.record("t.after", action="x", outcome="success")
    kit.audit.sink.flush()
    assert count(kit.engine, INBOX) == 1
    kit.audit.flush()
    assert count(kit.engine, INBOX) == 0
    report = kit.audit.verify()
    assert report.ok and report.checked == 6, report


# attacks ------------------------------------------------------------------------------------


def test_a_changed_field_fails_at_its_seq(log40: soc2kit.Kit) -> None:
    allow_tampering(log40.engine)
    modify_event(log40.engine, 13)
    assert_fails_at(log40.audit.verify(), 13, "does not match its sealed leaf")


def test_a_deleted_middle_event_fails_at_its_seq(log40: soc2kit.Kit) -> None:
    allow_tampering(log40.engine)
    delete_event(log40.engine, 27)
    assert_fails_at(log40.audit.verify(), 27, "missing")


def test_a_deleted_last_event_fails_at_its_seq(log40: soc2kit.Kit) -> None:
    allow_tampering(log40.engine)
    delete_event(log40.engine, 40)
    assert_fails_at(log40.audit.verify(), 40)


def test_a_forged_event_appended_at_the_end_fails_at_its_seq(log40: soc2kit.Kit) -> None:
    # INSERT is all it takes: the triggers do not stop appends. Its leaf is
    # correct and no checkpoint covers seq 41, so what gives it away is the tree
    # state the sealer keeps (still size 40): first_failure is the forged seq.
    seq = forge_event(log40.engine)
    assert seq == 41
    assert_fails_at(log40.audit.verify(), 41, "tree state")


def test_a_forged_event_with_a_moved_tree_state_is_detected(sqlite_kit: soc2kit.Kit) -> None:
    record_batches(sqlite_kit, 20)
    forge_event(sqlite_kit.engine, move_state=True)  # the triggers are still in place
    assert sqlite_kit.audit.verify().ok is False


def test_swapped_events_are_detected_by_the_stored_tree_nodes(log40: soc2kit.Kit) -> None:
    allow_tampering(log40.engine)
    a, b = 23, 31
    swap_events(log40.engine, a, b)
    report = log40.audit.verify()
    assert_fails_at(report, None, "tree node")
    assert report.first_failure is not None
    # Leaves are self-consistent: the first interior node covering seq a is what breaks.
    assert a <= report.first_failure <= b, report


def test_swapped_events_are_located_at_the_swapped_seqs(sqlite_kit: soc2kit.Kit) -> None:
    record_batches(sqlite_kit, 20, 20)
    allow_tampering(sqlite_kit.engine)
    a, b = 23, 31
    swap_events(sqlite_kit.engine, a, b)
    report = sqlite_kit.audit.verify()
    assert report.status == "fail"
    assert report.first_failure is not None and report.first_failure <= b, report


def test_a_corrupted_interior_node_is_detected(sqlite_kit: soc2kit.Kit) -> None:
    ids = record_batches(sqlite_kit, 20)
    allow_tampering(sqlite_kit.engine)
    set_leaf(sqlite_kit.engine, 3, b"\x00" * 32, level=1)  # covers seq 7 and 8
    # The damage is real: the proof of seq 5 uses that node and no longer checks.
    bundle = sqlite_kit.audit.prove(ids[4])
    assert check_proof(bundle, verifier_of(sqlite_kit)) is False
    assert sqlite_kit.audit.verify().ok is False


def test_a_truncated_tail_is_detected_through_the_anchor(log40: soc2kit.Kit) -> None:
    engine = log40.engine
    allow_tampering(engine)
    truncate_tail(engine, 30)
    assert state(engine).size == 30 and count(engine, EVENTS) == 30
    assert [size for _, size, _ in checkpoint_rows(engine)] == [20]
    report = log40.audit.verify()
    assert_fails_at(report, 31, "truncation")
    # The tree state kept its signature for 40: the database alone betrays it too. (An
    # older copy restored whole, signature included, needs the anchor: see below.)
    sealer = log40.audit.sealer
    assert sealer is not None
    alone = verify_log(engine, verifier_of(log40), origin=sealer.origin, anchor=None)
    assert_fails_at(alone, 31, "truncation")


def test_deleting_the_newest_checkpoints_is_detected_through_the_anchor(
    log40: soc2kit.Kit,
) -> None:
    allow_tampering(log40.engine)
    assert delete_checkpoints_above(log40.engine, 20) == 1
    assert_fails_at(log40.audit.verify(), 40, "anchored", "missing")


def test_restoring_an_older_copy_of_the_database_is_detected(kit: soc2kit.Kit) -> None:
    engine = kit.engine
    record_batches(kit, 20)
    if engine.dialect.name == "sqlite":
        live = Path(str(engine.url.database))
        old = live.with_name("old.db")
        with closing(sqlite3.connect(live)) as src, closing(sqlite3.connect(old)) as dst:
            src.backup(dst)
        record_batches(kit, 20)
        assert count(engine, EVENTS) == 40
        engine.dispose()
        for suffix in ("-wal", "-shm"):
            Path(f"{live}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(old, live)
    else:  # no file to copy: delete the newer rows and reset the state instead
        record_batches(kit, 20)
        allow_tampering(engine)
        truncate_tail(engine, 20)
    assert count(engine, EVENTS) == 20 and state(engine).size == 20
    assert_fails_at(kit.audit.verify(), 21, "truncation")


def test_a_forged_checkpoint_signature_fails_at_its_size(log40: soc2kit.Kit) -> None:
    allow_tampering(log40.engine)
    checkpoint_id, size, note = checkpoint_rows(log40.engine)[-1]
    set_checkpoint_note(log40.engine, checkpoint_id, flip_signature_byte(note))
    assert_fails_at(log40.audit.verify(), size, "signature does not verify")


def _other_signature(kit: soc2kit.Kit) -> str:
    """A valid signed note for the right origin, size and root, by another key."""
    sealer = kit.audit.sealer
    assert sealer is not None
    other = Signer(sealer.signer.name, Ed25519PrivateKey.generate())  # same name, other key
    current = state(kit.engine)
    return other.sign(sealer.origin, current.size, current.root)


def test_a_checkpoint_signed_by_another_key_is_refused(log40: soc2kit.Kit) -> None:
    allow_tampering(log40.engine)
    checkpoint_id, size, _ = checkpoint_rows(log40.engine)[-1]
    set_checkpoint_note(log40.engine, checkpoint_id, _other_signature(log40))
    assert_fails_at(log40.audit.verify(), size, "no signature by")


def test_an_added_checkpoint_signed_by_another_key_is_refused(log40: soc2kit.Kit) -> None:
    # Adding a checkpoint needs no trigger bypass: it is an INSERT.
    note = _other_signature(log40)
    current = state(log40.engine)
    with log40.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO soc2kit_audit_checkpoints (size, root, timestamp, note, created_at) "
                "VALUES (:s, :r, :t, :n, CURRENT_TIMESTAMP)"
            ),
            {"s": current.size, "r": current.root, "t": 1, "n": note},
        )
    assert_fails_at(log40.audit.verify(), 40, "no signature by")


def test_an_anchored_checkpoint_signed_by_another_key_is_refused(
    log40: soc2kit.Kit,
) -> None:
    sealer = log40.audit.sealer
    assert sealer is not None and sealer.anchor is not None
    (sealer.anchor.path / "checkpoint-00000000000000000040-000000000001.txt").write_text(
        _other_signature(log40)
    )
    assert_fails_at(log40.audit.verify(), None, "anchored checkpoint refused")


def test_a_checkpoint_missing_from_the_anchor_store_is_reported(
    sqlite_kit: soc2kit.Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_batches(sqlite_kit, 10)

    def unwritable(self: DirectoryAnchor, checkpoint: Any) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(DirectoryAnchor, "publish", unwritable)
    record_batches(sqlite_kit, 10)
    sealer = sqlite_kit.audit.sealer
    assert sealer is not None and sealer.health() == "anchor store unwritable"
    assert sqlite_kit.audit.verify().status != "pass"


def test_a_failing_verify_returns_its_connections(sqlite_kit: soc2kit.Kit) -> None:
    record_batches(sqlite_kit, 10)
    allow_tampering(sqlite_kit.engine)
    modify_event(sqlite_kit.engine, 3)
    gc.disable()
    try:
        assert_fails_at(sqlite_kit.audit.verify(), 3)
        assert sqlite_kit.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        gc.enable()
        gc.collect()


# property: no false negatives ---------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small sealed SQLite log (checkpoints at 7, 13, 21 and 22) to copy for each example."""
    base = tmp_path_factory.mktemp("template")
    s = soc2kit.Settings(
        environment="test", database_url=f"sqlite:///{base / 'app.db'}", data_dir=base / "data"
    )
    k = soc2kit.install(FastAPI(), s)
    record_batches(k, 7, 6, 8)
    sealer = k.audit.sealer
    assert sealer is not None and sealer.anchor is not None
    info = {
        "dir": base,
        "anchor": sealer.anchor.path,
        "verifier": sealer.signer.verifier(),
        "origin": sealer.origin,
    }
    k.shutdown()  # seals service.stop: one more event and checkpoint
    info["sizes"] = [size for _, size, _ in checkpoint_rows(create_engine(s.database_url))]
    assert info["sizes"] == [7, 13, 21, 22]
    return info


OPERATIONS = ("modify", "delete", "swap", "truncate")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_every_tampering_is_detected(
    template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    work = tmp_path_factory.mktemp("example")
    shutil.copyfile(template["dir"] / "app.db", work / "app.db")
    anchor_dir = shutil.copytree(template["anchor"], work / "anchors")
    engine = create_engine(f"sqlite:///{work / 'app.db'}")
    try:
        n = count(engine, EVENTS)
        sizes: list[int] = template["sizes"]
        assert n == sizes[-1]
        allow_tampering(engine)
        operation = data.draw(st.sampled_from(OPERATIONS), label="operation")
        expected: Callable[[int], bool]
        if operation == "modify":
            k = data.draw(st.integers(1, n), label="seq")
            modify_event(engine, k)
            expected = k.__eq__
        elif operation == "delete":
            k = data.draw(st.integers(1, n), label="seq")
            delete_event(engine, k)
            expected = k.__eq__
        elif operation == "swap":
            a = data.draw(st.integers(1, n - 1), label="a")
            b = data.draw(st.integers(a + 1, n), label="b")
            swap_events(engine, a, b)
            covering = min(size for size in sizes if size >= b)
            expected = lambda seq: a <= seq <= covering  # noqa: E731
        else:
            new_size = data.draw(st.integers(0, n - 1), label="new size")
            truncate_tail(engine, new_size)
            expected = (new_size + 1).__eq__
        report = verify_log(
            engine,
            template["verifier"],
            origin=template["origin"],
            anchor=DirectoryAnchor(anchor_dir),
        )
        assert report.ok is False, report
        assert report.status == "fail" and report.exit_code == 1, report
        assert report.first_failure is not None and expected(report.first_failure), report
    finally:
        engine.dispose()


# no false alarms ------------------------------------------------------------------------------


def test_an_untouched_log_always_verifies(kit: soc2kit.Kit) -> None:
    recorded = 0
    for batch in range(4):
        for i in range(25):
            kit.audit.record("t.e", action="x", outcome="success", batch=batch, n=i)
            recorded += 1
        for i in range(3):
            with kit.audit.transaction(kit.engine) as conn:
                conn.exec_driver_sql("SELECT 1")  # the business change would go here
                kit.audit.record_in(conn, "t.tx", action="y", outcome="success", n=i)
                recorded += 1
        kit.audit.flush()
        report = kit.audit.verify()
        assert report.ok and report.status == "pass" and report.exit_code == 0, report
        assert report.checked == recorded == count(kit.engine, EVENTS)
        assert report.first_failure is None and report.reason is None
    assert len(checkpoint_rows(kit.engine)) == 4
    assert [seq for seq, _ in events(kit.engine)] == list(range(1, recorded + 1))
    assert {c.name: c.status for c in report.checks} == dict.fromkeys(
        ("signatures", "leaves", "anchors", "freshness", "backlog"), "pass"
    )
    assert os.listdir(kit.settings.audit_anchor_path or "")  # anchored too
