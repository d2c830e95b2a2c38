"""The audit interface every part of soc2kit writes to.

``kit.audit.record(...)`` builds a sanitised :class:`AuditEvent` and hands it to
a sink. The foundation's sink is a plain SQL table plus a JSON log line; the
tamper-evident store replaces the sink behind the same call.
"""

from soc2kit.audit.events import OUTCOMES, AuditEvent, canonical_json, sanitize_text
from soc2kit.audit.sink import AuditSink, SqlAuditSink
from soc2kit.audit.trail import AuditTrail

__all__ = [
    "OUTCOMES",
    "AuditEvent",
    "AuditSink",
    "AuditTrail",
    "SqlAuditSink",
    "canonical_json",
    "sanitize_text",
]
