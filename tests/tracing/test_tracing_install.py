"""Tracing wired by install(): one span per request, audit events carry its ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from tests.conftest import audit_rows

import soc2kit
from soc2kit import Principal, require


def test_requests_are_traced_and_audit_events_carry_the_trace(
    make_settings: Callable[..., soc2kit.Settings],
) -> None:
    settings = make_settings(tracing_enabled=True, tracing_pseudonym_key="p" * 32)
    app = FastAPI()
    kit = soc2kit.install(app, settings)
    app.include_router(kit.health_router())

    @app.get("/items/{item_id}")
    def item(item_id: str, p: Principal = require("items", "read")) -> dict[str, Any]:
        kit.audit.record("item.viewed", action="read", outcome="success", resource_id=item_id)
        return {"id": item_id}

    assert kit.tracer_provider is not None
    exporter = InMemorySpanExporter()
    kit.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    kit.policy.grant("reader", "items", "read")
    token = kit.dev_token("alice", ["reader"])
    with TestClient(app) as client:
        response = client.get(
            "/items/alice@example.com?q=secret-query",
            headers={"Authorization": f"Bearer {token}", "Cookie": "session=cookie-value"},
        )
        assert response.status_code == 200
        client.get("/healthz")  # excluded from tracing
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind is SpanKind.SERVER]
    assert [s.name for s in server] == ["GET /items/{item_id}"]
    span = server[0]
    # The rest are the request's SQL statements (test_tracing_sql.py), children of its span.
    assert all(s.kind is SpanKind.CLIENT and s.parent == span.context for s in spans if s != span)
    attributes = dict(span.attributes or {})
    assert attributes["http.route"] == "/items/{item_id}"
    assert attributes["http.response.status_code"] == 200
    assert "enduser.id" not in attributes and len(str(attributes["enduser.pseudo.id"])) == 16
    text = repr(attributes)
    for secret in (token, "cookie-value", "secret-query", "alice@example.com", "alice"):
        assert secret not in text
    trace_id = format(span.context.trace_id, "032x")
    events = [e for e in audit_rows(kit) if e.get("request_id") == response.headers["x-request-id"]]
    assert {e["event_type"] for e in events} >= {"item.viewed", "http.request"}
    assert all(e["extra"]["trace_id"] == trace_id for e in events), events
    kit.shutdown()


def test_tracing_is_off_by_default(make_settings: Callable[..., soc2kit.Settings]) -> None:
    kit = soc2kit.install(FastAPI(), make_settings())
    assert kit.tracer_provider is None
    kit.shutdown()
