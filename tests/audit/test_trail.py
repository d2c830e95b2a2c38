"""kit.audit.record and the SQL sink, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from soc2kit.audit import AuditTrail, SqlAuditSink
from soc2kit.audit.setup import build_trail
from soc2kit.authn import Principal
from soc2kit.db import create_engine, upgrade
from soc2kit.errors import AuditWriteError
from soc2kit.settings import Settings


@pytest.fixture
def engine(database_url: str):  # type: ignore[no-untyped-def]
    eng = create_engine(database_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def stored(engine: sa.Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event FROM soc2kit_audit_events ORDER BY seq"))
        return [json.loads(r[0]) for r in rows]


def make_trail(engine: sa.Engine, tmp_path: Path, **settings: object) -> AuditTrail:
    s = Settings(environment="test", data_dir=tmp_path, service_name="billing", **settings)
    return build_trail(s, engine)


def with_sealer(sink: SqlAuditSink, engine: sa.Engine, tmp_path: Path) -> AuditTrail:
    s = Settings(environment="test", data_dir=tmp_path)
    return AuditTrail(s, sink, sealer=build_trail(s, engine).sealer)


def test_record_stores_the_owasp_fields(engine: sa.Engine, tmp_path: Path) -> None:
    trail = make_trail(engine, tmp_path)
    actor = Principal(
        subject="alice", issuer="https://id", roles=frozenset({"b", "a"}), tenant="acme"
    )
    event = trail.record(
        "invoice.approved",
        action="approve",
        outcome="success",
        actor=actor,
        resource_type="invoice",
        resource_id=42,
        reason="ok",
        changes={"status": {"old": "draft", "new": "approved"}},
        ticket="OPS-1",
    )
    trail.flush()
    (row,) = stored(engine)
    uuid.UUID(row["event_id"])  # type: ignore[arg-type]
    assert uuid.UUID(row["event_id"]).version == 7  # type: ignore[arg-type]
    assert row["event_id"] == event.event_id
    assert str(row["occurred_at"]).endswith("Z")
    assert row["event_type"] == "invoice.approved" and row["action"] == "approve"
    assert row["outcome"] == "success" and row["actor_type"] == "user"
    assert row["actor_id"] == "alice" and row["tenant_id"] == "acme"
    assert row["roles"] == ["a", "b"]
    assert row["resource_type"] == "invoice" and row["resource_id"] == "42"
    assert row["service"] == "billing" and row["environment"] == "test"
    assert row["changes"] == {"status": {"old": "draft", "new": "approved"}}
    assert row["extra"] == {"ticket": "OPS-1"}
    with engine.connect() as conn:
        cols = conn.execute(
            sa.text("SELECT event_type, outcome, actor_id, resource_id FROM soc2kit_audit_events")
        ).one()
    assert tuple(cols) == ("invoice.approved", "success", "alice", "42")


def test_unknown_outcome_is_a_programming_error(engine: sa.Engine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outcome"):
        make_trail(engine, tmp_path).record("x", action="y", outcome="ok")


def test_secrets_and_injection_never_reach_the_store(engine: sa.Engine, tmp_path: Path) -> None:
    trail = make_trail(engine, tmp_path)
    trail.record(
        "login\r\nFAKE outcome=success",
        action="login",
        outcome="failure",
        reason="bad\x1b[31m\u202e",
        changes={"password": "hunter2"},
        authorization="Bearer abc.def.ghi",
    )
    trail.flush()
    (row,) = stored(engine)
    blob = json.dumps(row)
    assert "hunter2" not in blob and "abc.def.ghi" not in blob
    assert "\r" not in str(row["event_type"]) and "\n" not in str(row["event_type"])
    assert "\x1b" not in str(row["reason"]) and "\u202e" not in str(row["reason"])


@pytest.mark.parametrize(
    ("policy", "raw", "expected"),
    [
        ("full", "203.0.113.77", "203.0.113.77"),
        ("truncated", "203.0.113.77", "203.0.113.0/24"),
        ("truncated", "2001:db8:1:2:3:4:5:6", "2001:db8:1::/48"),
        ("full", "not-an-ip\n", "not-an-ip\\n"),
        ("truncated", "not-an-ip", None),
    ],
)
def test_client_ip_policies(tmp_path: Path, policy: str, raw: str, expected: str | None) -> None:
    trail = AuditTrail(
        Settings(environment="test", data_dir=tmp_path, audit_client_ip=policy),
        SqlAuditSink(create_engine("sqlite://")),
    )
    assert trail.client_ip(raw) == expected


def test_hmac_ip_policy_is_keyed_and_stable(tmp_path: Path) -> None:
    def trail(key: str) -> AuditTrail:
        s = Settings(
            environment="test", data_dir=tmp_path, audit_client_ip="hmac", audit_ip_hmac_key=key
        )
        return AuditTrail(s, SqlAuditSink(create_engine("sqlite://")))

    a, b = trail("k" * 32), trail("j" * 32)
    assert a.client_ip("203.0.113.7") == a.client_ip("203.0.113.7")
    assert a.client_ip("203.0.113.7") != b.client_ip("203.0.113.7")
    assert "203.0.113" not in str(a.client_ip("203.0.113.7"))


def test_write_failure_is_retried_never_dropped(engine: sa.Engine, tmp_path: Path) -> None:
    trail = make_trail(engine, tmp_path)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE soc2kit_audit_inbox RENAME TO parked"))
    trail.record("a", action="b", outcome="success", durability="informational")
    deadline = time.monotonic() + 10
    while trail.health() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert trail.health() is not None and "failing" in str(trail.health())
    with pytest.raises(AuditWriteError):
        trail.flush(timeout=0.3)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE parked RENAME TO soc2kit_audit_inbox"))
    trail.flush(timeout=15)
    assert trail.health() is None
    assert [r["event_type"] for r in stored(engine)] == ["a"]


def test_full_queue_applies_back_pressure(engine: sa.Engine, tmp_path: Path) -> None:
    sink = SqlAuditSink(engine, max_queue=2, batch_size=1)
    trail = with_sealer(sink, engine, tmp_path)
    with engine.begin() as conn:  # park the table so the writer cannot drain
        conn.execute(sa.text("ALTER TABLE soc2kit_audit_inbox RENAME TO parked"))
    done = threading.Event()

    def producer() -> None:
        for i in range(6):
            trail.record(f"e{i}", action="x", outcome="success", durability="informational")
        done.set()

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    assert not done.wait(0.5), "producer should block on the full queue, not drop"
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE parked RENAME TO soc2kit_audit_inbox"))
    assert done.wait(15)
    trail.flush(timeout=15)
    assert sorted(r["event_type"] for r in stored(engine)) == [f"e{i}" for i in range(6)]


def test_closed_sink_refuses_new_events(engine: sa.Engine, tmp_path: Path) -> None:
    trail = make_trail(engine, tmp_path)
    trail.record("a", action="b", outcome="success")
    trail.close()
    assert len(stored(engine)) == 1
    with pytest.raises(AuditWriteError):
        trail.record("late", action="b", outcome="success")


def test_arecord_waits_for_a_full_queue_without_blocking_the_loop(
    engine: sa.Engine, tmp_path: Path
) -> None:
    import asyncio

    sink = SqlAuditSink(engine, max_queue=1, batch_size=1)
    trail = with_sealer(sink, engine, tmp_path)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE soc2kit_audit_inbox RENAME TO parked"))

    async def scenario() -> int:
        # Saturate: the writer holds one (failing) batch and the queue is full.
        for i in range(500):
            if sink.pending >= 2 and sink._queue.full():
                break
            sink.try_submit(*trail._build(f"fill{i}", action="x", outcome="success"))
            await asyncio.sleep(0.01)
        assert sink.pending >= 2 and sink._queue.full()
        ticks = 0
        waiting = asyncio.create_task(
            trail.arecord("late", action="x", outcome="success", durability="informational")
        )
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert not waiting.done(), "arecord must wait while the sink is saturated"
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE parked RENAME TO soc2kit_audit_inbox"))
        await asyncio.wait_for(waiting, 15)
        return ticks

    assert asyncio.run(scenario()) == 20  # the loop kept running throughout
    trail.flush(timeout=15)
    assert "late" in [r["event_type"] for r in stored(engine)]


def test_in_transaction_events_log_only_after_commit(
    engine: sa.Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    trail = make_trail(engine, tmp_path)
    caplog.set_level(logging.INFO, logger="soc2kit.audit")

    def change_then_fail() -> None:
        with trail.transaction(engine) as conn:
            trail.record_in(conn, "policy.change", action="grant", outcome="success")
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert not [r for r in caplog.records if "policy.change" in r.getMessage()]
    trail.flush()
    assert stored(engine) == []
    with trail.transaction(engine) as conn:
        trail.record_in(conn, "policy.change", action="grant", outcome="success")
        assert not [r for r in caplog.records if "policy.change" in r.getMessage()]
    assert len([r for r in caplog.records if "policy.change" in r.getMessage()]) == 1
    trail.flush()
    assert [r["event_type"] for r in stored(engine)] == ["policy.change"]


def test_critical_events_are_stored_before_record_returns_or_raise(
    engine: sa.Engine, tmp_path: Path
) -> None:
    trail = make_trail(engine, tmp_path)
    trail.record("policy.change", action="grant", outcome="success")  # critical by default
    with engine.connect() as conn:
        waiting = conn.execute(sa.text("SELECT event_type FROM soc2kit_audit_inbox")).scalars()
        assert list(waiting) == ["policy.change"]  # stored already: no flush needed
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE soc2kit_audit_inbox RENAME TO parked"))
    try:
        with pytest.raises(AuditWriteError):
            trail.record("authz.denied", action="read", outcome="denied")
        # A successful read is informational: queued, the caller is not failed.
        trail.record("http.request", action="read", outcome="success")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE parked RENAME TO soc2kit_audit_inbox"))
    trail.flush(timeout=15)
    assert [r["event_type"] for r in stored(engine)] == ["policy.change", "http.request"]
