"""Meter provider wiring: OTLP export, ownership and shutdown, refusals."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from tests.tracing.otel_helpers import points

import soc2kit
from soc2kit.errors import ConfigurationError
from soc2kit.tracing import build_meter_provider

OTLP_METRICS_MODULE = "opentelemetry.exporter.otlp.proto.http.metric_exporter"


class FakeOTLPMetricExporter(MetricExporter):
    instances: list[FakeOTLPMetricExporter] = []  # noqa: RUF012

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.exported: list[MetricsData] = []
        FakeOTLPMetricExporter.instances.append(self)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass

    def names(self) -> set[str]:
        return {
            m.name
            for data in self.exported
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }


@pytest.fixture
def fake_otlp(monkeypatch: pytest.MonkeyPatch) -> type[FakeOTLPMetricExporter]:
    module: Any = types.ModuleType(OTLP_METRICS_MODULE)
    module.OTLPMetricExporter = FakeOTLPMetricExporter
    monkeypatch.setitem(sys.modules, OTLP_METRICS_MODULE, module)
    FakeOTLPMetricExporter.instances = []
    return FakeOTLPMetricExporter


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://collector:4318", "https://collector:4318/v1/metrics"),
        ("https://collector:4318/", "https://collector:4318/v1/metrics"),
        ("https://collector:4318/v1/traces", "https://collector:4318/v1/metrics"),
        ("https://gw.example/otlp/v1/traces/", "https://gw.example/otlp/v1/metrics"),
    ],
)
def test_otlp_metrics_go_beside_the_traces(
    fake_otlp: type[FakeOTLPMetricExporter], endpoint: str, expected: str
) -> None:
    provider = build_meter_provider("svc", otlp_endpoint=endpoint)
    try:
        provider.get_meter("t").create_counter("c").add(1)
        (exporter,) = fake_otlp.instances
        assert exporter.endpoint == expected
        assert provider.force_flush()
        assert "c" in exporter.names()
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://collector:4318/custom/path",  # traces use it as is; metrics cannot guess
        "https://collector:4318/v1/traces?x=1",
        "http://user:pw@collector:4318",
        "collector:4318",
    ],
)
def test_unusable_metrics_endpoint_refused(
    fake_otlp: type[FakeOTLPMetricExporter], endpoint: str
) -> None:
    with pytest.raises(ConfigurationError, match="OTLP endpoint"):
        build_meter_provider("svc", otlp_endpoint=endpoint)
    assert fake_otlp.instances == []


def test_missing_otlp_extra_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, OTLP_METRICS_MODULE, None)  # makes the import fail
    with pytest.raises(ConfigurationError, match=r"metrics.*soc2kit\[otlp\]"):
        build_meter_provider("svc", otlp_endpoint="https://collector:4318")


def test_metrics_enabled_exports_over_otlp_and_flushes_at_shutdown(
    fake_otlp: type[FakeOTLPMetricExporter], make_settings: Callable[..., soc2kit.Settings]
) -> None:
    kit = soc2kit.install(
        FastAPI(),
        make_settings(metrics_enabled=True, otlp_endpoint="https://collector:4318"),
    )
    (exporter,) = fake_otlp.instances
    assert exporter.endpoint == "https://collector:4318/v1/metrics"
    assert kit.meter_provider is not None
    kit.shutdown()  # the owned provider's last collection is exported
    assert {"soc2kit.audit.backlog", "soc2kit.audit.seal_lag"} <= exporter.names()


def test_metrics_enabled_without_a_destination_is_refused(
    make_settings: Callable[..., soc2kit.Settings],
) -> None:
    with pytest.raises(ConfigurationError, match="metrics_enabled needs otlp_endpoint"):
        soc2kit.install(FastAPI(), make_settings(metrics_enabled=True))


def test_metrics_are_off_by_default(make_settings: Callable[..., soc2kit.Settings]) -> None:
    kit = soc2kit.install(FastAPI(), make_settings())
    assert kit.meter_provider is None
    kit.shutdown()


def test_a_callers_provider_is_used_and_left_running(
    make_settings: Callable[..., soc2kit.Settings],
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    kit = soc2kit.install(FastAPI(), make_settings(), meter_provider=provider)
    assert kit.meter_provider is provider
    assert points(reader, "soc2kit.audit.backlog") == {frozenset(): 0}
    kit.audit.record(
        "authn.failure", action="authenticate", outcome="failure", reason="no credentials"
    )
    kit.shutdown()
    # The provider still collects (not shut down by the kit) and the counters keep their
    # values; the closed kit's gauges no longer query its database.
    failures = {frozenset({("soc2kit.authn.reason", "missing")}): 1}
    assert points(reader, "soc2kit.authn.failures") == failures
    assert points(reader, "soc2kit.audit.backlog") == {}
    provider.shutdown()


def test_production_requires_https_for_metrics_export() -> None:
    settings = soc2kit.Settings(
        environment="production", metrics_enabled=True, otlp_endpoint="http://collector:4318"
    )
    assert "otlp_endpoint must use https" in soc2kit.production_problems(settings)
    settings = soc2kit.Settings(environment="production", otlp_endpoint="http://collector:4318")
    assert "otlp_endpoint must use https" not in soc2kit.production_problems(settings)
