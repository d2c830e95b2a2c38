"""The cases where the database matters, on SQLite and PostgreSQL, end to end.

Revoked subjects, expired and revoked API keys, expired break-glass, conflicting
assignments, policy values that look like syntax, and a policy store that goes
away (fail closed: 503 ``policy_unavailable``, nothing allowed).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.conftest import audit_rows
from tests.helpers import database_outage
from tests.security.battery import (
    audit_events,
    bearer,
    expect_audit,
    expect_no_token_material,
    expect_refusal,
    serving,
    settings_for,
)

import soc2kit
from soc2kit import Principal, public, require
from soc2kit.errors import SegregationOfDutiesError
from soc2kit.http.errors import ApiError

CALLS: Counter[str] = Counter()
Served = tuple[TestClient, soc2kit.Kit]

# Policy values that are syntax elsewhere (CSV, casbin matchers, regular expressions,
# quoting): here they are names, matched exactly.
ROLE_REGEX = "r.*"
ROLE_CSV = "p, role:admin, *, admin, read"
ROLE_QUOTE = 'clerk" || "1" == "1'
RESOURCE_REGEX = "inv[0-9]+|admin"
ACTION_REGEX = "read.*"
RESOURCE_CSV = 'a,b "c"'
ACTION_CSV = "x, 'y'"


def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
    @app.get("/open", dependencies=[public("battery control")])
    def open_() -> dict[str, str]:
        CALLS["open"] += 1
        return {"ok": "open"}

    @app.get("/r")
    def read(p: Principal = require("invoices", "read")) -> dict[str, str]:
        CALLS["read"] += 1
        return {"sub": p.subject}

    @app.post("/w")
    def write(p: Principal = require("invoices", "write")) -> dict[str, str]:
        CALLS["write"] += 1
        return {"sub": p.subject}

    @app.get("/approve")
    def approve(p: Principal = require("invoices", "approve")) -> dict[str, str]:
        CALLS["approve"] += 1
        return {"sub": p.subject}

    @app.get("/db")
    def db_admin(p: Principal = require("database", "admin")) -> dict[str, str]:
        CALLS["db"] += 1
        return {"sub": p.subject}

    @app.post("/admin/assign/{subject}/{role}")
    def assign(
        subject: str, role: str, p: Principal = require("roles", "assign")
    ) -> dict[str, str]:
        CALLS["assign"] += 1
        try:
            kit.policy.assign(subject, role, actor=p, reason="requested over the API")
        except SegregationOfDutiesError:
            raise ApiError(409, "conflict") from None
        return {"assigned": role}

    @app.get("/regex")
    def regex(p: Principal = require(RESOURCE_REGEX, ACTION_REGEX)) -> dict[str, str]:
        CALLS["regex"] += 1
        return {"sub": p.subject}

    @app.get("/csv")
    def csv_(p: Principal = require(RESOURCE_CSV, ACTION_CSV)) -> dict[str, str]:
        CALLS["csv"] += 1
        return {"sub": p.subject}

    @app.get("/admin")
    def admin(p: Principal = require("admin", "read")) -> dict[str, str]:
        CALLS["admin"] += 1
        return {"sub": p.subject}


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


@pytest.fixture
def db_url(database_url: str, tmp_path: Path) -> str:
    """The parametrized database; SQLite in a directory of its own, so it can vanish."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'db' / 'app.db'}"
    return database_url


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[Served]:
    with serving(settings_for(tmp_path, database_url=db_url), routes) as app:
        yield app


def refused_401(app: Served, response: Any, reason: str) -> dict[str, Any]:
    _, kit = app
    rid = expect_refusal(response, 401, "invalid_token")
    failure = expect_audit(kit, rid, 401, "authn.failure")["authn.failure"]
    assert failure["reason"] == reason, failure
    return failure


def refused_403(app: Served, response: Any, resource: str, action: str) -> dict[str, Any]:
    _, kit = app
    rid = expect_refusal(response, 403, "forbidden")
    denied = expect_audit(kit, rid, 403, "authz.denied")["authz.denied"]
    assert (denied["resource_type"], denied["action"]) == (resource, action), denied
    return denied


