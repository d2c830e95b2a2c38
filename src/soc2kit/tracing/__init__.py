"""OpenTelemetry: one server span per request, SQL spans, security metrics.

No credentials, query strings, SQL text or values ever reach a span or a metric.
Nothing here touches the global providers or propagator; the providers are built
by :func:`build_tracer_provider` and :func:`build_meter_provider` and handed on.
"""

from __future__ import annotations

from opentelemetry import trace

from soc2kit.context import current_request
from soc2kit.tracing.middleware import (
    SCOPE_KEY,
    EndUserPolicy,
    ServerSpanCloser,
    TracingMiddleware,
)
from soc2kit.tracing.setup import build_meter_provider, build_tracer_provider
from soc2kit.tracing.sql import instrument_engine

__all__ = [
    "EndUserPolicy",
    "ServerSpanCloser",
    "TracingMiddleware",
    "build_meter_provider",
    "build_tracer_provider",
    "current_trace_ids",
    "instrument_engine",
]


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` as lowercase hex of the active span, or None.

    Inside a traced request this is the server span (or a child the application
    started). Outside it, but still within soc2kit's request context (the
    ``http.request`` audit event is written after the tracing middleware has
    returned), it falls back to the server span recorded in the request scope.
    """
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        ctx = current_request()
        stored = ctx.scope.get(SCOPE_KEY) if ctx is not None and ctx.scope is not None else None
        if not isinstance(stored, trace.SpanContext) or not stored.is_valid:
            return None
        span_context = stored
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)
