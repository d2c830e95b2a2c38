"""kit.policy on SQLite and PostgreSQL: persistence, audit, tenants, SoD, break-glass."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

import soc2kit
from soc2kit import Principal, require
from soc2kit.authz.index import Grant
from soc2kit.authz.model import casbin_enforcer
from soc2kit.authz.policy import Policy
from soc2kit.authz.store import load_snapshot
from soc2kit.db.schema import audit_inbox
from soc2kit.errors import (
    AuditWriteError,
    PolicyError,
    PolicyUnavailableError,
    SegregationOfDutiesError,
)

logging.getLogger("casbin").setLevel(logging.WARNING)


def make_kit(database_url: str, tmp_path: Path, **overrides: Any) -> soc2kit.Kit:
    settings = soc2kit.Settings(
        environment="test", database_url=database_url, data_dir=tmp_path / "data", **overrides
    )
    return soc2kit.install(FastAPI(), settings)


def events(kit: soc2kit.Kit, prefix: str = "") -> list[dict[str, Any]]:
    kit.audit.flush()
    with kit.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event FROM soc2kit_audit_events ORDER BY seq"))
        found = [json.loads(r[0]) for r in rows]
    # Queued events and in-transaction events reach the table in different
    # orders; occurred_at is the order things happened in.
    found.sort(key=lambda e: e["occurred_at"])
    return [e for e in found if e["event_type"].startswith(prefix)]


def user(subject: str, *roles: str, tenant: str | None = None) -> Principal:
    return Principal(
        subject=subject,
        issuer="t",
        roles=frozenset(roles),
        tenant=tenant,
        token_roles=frozenset(roles),
    )


@pytest.fixture
def kit(database_url: str, tmp_path: Path) -> Any:
    k = make_kit(database_url, tmp_path)
    yield k
    k.shutdown()


def test_changes_persist_and_reload(kit: soc2kit.Kit) -> None:
    policy = kit.policy
    assert policy.grant("clerk", "invoices", "read", reason="ticket-1") is True
    assert policy.grant("clerk", "invoices", "read") is False  # idempotent
    assert policy.assign("alice", "clerk", approved_by="bob", reason="joined finance")
    policy.inherit("manager", "clerk")
    policy.grant("manager", "invoices", "approve")
    policy.assign("mia", "manager")
    fresh = Policy(kit.engine, kit.audit, kit.settings)
    assert fresh.revision == policy.revision > 0
    for p in (policy, fresh):
        assert p.allowed(user("alice"), "invoices", "read")
        assert not p.allowed(user("alice"), "invoices", "approve")
        assert p.allowed(user("mia"), "invoices", "read")  # inherited
        assert p.allowed(user("mia"), "invoices", "approve")
        assert not p.allowed(user("eve"), "invoices", "read")
    assert policy.revoke("clerk", "invoices", "read")
    assert not policy.allowed(user("alice"), "invoices", "read")
    assert not policy.allowed(user("mia"), "invoices", "read")


def test_every_change_is_audited_with_before_and_after(kit: soc2kit.Kit) -> None:
    kit.policy.assign("alice", "clerk", actor="admin", reason="onboarding", approved_by="cfo")
    kit.policy.assign("alice", "auditor", actor="admin")
    kit.policy.unassign("alice", "clerk", actor="admin", reason="moved team")
    assigned, _, removed = events(kit, "authz.role.")
    assert assigned["actor_id"] == "admin" and assigned["reason"] == "onboarding"
    assert assigned["changes"] == {"roles": {"old": [], "new": ["clerk"]}}
    assert assigned["extra"]["approved_by"] == "cfo"
    assert removed["changes"] == {"roles": {"old": ["auditor", "clerk"], "new": ["auditor"]}}


def test_change_and_audit_commit_together(kit: soc2kit.Kit) -> None:
    kit.audit.flush()
    audit_inbox.drop(kit.engine)
    try:
        with pytest.raises(AuditWriteError):
            kit.policy.grant("clerk", "invoices", "read")
        assert load_snapshot(kit.engine).grants == []  # rolled back with its audit event
        assert not kit.policy.allowed(user("x", "clerk"), "invoices", "read")
    finally:
        audit_inbox.create(kit.engine)


def test_tenants_scope_grants_and_assignments(kit: soc2kit.Kit) -> None:
    p = kit.policy
    p.grant("clerk", "invoices", "read")  # every tenant
    p.grant("approver", "invoices", "approve", tenant="acme")
    p.assign("alice", "clerk", tenant="acme")
    p.assign("alice", "approver", tenant="acme")
    p.assign("bob", "approver")  # every tenant, but the grant is acme-only
    assert p.allowed(user("alice", tenant="acme"), "invoices", "read")
    assert not p.allowed(user("alice", tenant="globex"), "invoices", "read")
    assert p.allowed(user("alice", tenant="acme"), "invoices", "approve")
    assert p.allowed(user("bob", tenant="acme"), "invoices", "approve")
    assert not p.allowed(user("bob", tenant="globex"), "invoices", "approve")
    assert not p.allowed(user("alice"), "invoices", "read")  # no tenant: acme rows do not apply
    assert p.roles_for("alice", "acme") == {"clerk", "approver"}
    assert p.roles_for("alice", "globex") == frozenset()


def test_expiring_assignment_stops_at_its_time(kit: soc2kit.Kit) -> None:
    kit.policy.grant("clerk", "invoices", "read")
    soon = datetime.now(UTC) + timedelta(seconds=1)
    kit.policy.assign("temp", "clerk", expires_at=soon)
    assert kit.policy.allowed(user("temp"), "invoices", "read")
    time.sleep(1.2)
    assert not kit.policy.allowed(user("temp"), "invoices", "read")
    with pytest.raises(PolicyError):
        kit.policy.assign("temp", "clerk", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(PolicyError):
        kit.policy.assign("temp", "clerk", expires_at=datetime(2030, 1, 1))  # naive


def test_segregation_of_duties(kit: soc2kit.Kit) -> None:
    p = kit.policy
    p.assign("carol", "payments-create")
    assert p.declare_conflict("payments-create", "payments-approve", reason="SoD") == []
    with pytest.raises(SegregationOfDutiesError):
        p.assign("carol", "payments-approve")
    assert p.roles_for("carol") == {"payments-create"}
    # Through inheritance too: a role that includes the conflicting one.
    p.inherit("treasurer", "payments-approve")
    with pytest.raises(SegregationOfDutiesError):
        p.assign("carol", "treasurer")
    denied = [e for e in events(kit, "authz.role.assign") if e["outcome"] == "denied"]
    assert len(denied) == 2 and "separation of duties" in denied[0]["reason"]
    # Declaring a conflict reports subjects who already hold both.
    p.assign("dan", "x-a")
    p.assign("dan", "x-b")
    assert p.declare_conflict("x-a", "x-b") == ["dan"]


def test_break_glass_lifecycle(kit: soc2kit.Kit) -> None:
    p = kit.policy
    p.grant("dba", "database", "admin")
    with pytest.raises(PolicyError):
        p.break_glass("oncall", "dba", 60, "outage", "INC-1", approver="oncall")
    with pytest.raises(PolicyError):
        p.break_glass("oncall", "dba", 10**7, "outage", "INC-1", approver="lead")
    with pytest.raises(PolicyError):
        p.break_glass("oncall", "dba", 60, " ", "INC-1", approver="lead")
    grant = p.break_glass("oncall", "dba", timedelta(seconds=1), "outage", "INC-1", approver="lead")
    assert grant.source == "break_glass" and grant.expires_at is not None
    decision = p.check(user("oncall"), "database", "admin")
    assert decision.allowed and decision.source == "break_glass"
    time.sleep(1.2)
    assert not p.allowed(user("oncall"), "database", "admin")  # checked at decision time
    assert p.sweep_expired() == 1
    types = [e["event_type"] for e in events(kit, "authz.break_glass")]
    assert types == [
        "authz.break_glass.grant",
        "authz.break_glass.grant",
        "authz.break_glass.expire",
    ]
    assert events(kit, "authz.break_glass.grant")[0]["outcome"] == "denied"


def test_break_glass_use_is_audited_over_http(database_url: str, tmp_path: Path) -> None:
    kit = make_kit(database_url, tmp_path)
    app = kit.app

    @app.get("/db")
    def admin(p: Principal = require("database", "admin")) -> dict[str, str]:
        return {"ok": p.subject}

    kit.policy.grant("dba", "database", "admin")
    kit.policy.break_glass("oncall", "dba", 300, "outage", "INC-2", approver="lead")
    with TestClient(app) as client:
        token = kit.dev_token("oncall")
        for _ in range(2):
            assert (
                client.get("/db", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            )
    uses = events(kit, "authz.break_glass.use")
    assert len(uses) == 2 and uses[0]["actor_id"] == "oncall"


def test_revoked_principal_gets_401_until_reinstated(database_url: str, tmp_path: Path) -> None:
    kit = make_kit(database_url, tmp_path)

    @kit.app.get("/r")
    def read(p: Principal = require("invoices", "read")) -> dict[str, str]:
        return {}

    kit.policy.grant("clerk", "invoices", "read")
    with TestClient(kit.app) as client:
        headers = {"Authorization": f"Bearer {kit.dev_token('alice', ['clerk'])}"}
        assert client.get("/r", headers=headers).status_code == 200
        assert kit.policy.revoke_principal("alice", reason="left the company", actor="hr")
        r = client.get("/r", headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "invalid_token"
        assert kit.policy.reinstate_principal("alice", reason="rehired", actor="hr")
        assert client.get("/r", headers=headers).status_code == 200
    failure = [e for e in events(kit, "authn.failure") if e["reason"] == "principal revoked"]
    assert len(failure) == 1


def test_explain_names_the_rule(kit: soc2kit.Kit) -> None:
    kit.policy.grant("clerk", "invoices", "read", tenant="acme")
    kit.policy.inherit("senior", "clerk")
    kit.policy.assign("sam", "senior")
    why = kit.policy.explain("sam", "invoices", "read", tenant="acme")
    assert why.allowed and why.role == "clerk" and why.via == "senior"
    assert why.source == "store" and why.grant_tenant == "acme"
    no = kit.policy.explain("sam", "invoices", "delete", tenant="acme")
    assert not no.allowed and "no role" in no.reason
    assert kit.policy.explain("x", "invoices", "read", "acme", roles={"clerk"}).source == "token"


def test_inheritance_cycles_are_refused(kit: soc2kit.Kit) -> None:
    kit.policy.inherit("a", "b")
    kit.policy.inherit("b", "c")
    with pytest.raises(PolicyError, match="cycle"):
        kit.policy.inherit("c", "a")
    with pytest.raises(PolicyError, match="cycle"):
        kit.policy.inherit("a", "a")


@pytest.mark.parametrize(
    "bad", ["", "x" * 257, "a\nb", "a\x00", "tab\there", " lead", "zero\u200bwidth", "rtl\u202e"]
)
def test_hostile_names_are_refused(kit: soc2kit.Kit, bad: str) -> None:
    with pytest.raises(ValueError):
        kit.policy.grant(bad, "r", "a")
    with pytest.raises(ValueError):
        kit.policy.assign(bad, "role")


def test_tenant_wildcard_is_reserved(kit: soc2kit.Kit) -> None:
    with pytest.raises(ValueError):
        kit.policy.grant("r", "res", "act", tenant="ac*me")


def test_csv_round_trip_keeps_odd_values(kit: soc2kit.Kit, tmp_path: Path) -> None:
    odd = 'a,b "c" .*[x]'
    kit.policy.grant(odd, odd, odd, tenant="t,1")
    kit.policy.grant("clerk", "invoices", "read")
    kit.policy.assign("alice", "clerk")
    kit.policy.assign(odd, odd, tenant="t,1")
    kit.policy.inherit("senior", "clerk")
    text = kit.policy.export_csv()
    other = make_kit(f"sqlite:///{tmp_path / 'other.db'}", tmp_path)
    try:
        assert other.policy.import_csv(text, actor="git-sync") == 5
        assert other.policy.import_csv(text) == 0
        assert other.policy.export_csv() == text
        assert other.policy.allowed(user(odd, tenant="t,1"), odd, odd)
    finally:
        other.shutdown()
    with pytest.raises(PolicyError, match="line 1"):
        kit.policy.import_csv("x, y\n")


def test_export_loads_into_pycasbin_with_the_same_decisions(kit: soc2kit.Kit) -> None:
    kit.policy.grant("clerk", "invoices", "read", tenant="acme")
    kit.policy.grant("boss", "invoices", "approve")
    kit.policy.assign("alice", "clerk", tenant="acme")
    kit.policy.inherit("boss", "clerk")
    kit.policy.assign("bob", "boss")
    enforcer = casbin_enforcer(load_snapshot(kit.engine))
    lines = [
        ln.split(", ") if ", " in ln else ln.split(",")
        for ln in kit.policy.export_csv().splitlines()
    ]
    assert {tuple(ln) for ln in lines if ln[0] == "p"} == {
        ("p", "role:clerk", "acme", "invoices", "read"),
        ("p", "role:boss", "*", "invoices", "approve"),
    }
    for sub in ("alice", "bob", "eve"):
        for dom in ("acme", "globex", "*"):
            for act in ("read", "approve"):
                expected = enforcer.enforce(f"user:{sub}", dom, "invoices", act)
                assert (
                    kit.policy.allowed(
                        user(sub, tenant=None if dom == "*" else dom), "invoices", act
                    )
                    == expected
                )


def test_access_review_lists_sources(database_url: str, tmp_path: Path) -> None:
    kit = make_kit(database_url, tmp_path)

    @kit.app.get("/r")
    def read(p: Principal = require("invoices", "read")) -> dict[str, str]:
        return {}

    kit.policy.grant("clerk", "invoices", "read")
    kit.policy.assign("alice", "auditor", approved_by="cfo", reason="Q4 audit")
    kit.policy.break_glass("oncall", "dba", 600, "outage", "INC-3", approver="lead")
    with TestClient(kit.app) as client:
        client.get("/r", headers={"Authorization": f"Bearer {kit.dev_token('tom', ['clerk'])}"})
        rows = {(r.subject, r.role, r.source): r for r in kit.policy.access_review()}
    assert rows[("alice", "auditor", "store")].approved_by == "cfo"
    assert rows[("oncall", "dba", "break_glass")].expires_at is not None
    tom = rows[("tom", "clerk", "token")]
    assert tom.last_seen_at is not None


def test_object_level_checks(kit: soc2kit.Kit) -> None:
    class Invoice:
        def __init__(self, id: int, tenant_id: str, owner_id: str) -> None:
            self.id, self.tenant_id, self.owner_id = id, tenant_id, owner_id

    kit.policy.grant("clerk", "invoices", "read")
    kit.policy.grant("auditor", "invoices", "read")
    kit.policy.grant("auditor", "invoices", "read:any")
    mine = Invoice(1, "acme", "alice")
    theirs = Invoice(2, "acme", "bob")
    other_tenant = Invoice(3, "globex", "alice")
    alice = user("alice", "clerk", tenant="acme")
    kit.authorize(alice, "invoices", "read", mine, owner_attr="owner_id")
    for obj in (theirs, other_tenant):
        with pytest.raises(soc2kit.http.ApiError) as info:
            kit.authorize(alice, "invoices", "read", obj, owner_attr="owner_id")
        assert info.value.status_code == 404
    kit.authorize(
        user("ann", "auditor", tenant="acme"), "invoices", "read", theirs, owner_attr="owner_id"
    )
    stmt = kit.tenant_filter(sa.select(sa.column("x")), sa.column("tenant_id"), alice)
    assert "tenant_id" in str(stmt)
    with pytest.raises(soc2kit.http.ApiError):
        kit.tenant_filter(sa.select(sa.column("x")), sa.column("tenant_id"), user("n"))
    assert len(events(kit, "authz.denied")) == 3


def test_stale_policy_fails_closed(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    kit = make_kit(
        f"sqlite:///{db}", tmp_path, policy_max_staleness_seconds=0.3, policy_poll_seconds=0.1
    )
    kit.policy.grant("clerk", "invoices", "read")
    assert kit.policy.allowed(user("a", "clerk"), "invoices", "read")
    kit.engine.dispose()
    db.rename(tmp_path / "gone.db")  # the store disappears under the running app
    (tmp_path / "p.db").mkdir()  # and cannot be recreated at the same path
    time.sleep(0.4)
    with pytest.raises(PolicyUnavailableError):
        kit.policy.allowed(user("a", "clerk"), "invoices", "read")
    assert kit.policy.readiness() is not None


def test_stale_policy_answers_503_over_http(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    kit = make_kit(
        f"sqlite:///{db}", tmp_path, policy_max_staleness_seconds=0.3, policy_poll_seconds=0.1
    )
    kit.app.include_router(kit.health_router())

    @kit.app.get("/r")
    def read(p: Principal = require("invoices", "read")) -> dict[str, str]:
        return {}

    kit.policy.grant("clerk", "invoices", "read")
    with TestClient(kit.app, raise_server_exceptions=False) as client:
        headers = {"Authorization": f"Bearer {kit.dev_token('a', ['clerk'])}"}
        assert client.get("/r", headers=headers).status_code == 200
        kit.policy.stop_sync()
        kit.engine.dispose()
        db.rename(tmp_path / "gone.db")
        (tmp_path / "p.db").mkdir()
        try:
            time.sleep(0.5)
            r = client.get("/r", headers=headers)
            assert r.status_code == 503
            # The refusal cannot be recorded either (same database): 503 whichever comes first.
            assert r.json()["error"] in ("policy_unavailable", "audit_unavailable")
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert "policy" in ready.json()["failing"]
        finally:
            (tmp_path / "p.db").rmdir()
            (tmp_path / "gone.db").rename(db)  # restored: shutdown can write its audit events


def test_two_replicas_see_a_revoke_within_two_seconds(database_url: str, tmp_path: Path) -> None:
    poll = 0.5 if database_url.startswith("sqlite") else 30.0  # PostgreSQL: NOTIFY, not poll
    a = make_kit(database_url, tmp_path / "a", policy_poll_seconds=poll)
    b_settings = soc2kit.Settings(
        environment="test",
        database_url=database_url,
        data_dir=tmp_path / "a" / "data",
        policy_poll_seconds=poll,
    )
    b = soc2kit.install(FastAPI(), b_settings)
    a.policy.grant("clerk", "invoices", "read")
    a.policy.assign("alice", "clerk")
    for k in (a, b):
        k.startup()
    try:
        assert b.policy.allowed(user("alice"), "invoices", "read")
        a.policy.unassign("alice", "clerk", reason="offboarded")
        deadline = time.monotonic() + 2.0
        while b.policy.allowed(user("alice"), "invoices", "read"):
            assert time.monotonic() < deadline, "replica b still allows after 2 s"
            time.sleep(0.05)
        a.policy.revoke_principal("bob", reason="compromised")
        deadline = time.monotonic() + 2.0
        while not b.policy.is_revoked("bob"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert b.policy.revision == a.policy.revision
    finally:
        a.shutdown()
        b.shutdown()


def test_grants_returns_records(kit: soc2kit.Kit) -> None:
    kit.policy.grant("r", "res", "act", tenant="t")
    assert kit.policy.grants() == [Grant("r", "res", "act", "t")]


def test_inheritance_cannot_bypass_separation_of_duties(kit: soc2kit.Kit) -> None:
    p = kit.policy
    p.declare_conflict("maker", "checker")
    p.assign("carol", "maker")
    p.assign("carol", "helper")
    with pytest.raises(SegregationOfDutiesError):
        p.inherit("helper", "checker")  # would give carol checker through helper
    assert not p.check(user("carol"), "x", "y").allowed
    assert "checker" not in p._index.ancestors("helper")
    denied = [e for e in events(kit, "authz.role.inherit") if e["outcome"] == "denied"]
    assert len(denied) == 1 and "carol" in denied[0]["reason"]


def test_policy_events_carry_the_revision_they_produced(kit: soc2kit.Kit) -> None:
    kit.policy.grant("a", "r", "x")
    kit.policy.assign("s", "a")
    revisions = [e["extra"]["revision"] for e in events(kit, "authz.")]
    assert revisions == [kit.policy.revision - 1, kit.policy.revision]


def test_standing_assignment_expiry_is_swept_and_audited(kit: soc2kit.Kit) -> None:
    kit.policy.assign("temp", "clerk", expires_at=datetime.now(UTC) + timedelta(seconds=1))
    time.sleep(1.2)
    assert kit.policy.sweep_expired() == 1
    assert kit.policy.assignments("temp") == []
    (expired,) = events(kit, "authz.role.expire")
    assert expired["resource_id"] == "temp" and expired["actor_id"] == "system"


def test_break_glass_can_end_early(kit: soc2kit.Kit) -> None:
    kit.policy.grant("dba", "db", "admin")
    kit.policy.break_glass("oncall", "dba", 600, "outage", "INC-9", approver="lead")
    with pytest.raises(PolicyError):
        kit.policy.end_break_glass("oncall", "dba", reason=" ")
    assert kit.policy.end_break_glass("oncall", "dba", reason="resolved", actor="lead")
    assert not kit.policy.allowed(user("oncall"), "db", "admin")
    assert events(kit, "authz.break_glass.end")[0]["actor_id"] == "lead"


def test_revocation_needs_a_reason(kit: soc2kit.Kit) -> None:
    with pytest.raises(PolicyError):
        kit.policy.revoke_principal("x", reason="")
    with pytest.raises(ValueError):
        kit.policy.reinstate_principal("bad\nname", reason="r")


def test_import_checks_every_line_before_applying_any(kit: soc2kit.Kit) -> None:
    text = "p, role:clerk, *, invoices, read\ng, user:alice, role:clerk, acme\np, nonsense\n"
    with pytest.raises(PolicyError, match="line 3"):
        kit.policy.import_csv(text)
    assert kit.policy.grants() == [] and kit.policy.assignments() == []


def test_access_review_lists_api_keys_and_revoked_subjects(kit: soc2kit.Kit) -> None:
    kit.policy.assign("alice", "clerk")
    kit.policy.revoke_principal("alice", reason="left")
    key_id, _secret = kit.api_keys.create(
        "svc-billing", ["billing-writer"], expires_in=timedelta(days=30), created_by="ops"
    )[:2]
    rows = {(r.subject, r.role, r.source): r for r in kit.policy.access_review()}
    assert rows[("alice", "clerk", "store")].revoked is True
    key_row = rows[("svc-billing", "billing-writer", "api_key")]
    assert key_row.granted_by == "ops" and key_id in str(key_row.reason)
    assert key_row.last_seen_at is None  # never used, still listed


def test_kit_authorize_fails_closed_when_the_policy_is_stale(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    kit = make_kit(
        f"sqlite:///{db}", tmp_path, policy_max_staleness_seconds=0.3, policy_poll_seconds=0.1
    )
    kit.policy.grant("clerk", "invoices", "read")
    kit.engine.dispose()
    db.rename(tmp_path / "gone.db")
    (tmp_path / "p.db").mkdir()
    time.sleep(0.4)
    with pytest.raises(soc2kit.http.ApiError) as info:
        kit.authorize(user("a", "clerk"), "invoices", "read")
    assert info.value.status_code == 503


def test_missing_tenant_attribute_fails_closed(kit: soc2kit.Kit) -> None:
    class Doc:
        id = 1
        tenant = "acme"  # not "tenant_id": a misspelt attribute must not skip the check

    kit.policy.grant("reader", "docs", "read")
    with pytest.raises(soc2kit.http.ApiError):
        kit.authorize(user("a", "reader", tenant="globex"), "docs", "read", Doc())
    kit.authorize(user("a", "reader", tenant="acme"), "docs", "read", Doc(), tenant_attr="tenant")


def test_object_denied_status_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOC2KIT_OBJECT_DENIED_STATUS", "403")
    assert soc2kit.Settings().object_denied_status == 403
    monkeypatch.setenv("SOC2KIT_OBJECT_DENIED_STATUS", "500")
    with pytest.raises(ValueError):
        soc2kit.Settings()


def test_poll_interval_must_be_below_the_staleness_bound() -> None:
    with pytest.raises(ValueError):
        soc2kit.Settings(policy_poll_seconds=60, policy_max_staleness_seconds=30)
