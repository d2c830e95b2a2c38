"""Tracer and meter provider construction: explicit, never global.

:func:`build_tracer_provider` and :func:`build_meter_provider` return providers
and leave the process-wide OpenTelemetry globals alone, so two apps (or two
tests) in one process never share or overwrite each other's pipelines.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from soc2kit.errors import ConfigurationError

_OTLP_PACKAGE = "opentelemetry.exporter.otlp.proto.http"
_TRACES_PATH = "/v1/traces"


def _otlp_url(endpoint: str, signal: str) -> str:
    """The OTLP/HTTP URL for ``signal`` ("traces" or "metrics") under ``endpoint``.

    ``endpoint`` is a collector base URL or, as documented for traces, the full
    ``.../v1/traces`` URL; metrics go to the ``/v1/metrics`` beside it.
    """
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("the OTLP endpoint must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ConfigurationError("the OTLP endpoint must not carry credentials in its URL")
    if parts.path in ("", "/"):
        # A collector base URL: the signal's OTLP/HTTP path, as the SDK's env handling does.
        return endpoint.rstrip("/") + f"/v1/{signal}"
    if signal == "traces":
        return endpoint
    if parts.query or parts.fragment or not parts.path.rstrip("/").endswith(_TRACES_PATH):
        raise ConfigurationError(
            "with metrics on, the OTLP endpoint must be the collector's base URL "
            "or end in /v1/traces (metrics then go to /v1/metrics beside it)"
        )
    base = endpoint.rstrip("/")
    return base[: -len(_TRACES_PATH)] + f"/v1/{signal}"


def _otlp_module(signal: str) -> Any:
    name = "trace_exporter" if signal == "traces" else "metric_exporter"
    try:
        return importlib.import_module(f"{_OTLP_PACKAGE}.{name}")
    except ImportError:
        raise ConfigurationError(
            f"exporting {signal} over OTLP needs the 'otlp' extra: pip install 'soc2kit[otlp]'"
        ) from None


def _otlp_exporter(endpoint: str) -> SpanExporter:
    url = _otlp_url(endpoint, "traces")
    exporter: SpanExporter = _otlp_module("traces").OTLPSpanExporter(endpoint=url)
    return exporter


def build_tracer_provider(
    service_name: str,
    *,
    exporter: SpanExporter | None = None,
    otlp_endpoint: str | None = None,
) -> TracerProvider:
    """A tracer provider for ``service_name``; the caller owns it (and its shutdown).

    ``otlp_endpoint`` (a collector base URL such as ``https://otel:4318`` or the
    full ``.../v1/traces`` URL) exports in batches over OTLP/HTTP and needs the
    ``otlp`` extra. ``exporter`` is exported synchronously, span by span (for
    tests and local debugging). With neither, spans are created (trace ids still
    propagate) but not exported.
    """
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    if otlp_endpoint:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(otlp_endpoint)))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def build_meter_provider(
    service_name: str,
    *,
    readers: Sequence[MetricReader] = (),
    otlp_endpoint: str | None = None,
    export_interval_seconds: float = 60.0,
) -> MeterProvider:
    """A meter provider for ``service_name``; the caller owns it (and its shutdown).

    ``otlp_endpoint`` (the same value as for traces) exports every
    ``export_interval_seconds`` over OTLP/HTTP to ``/v1/metrics`` and needs the
    ``otlp`` extra. ``readers`` are added as given (an ``InMemoryMetricReader``
    in tests, a Prometheus reader). Readers cannot be added later: that is the SDK's rule.
    """
    all_readers = list(readers)
    if otlp_endpoint:
        exporter = _otlp_module("metrics").OTLPMetricExporter(
            endpoint=_otlp_url(otlp_endpoint, "metrics")
        )
        all_readers.append(
            PeriodicExportingMetricReader(
                exporter, export_interval_millis=export_interval_seconds * 1000
            )
        )
    return MeterProvider(
        metric_readers=all_readers, resource=Resource.create({SERVICE_NAME: service_name})
    )