def api_key_secret(key: str) -> str:
    """The secret part of ``s2k_<key id>_<secret>`` (the key id is public, and audited)."""
    return key.split("_", 2)[2]


# revocation ---------------------------------------------------------------------------------


def test_a_revoked_subject_is_refused(served: Served, db_url: str, tmp_path: Path) -> None:
    client, kit = served
    kit.policy.grant("clerk", "invoices", "read")
    kit.policy.grant("clerk", "invoices", "write")
    token = kit.dev_token("alice", ["clerk"])
    _, key = kit.api_keys.create("alice", ["clerk"], timedelta(days=1))
    assert client.get("/r", headers=bearer(token)).status_code == 200  # now in the token cache
    assert kit.policy.revoke_principal("alice", reason="laptop stolen", actor="security")

    for response in (
        client.get("/r", headers=bearer(token)),  # the cached token
        client.get("/r", headers=bearer(kit.dev_token("alice", ["clerk"]))),  # a fresh one
        client.post("/w", headers={"X-API-Key": key}),  # every credential of the subject
    ):
        failure = refused_401(served, response, "principal revoked")
        assert failure["actor_id"] == "alice"
    assert CALLS == {"read": 1}

    # Stored, not just remembered: another instance on the same database refuses too.
    # (Same data directory: the development signing key is shared, as a real key would be.)
    with serving(settings_for(tmp_path, database_url=db_url), routes) as replica:
        response = replica[0].get("/r", headers=bearer(token))
        refused_401(replica, response, "principal revoked")
        expect_no_token_material(replica[1], token, api_key_secret(key))
    assert CALLS == {"read": 1}
    expect_no_token_material(kit, token, api_key_secret(key))


# API keys -----------------------------------------------------------------------------------


def test_an_expired_api_key_is_refused(served: Served) -> None:
    client, kit = served
    kit.policy.grant("billing", "invoices", "write")
    key_id, key = kit.api_keys.create("svc-billing", ["billing"], timedelta(seconds=1))
    assert client.post("/w", headers={"X-API-Key": key}).json() == {"sub": "svc-billing"}
    info = kit.api_keys.get(key_id)
    assert info is not None
    time.sleep(max(0.0, (info.expires_at - datetime.now(UTC)).total_seconds()) + 0.05)

    for headers in ({"X-API-Key": key}, bearer(key)):
        failure = refused_401(served, client.post("/w", headers=headers), "API key expired")
        assert (failure["resource_type"], failure["resource_id"]) == ("api_key", key_id)
        assert failure["actor_id"] == "svc-billing"
    assert CALLS == {"write": 1}
    expect_no_token_material(kit, api_key_secret(key))


def test_an_api_key_expired_in_the_table_is_refused(served: Served) -> None:
    # The stored expiry is what counts, whatever the key was created with.
    client, kit = served
    kit.policy.grant("billing", "invoices", "write")
    key_id, key = kit.api_keys.create("svc-billing", ["billing"], timedelta(days=30))
    assert client.post("/w", headers={"X-API-Key": key}).status_code == 200
    with kit.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE soc2kit_api_keys SET expires_at = :past WHERE key_id = :id"),
            {"past": datetime.now(UTC) - timedelta(minutes=1), "id": key_id},
        )
    failure = refused_401(served, client.post("/w", headers={"X-API-Key": key}), "API key expired")
    assert failure["resource_id"] == key_id
    assert CALLS == {"write": 1}
    expect_no_token_material(kit, api_key_secret(key))


def test_a_revoked_api_key_is_refused(served: Served) -> None:
    client, kit = served
    kit.policy.grant("billing", "invoices", "write")
    key_id, key = kit.api_keys.create("svc-billing", ["billing"], timedelta(days=1))
    _, other = kit.api_keys.create("svc-billing", ["billing"], timedelta(days=1))
    assert client.post("/w", headers={"X-API-Key": key}).status_code == 200
    assert kit.api_keys.revoke(key_id, "security", "leaked in a log")

    for headers in ({"X-API-Key": key}, bearer(key)):
        failure = refused_401(served, client.post("/w", headers=headers), "API key revoked")
        assert (failure["resource_type"], failure["resource_id"]) == ("api_key", key_id)
    # A forged secret for the revoked key id, and the subject's other key still works.
    forged = key[: -len(api_key_secret(key))] + "A" * 43
    refused_401(
        served, client.post("/w", headers={"X-API-Key": forged}), "API key secret does not match"
    )
    assert client.post("/w", headers={"X-API-Key": other}).status_code == 200
    assert CALLS == {"write": 2}
    expect_no_token_material(kit, api_key_secret(key), api_key_secret(other))


