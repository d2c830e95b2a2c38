"""Security metrics through the real app: each signal, its attributes, its audit event."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Response
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from tests.audit.tamper_helpers import allow_tampering
from tests.conftest import audit_rows
from tests.tracing.conftest import Metered
from tests.tracing.otel_helpers import point, points

import soc2kit
from soc2kit import Principal, public, require
from soc2kit.crypto import Encrypted
from soc2kit.db.schema import audit_inbox
from soc2kit.tracing.metrics import AUTHN_REASON_CLASSES, authn_reason_class

SRC = Path(soc2kit.__file__).parent
Factory = Callable[..., Metered]
STUCK = "0190a0a0-0000-7000-8000-000000000001"


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "metric_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), default="acme")
    body: Mapped[str] = mapped_column(Encrypted(sa.String(200)))


def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
    Base.metadata.create_all(kit.engine)
    kit.policy.grant("reader", "items", "read")
    kit.policy.grant("reader", "notes", "read")

    @app.get("/items/{item_id}")
    def item(item_id: str, p: Principal = require("items", "read")) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/notes/{note_id}")
    def note(note_id: int, p: Principal = require("notes", "read")) -> dict[str, str]:
        with kit.sessions() as s:
            row = s.get(Note, note_id)
            kit.authorize(p, "notes", "read", row)  # tenant check on the object
            assert row is not None
            return {"body": row.body}

    @app.get("/undeclared")
    def undeclared() -> dict[str, str]:
        return {}

    @app.api_route("/weird", methods=["FROBNICATE"])
    def weird() -> dict[str, str]:
        return {}

    @app.get("/busy", dependencies=[public("test")])
    def busy() -> Response:
        return Response(status_code=429)

    @app.get("/open", dependencies=[public("test")])
    def open_route() -> dict[str, str]:
        return {}


def events_of(kit: soc2kit.Kit, event_type: str) -> list[dict[str, Any]]:
    return [e for e in audit_rows(kit) if e["event_type"] == event_type]


def attribute_text(reader: Any, name: str) -> str:
    return repr(sorted(map(sorted, points(reader, name))))


def test_authentication_failures_by_reason_class(make_metered: Factory) -> None:
    client, kit, reader = make_metered(routes)
    expired = kit.dev_token("alice", ["reader"], ttl_seconds=-3600)
    unknown_key = "s2k_" + "ab" * 12 + "_" + "A" * 43
    assert client.get("/items/1").status_code == 401
    assert client.get("/items/1", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    assert client.get("/items/1", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    assert client.get("/items/1", headers={"X-API-Key": unknown_key}).status_code == 401
    name = "soc2kit.authn.failures"
    assert point(reader, name, soc2kit__authn__reason="missing") == 1
    assert (
        point(reader, name, soc2kit__authn__reason="malformed", soc2kit__authn__method="oidc") == 1
    )
    assert point(reader, name, soc2kit__authn__reason="expired", soc2kit__authn__method="oidc") == 1
    assert (
        point(reader, name, soc2kit__authn__reason="unknown_key", soc2kit__authn__method="api_key")
        == 1
    )
    # One count per audit event: the signal and its evidence agree.
    assert sum(points(reader, name).values()) == len(events_of(kit, "authn.failure")) == 4
    text = attribute_text(reader, name)
    for secret in (expired, unknown_key, "ab" * 12, "not-a-jwt", "alice"):
        assert secret not in text


def test_authorization_denials_from_route_object_and_gate(make_metered: Factory) -> None:
    client, kit, reader = make_metered(routes)
    with kit.sessions() as s:
        s.add(Note(id=7, tenant_id="other-tenant", body="not yours"))
        s.commit()
    nobody = {"Authorization": f"Bearer {kit.dev_token('mallory', [], tenant='acme')}"}
    reader_ = {"Authorization": f"Bearer {kit.dev_token('bob', ['reader'], tenant='acme')}"}
    assert client.get("/items/1", headers=nobody).status_code == 403  # require(): no grant
    assert client.get("/notes/7", headers=reader_).status_code == 404  # kit.authorize(): tenant
    assert client.get("/undeclared", headers=reader_).status_code == 403  # the gate
    name = "soc2kit.authz.denials"
    assert points(reader, name) == {
        frozenset(
            {
                ("soc2kit.authz.resource", "items"),
                ("soc2kit.authz.action", "read"),
                ("soc2kit.authz.denial", "policy"),
            }
        ): 1,
        frozenset(
            {
                ("soc2kit.authz.resource", "notes"),
                ("soc2kit.authz.action", "read"),
                ("soc2kit.authz.denial", "policy"),
            }
        ): 1,
        frozenset(
            {("soc2kit.authz.action", "read"), ("soc2kit.authz.denial", "undeclared_route")}
        ): 1,
    }
    assert len(events_of(kit, "authz.denied")) == 2
    assert len(events_of(kit, "authz.misconfiguration")) == 1
    assert "mallory" not in attribute_text(reader, name) and "7" not in attribute_text(reader, name)


def test_gate_action_from_an_invented_method_is_bounded(make_metered: Factory) -> None:
    client, kit, reader = make_metered(routes)
    assert client.request("FROBNICATE", "/weird").status_code == 403
    assert events_of(kit, "authz.misconfiguration")[0]["action"] == "frobnicate"  # client-chosen
    assert points(reader, "soc2kit.authz.denials") == {
        frozenset(
            {("soc2kit.authz.action", "other"), ("soc2kit.authz.denial", "undeclared_route")}
        ): 1
    }


def test_decryption_failures_by_table_and_column(make_metered: Factory) -> None:
    client, kit, reader = make_metered(routes)
    with kit.sessions() as s:
        s.add_all([Note(id=1, body="first secret text"), Note(id=2, body="second secret text")])
        s.commit()
    raw = sa.table("metric_notes", sa.column("id"), sa.column("body", sa.LargeBinary))
    with kit.engine.begin() as conn:  # move note 1's ciphertext onto note 2, as an attacker would
        moved = conn.execute(sa.select(raw.c.body).where(raw.c.id == 1)).scalar_one()
        conn.execute(sa.update(raw).where(raw.c.id == 2).values(body=moved))
    headers = {"Authorization": f"Bearer {kit.dev_token('bob', ['reader'], tenant='acme')}"}
    assert client.get("/notes/1", headers=headers).json() == {"body": "first secret text"}
    assert client.get("/notes/2", headers=headers).status_code == 500
    name = "soc2kit.crypto.decrypt.failures"
    assert points(reader, name) == {
        frozenset({("soc2kit.crypto.table", "metric_notes"), ("soc2kit.crypto.column", "body")}): 1
    }
    assert len(events_of(kit, "crypto.decrypt.failed")) == 1
    assert "secret" not in attribute_text(reader, name)


def test_a_truncated_ciphertext_is_a_counted_decryption_failure(make_metered: Factory) -> None:
    client, kit, reader = make_metered(routes)
    with kit.sessions() as s:
        s.add(Note(id=3, body="third secret text"))
        s.commit()
    raw = sa.table("metric_notes", sa.column("id"), sa.column("body", sa.LargeBinary))
    with kit.engine.begin() as conn:  # keep the v1 header byte, cut the rest
        stored = conn.execute(sa.select(raw.c.body).where(raw.c.id == 3)).scalar_one()
        conn.execute(sa.update(raw).where(raw.c.id == 3).values(body=bytes(stored)[:8]))
    headers = {"Authorization": f"Bearer {kit.dev_token('bob', ['reader'], tenant='acme')}"}
    assert client.get("/notes/3", headers=headers).status_code == 500  # refused, as it must be
    assert len(events_of(kit, "crypto.decrypt.failed")) == 1
    assert sum(points(reader, "soc2kit.crypto.decrypt.failures").values()) == 1


def test_rate_limit_hits_from_the_limiter_and_the_app(make_metered: Factory) -> None:
    client, kit, reader = make_metered(routes, rate_limit="2/minute")
    assert [client.get("/open").status_code for _ in range(3)] == [200, 200, 429]
    name = "soc2kit.rate_limit.hits"
    assert points(reader, name) == {frozenset({("soc2kit.rate_limit.source", "soc2kit")}): 1}
    limited = [e for e in events_of(kit, "http.request") if e["status_code"] == 429]
    assert len(limited) == 1 and limited[0]["extra"]["rejected"] == "rate_limited"


def test_an_app_429_is_counted_apart(make_metered: Factory) -> None:
    client, _, reader = make_metered(routes)
    assert client.get("/busy").status_code == 429
    assert client.get("/open").status_code == 200
    name = "soc2kit.rate_limit.hits"
    assert points(reader, name) == {frozenset({("soc2kit.rate_limit.source", "app")}): 1}


def inbox_gauges(reader: Any) -> tuple[float, float]:
    (backlog,) = points(reader, "soc2kit.audit.backlog").values()
    (lag,) = points(reader, "soc2kit.audit.seal_lag").values()
    return backlog, lag


def test_backlog_seal_lag_and_verify_results(
    make_metered: Factory, make_settings: Callable[..., soc2kit.Settings], database_url: str
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    # No lifespan: the sealer thread never starts, so the inbox only drains when told to.
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    kit = soc2kit.install(
        FastAPI(), make_settings(database_url=database_url), meter_provider=provider
    )
    try:
        assert inbox_gauges(reader) == (0, 0.0)
        for n in range(3):
            kit.audit.record("thing.changed", action="update", outcome="success", resource_id=n)
        old = datetime.now(UTC) - timedelta(seconds=300)
        with kit.engine.begin() as conn:  # an event stuck unsealed for five minutes
            conn.execute(
                audit_inbox.insert().values(
                    event_id=STUCK,
                    occurred_at=old,
                    event_type="thing.changed",
                    action="update",
                    outcome="success",
                    event="{}",
                )
            )
        backlog, lag = inbox_gauges(reader)
        assert backlog == 4
        assert 299 <= lag < 400
        verify = "soc2kit.audit.verify.runs"
        assert kit.audit.verify().status == "incomplete"  # the backlog lags
        with kit.engine.begin() as conn:
            conn.execute(audit_inbox.delete().where(audit_inbox.c.event_id == STUCK))
        kit.audit.flush()  # seal and sign a checkpoint
        assert inbox_gauges(reader) == (0, 0.0)
        assert kit.audit.verify().ok
        allow_tampering(kit.engine)
        with kit.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE soc2kit_audit_events SET event = event || ' '")
        assert kit.audit.verify().status == "fail"
        assert points(reader, verify) == {
            frozenset({("soc2kit.audit.verify.result", r)}): 1
            for r in ("ok", "failed", "incomplete")
        }
    finally:
        kit.shutdown()
        provider.shutdown()


def test_inbox_gauges_report_nothing_when_the_database_fails(
    make_metered: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    _, kit, reader = make_metered(routes)
    with kit.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE soc2kit_audit_inbox RENAME TO inbox_gone")
    try:
        assert points(reader, "soc2kit.audit.backlog") == {}
        assert "audit backlog not measured (OperationalError)" in caplog.text
    finally:
        with kit.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE inbox_gone RENAME TO soc2kit_audit_inbox")


def test_every_authn_reason_in_the_code_has_a_class() -> None:
    """A new refusal reason in soc2kit.authn must get a class, not fall into "other"."""
    pattern = re.compile(r'(?:AuthenticationError|CredentialRejected|reject)\(\s*(f?)"([^"]+)"')
    reasons: set[str] = {"no credentials"}  # authz/dependencies.py records this one itself
    for path in (SRC / "authn").glob("*.py"):
        for is_f, text in pattern.findall(path.read_text()):
            reasons.add(text.split("{", 1)[0] if is_f else text)
    assert len(reasons) > 20  # the scan found the reasons
    unclassified = sorted(r for r in reasons if authn_reason_class(r) == "other")
    assert unclassified == []
    assert authn_reason_class("something new") == "other"
    assert {authn_reason_class(r) for r in reasons} <= AUTHN_REASON_CLASSES


def test_a_failing_observer_never_fails_the_record(
    make_metered: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    _, kit, _ = make_metered(routes)

    def boom(*_: Any) -> None:
        raise RuntimeError(secrets.token_hex(8))

    kit.audit.add_observer(SimpleNamespace(event_recorded=boom, log_verified=boom))  # type: ignore[arg-type]
    event = kit.audit.record("thing.changed", action="update", outcome="success")
    assert any(e["event_id"] == event.event_id for e in audit_rows(kit))
    assert "audit observer failed: RuntimeError" in caplog.text
