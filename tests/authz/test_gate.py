"""The gate: deny by default on the route the router is about to run.

Every test checks the handler did not run (the ``calls`` list), not only the status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Match, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocketDisconnect
from tests.conftest import audit_rows

import soc2kit
from soc2kit import Principal, public, require
from soc2kit.authz import protected_app, public_app
from soc2kit.authz.gate import GateMiddleware

Client = Callable[..., tuple[TestClient, soc2kit.Kit]]
OPEN = [public("test route")]


def app_routes(calls: list[str], static_dir: Path) -> Callable[[FastAPI, soc2kit.Kit], None]:
    def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
        kit.policy.grant("admin", "admin", "read")
        kit.policy.grant("admin", "admin", "write")
        kit.policy.grant("reader", "files", "read")
        kit.policy.grant("reader", "deep", "read")

        @app.get("/open", dependencies=OPEN)
        def open_() -> dict[str, str]:
            calls.append("open")
            return {"ok": "open"}

        @app.get("/admin/secret")
        def secret(p: Principal = require("admin", "read")) -> dict[str, str]:
            calls.append("secret")
            return {"sub": p.subject}

        @app.post("/admin/do")
        def do(p: Principal = require("admin", "write")) -> dict[str, str]:
            calls.append("do")
            return {"done": p.subject}

        @app.api_route("/both", methods=["GET", "HEAD"])
        def both(p: Principal = require("admin", "read")) -> dict[str, str]:
            calls.append("both")
            return {"sub": p.subject}

        @app.get("/undeclared")
        def undeclared_route() -> dict[str, str]:
            calls.append("undeclared")
            return {"leak": "yes"}

        @app.get("/x/y")
        def x_y() -> dict[str, str]:
            calls.append("x_y")
            return {"leak": "yes"}

        @app.post("/undeclared-post")
        async def undeclared_post(request: Request) -> dict[str, str]:
            calls.append("undeclared_post")
            await request.body()
            return {"leak": "yes"}

        async def plain(request: Request) -> PlainTextResponse:
            calls.append("plain")
            return PlainTextResponse("leak")

        app.add_route("/plain", plain)  # Starlette route: GET and HEAD, no dependencies

        @app.options("/cors-probe", dependencies=OPEN)
        def options_probe() -> dict[str, str]:
            calls.append("options_probe")
            return {"ok": "options"}

        # Three levels of routers; the permission comes from the middle level.
        leaf = APIRouter(prefix="/c")

        @leaf.get("/leaf/{n}")
        def deep_leaf(n: int) -> dict[str, int]:
            calls.append("deep_leaf")
            return {"n": n}

        bare = APIRouter(prefix="/bare")

        @bare.get("/thing")
        def bare_thing() -> dict[str, str]:
            calls.append("bare_thing")
            return {"leak": "yes"}

        middle = APIRouter(prefix="/b", dependencies=[require("deep", "read")])
        middle.include_router(leaf)
        top = APIRouter(prefix="/a")
        top.include_router(middle)
        top.include_router(bare)
        app.include_router(top, prefix="/v1")

        sub = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

        @sub.get("/ok", dependencies=OPEN)
        def sub_ok() -> dict[str, str]:
            calls.append("sub_ok")
            return {"ok": "sub"}

        @sub.get("/undeclared")
        def sub_undeclared() -> dict[str, str]:
            calls.append("sub_undeclared")
            return {"leak": "yes"}

        app.mount("/sub", sub)
        app.mount("/static", StaticFiles(directory=static_dir))
        app.mount("/assets", public_app(StaticFiles(directory=static_dir), reason="web assets"))
        app.mount(
            "/files",
            protected_app(StaticFiles(directory=static_dir), resource="files", action="read"),
        )

        @app.websocket("/ws/open", dependencies=OPEN)
        async def ws_open(websocket: WebSocket) -> None:
            calls.append("ws_open")
            await websocket.accept()
            await websocket.send_text("hello")
            await websocket.close()

        @app.websocket("/ws/secret")
        async def ws_secret(websocket: WebSocket, p: Principal = require("admin", "read")) -> None:
            calls.append("ws_secret")
            await websocket.accept()
            await websocket.send_text(p.subject)
            await websocket.close()

        @app.websocket("/ws/undeclared")
        async def ws_undeclared(websocket: WebSocket) -> None:
            calls.append("ws_undeclared")
            await websocket.accept()
            await websocket.send_text("leak")
            await websocket.close()

    return routes


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "static"
    directory.mkdir()
    (directory / "app.js").write_text("console.log('static')")
    return directory


@pytest.fixture
def served(
    make_client: Client, calls: list[str], static_dir: Path
) -> tuple[TestClient, soc2kit.Kit]:
    return make_client(app_routes(calls, static_dir))


def bearer(kit: soc2kit.Kit, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {kit.dev_token('dana', list(roles))}"}


def events(kit: soc2kit.Kit, event_type: str) -> list[dict[str, Any]]:
    return [e for e in audit_rows(kit) if e["event_type"] == event_type]


def assert_forbidden(response: Any) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {"error": "forbidden", "request_id": response.headers["x-request-id"]}


def raw_call(
    app: Any,
    method: str,
    path: str,
    *,
    raw_path: bytes | None = None,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> tuple[int, bytes, int]:
    """One request straight through the ASGI app with the path exactly as given.

    Returns status, body and how many body messages the app pulled.
    """
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode("utf-8"),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("10.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    status = 0
    out = b""
    received = 0
    pending = [body]

    async def receive() -> dict[str, Any]:
        nonlocal received
        if pending:
            received += 1
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return status, out, received


# -- the refusal -------------------------------------------------------------------


def test_undeclared_route_is_403_json_audited_and_never_runs(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, kit = served
    response = client.get("/undeclared")
    assert_forbidden(response)
    assert calls == []
    (event,) = events(kit, "authz.misconfiguration")
    assert event["route"] == "/undeclared"
    assert (event["action"], event["outcome"]) == ("read", "denied")
    assert event["reason"] == "route has neither require nor public"
    assert event["request_id"] == response.headers["x-request-id"]
    (request,) = [
        e
        for e in events(kit, "http.request")
        if e["request_id"] == response.headers["x-request-id"]
    ]
    assert (request["status_code"], request["outcome"]) == (403, "denied")
    assert request["extra"]["rejected"] == "route_undeclared"


def test_credentials_do_not_open_an_undeclared_route(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, kit = served
    assert_forbidden(client.get("/undeclared", headers=bearer(kit, "admin")))
    assert calls == []


def test_declared_routes_are_unaffected(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, kit = served
    assert client.get("/open").json() == {"ok": "open"}
    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/secret").status_code == 401
    assert client.get("/admin/secret", headers=bearer(kit)).status_code == 403
    assert client.get("/admin/secret", headers=bearer(kit, "admin")).json() == {"sub": "dana"}
    assert client.post("/admin/do", headers=bearer(kit, "admin")).json() == {"done": "dana"}
    assert calls == ["open", "secret", "do"]
    assert events(kit, "authz.misconfiguration") == []


def test_unknown_path_is_the_routers_404_not_a_403(
    served: tuple[TestClient, soc2kit.Kit],
) -> None:
    client, kit = served
    response = client.get("/no/such/route")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert events(kit, "authz.misconfiguration") == []


def test_wrong_method_is_the_routers_405(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, kit = served
    assert client.delete("/undeclared").status_code == 405
    assert client.get("/admin/do", headers=bearer(kit, "admin")).status_code == 405
    assert calls == []


def test_refused_before_the_body_is_read(served: tuple[TestClient, soc2kit.Kit]) -> None:
    client, _ = served
    status, _, received = raw_call(
        client.app,
        "POST",
        "/undeclared-post",
        headers=[(b"content-length", b"5")],
        body=b"hello",
    )
    assert status == 403 and received == 0


def test_the_gate_sits_inside_the_rate_limit_and_outside_the_body_limit(
    served: tuple[TestClient, soc2kit.Kit],
) -> None:
    client, _ = served
    order = [m.cls.__name__ for m in client.app.user_middleware]  # type: ignore[attr-defined]
    assert order.index("RateLimitMiddleware") < order.index("GateMiddleware")
    assert order.index("GateMiddleware") == order.index("BodyLimitMiddleware") - 1


# -- routers, mounts, websockets -----------------------------------------------------


def test_nested_routers_with_a_router_level_permission(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, kit = served
    assert client.get("/v1/a/b/c/leaf/3").status_code == 401
    assert client.get("/v1/a/b/c/leaf/3", headers=bearer(kit, "reader")).json() == {"n": 3}
    assert_forbidden(client.get("/v1/a/bare/thing", headers=bearer(kit, "admin")))
    assert calls == ["deep_leaf"]
    assert [e["route"] for e in events(kit, "authz.misconfiguration")] == ["/v1/a/bare/thing"]


def test_mounted_fastapi_app(served: tuple[TestClient, soc2kit.Kit], calls: list[str]) -> None:
    client, kit = served
    assert client.get("/sub/ok").json() == {"ok": "sub"}
    assert_forbidden(client.get("/sub/undeclared"))
    assert client.get("/sub/nothing-here").status_code == 404
    assert calls == ["sub_ok"]
    assert [e["route"] for e in events(kit, "authz.misconfiguration")] == ["/sub/undeclared"]


def test_static_files_mounts(served: tuple[TestClient, soc2kit.Kit]) -> None:
    client, kit = served
    assert_forbidden(client.get("/static/app.js"))
    assert [e["route"] for e in events(kit, "authz.misconfiguration")] == ["/static/{path}"]
    assert client.get("/assets/app.js").text == "console.log('static')"
    assert client.get("/files/app.js").status_code == 401
    assert client.get("/files/app.js").json()["error"] == "unauthorized"
    assert client.get("/files/app.js", headers=bearer(kit, "admin")).status_code == 403
    response = client.get("/files/app.js", headers=bearer(kit, "reader"))
    assert response.text == "console.log('static')"
    denied = events(kit, "authz.denied")
    assert [(e["resource_type"], e["action"]) for e in denied] == [("files", "read")]


def test_declared_websockets_connect(served: tuple[TestClient, soc2kit.Kit]) -> None:
    client, kit = served
    with client.websocket_connect("/ws/open") as ws:
        assert ws.receive_text() == "hello"
    with client.websocket_connect("/ws/secret", headers=bearer(kit, "admin")) as ws:
        assert ws.receive_text() == "dana"


def test_undeclared_websocket_is_closed_1008_and_audited(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, kit = served
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws/undeclared"):
        pass
    assert info.value.code == 1008
    assert calls == []
    (event,) = events(kit, "authz.misconfiguration")
    assert (event["route"], event["action"], event["outcome"]) == (
        "/ws/undeclared",
        "connect",
        "denied",
    )
    (request,) = events(kit, "http.request")
    assert (request["status_code"], request["outcome"]) == (1008, "denied")


@pytest.mark.parametrize(("roles", "reason"), [(None, "unauthenticated"), ((), "no permission")])
def test_require_on_a_websocket_closes_1008(
    served: tuple[TestClient, soc2kit.Kit],
    calls: list[str],
    roles: tuple[str, ...] | None,
    reason: str,
) -> None:
    client, kit = served
    headers = bearer(kit, *roles) if roles is not None else {}
    with (
        pytest.raises(WebSocketDisconnect) as info,
        client.websocket_connect("/ws/secret", headers=headers),
    ):
        pass
    assert info.value.code == 1008, reason
    assert calls == []
    (request,) = events(kit, "http.request")
    assert (request["status_code"], request["outcome"]) == (1008, "denied")


# -- path tricks --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "//undeclared",
        "/UNDECLARED",
        "/Undeclared",
        "/undeclar\u0435d",  # Cyrillic e
        "/\uff55ndeclared",  # fullwidth u
        "/undeclared\u200b",  # zero-width space
        "/open/../undeclared",
        "/./undeclared",
        "/undeclared/.",
        "/v1/a/bare/../bare/thing",
        "/sub/../undeclared",
        "/ADMIN/secret",
        "//admin/secret",
        "/admin//secret",
        "/admin/secret/..",
    ],
)
def test_path_tricks_reach_no_handler(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str], path: str
) -> None:
    client, _ = served
    status, body, _ = raw_call(client.app, "GET", path)
    # The router does not normalise these: nothing matches, so nothing runs.
    assert status == 404, body
    assert calls == []


def test_encoded_slash_lands_on_the_route_the_router_picks(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, kit = served
    # The ASGI path is already decoded: /x%2Fy arrives as path "/x/y".
    status, _, _ = raw_call(client.app, "GET", "/x/y", raw_path=b"/x%2Fy")
    assert status == 403
    status, _, _ = raw_call(client.app, "GET", "/admin/secret", raw_path=b"/admin%2Fsecret")
    assert status == 401
    assert calls == []
    assert [e["route"] for e in events(kit, "authz.misconfiguration")] == ["/x/y"]


def test_trailing_slash_redirect_target_is_gated(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, _ = served
    response = client.get("/undeclared/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "http://testserver/undeclared"
    assert_forbidden(client.get("/undeclared/"))  # following the redirect
    status, _, _ = raw_call(client.app, "GET", "/undeclared//")
    assert status == 307  # to /undeclared, refused in turn
    assert client.get("/admin/secret/").status_code == 401
    assert calls == []


def test_root_path(served: tuple[TestClient, soc2kit.Kit], calls: list[str]) -> None:
    served_client, kit = served
    client = TestClient(served_client.app, root_path="/api")
    assert_forbidden(client.get("/api/undeclared"))
    assert_forbidden(client.get("/undeclared"))
    assert client.get("/api/open").json() == {"ok": "open"}
    assert client.get("/api/admin/secret").status_code == 401
    assert client.get("/api/admin/secret", headers=bearer(kit, "admin")).status_code == 200
    assert_forbidden(client.get("/api/sub/undeclared"))
    assert calls == ["open", "secret"]


# -- methods --------------------------------------------------------------------------

OVERRIDES = [
    {"X-HTTP-Method-Override": "POST"},
    {"X-Method-Override": "POST"},
    {"X-HTTP-Method": "POST"},
]


@pytest.mark.parametrize("override", OVERRIDES)
def test_method_override_headers_are_ignored(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str], override: dict[str, str]
) -> None:
    client, kit = served
    # A GET with "POST" in an override header does not reach the POST handler,
    # with or without the POST route's permission.
    assert client.get("/admin/do", headers=override).status_code == 405
    assert client.get("/admin/do", headers={**override, **bearer(kit)}).status_code == 405
    assert client.get("/undeclared-post", headers=override).status_code == 405
    # ...and a POST does not become the GET of a route the caller may read.
    response = client.post("/admin/secret", headers={**override, **bearer(kit, "admin")})
    assert response.status_code == 405
    assert calls == []


def test_method_override_query_parameter_is_ignored(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, _ = served
    assert client.get("/admin/do?_method=POST").status_code == 405
    assert client.get("/undeclared-post", params={"_method": "POST"}).status_code == 405
    assert calls == []


def test_head_needs_the_same_permission_as_get(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, kit = served
    for method in ("GET", "HEAD"):
        assert client.request(method, "/both").status_code == 401
        assert client.request(method, "/both", headers=bearer(kit)).status_code == 403
        assert client.request(method, "/both", headers=bearer(kit, "admin")).status_code == 200
    assert calls == ["both", "both"]


def test_head_on_a_get_only_route_reaches_no_handler(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, kit = served
    # FastAPI does not route HEAD to a GET-only path operation: 405, nothing runs.
    assert client.head("/admin/secret").status_code == 405
    assert client.head("/admin/secret", headers=bearer(kit)).status_code == 405
    # A Starlette route answers HEAD with its GET: the gate refuses both alike.
    assert client.head("/plain").status_code == 403
    assert_forbidden(client.get("/plain"))
    assert calls == []


def test_options_without_cors_reaches_no_handler(
    served: tuple[TestClient, soc2kit.Kit], calls: list[str]
) -> None:
    client, _ = served
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
    for path in ("/admin/secret", "/undeclared", "/open"):
        response = client.options(path, headers=preflight)
        assert response.status_code == 405, path
        assert "access-control-allow-origin" not in response.headers
    # Only a route that declares OPTIONS itself answers it.
    assert client.options("/cors-probe").json() == {"ok": "options"}
    assert calls == ["options_probe"]


def test_options_preflight_with_cors_is_answered_by_cors_only(
    make_client: Client, calls: list[str], static_dir: Path
) -> None:
    client, _ = make_client(app_routes(calls, static_dir), cors_origins=["https://app.example.com"])
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
    response = client.options("/undeclared", headers=preflight)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    # The actual request is still refused.
    assert_forbidden(client.get("/undeclared", headers={"Origin": "https://app.example.com"}))
    assert calls == []


# -- resolution table ---------------------------------------------------------------


def test_routes_added_after_the_first_request_are_gated(
    make_client: Client, calls: list[str]
) -> None:
    router = APIRouter(prefix="/late", dependencies=OPEN)

    @router.get("/first")
    def first() -> dict[str, str]:
        return {"ok": "first"}

    def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
        app.include_router(router)

    client, _ = make_client(routes)
    assert client.get("/late/first").status_code == 200

    @client.app.get("/late-top")  # type: ignore[attr-defined, untyped-decorator]
    def late_top() -> dict[str, str]:
        calls.append("late_top")
        return {}

    # A route added to an already-included router: FastAPI's routes version changes.
    inner = APIRouter(prefix="/inner")

    @inner.get("/x")
    def late_inner() -> dict[str, str]:
        calls.append("late_inner")
        return {}

    router.include_router(inner)
    router.dependencies.clear()  # routes added from now on have no dependency

    @router.get("/second")
    def second() -> dict[str, str]:
        calls.append("second")
        return {}

    assert_forbidden(client.get("/late-top"))
    assert_forbidden(client.get("/late/second"))
    assert client.get("/late/inner/x").status_code == 200  # router-level public applies
    assert calls == ["late_inner"]


def test_decisions_are_cached_per_route_not_per_path(
    served: tuple[TestClient, soc2kit.Kit],
) -> None:
    client, _ = served
    client.get("/open")
    gate: Any = client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(gate, GateMiddleware):
        gate = gate.app
    table = gate._table
    entries = table._entries
    for i in range(200):
        client.get(f"/v1/a/b/c/leaf/{i}")
        client.get(f"/static/file-{i}.js")
        client.get(f"/no/such/path/{i}")
    assert table._entries is entries  # no rebuild, and nothing kept per path
    assert len(entries) < 40


def test_frontend_routes_are_gated(make_client: Client, static_dir: Path) -> None:
    def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
        declared = APIRouter(dependencies=[public("single-page app")])
        declared.frontend("/app", directory=static_dir, check_dir=True)
        app.include_router(declared)
        bare = APIRouter()
        bare.frontend("/raw", directory=static_dir, check_dir=True)
        app.include_router(bare)

    client, kit = make_client(routes)
    assert client.get("/app/app.js").text == "console.log('static')"
    assert_forbidden(client.get("/raw/app.js"))
    assert [e["route"] for e in events(kit, "authz.misconfiguration")] == ["/raw/{path}"]


class OddRoute(BaseRoute):
    """A route kind the gate does not know: a partial match may still serve content."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.path_format = "/odd"

    def matches(self, scope: Any) -> tuple[Match, dict[str, Any]]:
        if scope["type"] == "http" and scope["path"] == "/odd":
            return (Match.FULL if scope["method"] == "GET" else Match.PARTIAL), {}
        return Match.NONE, {}

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls.append("odd")
        await PlainTextResponse("leak")(scope, receive, send)


