"""The access battery end to end: undeclared routes, mounts, static files, WebSockets,
path and method tricks, and objects of other tenants and owners.

Every refusal is judged on its status and short JSON body, a handler that never
ran (the ``CALLS`` counter, or for static files the content never sent), its
audit events next to the ``http.request`` event, and no token in the audit table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, WebSocket
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles
from tests.security.battery import (
    asgi_request,
    bearer,
    expect_audit,
    expect_no_token_material,
    expect_refusal,
    new_request_id,
    serving,
    settings_for,
    websocket_close_code,
)

import soc2kit
from soc2kit import Principal, public, require
from soc2kit.authz import protected_app, public_app
from soc2kit.authz.gate import REASON as UNDECLARED

CALLS: Counter[str] = Counter()
STATIC = "console.log('static')"
OUTSIDE = "TOP-SECRET-OUTSIDE-THE-STATIC-DIRECTORY"
Served = tuple[TestClient, soc2kit.Kit]


@dataclass(frozen=True)
class Doc:
    id: int
    tenant_id: str
    owner_id: str
    body: str


DOCS = {
    1: Doc(1, "acme", "alice", "alice's acme doc"),
    2: Doc(2, "acme", "bob", "bob's acme doc"),
    3: Doc(3, "globex", "alice", "alice's globex doc"),
}


def counted(name: str) -> Any:
    async def endpoint(request: Request) -> PlainTextResponse:
        CALLS[name] += 1
        return PlainTextResponse(f"served by {name}")

    return endpoint


def plain_app(name: str) -> Starlette:
    return Starlette(routes=[Route("/x", counted(name), methods=["GET", "POST"])])


def make_routes(static_dir: Path) -> Any:
    def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
        policy = kit.policy
        policy.grant("admin", "admin", "read")
        policy.grant("admin", "admin", "write")
        policy.grant("reader", "files", "read")
        policy.grant("reader", "reports", "read")
        policy.grant("writer", "items", "create")
        policy.grant("clerk", "docs", "read")
        policy.grant("auditor", "docs", "read")
        policy.grant("auditor", "docs", "read:any")

        @app.get("/open", dependencies=[public("battery control")])
        def open_() -> dict[str, str]:
            CALLS["open"] += 1
            return {"ok": "open"}

        @app.get("/admin/secret")
        def secret(p: Principal = require("admin", "read")) -> dict[str, str]:
            CALLS["secret"] += 1
            return {"sub": p.subject}

        @app.post("/admin/do")
        def do(p: Principal = require("admin", "write")) -> dict[str, str]:
            CALLS["do"] += 1
            return {"done": p.subject}

        @app.get("/items", dependencies=[public("catalogue")])
        def list_items() -> list[str]:
            CALLS["list_items"] += 1
            return ["item"]

        @app.post("/items")
        def create_item(p: Principal = require("items", "create")) -> dict[str, str]:
            CALLS["create_item"] += 1
            return {"created_by": p.subject}

        @app.get("/undeclared")
        def undeclared() -> dict[str, str]:
            CALLS["undeclared"] += 1
            return {"leak": "yes"}

        @app.post("/undeclared-post")
        def undeclared_post() -> dict[str, str]:
            CALLS["undeclared_post"] += 1
            return {"leak": "yes"}

        @app.get("/docs/{doc_id}")
        def read_doc(doc_id: int, p: Principal = require("docs", "read")) -> dict[str, str]:
            CALLS["read_doc"] += 1
            doc = DOCS.get(doc_id)
            if doc is None:
                raise HTTPException(404)
            kit.authorize(p, "docs", "read", doc, owner_attr="owner_id")
            CALLS["doc_served"] += 1
            return {"body": doc.body}

        sub = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

        @sub.get("/ok", dependencies=[public("sub-app control")])
        def sub_ok() -> dict[str, str]:
            CALLS["sub_ok"] += 1
            return {"ok": "sub"}

        @sub.get("/undeclared")
        def sub_undeclared() -> dict[str, str]:
            CALLS["sub_undeclared"] += 1
            return {"leak": "yes"}

        app.mount("/sub", sub)
        app.mount("/raw", plain_app("raw"))
        app.mount("/pub", public_app(plain_app("pub"), reason="battery control"))
        app.mount("/prot", protected_app(plain_app("prot"), resource="reports", action="read"))
        app.mount("/static", StaticFiles(directory=static_dir))
        app.mount("/assets", public_app(StaticFiles(directory=static_dir), reason="web assets"))
        app.mount(
            "/files",
            protected_app(StaticFiles(directory=static_dir), resource="files", action="read"),
        )

        @app.websocket("/ws/secret")
        async def ws_secret(websocket: WebSocket, p: Principal = require("admin", "read")) -> None:
            CALLS["ws_secret"] += 1
            await websocket.accept()
            await websocket.send_text(p.subject)
            await websocket.close()

        @app.websocket("/ws/undeclared")
        async def ws_undeclared(websocket: WebSocket) -> None:
            CALLS["ws_undeclared"] += 1
            await websocket.accept()
            await websocket.send_text("leak")
            await websocket.close()

    return routes


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("access")
    static_dir = root / "static"
    static_dir.mkdir()
    (static_dir / "app.js").write_text(STATIC)
    (root / "outside.txt").write_text(OUTSIDE)
    with serving(settings_for(root / "app"), make_routes(static_dir)) as served:
        yield served


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


@dataclass(frozen=True)
class Who:
    """A caller: no token (anonymous), or a dev token with these roles."""

    roles: tuple[str, ...] | None
    subject: str = "dana"
    tenant: str | None = None

    def token(self, kit: soc2kit.Kit) -> str | None:
        if self.roles is None:
            return None
        return kit.dev_token(self.subject, list(self.roles), tenant=self.tenant)

    def headers(self, kit: soc2kit.Kit) -> dict[str, str]:
        token = self.token(kit)
        return bearer(token) if token else {}


ANONYMOUS = Who(None)
NOBODY = Who(())
ADMIN = Who(("admin",))
READER = Who(("reader",))


def forbidden(app: Served, response: Any, event: str, **fields: Any) -> dict[str, Any]:
    """A 403 with its ``event`` audited (``authz.denied`` or ``authz.misconfiguration``)."""
    _, kit = app
    rid = expect_refusal(response, 403, "forbidden")
    found = expect_audit(kit, rid, 403, event)[event]
    for name, value in fields.items():
        assert found[name] == value, found
    return found


def tokens_of(kit: soc2kit.Kit, *who: Who) -> list[str]:
    return [t for t in (w.token(kit) for w in who) if t]


# undeclared routes and mounts: 403, audited as misconfiguration ----------------------------


@pytest.mark.parametrize("who", [ANONYMOUS, NOBODY, ADMIN], ids=["anonymous", "nobody", "admin"])
@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/undeclared", "/undeclared"),
        ("POST", "/undeclared-post", "/undeclared-post"),
        ("GET", "/sub/undeclared", "/sub/undeclared"),
        ("GET", "/raw/x", "/raw/x"),
        ("POST", "/raw/x", "/raw/x"),
        ("GET", "/static/app.js", "/static/{path}"),
        ("GET", "/static/missing.js", "/static/{path}"),
    ],
)
def test_undeclared_routes_and_mounts_are_refused(
    app: Served, who: Who, method: str, path: str, template: str
) -> None:
    client, kit = app
    headers = who.headers(kit)
    response = client.request(method, path, headers=headers)
    event = forbidden(
        app,
        response,
        "authz.misconfiguration",
        route=template,
        reason=UNDECLARED,
        action={"GET": "read", "POST": "create"}[method],
    )
    assert event["actor_type"] == "anonymous"  # refused before anyone is authenticated
    assert response.json()["error"] == "forbidden" and STATIC not in response.text
    assert CALLS == {}
    request = expect_audit(kit, response.headers["x-request-id"], 403, "authz.misconfiguration")
    assert request["http.request"]["extra"]["rejected"] == "route_undeclared"
    expect_no_token_material(kit, *tokens_of(kit, who))


def test_declared_mounts_are_the_control(app: Served) -> None:
    client, kit = app
    assert client.get("/pub/x").text == "served by pub"
    assert client.get("/sub/ok").json() == {"ok": "sub"}
    assert client.get("/assets/app.js").text == STATIC
    assert client.get("/prot/x", headers=READER.headers(kit)).text == "served by prot"
    assert client.get("/files/app.js", headers=READER.headers(kit)).text == STATIC
    assert CALLS == {"pub": 1, "sub_ok": 1, "prot": 1}


@pytest.mark.parametrize("path", ["/prot/x", "/files/app.js"])
def test_protected_mounts_refuse_like_require(app: Served, path: str) -> None:
    client, kit = app
    resource = "reports" if path.startswith("/prot") else "files"

    response = client.get(path)
    rid = expect_refusal(response, 401, "unauthorized")
    failure = expect_audit(kit, rid, 401, "authn.failure")["authn.failure"]
    assert failure["reason"] == "no credentials"

    forged = kit.dev_token("dana", ["reader"])[:-6] + "AAAAAA"
    response = client.get(path, headers=bearer(forged))
    rid = expect_refusal(response, 401, "invalid_token")
    expect_audit(kit, rid, 401, "authn.failure")

    for who in (NOBODY, ADMIN):
        response = client.get(path, headers=who.headers(kit))
        denied = forbidden(app, response, "authz.denied", resource_type=resource, action="read")
        assert denied["actor_id"] == "dana"
    assert CALLS == {}
    expect_no_token_material(kit, forged, *tokens_of(kit, NOBODY, ADMIN))


@pytest.mark.parametrize(
    ("mount", "who"), [("/assets", ANONYMOUS), ("/files", READER)], ids=["public", "protected"]
)
@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("{m}/../outside.txt", None),
        ("{m}/%2e%2e/outside.txt", None),
        ("{m}/../outside.txt", b"{m}/%2e%2e/outside.txt"),
        ("{m}/../outside.txt", b"{m}/..%2foutside.txt"),
        ("{m}/..\\outside.txt", None),
        ("{m}//../outside.txt", None),
        ("{m}/./../outside.txt", None),
    ],
)
def test_static_traversal_serves_nothing(
    app: Served, mount: str, who: Who, path: str, raw_path: bytes | None
) -> None:
    client, kit = app
    token = who.token(kit)
    response = asgi_request(
        client.app,
        "GET",
        path.format(m=mount),
        raw_path=raw_path.replace(b"{m}", mount.encode()) if raw_path else None,
        headers=[("Authorization", f"Bearer {token}")] if token else [],
    )
    assert OUTSIDE not in response.text
    rid = expect_refusal(response, 404, "not_found")
    expect_audit(kit, rid, 404)


# WebSockets -----------------------------------------------------------------------------


def test_an_undeclared_websocket_is_closed_1008(app: Served) -> None:
    client, kit = app
    for who in (ANONYMOUS, ADMIN):
        rid = new_request_id()
        code = websocket_close_code(
            client, "/ws/undeclared", {**who.headers(kit), "X-Request-ID": rid}
        )
        assert code == 1008
        event = expect_audit(kit, rid, 1008, "authz.misconfiguration")["authz.misconfiguration"]
        assert (event["route"], event["action"]) == ("/ws/undeclared", "connect")
    assert CALLS == {}
    expect_no_token_material(kit, *tokens_of(kit, ADMIN))


@pytest.mark.parametrize(
    ("headers", "path", "event", "reason"),
    [
        pytest.param(lambda kit: {}, "/ws/secret", "authn.failure", "no credentials", id="none"),
        pytest.param(
            lambda kit: bearer(kit.dev_token("dana", ["admin"]) + "x"),
            "/ws/secret",
            "authn.failure",
            "signature or format invalid",
            id="forged",
        ),
        pytest.param(
            lambda kit: {},
            "/ws/secret?access_token={token}",
            "authn.failure",
            "no credentials",
            id="query-string",
        ),
        pytest.param(
            lambda kit: {"Sec-WebSocket-Protocol": f"bearer, {kit.dev_token('dana', ['admin'])}"},
            "/ws/secret",
            "authn.failure",
            "no credentials",
            id="subprotocol",
        ),
        pytest.param(
            lambda kit: NOBODY.headers(kit),
            "/ws/secret",
            "authz.denied",
            "none of the caller's roles holds this permission",
            id="no-permission",
        ),
    ],
)
def test_a_required_websocket_is_closed_1008(
    app: Served, headers: Any, path: str, event: str, reason: str
) -> None:
    client, kit = app
    admin_token = kit.dev_token("dana", ["admin"])
    sent = headers(kit)
    rid = new_request_id()
    code = websocket_close_code(
        client, path.format(token=admin_token), {**sent, "X-Request-ID": rid}
    )
    assert code == 1008
    assert CALLS == {}
    found = expect_audit(kit, rid, 1008, event)[event]
    assert found["reason"].startswith(reason), found
    expect_no_token_material(kit, admin_token, *(v.split()[-1] for v in sent.values()))
    # The control: the same route with the permission.
    with client.websocket_connect("/ws/secret", headers=ADMIN.headers(kit)) as ws:
        assert ws.receive_text() == "dana"
    assert CALLS == {"ws_secret": 1}


# path tricks against a protected route ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw_path", "root_path", "status"),
    [
        # The router matches the route: authentication and the policy apply.
        ("/admin/secret", None, "", 403),
        ("/admin/secret", b"/admin%2Fsecret", "", 403),
        ("/admin/secret", b"/admin%2fsecret", "", 403),
        ("/api/admin/secret", None, "/api", 403),
        ("/admin/secret", None, "/api", 403),
        # Redirected to the canonical path, which is gated in turn.
        ("/admin/secret/", None, "", 307),
        ("/admin/secret//", None, "", 307),
        # The router matches nothing: no handler, nothing to authorize.
        ("//admin/secret", None, "", 404),
        ("/admin//secret", None, "", 404),
        ("/admin%2Fsecret", None, "", 404),
        ("/admin/./secret", None, "", 404),
        ("/admin/../admin/secret", None, "", 404),
        ("/open/../admin/secret", None, "", 404),
        ("/admin/secret/..", None, "", 404),
        ("/admin/secret/.", None, "", 404),
        ("/ADMIN/secret", None, "", 404),
        ("/Admin/Secret", None, "", 404),
        ("/adm\u0456n/secret", None, "", 404),  # Cyrillic i
        ("/\uff41dmin/secret", None, "", 404),  # fullwidth a
        ("/admin/secr\u0435t", None, "", 404),  # Cyrillic e
        ("/admin/secret\u200b", None, "", 404),  # zero-width space
        ("/admin/secret\x00", None, "", 404),
        ("/admin/secret;x=1", None, "", 404),
        ("/admin/secret%00", None, "", 404),
        ("/api//admin/secret", None, "/api", 404),
        ("/apiadmin/secret", None, "/api", 404),
    ],
)
@pytest.mark.parametrize("who", [ANONYMOUS, NOBODY], ids=["anonymous", "nobody"])
def test_path_tricks_never_reach_the_handler(
    app: Served, who: Who, path: str, raw_path: bytes | None, root_path: str, status: int
) -> None:
    client, kit = app
    token = who.token(kit)
    response = asgi_request(
        client.app,
        "GET",
        path,
        raw_path=raw_path,
        root_path=root_path,
        headers=[("Authorization", f"Bearer {token}")] if token else [],
    )
    assert CALLS == {}
    rid = response.headers["x-request-id"]
    if status == 307:
        assert response.status_code == 307
        assert response.headers["location"] == "http://testserver/admin/secret"
        expect_audit(kit, rid, 307)
    elif status == 404:
        expect_refusal(response, 404, "not_found")
        expect_audit(kit, rid, 404)
    elif token is None:
        expect_refusal(response, 401, "unauthorized")
        expect_audit(kit, rid, 401, "authn.failure")
    else:
        expect_refusal(response, 403, "forbidden")
        denied = expect_audit(kit, rid, 403, "authz.denied")["authz.denied"]
        assert (denied["resource_type"], denied["action"]) == ("admin", "read")
    expect_no_token_material(kit, *tokens_of(kit, who))


def test_the_path_tricks_control(app: Served) -> None:
    client, kit = app
    token = ADMIN.token(kit)
    assert token
    for path, raw_path, root_path in [
        ("/admin/secret", None, ""),
        ("/admin/secret", b"/admin%2Fsecret", ""),
        ("/api/admin/secret", None, "/api"),
    ]:
        response = asgi_request(
            client.app,
            "GET",
            path,
            raw_path=raw_path,
            root_path=root_path,
            headers=[("Authorization", f"Bearer {token}")],
        )
        assert response.json() == {"sub": "dana"}
    assert CALLS == {"secret": 3}


# method override headers -----------------------------------------------------------------

OVERRIDES = ["X-HTTP-Method-Override", "X-Method-Override", "X-HTTP-Method", "X-Original-Method"]


@pytest.mark.parametrize("override", OVERRIDES)
def test_method_override_headers_are_ignored(app: Served, override: str) -> None:
    client, kit = app
    # A GET dressed as the POST of a protected route: the router answers 405.
    for who in (ANONYMOUS, NOBODY, ADMIN):
        response = client.get("/admin/do", headers={**who.headers(kit), override: "POST"})
        rid = expect_refusal(response, 405, "method_not_allowed")
        expect_audit(kit, rid, 405)
    response = client.get("/admin/do?_method=POST", headers=ADMIN.headers(kit))
    expect_audit(kit, expect_refusal(response, 405, "method_not_allowed"), 405)
    # A POST dressed as the GET of a route: 405, even for a caller who may read it.
    response = client.post("/admin/secret", headers={**ADMIN.headers(kit), override: "GET"})
    expect_audit(kit, expect_refusal(response, 405, "method_not_allowed"), 405)
    # A POST dressed as the public GET of the same path: still the protected POST.
    response = client.post("/items", headers={override: "GET"})
    rid = expect_refusal(response, 401, "unauthorized")
    expect_audit(kit, rid, 401, "authn.failure")
    response = client.post("/items", headers={**NOBODY.headers(kit), override: "GET"})
    forbidden(app, response, "authz.denied", resource_type="items", action="create")
    # An undeclared POST route dressed as a GET: still refused by the gate.
    response = client.post("/undeclared-post", headers={override: "GET"})
    forbidden(app, response, "authz.misconfiguration", route="/undeclared-post")
    assert CALLS == {}
    # A GET dressed as a POST is the public GET: the protected POST handler never runs.
    response = client.get("/items", headers={**NOBODY.headers(kit), override: "POST"})
    assert response.json() == ["item"]
    assert CALLS == {"list_items": 1}
    expect_no_token_material(kit, *tokens_of(kit, NOBODY, ADMIN))


# objects of other tenants and owners ------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "doc_id", "reason"),
    [
        (Who(("clerk",), "alice", "acme"), 2, "object belongs to another subject"),
        (Who(("clerk",), "alice", "acme"), 3, "object belongs to another tenant"),
        (Who(("clerk",), "alice", "ACME"), 1, "object belongs to another tenant"),
        (Who(("clerk",), "alice", None), 1, "object belongs to another tenant"),
        (Who(("clerk",), "bob", "globex"), 2, "object belongs to another tenant"),
        (Who(("auditor",), "ann", "globex"), 1, "object belongs to another tenant"),
    ],
    ids=["other-owner", "other-tenant", "tenant-case", "no-tenant", "wrong-tenant", "any-other"],
)
def test_objects_of_other_tenants_and_owners_are_not_found(
    app: Served, who: Who, doc_id: int, reason: str
) -> None:
    client, kit = app
    response = client.get(f"/docs/{doc_id}", headers=who.headers(kit))
    rid = expect_refusal(response, 404, "not_found")
    assert DOCS[doc_id].body not in response.text
    assert CALLS == {"read_doc": 1}  # the route ran; the object was never served
    denied = expect_audit(kit, rid, 404, "authz.denied")["authz.denied"]
    assert (denied["reason"], denied["resource_type"], denied["resource_id"]) == (
        reason,
        "docs",
        str(doc_id),
    )
    assert denied["actor_id"] == who.subject
    # Indistinguishable from an object that does not exist.
    missing = client.get("/docs/999", headers=who.headers(kit))
    assert missing.status_code == 404
    assert missing.json().keys() == response.json().keys()
    assert missing.headers.keys() == response.headers.keys()
    expect_no_token_material(kit, *tokens_of(kit, who))


def test_objects_control(app: Served) -> None:
    client, kit = app
    alice = Who(("clerk",), "alice", "acme")
    assert client.get("/docs/1", headers=alice.headers(kit)).json() == {"body": DOCS[1].body}
    auditor = Who(("auditor",), "ann", "acme")
    assert client.get("/docs/2", headers=auditor.headers(kit)).json() == {"body": DOCS[2].body}
    assert CALLS == {"read_doc": 2, "doc_served": 2}


def test_roles_held_in_one_tenant_do_not_apply_in_another(app: Served) -> None:
    client, kit = app
    kit.policy.grant("tenant-reader", "docs", "read", tenant="globex")
    kit.policy.assign("tom", "clerk", tenant="acme")
    for who in (
        Who((), "tom", "globex"),  # the store gave tom "clerk" in acme only
        Who((), "tom", None),
        Who(("tenant-reader",), "tina", "acme"),  # granted to that role in globex only
    ):
        response = client.get("/docs/3", headers=who.headers(kit))
        denied = forbidden(app, response, "authz.denied", resource_type="docs", action="read")
        assert denied["actor_id"] == who.subject
    assert CALLS == {}
    # The controls, each in its own tenant: past the route, stopped at the object
    # (bob's and alice's documents, not tom's or tina's).
    acme = client.get("/docs/2", headers=Who((), "tom", "acme").headers(kit))
    globex = client.get("/docs/3", headers=Who(("tenant-reader",), "tina", "globex").headers(kit))
    assert (acme.status_code, globex.status_code) == (404, 404)
    assert CALLS == {"read_doc": 2}


def test_object_denials_can_answer_403(tmp_path: Path) -> None:
    static_dir = tmp_path / "static"
    static_dir.mkdir()
    settings = settings_for(tmp_path, object_denied_status=403)
    with serving(settings, make_routes(static_dir)) as served:
        client, kit = served
        response = client.get("/docs/3", headers=Who(("clerk",), "alice", "acme").headers(kit))
        rid = expect_refusal(response, 403, "forbidden")
        denied = expect_audit(kit, rid, 403, "authz.denied")["authz.denied"]
        assert denied["reason"] == "object belongs to another tenant"
    assert CALLS == {"read_doc": 1}