# break-glass ----------------------------------------------------------------------------------


def test_an_expired_break_glass_grant_opens_nothing(served: Served) -> None:
    client, kit = served
    kit.policy.grant("dba", "database", "admin")
    grant = kit.policy.break_glass("oncall", "dba", 1, "database outage", "INC-42", approver="lead")
    token = kit.dev_token("oncall")
    response = client.get("/db", headers=bearer(token))
    assert response.json() == {"sub": "oncall"}
    use = expect_audit(kit, response.headers["x-request-id"], 200, "authz.break_glass.use")
    assert use["authz.break_glass.use"]["actor_id"] == "oncall"

    assert grant.expires_at is not None
    time.sleep(max(0.0, (grant.expires_at - datetime.now(UTC)).total_seconds()) + 0.1)
    denied = refused_403(served, client.get("/db", headers=bearer(token)), "database", "admin")
    assert denied["actor_id"] == "oncall" and "dba" not in denied["roles"]
    assert CALLS == {"db": 1}
    expect_no_token_material(kit, token)


# segregation of duties -------------------------------------------------------------------------


def test_a_conflicting_assignment_is_refused_and_audited(served: Served) -> None:
    client, kit = served
    policy = kit.policy
    policy.grant("admin", "roles", "assign")
    policy.grant("clerk", "invoices", "read")
    policy.grant("manager", "invoices", "approve")
    policy.inherit("approver", "manager")
    policy.declare_conflict("clerk", "manager", reason="who records may not approve")
    policy.assign("carol", "clerk")
    admin = kit.dev_token("root", ["admin"])

    for role in ("manager", "approver"):  # directly, and through inheritance
        response = client.post(f"/admin/assign/carol/{role}", headers=bearer(admin))
        rid = expect_refusal(response, 409, "conflict")
        event = expect_audit(kit, rid, 409, "authz.role.assign")["authz.role.assign"]
        assert event["outcome"] == "denied"
        assert event["reason"] == "separation of duties: clerk and manager"
        assert (event["resource_id"], event["actor_id"]) == ("carol", "root")
    with pytest.raises(SegregationOfDutiesError):
        policy.break_glass("carol", "manager", 60, "month end", "INC-7", approver="lead")

    # Nothing was assigned: carol still cannot approve, on this instance or from the store.
    assert "manager" not in policy.roles_for("carol")
    carol = kit.dev_token("carol")
    refused_403(served, client.get("/approve", headers=bearer(carol)), "invoices", "approve")
    assert client.get("/r", headers=bearer(carol)).status_code == 200  # the control
    assert CALLS == {"assign": 2, "read": 1}
    denials = [
        e
        for e in audit_events(kit)
        if e["event_type"].startswith(("authz.role.assign", "authz.break_glass.grant"))
        and e["outcome"] == "denied"
    ]
    assert len(denials) == 3
    expect_no_token_material(kit, admin, carol)


# policy values that look like syntax -----------------------------------------------------------


