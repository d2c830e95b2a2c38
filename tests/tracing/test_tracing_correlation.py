"""The server span carries its request's audit event id; the event carries the span's ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from tests.conftest import audit_rows

import soc2kit
from soc2kit import Principal, public, require
from soc2kit.tracing.correlation import EVENT_ID_ATTRIBUTE

Client = tuple[TestClient, soc2kit.Kit, InMemorySpanExporter]


@pytest.fixture
def traced(make_client: Callable[..., tuple[TestClient, soc2kit.Kit]]) -> Client:
    def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
        kit.policy.grant("writer", "items", "create")

        @app.get("/items/{item_id}", dependencies=[public("test")])
        def read(item_id: str) -> dict[str, str]:
            return {"id": item_id}

        @app.post("/items")
        def create(p: Principal = require("items", "create")) -> dict[str, str]:
            return {"ok": "yes"}

    client, kit = make_client(
        routes, tracing_enabled=True, tracing_pseudonym_key="p" * 32, rate_limit="4/minute"
    )
    assert kit.tracer_provider is not None
    exporter = InMemorySpanExporter()
    kit.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return client, kit, exporter


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


@pytest.mark.parametrize(
    ("method", "path", "status", "headers"),
    [
        ("GET", "/items/1", 200, {}),  # informational: recorded after the response is sent
        ("POST", "/items", 200, None),  # critical: recorded before the response starts
        ("POST", "/items", 401, {}),  # a refusal, critical too
    ],
)
def test_span_carries_the_request_event_id(
    traced: Client, method: str, path: str, status: int, headers: dict[str, str] | None
) -> None:
    client, kit, exporter = traced
    if headers is None:
        headers = {"Authorization": f"Bearer {kit.dev_token('ann', ['writer'])}"}
    response = client.request(method, path, headers=headers)
    assert response.status_code == status
    (span,) = server_spans(exporter)
    (event,) = [
        e
        for e in audit_rows(kit)
        if e["event_type"] == "http.request" and e["request_id"] == response.headers["x-request-id"]
    ]
    assert span.attributes is not None
    assert span.attributes[EVENT_ID_ATTRIBUTE] == event["event_id"]
    assert event["extra"]["trace_id"] == format(span.context.trace_id, "032x")
    assert event["extra"]["span_id"] == format(span.context.span_id, "016x")
    assert span.end_time is not None and span.end_time >= span.start_time


def test_rate_limited_request_is_linked_and_every_span_ends_once(traced: Client) -> None:
    client, kit, exporter = traced
    statuses = [client.get("/items/1").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    spans = server_spans(exporter)
    assert len(spans) == 5  # one per request: none lost, none ended twice
    ids = {str((s.attributes or {})[EVENT_ID_ATTRIBUTE]) for s in spans}
    recorded = {e["event_id"] for e in audit_rows(kit) if e["event_type"] == "http.request"}
    assert len(ids) == 5 and ids <= recorded


def test_excluded_paths_have_no_span_and_still_an_event(traced: Client) -> None:
    client, kit, exporter = traced
    assert client.get("/healthz").status_code == 200
    assert server_spans(exporter) == []
    events: list[dict[str, Any]] = [
        e for e in audit_rows(kit) if e["event_type"] == "http.request" and e["route"] == "/healthz"
    ]
    assert len(events) == 1 and "trace_id" not in events[0]["extra"]
