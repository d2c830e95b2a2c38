"""``kit.audit``: the one call every part of soc2kit records events through."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import anyio.to_thread
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from soc2kit._ids import RandomPool, uuid7_str
from soc2kit.audit.events import OUTCOMES, AuditEvent, canonical_json, sanitize_text, sanitize_value
from soc2kit.audit.sink import AuditSink
from soc2kit.context import current_request
from soc2kit.errors import AuditWriteError
from soc2kit.settings import Settings
from soc2kit.tracing import current_trace_ids

if TYPE_CHECKING:
    from soc2kit.audit.sealer import Sealer
    from soc2kit.audit.verify import VerifyReport
    from soc2kit.authn.principal import Principal

audit_log = logging.getLogger("soc2kit.audit")

Durability = Literal["critical", "informational"]
# Successful reads are informational by default; every other event is critical.
_READ_ACTIONS = frozenset({"read", "list", "get", "view", "search", "probe", "connect"})


def _is_critical(event: AuditEvent, durability: Durability | None) -> bool:
    if durability is not None:
        if durability not in ("critical", "informational"):
            raise ValueError("durability is 'critical' or 'informational'")
        return durability == "critical"
    return not (event.outcome == "success" and event.action in _READ_ACTIONS)


class AuditObserver(Protocol):
    """Told of every event as it is recorded and of every verify run (metrics, span links).

    ``event_recorded`` runs on the recording thread before the event is stored,
    so a signal still counts when the store is down. It must be quick and must
    not record events itself; an exception it raises is logged and ignored.
    """

    def event_recorded(self, event: AuditEvent) -> None: ...

    def log_verified(self, status: str | None) -> None:
        """``status`` is the report's ("pass", "fail", "incomplete"), None when verify raised."""


# Fields a caller may set directly through ``**extra`` instead of nesting them.
_DIRECT_FIELDS = frozenset(
    {"status_code", "http_method", "route", "request_id", "tenant_id", "actor_type", "client_ip"}
)


