"""Liveness and readiness probes, on SQLite and PostgreSQL where the database matters."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from tests.helpers import database_outage

import soc2kit
from soc2kit.authz.dependencies import PUBLIC_ATTR
from soc2kit.db.schema import audit_inbox


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture
def db_url(database_url: str, tmp_path: Path) -> str:
    """The parametrized database; SQLite in a directory of its own, so it can vanish.

    Request it before ``make_client``: fixtures are torn down in reverse order,
    and the app must shut down (writing its last audit events) before the
    database is dropped.
    """
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'db' / 'app.db'}"
    return database_url


def test_healthz_is_200_without_credentials(make_client: Any) -> None:
    client, _ = make_client()
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "cache-control" not in resp.headers


def test_both_probes_are_declared_public(make_client: Any) -> None:
    _, kit = make_client()
    probes = {r.path: r for r in kit.health_router().routes if isinstance(r, APIRoute)}
    assert set(probes) == {"/healthz", "/readyz"}
    for route in probes.values():
        reasons = [getattr(d.dependency, PUBLIC_ATTR, None) for d in route.dependencies]
        assert any(reasons), route.path


def test_readyz_is_200_when_everything_is_fine(
    db_url: str, make_client: Any, audit_rows: Any
) -> None:
    client, kit = make_client(database_url=db_url)
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {
        "status": "ok",
        "checks": {"database": "ok", "audit": "ok", "policy": "ok", "encryption": "ok"},
    }
    http_rows = [r for r in audit_rows(kit) if r["event_type"] == "http.request"]
    assert http_rows[-1]["route"] == "/readyz"


def test_readyz_is_503_when_the_database_is_unreachable(
    db_url: str, make_client: Any, tmp_path: Path, audit_rows: Any
) -> None:
    client, kit = make_client(database_url=db_url)
    assert client.get("/readyz").status_code == 200
    with database_outage(kit, db_url, tmp_path):
        resp = client.get("/readyz")
        assert resp.status_code == 503
        body = resp.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == "failing"
        assert body["failing"]["database"] == "database unreachable"
        assert client.get("/healthz").status_code == 200  # alive, just not ready
    # Back again: ready, and the requests served during the outage were audited.
    wait_for(lambda: client.get("/readyz").status_code == 200)
    routes = [r["route"] for r in audit_rows(kit) if r["event_type"] == "http.request"]
    assert routes.count("/healthz") == 1
    assert routes.count("/readyz") >= 3


def test_readyz_is_503_when_audit_writes_fail(
    db_url: str, make_client: Any, audit_rows: Any
) -> None:
    client, kit = make_client(database_url=db_url)
    assert client.get("/readyz").status_code == 200
    kit.audit.flush()
    audit_inbox.drop(kit.engine)
    kit.audit.record("test.probe", action="probe", outcome="success")
    wait_for(lambda: kit.audit.health() is not None)

    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["checks"] == {
        "database": "ok",
        "audit": "failing",
        "policy": "ok",
        "encryption": "ok",
    }
    assert body["failing"]["audit"].startswith("audit writes failing: ")
    assert "soc2kit_audit_inbox" not in resp.text  # the driver's message stays inside
    assert "INSERT" not in resp.text

    # The table comes back: the queued events are written, none was dropped.
    audit_inbox.create(kit.engine)
    wait_for(lambda: kit.audit.health() is None)
    assert client.get("/readyz").status_code == 200
    rows = audit_rows(kit)
    assert [r["event_type"] for r in rows].count("test.probe") == 1
    assert any(
        r["event_type"] == "http.request" and r["status_code"] == 503 and r["route"] == "/readyz"
        for r in rows
    )


def test_readyz_names_a_failing_registered_check(make_client: Any) -> None:
    client, kit = make_client()
    state = {"reason": "queue backlog"}
    kit.add_readiness_check("queue", lambda: state["reason"])
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["failing"] == {"queue": "queue backlog"}
    assert resp.json()["checks"] == {
        "database": "ok",
        "audit": "ok",
        "policy": "ok",
        "encryption": "ok",
        "queue": "failing",
    }
    state["reason"] = None  # type: ignore[assignment]
    assert client.get("/readyz").status_code == 200


def test_a_raising_check_means_not_ready_without_its_text(make_client: Any) -> None:
    client, kit = make_client()

    def broken() -> str | None:
        raise RuntimeError("password=s3cr3t-for-the-cache")

    kit.add_readiness_check("cache", broken)
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"]["cache"] == "failing"
    assert resp.json()["failing"]["cache"]  # a reason is given...
    assert "s3cr3t" not in resp.text  # ...but never the exception's text


def test_a_check_name_is_registered_once(make_client: Any) -> None:
    _, kit = make_client()
    with pytest.raises(soc2kit.ConfigurationError):
        kit.add_readiness_check("database", lambda: None)


def test_probes_answer_from_any_allowed_client(make_client: Any) -> None:
    client, _ = make_client()
    other = TestClient(client.app, client=("192.0.2.1", 1))
    assert other.get("/healthz").status_code == 200
    assert other.get("/readyz").status_code == 200
