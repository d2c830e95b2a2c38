"""Tracer provider construction: explicit, never global.

:func:`build_tracer_provider` returns a provider and leaves the process-wide
OpenTelemetry globals alone, so two apps (or two tests) in one process never
share or overwrite each other's tracing pipeline.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from soc2kit.errors import ConfigurationError

_OTLP_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def _otlp_exporter(endpoint: str) -> SpanExporter:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("the OTLP endpoint must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ConfigurationError("the OTLP endpoint must not carry credentials in its URL")
    if parts.path in ("", "/"):
        # A collector base URL: the OTLP/HTTP traces path, as the SDK's env handling does.
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    try:
        module = importlib.import_module(_OTLP_MODULE)
    except ImportError:
        raise ConfigurationError(
            "exporting traces over OTLP needs the 'otlp' extra: pip install 'soc2kit[otlp]'"
        ) from None
    exporter: SpanExporter = module.OTLPSpanExporter(endpoint=endpoint)
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