class AuditTrail:
    """Builds sanitised events and hands them to the configured sink."""

    def __init__(
        self, settings: Settings, sink: AuditSink, *, sealer: Sealer | None = None
    ) -> None:
        self._settings = settings
        self._sink = sink
        self.sealer = sealer
        self._recorded = False  # close() seals only when this trail wrote something
        self._max = settings.audit_max_field_chars
        key = settings.audit_ip_hmac_key
        # Without a configured pepper (development only; production refuses),
        # pseudonyms are stable for this process alone.
        self._ip_cache: OrderedDict[str, str | None] = OrderedDict()
        self._random = RandomPool()
        self._limiter: anyio.CapacityLimiter | None = None
        self._queue_limiter: anyio.CapacityLimiter | None = None
        self._ip_key = (
            key.get_secret_value().encode() if key is not None else secrets.token_bytes(32)
        )
        self._observers: tuple[AuditObserver, ...] = ()

    def add_observer(self, observer: AuditObserver) -> None:
        """Tell ``observer`` of every event recorded from now on (see AuditObserver)."""
        self._observers = (*self._observers, observer)

    def _notify(self, event: AuditEvent) -> None:
        for observer in self._observers:
            try:
                observer.event_recorded(event)
            except Exception as exc:  # telemetry never fails an audit record
                audit_log.error("audit observer failed: %s", type(exc).__name__)

    @property
    def sink(self) -> AuditSink:
        return self._sink

    def record(
        self,
        event_type: str,
        *,
        action: str,
        outcome: str,
        actor: Principal | str | None = None,
        resource_type: str | None = None,
        resource_id: str | int | None = None,
        reason: str | None = None,
        changes: dict[str, Any] | None = None,
        durability: Durability | None = None,
        **extra: Any,
    ) -> AuditEvent:
        """Record one event. Raises ``ValueError`` for an unknown ``outcome``.

        ``durability`` defaults by class: successful reads are *informational*
        (queued, written in groups; back-pressure when the queue is full, never
        loss), everything else is *critical*: stored before this call returns,
        or :class:`AuditWriteError` is raised (fail closed). Inside a business
        transaction use :meth:`record_in` instead. From async code use
        :meth:`arecord`, which never blocks the event loop.
        """
        event, payload = self._build(
            event_type,
            action=action,
            outcome=outcome,
            actor=actor,
            resource_type=resource_type,
            resource_id=resource_id,
            reason=reason,
            changes=changes,
            **extra,
        )
        self._recorded = True
        self._notify(event)
        if _is_critical(event, durability):
            self._sink.write_now(event, payload)
            self._log(payload)
            return event
        self._log(payload)
        self._sink.submit(event, payload)
        return event

    async def arecord(self, event_type: str, **fields: Any) -> AuditEvent:
        """:meth:`record` (same arguments) for async code: a saturated sink delays
        this caller only."""
        durability = fields.pop("durability", None)
        event, payload = self._build(event_type, **fields)
        self._recorded = True
        self._notify(event)
        if _is_critical(event, durability):
            if self._limiter is None:
                self._limiter = anyio.CapacityLimiter(8)
            await anyio.to_thread.run_sync(
                self._sink.write_now, event, payload, limiter=self._limiter
            )
            self._log(payload)
            return event
        self._log(payload)
        if not self._sink.try_submit(event, payload):
            # A few dedicated threads: waiting events must not take over the shared
            # pool that sync handlers and the readiness probe need.
            if self._queue_limiter is None:
                self._queue_limiter = anyio.CapacityLimiter(2)
            await anyio.to_thread.run_sync(
                self._sink.submit, event, payload, limiter=self._queue_limiter
            )
        return event

    def _build(
        self,
        event_type: str,
        *,
        action: str,
        outcome: str,
        actor: Principal | str | None = None,
        resource_type: str | None = None,
        resource_id: str | int | None = None,
        reason: str | None = None,
        changes: dict[str, Any] | None = None,
        **extra: Any,
    ) -> tuple[AuditEvent, str]:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}")
        ctx = current_request()
        direct = {k: extra.pop(k) for k in list(extra) if k in _DIRECT_FIELDS}
        if "trace_id" not in extra:
            ids = current_trace_ids()  # correlation with the request's span, when traced
            if ids is not None:
                extra["trace_id"], extra["span_id"] = ids
        if actor is None and ctx is not None:
            actor = ctx.principal
        actor_type, actor_id, tenant_id, roles = self._actor(actor)
        text = self._text
        event = AuditEvent(
            event_id=uuid7_str(self._random),
            occurred_at=datetime.now(UTC),
            event_type=text(event_type, 100) or "unknown",
            action=text(action, 100) or "unknown",
            outcome=outcome,
            service=self._settings.service_name,
            environment=self._settings.environment,
            actor_type=text(direct.get("actor_type"), 32) or actor_type,
            actor_id=actor_id,
            tenant_id=text(direct.get("tenant_id"), 256) or tenant_id,
            roles=roles,
            request_id=text(direct.get("request_id"), 128) or (ctx.request_id if ctx else None),
            http_method=text(direct.get("http_method"), 16) or (ctx.method if ctx else None),
            route=text(direct.get("route"), 512) or (ctx.current_route() if ctx else None),
            status_code=_int_or_none(direct.get("status_code")),
            client_ip=self.client_ip(direct.get("client_ip") or (ctx.client_ip if ctx else None)),
            resource_type=text(resource_type, 100),
            resource_id=text(None if resource_id is None else str(resource_id), 256),
            reason=text(reason, self._max),
            changes=sanitize_value(changes, self._max) if changes is not None else None,
            extra=sanitize_value(extra, self._max) if extra else {},
        )
        return event, canonical_json(event.to_dict())

    def _log(self, payload: str) -> None:
        if self._settings.audit_log_events and audit_log.isEnabledFor(logging.INFO):
            audit_log.info(payload)

    @contextmanager
    def transaction(self, engine: Engine) -> Iterator[Connection]:
        """``engine.begin()`` whose :meth:`record_in` log lines appear only after commit.

        A rolled-back change must not leave a log line claiming it happened.
        """
        pending: list[str] = []
        with engine.begin() as conn:
            conn.info[_PENDING_LOG] = pending
            try:
                yield conn
            finally:
                conn.info.pop(_PENDING_LOG, None)
        for payload in pending:  # reached only when the commit succeeded
            self._log(payload)

    def record_in(self, conn: Connection, event_type: str, **fields: Any) -> AuditEvent:
        """:meth:`record` (same arguments) inside the caller's transaction on ``conn``.

        Used for changes that must not exist without their record (policy,
        keys): if the transaction rolls back, so does the event.
        """
        fields.pop("durability", None)  # always critical: it shares the caller's transaction
        event, payload = self._build(event_type, **fields)
        self._recorded = True
        self._notify(event)
        try:
            self._sink.write_in(conn, event, payload)
        except SQLAlchemyError as exc:
            # The caller's transaction cannot commit now: say why, without driver text.
            raise AuditWriteError(f"audit write failed ({type(exc).__name__})") from None
        pending = conn.info.get(_PENDING_LOG)
        if pending is None:
            self._log(payload)  # not inside transaction(): the line may precede the commit
        else:
            pending.append(payload)
        return event

    def flush(self, timeout: float = 10.0) -> None:
        """Store every recorded event, seal the inbox and sign a checkpoint now.

        Raises AuditWriteError when events cannot be stored in ``timeout``.
        """
        self._sink.flush(timeout)
        if self.sealer is not None:
            self.sealer.seal_all(checkpoint=True, wait=True)

    def health(self) -> str | None:
        problem = self._sink.health()
        if problem is None and self.sealer is not None:
            problem = self.sealer.health()
        return problem

    def close(self, timeout: float = 10.0) -> None:
        try:
            self._sink.close(timeout)
        finally:
            if self.sealer is not None:
                self.sealer.stop()
            if self.sealer is not None and self._recorded:
                try:
                    self.sealer.seal_all(checkpoint=True, wait=True)
                except SQLAlchemyError as exc:
                    # The events stay in the inbox; the next sealer (any replica) seals them.
                    audit_log.error("audit inbox not sealed at close: %s", type(exc).__name__)

    def verify(self) -> VerifyReport:
        """Recompute the sealed log (see soc2kit.audit.verify); never raises on tampering."""
        from soc2kit.audit.verify import verify_log

        if self.sealer is None:
            raise AuditWriteError("this audit trail has no sealed log to verify")
        status: str | None = None
        try:
            report = verify_log(
                self.sealer.engine,
                self.sealer.signer.verifier(),
                origin=self.sealer.origin,
                anchor=self.sealer.anchor,
                max_checkpoint_age=self._settings.audit_max_checkpoint_age_seconds,
            )
            status = report.status
            return report
        finally:
            for observer in self._observers:
                try:
                    observer.log_verified(status)
                except Exception as exc:  # telemetry never changes the verdict
                    audit_log.error("audit observer failed: %s", type(exc).__name__)

    def prove(self, event_id: str) -> dict[str, Any]:
        """An inclusion proof of one sealed event, checkable offline with the public key."""
        from soc2kit.audit.verify import prove

        if self.sealer is None:
            raise AuditWriteError("this audit trail has no sealed log")
        bundle = prove(self.sealer.engine, event_id)
        bundle["vkey"] = self.sealer.signer.vkey
        return bundle

    # helpers ----------------------------------------------------------------
    def _text(self, value: Any, limit: int) -> str | None:
        if value is None:
            return None
        return sanitize_text(str(value), limit)

    def _actor(
        self, actor: Principal | str | None
    ) -> tuple[str, str | None, str | None, tuple[str, ...]]:
        if actor is None:
            return "anonymous", None, None, ()
        if isinstance(actor, str):
            return ("system" if actor == "system" else "user"), sanitize_text(actor, 256), None, ()
        actor_type = "service" if actor.auth_method == "api_key" else "user"
        roles = tuple(sorted(sanitize_text(r, 100) for r in actor.roles))
        tenant = sanitize_text(actor.tenant, 256) if actor.tenant else None
        return actor_type, sanitize_text(actor.subject, 256), tenant, roles

    def client_ip(self, raw: str | None) -> str | None:
        """Apply the configured client-IP policy (full, truncated or HMAC)."""
        if raw is None:
            return None
        cache = self._ip_cache
        cached = cache.get(raw, _MISSING)
        if cached is not _MISSING:
            cache.move_to_end(raw)
            return cached  # type: ignore[return-value]
        result = self._client_ip(raw)
        cache[raw] = result
        if len(cache) > 16_384:
            cache.popitem(last=False)  # bounded LRU: a flood of addresses cannot grow it
        return result

    def _client_ip(self, raw: str) -> str | None:
        policy = self._settings.audit_client_ip
        try:
            addr = ipaddress.ip_address(raw)
        except ValueError:
            return sanitize_text(raw, 64) if policy == "full" else None
        if policy == "full":
            return str(addr)
        if policy == "truncated":
            if addr.version == 4:
                return f"{ipaddress.IPv4Address(int(addr) & 0xFFFFFF00)}/24"
            return f"{ipaddress.IPv6Address(int(addr) & ~((1 << 80) - 1))}/48"
        digest = hmac.new(self._ip_key, addr.packed, hashlib.sha256).hexdigest()
        return f"hmac:{digest[:32]}"


_MISSING = object()
_PENDING_LOG = "soc2kit.audit.pending_log"


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
