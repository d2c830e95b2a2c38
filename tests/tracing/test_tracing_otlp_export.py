"""The real OTLP/HTTP exporters (the `otlp` extra, in `dev`) against a local collector."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import soc2kit
from soc2kit import Principal, require


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """A minimal OTLP/HTTP receiver: records (path, body) and answers 200."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    received: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_spans_and_security_metrics_reach_the_collector_without_secrets(
    collector: tuple[str, list[tuple[str, bytes]]],
    make_settings: Callable[..., soc2kit.Settings],
) -> None:
    endpoint, received = collector
    settings = make_settings(
        tracing_enabled=True,
        tracing_pseudonym_key="p" * 32,
        metrics_enabled=True,
        otlp_endpoint=endpoint,
    )
    app = FastAPI()
    kit = soc2kit.install(app, settings)

    @app.get("/items/{item_id}")
    def item(item_id: str, p: Principal = require("items", "read")) -> dict[str, str]:
        return {"id": item_id}

    token = kit.dev_token("alice@example.com", [], ttl_seconds=-3600)  # expired
    with TestClient(app) as client:
        response = client.get(
            "/items/4242?q=query-secret", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
    # Leaving the client ran kit.shutdown(): both providers flushed to the collector.
    paths = {path for path, _ in received}
    assert paths == {"/v1/traces", "/v1/metrics"}
    for _, body in received:
        for secret in (token.encode(), b"query-secret", b"alice", b"4242"):
            assert secret not in body

    spans = [
        span
        for path, body in received
        if path == "/v1/traces"
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    assert "GET /items/{item_id}" in {s.name for s in spans}
    failures: dict[tuple[tuple[str, str], ...], int] = {}
    for path, body in received:
        if path != "/v1/metrics":
            continue
        for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "soc2kit.authn.failures":
                        for dp in metric.sum.data_points:
                            attrs = tuple(
                                sorted((a.key, a.value.string_value) for a in dp.attributes)
                            )
                            failures[attrs] = int(dp.as_int)
    assert failures == {(("soc2kit.authn.method", "oidc"), ("soc2kit.authn.reason", "expired")): 1}
