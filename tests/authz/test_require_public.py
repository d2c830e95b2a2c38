"""require()/public() on routes and routers, and the in-memory policy."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import APIRouter, FastAPI
from tests.conftest import audit_rows

import soc2kit
from soc2kit import Principal, public, require
from soc2kit.authz.index import Grant


def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
    kit.policy.grant("clerk", "invoices", "read")
    kit.policy.grant("manager", "invoices", "approve")
    kit.policy.inherit("manager", "clerk")

    @app.get("/invoices/{invoice_id}")
    def read(invoice_id: int, p: Principal = require("invoices", "read")) -> dict[str, object]:
        return {"id": invoice_id, "sub": p.subject, "roles": sorted(p.roles)}

    router = APIRouter(prefix="/admin", dependencies=[require("invoices", "approve")])

    @router.post("/approve/{invoice_id}")
    def approve(invoice_id: int) -> dict[str, int]:
        return {"approved": invoice_id}

    app.include_router(router)

    @app.get("/ping", dependencies=[public("uptime checks")])
    def ping() -> dict[str, str]:
        return {"ok": "yes"}


Client = Callable[..., tuple[object, soc2kit.Kit]]


def test_role_matrix(make_client: Client) -> None:
    client, kit = make_client(routes)
    clerk = {"Authorization": f"Bearer {kit.dev_token('c', ['clerk'])}"}
    manager = {"Authorization": f"Bearer {kit.dev_token('m', ['manager'])}"}
    nobody = {"Authorization": f"Bearer {kit.dev_token('n', [])}"}
    cases = [
        ("GET", "/invoices/1", clerk, 200),
        ("GET", "/invoices/1", manager, 200),
        ("GET", "/invoices/1", nobody, 403),
        ("GET", "/invoices/1", {}, 401),
        ("POST", "/admin/approve/1", clerk, 403),
        ("POST", "/admin/approve/1", manager, 200),
        ("POST", "/admin/approve/1", {}, 401),
        ("GET", "/ping", {}, 200),
    ]
    got = [(m, p, client.request(m, p, headers=h).status_code) for m, p, h, _ in cases]  # type: ignore[attr-defined]
    assert got == [(m, p, s) for m, p, _, s in cases]


def test_401_says_bearer_and_nothing_more(make_client: Client) -> None:
    client, _ = make_client(routes)
    r = client.get("/invoices/1", headers={"Authorization": "Bearer not.a.token"})  # type: ignore[attr-defined]
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert r.json()["error"] == "invalid_token" and set(r.json()) == {"error", "request_id"}
    r = client.get("/invoices/1")  # type: ignore[attr-defined]
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        [("authorization", "Basic YTpi")],
        [("authorization", "Bearer")],
        [("authorization", "Bearer a b")],
        [("authorization", "Bearer x"), ("authorization", "Bearer y")],
    ],
)
def test_malformed_credentials_are_401(make_client: Client, headers: list[tuple[str, str]]) -> None:
    client, kit = make_client(routes)
    token = kit.dev_token("c", ["clerk"])
    headers = [(k, v.replace("x", token)) for k, v in headers]
    assert client.get("/invoices/1", headers=headers).status_code == 401  # type: ignore[attr-defined]


def test_token_in_query_string_is_ignored(make_client: Client) -> None:
    client, kit = make_client(routes)
    token = kit.dev_token("c", ["clerk"])
    assert client.get(f"/invoices/1?access_token={token}").status_code == 401  # type: ignore[attr-defined]


def test_store_roles_add_to_token_roles(make_client: Client) -> None:
    client, kit = make_client(routes)
    kit.policy.assign("dana", "clerk")
    r = client.get("/invoices/1", headers={"Authorization": f"Bearer {kit.dev_token('dana')}"})  # type: ignore[attr-defined]
    assert r.status_code == 200 and r.json()["roles"] == ["clerk"]
    kit.policy.unassign("dana", "clerk")
    r = client.get("/invoices/1", headers={"Authorization": f"Bearer {kit.dev_token('dana')}"})  # type: ignore[attr-defined]
    assert r.status_code == 403


def test_decisions_and_policy_changes_are_audited(make_client: Client) -> None:
    client, kit = make_client(routes)
    client.get("/invoices/1")  # type: ignore[attr-defined]
    client.get("/invoices/1", headers={"Authorization": f"Bearer {kit.dev_token('n')}"})  # type: ignore[attr-defined]
    kit.policy.revoke("clerk", "invoices", "read", actor="admin", reason="least privilege")
    events = audit_rows(kit)
    types = [e["event_type"] for e in events]
    assert "authz.policy.grant" in types and "authz.role.inherit" in types
    assert "authn.failure" in types
    denied = next(e for e in events if e["event_type"] == "authz.denied")
    assert denied["actor_id"] == "n" and denied["resource_type"] == "invoices"
    revoke = next(e for e in events if e["event_type"] == "authz.policy.revoke")
    assert revoke["actor_id"] == "admin" and revoke["reason"] == "least privilege"
    request = [e for e in events if e["event_type"] == "http.request"]
    assert [e["status_code"] for e in request] == [401, 403]
    assert {e["route"] for e in request} == {"/invoices/{invoice_id}"}


def test_policy_values_round_trip_odd_strings(make_client: Client) -> None:
    _, kit = make_client(routes)
    odd = 'a,b "c" .*[x]'
    kit.policy.grant(odd, odd, odd)
    assert Grant(odd, odd, odd) in kit.policy.grants()
    p = Principal(subject="s", issuer="i", roles=frozenset({odd}))
    assert kit.policy.allowed(p, odd, odd)
    assert not kit.policy.allowed(p, "a", odd)


def test_require_and_public_need_arguments() -> None:
    with pytest.raises(ValueError):
        require("", "read")
    with pytest.raises(ValueError):
        public("  ")


def test_require_fails_closed_without_install() -> None:
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.get("/x")
    def x(p: Principal = require("a", "b")) -> dict[str, str]:
        return {}

    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/x").status_code == 500
