"""Span to audit correlation: the server span carries its request's audit ``event_id``.

The other direction (audit events carry ``trace_id``/``span_id``) is done by the
audit trail itself through :func:`soc2kit.tracing.current_trace_ids`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.trace import Span

from soc2kit.context import current_request
from soc2kit.tracing.middleware import SPAN_KEY

if TYPE_CHECKING:
    from soc2kit.audit.events import AuditEvent

EVENT_ID_ATTRIBUTE = "soc2kit.audit.event_id"


class AuditSpanLink:
    """An audit observer writing the ``http.request`` event id onto the server span.

    That event is recorded by the request-context middleware as the response
    starts (writes, refusals) or after it is sent (reads); ServerSpanCloser keeps
    the span open until then.
    """

    def event_recorded(self, event: AuditEvent) -> None:
        if event.event_type != "http.request":
            return
        ctx = current_request()
        span = ctx.scope.get(SPAN_KEY) if ctx is not None and ctx.scope is not None else None
        if isinstance(span, Span) and span.is_recording():
            span.set_attribute(EVENT_ID_ATTRIBUTE, event.event_id)

    def log_verified(self, status: str | None) -> None:
        """Verify runs are not request events: nothing to link."""
