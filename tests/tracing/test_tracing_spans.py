"""TracingMiddleware: one allow-listed SERVER span per HTTP request."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Response, WebSocket
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import Receive, Scope, Send

from soc2kit.authn.principal import Principal
from soc2kit.context import RequestContext, _enter, _exit
from soc2kit.errors import ConfigurationError
from soc2kit.tracing import TracingMiddleware, build_tracer_provider, current_trace_ids

KEY = b"k" * 32
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def make_app(state: dict[str, Any]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["started"] = True
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        return {"ids": current_trace_ids()}

    @app.get("/sync/{item_id}")
    def sync_item(item_id: str) -> dict[str, Any]:
        return {"ids": current_trace_ids()}

    @app.get("/unavailable")
    async def unavailable() -> Response:
        return Response(status_code=503)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail alice@example.com")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(str(current_trace_ids()))
        await websocket.close()

    router = APIRouter(prefix="/api")

    @router.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    app.include_router(router)
    return app


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = build_tracer_provider("test-svc", exporter=exporter)
    yield provider
    provider.shutdown()


@pytest.fixture
def state() -> dict[str, Any]:
    return {}


@pytest.fixture
def client_for(provider: TracerProvider, state: dict[str, Any]) -> Callable[..., TestClient]:
    def build(**kwargs: Any) -> TestClient:
        kwargs.setdefault("pseudonym_key", KEY)
        app = TracingMiddleware(make_app(state), provider, **kwargs)
        return TestClient(app, raise_server_exceptions=False)

    return build


@pytest.fixture
def client(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for()


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def test_one_server_span_named_by_route_template(
    client: TestClient, exporter: InMemorySpanExporter
) -> None:
    response = client.get("/items/42")
    assert response.status_code == 200
    span = only_span(exporter)
    assert span.name == "GET /items/{item_id}"
    assert span.kind is SpanKind.SERVER
    assert span.parent is None
    assert span.status.status_code is StatusCode.UNSET
    assert span.resource.attributes["service.name"] == "test-svc"
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "server.address": "testserver",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
    }  # no url.path: concrete paths carry ids (record_path=True opts in)


def test_the_concrete_path_is_recorded_only_on_request(exporter: InMemorySpanExporter) -> None:
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    provider = build_tracer_provider("test-svc", exporter=exporter)
    traced = TracingMiddleware(app, provider, pseudonym_key=b"k" * 32, record_path=True)
    with TestClient(traced) as client:
        client.get("/items/42?q=x")
    attributes = dict(only_span(exporter).attributes or {})
    assert attributes["url.path"] == "/items/42"  # the path only, never the query string


def test_router_prefix_in_route_and_name(
    client: TestClient, exporter: InMemorySpanExporter
) -> None:
    assert client.get("/api/things/7").status_code == 200
    span = only_span(exporter)
    assert span.name == "GET /api/things/{thing_id}"
    assert (span.attributes or {})["http.route"] == "/api/things/{thing_id}"


def test_unmatched_route_keeps_method_only_name(
    client: TestClient, exporter: InMemorySpanExporter
) -> None:
    assert client.get("/nope/123").status_code == 404
    span = only_span(exporter)
    assert span.name == "GET"
    attributes = span.attributes or {}
    assert "http.route" not in attributes
    assert attributes["http.response.status_code"] == 404
    assert span.status.status_code is StatusCode.UNSET  # 4xx is not a server error


def test_unknown_method_is_normalised(client: TestClient, exporter: InMemorySpanExporter) -> None:
    client.request("FROBNICATE", "/items/1")
    span = only_span(exporter)
    assert span.name == "HTTP"
    assert (span.attributes or {})["http.request.method"] == "_OTHER"


def test_server_address_and_port_from_host(
    client: TestClient, exporter: InMemorySpanExporter
) -> None:
    client.get("/items/1", headers={"Host": "api.example.com:8443"})
    attributes = only_span(exporter).attributes or {}
    assert attributes["server.address"] == "api.example.com"
    assert attributes["server.port"] == 8443


def test_credentials_and_query_never_reach_spans(
    client: TestClient, exporter: InMemorySpanExporter
) -> None:
    secrets = ["QUERYSECRET", "AUTHSECRET", "COOKIESECRET", "APIKEYSECRET", "OTHERSECRET"]
    client.get(
        "/items/1?token=QUERYSECRET&x=1",
        headers={
            "Authorization": "Bearer AUTHSECRET",
            "Cookie": "session=COOKIESECRET",
            "X-API-Key": "APIKEYSECRET",
            "User-Agent": "OTHERSECRET",
        },
    )
    client.get("/boom", headers={"Authorization": "Bearer AUTHSECRET"})
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    for span in spans:
        texts = [span.name, str(span.status.description)]
        texts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        for event in span.events:
            texts += [event.name, *(f"{k}={v}" for k, v in (event.attributes or {}).items())]
        blob = "\n".join(texts)
        for secret in [*secrets, "token", "?", "alice@example.com", "secret detail"]:
            assert secret not in blob, (secret, blob)


def test_5xx_response_sets_error_status(client: TestClient, exporter: InMemorySpanExporter) -> None:
    assert client.get("/unavailable").status_code == 503
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is None
    assert (span.attributes or {})["error.type"] == "503"


def test_exception_recorded_by_type_only(
    client: TestClient, exporter: InMemorySpanExporter
) -> None:
    assert client.get("/boom").status_code == 500
    span = only_span(exporter)
    assert span.name == "GET /boom"
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "RuntimeError"
    assert (span.attributes or {})["http.response.status_code"] == 500
    assert span.events == ()  # no exception event: its message and stack stay out


def test_excluded_paths_produce_no_span(
    client_for: Callable[..., TestClient], exporter: InMemorySpanExporter
) -> None:
    client = client_for(exclude_paths=frozenset({"/healthz", "/items/1"}))
    assert client.get("/healthz").status_code == 200
    assert client.get("/items/1").status_code == 200
    assert exporter.get_finished_spans() == ()
    client.get("/items/2")
    assert len(exporter.get_finished_spans()) == 1


def test_incoming_traceparent_makes_a_child_span(
    client: TestClient, exporter: InMemorySpanExporter
) -> None:
    response = client.get("/items/1", headers={"traceparent": TRACEPARENT})
    span = only_span(exporter)
    assert trace.format_trace_id(span.context.trace_id) == TRACE_ID
    assert span.parent is not None
    assert trace.format_span_id(span.parent.span_id) == PARENT_ID
    assert span.parent.is_remote
    assert response.json()["ids"] == [TRACE_ID, trace.format_span_id(span.context.span_id)]


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", "garbage")],
        [("traceparent", "00-" + "0" * 32 + "-" + PARENT_ID + "-01")],
        [("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT)],
    ],
    ids=["malformed", "zero-trace-id", "duplicated"],
)
def test_invalid_traceparent_starts_a_new_trace(
    client: TestClient, exporter: InMemorySpanExporter, headers: list[tuple[str, str]]
) -> None:
    client.get("/items/1", headers=headers)
    span = only_span(exporter)
    assert span.parent is None
    assert trace.format_trace_id(span.context.trace_id) != TRACE_ID


def test_untrusted_traceparent_is_ignored(
    client_for: Callable[..., TestClient], exporter: InMemorySpanExporter
) -> None:
    client_for(trust_traceparent=False).get("/items/1", headers={"traceparent": TRACEPARENT})
    span = only_span(exporter)
    assert span.parent is None
    assert trace.format_trace_id(span.context.trace_id) != TRACE_ID


@pytest.mark.parametrize("path", ["/items/1", "/sync/1"])
def test_current_trace_ids_inside_handler(
    client: TestClient, exporter: InMemorySpanExporter, path: str
) -> None:
    ids = client.get(path).json()["ids"]
    span = only_span(exporter)
    assert ids == [
        trace.format_trace_id(span.context.trace_id),
        trace.format_span_id(span.context.span_id),
    ]


def test_current_trace_ids_outside_a_request_is_none() -> None:
    assert current_trace_ids() is None


def test_websocket_and_lifespan_pass_through(
    client: TestClient, exporter: InMemorySpanExporter, state: dict[str, Any]
) -> None:
    with client:
        assert state["started"] is True
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_text() == "None"  # no span for websockets
    assert exporter.get_finished_spans() == ()


def test_enduser_pseudonym(
    client_for: Callable[..., TestClient], exporter: InMemorySpanExporter
) -> None:
    client_for(principal_of=lambda scope: "alice").get("/items/1")
    attributes = only_span(exporter).attributes or {}
    expected = hmac.new(KEY, b"alice", hashlib.sha256).hexdigest()[:16]
    assert attributes["enduser.pseudo.id"] == expected
    assert "enduser.id" not in attributes
    assert "alice" not in str(dict(attributes))


def test_enduser_id(client_for: Callable[..., TestClient], exporter: InMemorySpanExporter) -> None:
    client_for(enduser="id", pseudonym_key=None, principal_of=lambda scope: "alice").get("/items/1")
    attributes = only_span(exporter).attributes or {}
    assert attributes["enduser.id"] == "alice"
    assert "enduser.pseudo.id" not in attributes


def test_enduser_off(client_for: Callable[..., TestClient], exporter: InMemorySpanExporter) -> None:
    client_for(enduser="off", principal_of=lambda scope: "alice").get("/items/1")
    attributes = only_span(exporter).attributes or {}
    assert not any(k.startswith("enduser.") for k in attributes)


def test_enduser_anonymous_and_failing_lookup(
    client_for: Callable[..., TestClient], exporter: InMemorySpanExporter
) -> None:
    def broken(scope: Scope) -> str | None:
        raise LookupError

    client_for().get("/items/1")  # default lookup, no soc2kit request context
    assert client_for(principal_of=broken).get("/items/2").status_code == 200
    for span in exporter.get_finished_spans():
        assert not any(k.startswith("enduser.") for k in span.attributes or {})


def test_default_principal_lookup_reads_soc2kit_context(
    provider: TracerProvider, exporter: InMemorySpanExporter, state: dict[str, Any]
) -> None:
    inner = TracingMiddleware(make_app(state), provider, pseudonym_key=KEY)
    audit_ids: list[tuple[str, str] | None] = []

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        # Stands in for RequestContextMiddleware: the context outlives the span.
        ctx = RequestContext(request_id="r1", method="GET", client_ip=None, scope=scope)
        ctx.principal = Principal(subject="bob", issuer="https://idp")
        token = _enter(ctx)
        try:
            await inner(scope, receive, send)
            audit_ids.append(current_trace_ids())  # where the http.request audit is built
        finally:
            _exit(token)

    TestClient(outer).get("/items/1")
    span = only_span(exporter)
    expected = hmac.new(KEY, b"bob", hashlib.sha256).hexdigest()[:16]
    assert (span.attributes or {})["enduser.pseudo.id"] == expected
    assert audit_ids == [
        (trace.format_trace_id(span.context.trace_id), trace.format_span_id(span.context.span_id))
    ]


@pytest.mark.parametrize("key", [None, b"short"])
def test_pseudonym_needs_a_real_key(provider: TracerProvider, key: bytes | None) -> None:
    with pytest.raises(ConfigurationError, match="pseudonym_key"):
        TracingMiddleware(FastAPI(), provider, pseudonym_key=key)


def test_unknown_enduser_policy_refused(provider: TracerProvider) -> None:
    with pytest.raises(ConfigurationError, match="enduser"):
        TracingMiddleware(FastAPI(), provider, enduser="email", pseudonym_key=KEY)  # type: ignore[arg-type]
