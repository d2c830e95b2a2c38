"""build_tracer_provider: explicit providers, optional OTLP exporter."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from soc2kit.errors import ConfigurationError
from soc2kit.tracing import build_tracer_provider

OTLP_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


class FakeOTLPSpanExporter(SpanExporter):
    instances: list[FakeOTLPSpanExporter] = []  # noqa: RUF012

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.spans: list[ReadableSpan] = []
        FakeOTLPSpanExporter.instances.append(self)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


@pytest.fixture
def fake_otlp(monkeypatch: pytest.MonkeyPatch) -> type[FakeOTLPSpanExporter]:
    module: Any = types.ModuleType(OTLP_MODULE)
    module.OTLPSpanExporter = FakeOTLPSpanExporter
    monkeypatch.setitem(sys.modules, OTLP_MODULE, module)
    FakeOTLPSpanExporter.instances = []
    return FakeOTLPSpanExporter


def test_provider_has_service_name_and_is_not_global() -> None:
    before = trace.get_tracer_provider()
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider("billing", exporter=exporter)
    try:
        assert trace.get_tracer_provider() is before
        assert provider.resource.attributes["service.name"] == "billing"
        provider.get_tracer("t").start_span("s").end()
        assert [s.name for s in exporter.get_finished_spans()] == ["s"]  # exported at once
    finally:
        provider.shutdown()


def test_missing_otlp_extra_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, OTLP_MODULE, None)  # makes the import fail
    with pytest.raises(ConfigurationError, match=r"soc2kit\[otlp\]"):
        build_tracer_provider("svc", otlp_endpoint="https://collector:4318")


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://collector:4318", "https://collector:4318/v1/traces"),
        ("https://collector:4318/", "https://collector:4318/v1/traces"),
        ("http://localhost:4318/custom/traces", "http://localhost:4318/custom/traces"),
    ],
)
def test_otlp_endpoint_uses_batch_export(
    fake_otlp: type[FakeOTLPSpanExporter], endpoint: str, expected: str
) -> None:
    provider = build_tracer_provider("svc", otlp_endpoint=endpoint)
    try:
        provider.get_tracer("t").start_span("s").end()
        (exporter,) = fake_otlp.instances
        assert exporter.endpoint == expected
        assert exporter.spans == []  # batched, not exported synchronously
        assert provider.force_flush()
        assert [s.name for s in exporter.spans] == ["s"]
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    "endpoint", ["collector:4318", "ftp://collector/v1/traces", "https://user:pw@collector:4318"]
)
def test_bad_otlp_endpoint_refused(fake_otlp: type[FakeOTLPSpanExporter], endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match="OTLP endpoint"):
        build_tracer_provider("svc", otlp_endpoint=endpoint)
    assert fake_otlp.instances == []