def test_policy_values_are_names_not_syntax(db_url: str, tmp_path: Path) -> None:
    # Written by one instance (say, the policy CLI), enforced by another from the store.
    admin = soc2kit.install(FastAPI(), settings_for(tmp_path / "admin", database_url=db_url))
    try:
        admin.policy.grant(ROLE_REGEX, RESOURCE_REGEX, ACTION_REGEX)
        admin.policy.grant(ROLE_CSV, RESOURCE_CSV, ACTION_CSV)
        admin.policy.grant(ROLE_QUOTE, "invoices", "read")
        admin.policy.grant("admin", "admin", "read")
        admin.policy.assign("eve", ROLE_REGEX)
    finally:
        admin.shutdown()

    expected: dict[tuple[str, ...], dict[str, int]] = {
        (ROLE_REGEX,): {"/regex": 200, "/admin": 403, "/csv": 403, "/r": 403},
        ("r",): {"/regex": 403},
        ("rx",): {"/regex": 403},
        ("r.*x",): {"/regex": 403},
        (".*",): {"/regex": 403, "/admin": 403, "/csv": 403, "/r": 403},
        ("*",): {"/regex": 403, "/admin": 403, "/csv": 403, "/r": 403},
        (ROLE_CSV,): {"/csv": 200, "/admin": 403, "/regex": 403},
        ("p",): {"/csv": 403, "/admin": 403},
        ("role:admin",): {"/admin": 403},
        (ROLE_QUOTE,): {"/r": 200, "/admin": 403},
        ("clerk",): {"/r": 403},
        ('"admin"',): {"/admin": 403},
        ("admin",): {"/admin": 200, "/regex": 403, "/csv": 403},
    }
    handler = {"/regex": "regex", "/csv": "csv", "/admin": "admin", "/r": "read"}
    routes_of = {
        "/regex": (RESOURCE_REGEX, ACTION_REGEX),
        "/csv": (RESOURCE_CSV, ACTION_CSV),
        "/admin": ("admin", "read"),
        "/r": ("invoices", "read"),
    }
    with serving(settings_for(tmp_path / "app", database_url=db_url), routes) as app:
        client, kit = app
        tokens = []
        for roles, paths in expected.items():
            token = kit.dev_token("mallory", list(roles))
            tokens.append(token)
            for path, status in paths.items():
                CALLS.clear()
                response = client.get(path, headers=bearer(token))
                if status == 200:
                    assert response.json() == {"sub": "mallory"}, (roles, path)
                    assert dict(CALLS) == {handler[path]: 1}
                else:
                    refused_403(app, response, *routes_of[path])
                    assert CALLS == {}, (roles, path)
        # A role assigned in the store under a regex-like name: matched exactly too.
        CALLS.clear()
        eve = kit.dev_token("eve")
        assert client.get("/regex", headers=bearer(eve)).json() == {"sub": "eve"}
        refused_403(app, client.get("/admin", headers=bearer(eve)), "admin", "read")
        assert CALLS == {"regex": 1}
        expect_no_token_material(kit, eve, *tokens)


# the policy store goes away ---------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_an_unreachable_policy_store_fails_closed(db_url: str, tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        database_url=db_url,
        policy_max_staleness_seconds=0.5,
        policy_poll_seconds=0.1,
    )
    with serving(settings, routes) as app:
        client, kit = app
        kit.policy.grant("clerk", "invoices", "read")
        kit.policy.grant("clerk", "invoices", "approve")
        clerk = kit.dev_token("alice", ["clerk"])
        nobody = kit.dev_token("nina")
        assert client.get("/r", headers=bearer(clerk)).status_code == 200

        refused: list[str] = []
        with database_outage(kit, db_url, tmp_path):
            time.sleep(0.8)  # past the staleness limit
            for token, path in (
                (clerk, "/r"),
                (clerk, "/approve"),
                (nobody, "/r"),  # nothing is decided, not even a denial
                (nobody, "/admin"),
                (None, "/r"),  # not even an authentication failure
            ):
                response = client.get(path, headers=bearer(token) if token else {})
                # Fail closed twice over: the policy cannot be confirmed fresh, and the
                # refusal cannot be recorded, so the answer is 503 whichever is met first.
                assert response.status_code == 503, response.text
                assert response.json()["error"] in ("policy_unavailable", "audit_unavailable")
                refused.append(str(response.headers["x-request-id"]))
            assert client.get("/readyz").status_code == 503
            # A public read needs no policy; its informational record waits in the queue.
            assert client.get("/open").json() == {"ok": "open"}
            assert CALLS == {"read": 1, "open": 1}  # no protected handler ran

        # Back again: the policy is confirmed fresh and access resumes.
        wait_for(lambda: client.get("/r", headers=bearer(clerk)).status_code == 200)
        assert CALLS == {"read": 2, "open": 1}
        # Nothing in the trail claims a request of the outage succeeded.
        kit.audit.flush()
        for event in audit_rows(kit):
            if event.get("request_id") in refused:
                assert event["outcome"] != "success", event
        expect_no_token_material(kit, clerk, nobody)