def test_an_unknown_route_kind_fails_closed_even_on_a_partial_match(
    make_client: Client, calls: list[str]
) -> None:
    def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
        app.router.routes.append(OddRoute(calls))

    client, _ = make_client(routes)
    assert_forbidden(client.get("/odd"))
    assert_forbidden(client.post("/odd"))
    assert calls == []


def test_host_routed_apps_are_gated(make_client: Client, calls: list[str]) -> None:
    def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
        tenant = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

        @tenant.get("/ok", dependencies=OPEN)
        def ok() -> dict[str, str]:
            calls.append("ok")
            return {"ok": "host"}

        @tenant.get("/undeclared")
        def undeclared_host() -> dict[str, str]:
            calls.append("undeclared_host")
            return {}

        app.host("api.example.com", tenant)

    client, _ = make_client(routes, allowed_hosts=["api.example.com", "testserver"])
    host = {"host": "api.example.com"}
    assert client.get("/ok", headers=host).json() == {"ok": "host"}
    assert_forbidden(client.get("/undeclared", headers=host))
    assert client.get("/undeclared").status_code == 404  # other hosts: no such route
    assert calls == ["ok"]


def test_protected_app_closes_an_unauthorised_websocket(
    make_client: Client, calls: list[str]
) -> None:
    async def feed(websocket: WebSocket) -> None:
        calls.append("feed")
        await websocket.accept()
        await websocket.send_text("tick")
        await websocket.close()

    def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
        kit.policy.grant("watcher", "feeds", "read")
        feeds = Starlette(routes=[WebSocketRoute("/live", feed)])
        app.mount("/feeds", protected_app(feeds, resource="feeds", action="read"))

    client, kit = make_client(routes)
    for headers in ({}, bearer(kit)):
        with (
            pytest.raises(WebSocketDisconnect) as info,
            client.websocket_connect("/feeds/live", headers=headers),
        ):
            pass
        assert info.value.code == 1008
    assert calls == []
    with client.websocket_connect("/feeds/live", headers=bearer(kit, "watcher")) as ws:
        assert ws.receive_text() == "tick"
