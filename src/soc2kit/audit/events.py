"""Audit event model, following the OWASP logging vocabulary.

Everything that enters an event passes through :func:`sanitize_value`: strings
are length-capped and control characters that enable log injection (CR, LF,
ESC, NUL, other C0/C1 controls and Unicode bidi overrides) are escaped, and any
mapping key that names a secret has its value replaced by ``[redacted]``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

OUTCOMES = frozenset({"success", "failure", "denied", "error"})

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
# Escapes for every character that can corrupt a log line or a terminal.
_ESCAPES: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in range(0x00, 0x20)},
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x7F: "\\x7f",
    **{c: f"\\x{c:02x}" for c in range(0x80, 0xA0)},
    **{c: f"\\u{c:04x}" for c in _BIDI},
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}

SECRET_KEY_PATTERN = re.compile(
    r"(authorization|cookie|token|secret|passw(or)?d|api[-_]?key|session|credential|"
    r"private[-_]?key|signature|otp|pin\b)",
    re.IGNORECASE,
)
REDACTED = "[redacted]"
_MAX_DEPTH = 6
_MAX_ITEMS = 100


def sanitize_text(value: str, max_chars: int) -> str:
    """Escape control characters and cap the length (keeping a hash of the whole)."""
    if len(value) <= max_chars and value.isprintable():
        # Fast path: every character _ESCAPES rewrites (C0/C1 controls, bidi
        # format characters, line/paragraph separators) is non-printable.
        return value
    escaped = value.translate(_ESCAPES)
    if len(escaped) <= max_chars:
        return escaped
    if max_chars < 64:  # too short to carry the hash suffix: a hard cut
        return escaped[:max_chars]
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{escaped[: max_chars - 40]}...[truncated sha256:{digest}]"


def sanitize_value(value: Any, max_chars: int, depth: int = 0) -> Any:
    """Make ``value`` JSON-safe, injection-safe and bounded."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return sanitize_text(value, max_chars)
    if isinstance(value, datetime):
        return format_time(value)
    if depth >= _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for i, (key, item) in enumerate(value.items()):
            if i >= _MAX_ITEMS:
                out["..."] = f"[{len(value) - _MAX_ITEMS} more]"
                break
            skey = sanitize_text(str(key), 200)
            out[skey] = (
                REDACTED
                if SECRET_KEY_PATTERN.search(skey)
                else sanitize_value(item, max_chars, depth + 1)
            )
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        capped = [sanitize_value(v, max_chars, depth + 1) for v in items[:_MAX_ITEMS]]
        if len(items) > _MAX_ITEMS:
            capped.append(f"[{len(items) - _MAX_ITEMS} more]")
        return capped
    if isinstance(value, bytes | bytearray | memoryview):
        return f"[{len(value)} bytes]"  # never raw bytes: they may be ciphertext or secrets
    return sanitize_text(str(value), max_chars)


def format_time(value: datetime) -> str:
    """UTC, microseconds, ``Z`` suffix: one spelling across drivers and languages."""
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record. Build it through ``AuditTrail.record``, which sanitises."""

    event_id: str
    occurred_at: datetime
    event_type: str
    action: str
    outcome: str
    service: str
    environment: str
    actor_type: str = "anonymous"
    actor_id: str | None = None
    tenant_id: str | None = None
    roles: tuple[str, ...] = ()
    request_id: str | None = None
    http_method: str | None = None
    route: str | None = None
    status_code: int | None = None
    client_ip: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    reason: str | None = None
    changes: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "event_id": self.event_id,
            "occurred_at": format_time(self.occurred_at),
            "event_type": self.event_type,
            "action": self.action,
            "outcome": self.outcome,
            "service": self.service,
            "environment": self.environment,
            "actor_type": self.actor_type,
            "actor_id": self.actor_id,
            "tenant_id": self.tenant_id,
            "roles": list(self.roles),
            "request_id": self.request_id,
            "http_method": self.http_method,
            "route": self.route,
            "status_code": self.status_code,
            "client_ip": self.client_ip,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "reason": self.reason,
            "changes": self.changes,
        }
        if self.extra:
            data["extra"] = self.extra
        return data


def canonical_json(data: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace, UTF-8 text: the same bytes on every database."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
