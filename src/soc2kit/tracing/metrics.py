"""Security signals as OpenTelemetry metrics, so a team can alert on them (CC7.2).

Counted from the audit events that already describe them (one observer on the
audit trail, see :class:`soc2kit.audit.trail.AuditObserver`), so a signal and its
evidence cannot drift apart: ``authn.failure``, ``authz.denied`` and
``authz.misconfiguration``, ``crypto.decrypt.failed``, and ``http.request`` with
status 429. Verify runs are counted by ``kit.audit.verify()``; the unsealed
backlog and the seal lag are read from the inbox at each collection.

Attributes are few and bounded: classes of reasons, resource and action names
from the code, table and column names. Never a subject, an address, a path, a
key id or a value. Metrics, like traces, are lossy: the audit log is the record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from soc2kit._version import __version__
from soc2kit.db.schema import audit_inbox

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from soc2kit.audit.events import AuditEvent

log = logging.getLogger("soc2kit.tracing")

# authn.failure reasons (set by soc2kit.authn) -> a class fit for an attribute.
_AUTHN_REASONS = {
    "no credentials": "missing",
    "multiple Authorization headers": "malformed",
    "multiple X-API-Key headers": "malformed",
    "both Authorization and X-API-Key headers": "malformed",
    "not a bearer credential": "malformed",
    "malformed API key": "malformed",
    "token too large": "malformed",
    "not a compact JWS": "malformed",
    "malformed base64url segment": "malformed",
    "malformed kid": "malformed",
    "malformed header": "malformed",
    "sub missing": "malformed",
    "key-carrying header refused": "refused_header",
    "unsupported critical header": "refused_header",
    "algorithm not allowed": "refused_header",
    "token type not accepted": "refused_header",
    "no key for this kid": "unknown_key",
    "unknown API key": "unknown_key",
    "API key secret does not match": "invalid_credential",
    "claims rejected (ExpiredTokenError)": "expired",
    "API key expired": "expired",
    "iat in the future": "invalid_claims",
    "principal revoked": "revoked",
    "API key revoked": "revoked",
    "API key store unavailable": "unavailable",
    "revocation check failed": "unavailable",
    "API keys are not enabled": "not_enabled",
    "API key record is corrupt": "corrupt_record",
}
_AUTHN_PREFIXES = (
    ("signature or format invalid", "invalid_credential"),
    ("claims rejected", "invalid_claims"),
)
AUTHN_REASON_CLASSES = frozenset(
    {*_AUTHN_REASONS.values(), *(c for _, c in _AUTHN_PREFIXES), "other"}
)
_AUTH_METHODS = frozenset({"oidc", "api_key"})
# The gate derives its action from the request method, which a client chooses.
_GATE_ACTIONS = frozenset({"read", "create", "update", "delete", "connect"})
VERIFY_RESULTS = {"pass": "ok", "fail": "failed", "incomplete": "incomplete"}


def authn_reason_class(reason: str | None) -> str:
    """The class of an ``authn.failure`` reason; ``"other"`` for one not listed."""
    if reason is None:
        return "other"
    known = _AUTHN_REASONS.get(reason)
    if known is not None:
        return known
    for prefix, reason_class in _AUTHN_PREFIXES:
        if reason.startswith(prefix):
            return reason_class
    return "other"


class SecurityMetrics:
    """The instruments, and the audit observer that feeds them.

    ``inbox_engine`` (the sealed log's database) enables the backlog and
    seal-lag gauges; without it they are not registered.
    """

    def __init__(self, meter_provider: MeterProvider, inbox_engine: Engine | None) -> None:
        meter = meter_provider.get_meter("soc2kit", __version__)
        self.authn_failures = meter.create_counter(
            "soc2kit.authn.failures",
            unit="{failure}",
            description="Requests refused for missing or invalid credentials (401)",
        )
        self.authz_denials = meter.create_counter(
            "soc2kit.authz.denials",
            unit="{denial}",
            description="Authorization refusals: policy, object checks and undeclared routes",
        )
        self.decrypt_failures = meter.create_counter(
            "soc2kit.crypto.decrypt.failures",
            unit="{failure}",
            description="Stored encrypted values that failed to decrypt (tampering or moved)",
        )
        self.rate_limited = meter.create_counter(
            "soc2kit.rate_limit.hits",
            unit="{request}",
            description="Requests answered 429 Too Many Requests",
        )
        self.verify_runs = meter.create_counter(
            "soc2kit.audit.verify.runs",
            unit="{run}",
            description="Runs of kit.audit.verify() by result",
        )
        self._engine = inbox_engine
        if inbox_engine is not None:
            meter.create_observable_gauge(
                "soc2kit.audit.backlog",
                callbacks=[self._backlog],
                unit="{event}",
                description="Audit events stored in the inbox but not yet sealed into the log",
            )
            meter.create_observable_gauge(
                "soc2kit.audit.seal_lag",
                callbacks=[self._seal_lag],
                unit="s",
                description="Age of the oldest unsealed audit event (0 when none waits)",
            )

    def close(self) -> None:
        """Stop reading the inbox (the kit shut down; a caller's provider may live on)."""
        self._engine = None

    # audit observer ---------------------------------------------------------------
    def event_recorded(self, event: AuditEvent) -> None:
        kind = event.event_type
        if kind == "authn.failure":
            attributes = {"soc2kit.authn.reason": authn_reason_class(event.reason)}
            method = event.extra.get("auth_method")
            if method in _AUTH_METHODS:
                attributes["soc2kit.authn.method"] = method
            self.authn_failures.add(1, attributes)
        elif kind == "authz.denied":
            attributes = {"soc2kit.authz.action": event.action, "soc2kit.authz.denial": "policy"}
            if event.resource_type:
                attributes["soc2kit.authz.resource"] = event.resource_type
            self.authz_denials.add(1, attributes)
        elif kind == "authz.misconfiguration":
            action = event.action if event.action in _GATE_ACTIONS else "other"
            self.authz_denials.add(
                1, {"soc2kit.authz.action": action, "soc2kit.authz.denial": "undeclared_route"}
            )
        elif kind == "crypto.decrypt.failed":
            attributes = {}
            if event.resource_type:
                attributes["soc2kit.crypto.table"] = event.resource_type
            column = event.extra.get("column")
            if isinstance(column, str):
                attributes["soc2kit.crypto.column"] = column
            self.decrypt_failures.add(1, attributes)
        elif kind == "http.request" and event.status_code == 429:
            source = "soc2kit" if event.extra.get("rejected") == "rate_limited" else "app"
            self.rate_limited.add(1, {"soc2kit.rate_limit.source": source})

    def log_verified(self, status: str | None) -> None:
        # A run that raised could not establish anything: incomplete, like a stale log.
        result = VERIFY_RESULTS.get(status or "", "incomplete")
        self.verify_runs.add(1, {"soc2kit.audit.verify.result": result})

    # gauges -----------------------------------------------------------------------
    def _inbox(self) -> tuple[int, datetime | None] | None:
        if self._engine is None:
            return None
        try:
            with self._engine.connect() as conn:
                count, oldest = conn.execute(
                    sa.select(sa.func.count(), sa.func.min(audit_inbox.c.occurred_at))
                ).one()
        except sa.exc.SQLAlchemyError as exc:
            # No observation rather than a wrong one; the audit readiness check reports the store.
            log.warning("audit backlog not measured (%s)", type(exc).__name__)
            return None
        return int(count), oldest

    def _backlog(self, options: CallbackOptions) -> Iterable[Observation]:
        inbox = self._inbox()
        return [] if inbox is None else [Observation(inbox[0])]

    def _seal_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        inbox = self._inbox()
        if inbox is None:
            return []
        oldest = inbox[1]
        if oldest is None:
            return [Observation(0.0)]
        if oldest.tzinfo is None:  # SQLite hands back naive UTC
            oldest = oldest.replace(tzinfo=UTC)
        return [Observation(max((datetime.now(UTC) - oldest).total_seconds(), 0.0))]
