"""``install()`` and the ``Kit`` handle the rest of soc2kit hangs its parts on."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from soc2kit import db
from soc2kit.audit import orm as audit_orm
from soc2kit.audit.setup import build_trail
from soc2kit.authn.apikeys import ApiKeyStore
from soc2kit.authn.authenticator import Authenticator
from soc2kit.authn.principal import Principal
from soc2kit.authn.tokens import TokenVerifier
from soc2kit.authz.gate import GateMiddleware
from soc2kit.authz.inventory import check_coverage
from soc2kit.authz.objects import ObjectAccessDenied, SelectT, check_object, tenant_filter
from soc2kit.authz.policy import Policy
from soc2kit.crypto import orm as crypto_orm
from soc2kit.crypto.keyring import Keyring
from soc2kit.crypto.service import FieldEncryption
from soc2kit.crypto.setup import build_provider
from soc2kit.errors import (
    AuditWriteError,
    ConfigurationError,
    InsecureConfigurationError,
    PolicyUnavailableError,
)
from soc2kit.http import headers as security_headers
from soc2kit.http.context import ProxyResolver, RequestContextMiddleware
from soc2kit.http.errors import ApiError, cover_mounted_apps, install_handlers
from soc2kit.http.guards import (
    BodyLimitMiddleware,
    CORSMiddleware,
    DocsGateMiddleware,
    HTTPSMiddleware,
    RateLimitMiddleware,
    TrustedHostMiddleware,
)
from soc2kit.http.health import ReadinessCheck, build_router
from soc2kit.settings import Settings, production_problems
from soc2kit.tracing import (
    ServerSpanCloser,
    TracingMiddleware,
    build_meter_provider,
    build_tracer_provider,
    instrument_engine,
)
from soc2kit.tracing.correlation import AuditSpanLink
from soc2kit.tracing.metrics import SecurityMetrics

log = logging.getLogger("soc2kit")


class Kit:
    """What :func:`install` set up for one app: settings, database, audit, identity, policy."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.engine: Engine = db.create_engine(settings.database_url)
        self.sessions: sessionmaker[Session] = db.session_factory(self.engine)
        self.audit = build_trail(settings, self.engine)
        self.tokens = TokenVerifier(settings)
        # Field encryption: data keys wrapped by the KEK provider, in soc2kit's tables.
        self.keys = Keyring(self.engine, build_provider(settings), settings, self.audit)
        self.encryption = FieldEncryption(self.keys)
        self.tracer_provider: TracerProvider | None = None  # set by install() when enabled
        self.meter_provider: MeterProvider | None = None  # likewise (metrics)
        self._owned_meter_provider: SdkMeterProvider | None = None  # shut down with the kit
        self._metrics: SecurityMetrics | None = None
        self.attach(self.engine)
        self.policy = Policy(self.engine, self.audit, settings)
        self.api_keys = ApiKeyStore(self.engine, settings, self.audit)
        # Late-bound: revocation is the policy's, asked on every request (cache hits too).
        self.authenticator = Authenticator(
            self.tokens, self.api_keys, is_revoked=lambda subject: self.policy.is_revoked(subject)
        )
        self._checks: dict[str, ReadinessCheck] = {
            "database": self._check_database,
            "audit": self.audit.health,
            "policy": self.policy.readiness,
            "encryption": self.keys.readiness,
        }

    def attach(self, engine: Any) -> None:
        """Let sessions on ``engine`` (sync or async) use encrypted columns and have their
        ORM changes audited in their own transactions. ``install()`` attaches ``kit.engine``.

        The audit tables must live in the same database as the models for the
        change records to share the business transaction.
        """
        self.encryption.attach(engine)
        audit_orm.attach(engine, self.audit)
        if self.tracer_provider is not None:
            instrument_engine(engine, self.tracer_provider)  # SQL spans, never SQL text

    # readiness -----------------------------------------------------------------
    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """Register a check for ``/readyz``; it returns None when ready, else a reason."""
        if name in self._checks:
            raise ConfigurationError(f"readiness check {name!r} already registered")
        self._checks[name] = check

    def readiness(self) -> dict[str, str | None]:
        results: dict[str, str | None] = {}
        for name, check in self._checks.items():
            try:
                results[name] = check()
            except Exception as exc:  # a broken check means not ready, never a crash
                # The type only: exception text may carry connection strings.
                log.error("readiness check %s raised %s", name, type(exc).__name__)
                results[name] = "check failed"
        return results

    def _check_database(self) -> str | None:
        return None if db.ping(self.engine) else "database unreachable"

    def audit_router(self, prefix: str = "/audit") -> APIRouter:
        """The auditor's read API (events, one event with its proof, latest checkpoint).

        Needs the ``("audit", "read")`` permission: grant it to an ``auditor`` role.
        Every call is itself a critical ``audit.query`` event.
        """
        from soc2kit.audit.api import build_audit_router

        return build_audit_router(self, prefix=prefix)

    def health_router(self) -> APIRouter:
        """``/healthz`` and ``/readyz``, both declared public. Include it in the app."""
        return build_router(self)

    # object-level authorization -------------------------------------------------
    def authorize(
        self,
        principal: Principal,
        resource: str,
        action: str,
        obj: Any = None,
        *,
        tenant_attr: str | None = "tenant_id",
        owner_attr: str | None = None,
    ) -> None:
        """Check ``action`` on ``resource`` (and on ``obj``: same tenant, owner).

        Raises ApiError 404 (or 403, per ``object_denied_status``) and audits the
        denial, so callers cannot tell an object they may not see from a missing one;
        ApiError 503 when the decision or its audit record cannot be made.
        """
        try:
            self._authorize(
                principal, resource, action, obj, tenant_attr=tenant_attr, owner_attr=owner_attr
            )
        except AuditWriteError:
            raise ApiError(503, "audit_unavailable") from None

    def _authorize(
        self,
        principal: Principal,
        resource: str,
        action: str,
        obj: Any,
        *,
        tenant_attr: str | None,
        owner_attr: str | None,
    ) -> None:
        decisions: list[Any] = []

        def allowed(p: Principal, res: str, act: str, tenant: str | None = None) -> bool:
            decision = self.policy.check(p, res, act, tenant)
            decisions.append(decision)
            return bool(decision.allowed)

        try:
            if obj is None:
                if not allowed(principal, resource, action):
                    raise ObjectAccessDenied("no permission for this resource")
            else:
                check_object(
                    allowed,
                    principal,
                    resource,
                    action,
                    obj,
                    tenant_attr=tenant_attr,
                    owner_attr=owner_attr,
                )
        except PolicyUnavailableError:
            self.audit.record(
                "authz.unavailable",
                action=action,
                outcome="error",
                actor=principal,
                resource_type=resource,
                reason="policy could not be confirmed fresh",
            )
            raise ApiError(503, "policy_unavailable") from None
        except ObjectAccessDenied as exc:
            self.audit.record(
                "authz.denied",
                action=action,
                outcome="denied",
                actor=principal,
                resource_type=resource,
                resource_id=_object_id(obj),
                reason=exc.reason,
            )
            status = self.settings.object_denied_status
            raise ApiError(status, "not_found" if status == 404 else "forbidden") from None
        if any(d.source == "break_glass" for d in decisions if d.allowed):
            self.audit.record(
                "authz.break_glass.use",
                action=action,
                outcome="success",
                actor=principal,
                resource_type=resource,
                resource_id=_object_id(obj),
                reason="access through a break-glass grant",
                durability="critical",  # an emergency grant used, even for a read
            )

    def tenant_filter(self, statement: SelectT, column: Any, principal: Principal) -> SelectT:
        """Add ``column == principal.tenant`` to a SQLAlchemy select (fails closed)."""
        try:
            return tenant_filter(statement, column, principal)
        except ObjectAccessDenied as exc:
            self.audit.record(
                "authz.denied", action="list", outcome="denied", actor=principal, reason=exc.reason
            )
            raise ApiError(403, "forbidden") from None

    # identity helpers ----------------------------------------------------------
    def dev_token(
        self,
        subject: str,
        roles: list[str] | tuple[str, ...] = (),
        ttl_seconds: int = 3600,
        tenant: str | None = None,
    ) -> str:
        """A token signed by the development key (development and test only)."""
        return self.tokens.mint_dev_token(subject, roles, ttl_seconds=ttl_seconds, tenant=tenant)

    # lifecycle -------------------------------------------------------------------
    def startup(self) -> None:
        check_coverage(self.app, production=self.settings.is_production)
        revision = db.current_revision(self.engine)
        if revision != db.head_revision():
            raise ConfigurationError(
                f"soc2kit tables are at revision {revision or 'none'}, not "
                f"{db.head_revision()}: run `soc2kit db upgrade` before starting"
            )
        expired = crypto_orm.expired_plaintext_windows()
        if expired:
            raise ConfigurationError(
                "plaintext migration windows have ended; run `soc2kit encryption "
                f"encrypt-existing` and drop allow_plaintext_until: {', '.join(expired)}"
            )
        self.keys.load(create=not self.settings.is_production)
        self.policy.refresh()
        self.policy.start_sync()
        self.keys.start_refresh()
        if self.audit.sealer is not None:
            self.audit.sealer.start()
        self.audit.record(
            "service.start",
            action="start",
            outcome="success",
            actor="system",
            settings_summary=_settings_summary(self.settings),
        )

    def shutdown(self) -> None:
        self.policy.stop_sync()
        self.keys.stop_refresh()
        try:
            try:
                self.audit.record("service.stop", action="stop", outcome="success", actor="system")
            except AuditWriteError:
                log.error("service.stop could not be recorded; closing the audit trail anyway")
            finally:
                self.audit.close()  # final flush, seal and checkpoint
        finally:
            if self.tracer_provider is not None:
                self.tracer_provider.shutdown()  # exports the spans still batched
            if self._owned_meter_provider is not None:
                self._owned_meter_provider.shutdown()  # a last collection, the gauges included
            if self._metrics is not None:
                self._metrics.close()  # a caller's provider must not query a closed kit
            self.engine.dispose()


def _object_id(obj: Any) -> str | None:
    value = getattr(obj, "id", None) if obj is not None else None
    return None if value is None else str(value)


def _settings_summary(settings: Settings) -> dict[str, Any]:
    """Non-secret configuration facts recorded at start-up (evidence of what ran)."""
    return {
        "environment": settings.environment,
        "database": db.normalize_url(settings.database_url).get_backend_name(),
        "oidc_issuer": settings.oidc_issuer,
        "allowed_hosts": settings.allowed_hosts,
        "cors_origins": settings.cors_origins,
        "https_required": settings.https_required,
        "rate_limit": settings.rate_limit if settings.rate_limit_enabled else None,
        "max_body_bytes": settings.max_body_bytes,
        "docs": settings.docs_active,
        "encryption_kek": build_provider_summary(settings),
    }


def build_provider_summary(settings: Settings) -> str:
    if settings.encryption_kms_key_id is not None:
        return "aws-kms"
    if settings.encryption_kek_file is not None or settings.encryption_kek is not None:
        return "local"
    return "development"


def _docs_paths(app: FastAPI) -> frozenset[str]:
    paths = {app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url}
    return frozenset(p for p in paths if p)


def install(
    app: FastAPI, settings: Settings | None = None, *, meter_provider: MeterProvider | None = None
) -> Kit:
    """Install soc2kit's middleware, error handlers and lifecycle on ``app``.

    Call it once, before the app serves its first request; routes may be
    declared before or after. In production, an unsafe configuration raises
    :class:`InsecureConfigurationError` listing every problem.

    ``meter_provider`` turns the security metrics on with the caller's own
    provider (its readers: Prometheus, an in-memory reader in tests); the caller
    shuts it down. Otherwise ``metrics_enabled`` builds one exporting to
    ``otlp_endpoint``.
    """
    settings = settings or Settings()
    if getattr(app.state, "soc2kit", None) is not None:
        raise ConfigurationError("soc2kit.install() was already called on this app")
    if app.middleware_stack is not None:
        raise ConfigurationError("install() must run before the app serves requests")
    if settings.is_production:
        problems = production_problems(settings, app)
        if problems:
            raise InsecureConfigurationError(problems)
    if settings.migrate_on_install:
        db.upgrade(settings.database_url)

    owned_meters = None if meter_provider is not None else _meter_provider(settings)
    kit = Kit(app, settings)
    if owned_meters is not None:
        kit._owned_meter_provider = meter_provider = owned_meters
    if meter_provider is not None:
        kit.meter_provider = meter_provider
        sealer = kit.audit.sealer
        kit._metrics = SecurityMetrics(meter_provider, sealer.engine if sealer else None)
        kit.audit.add_observer(kit._metrics)
    install_handlers(app)
    cover_mounted_apps(app)

    docs_paths = _docs_paths(app)
    # add_middleware() inserts at the front: add innermost first.
    if docs_paths and not settings.docs_active:
        app.add_middleware(DocsGateMiddleware, paths=docs_paths)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(GateMiddleware, kit=kit)  # deny-by-default on the matched route
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware,
            rate=settings.rate_limit,
            storage_url=settings.rate_limit_storage_url,
            strategy=settings.rate_limit_strategy,
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=settings.cors_allow_methods,
            allow_headers=sorted({*settings.cors_allow_headers, settings.request_id_header}),
            allow_credentials=settings.cors_allow_credentials,
            expose_headers=[settings.request_id_header],
            max_age=settings.cors_max_age,
        )
    if settings.https_required:
        app.add_middleware(HTTPSMiddleware)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    if settings.tracing_enabled:
        # Just inside the request context: refusals by the guards are traced too, and
        # the context (principal, route) is there when the span ends.
        kit.tracer_provider = build_tracer_provider(
            settings.service_name, otlp_endpoint=settings.otlp_endpoint
        )
        instrument_engine(kit.engine, kit.tracer_provider)
        kit.audit.add_observer(AuditSpanLink())  # the span carries its http.request event id
        key = settings.tracing_pseudonym_key
        app.add_middleware(
            TracingMiddleware,
            tracer_provider=kit.tracer_provider,
            exclude_paths=frozenset(settings.tracing_exclude_paths),
            enduser=settings.tracing_enduser,
            # Outside production a missing key gets a per-process one (the guard refuses it).
            pseudonym_key=key.get_secret_value().encode() if key else secrets.token_bytes(32),
            trust_traceparent=settings.tracing_trust_traceparent,
            record_path=settings.tracing_record_path,
        )
    app.add_middleware(
        RequestContextMiddleware,
        kit=kit,
        api_headers=security_headers.build(settings),
        docs_headers=security_headers.build(settings, docs=settings.docs_active),
        # The relaxed CSP is for the HTML pages only; the OpenAPI JSON keeps the strict one.
        docs_paths=docs_paths - {app.openapi_url} if settings.docs_active else frozenset(),
        request_id_header=settings.request_id_header,
        proxies=ProxyResolver(settings.trusted_proxies),
    )
    if settings.tracing_enabled:
        app.add_middleware(ServerSpanCloser)  # ends the span after the http.request event
    _wrap_lifespan(app, kit)
    app.state.soc2kit = kit
    return kit


def _meter_provider(settings: Settings) -> SdkMeterProvider | None:
    """The OTLP-exporting provider ``metrics_enabled`` asks for (None when off)."""
    if not settings.metrics_enabled:
        return None
    if not settings.otlp_endpoint:
        # Metrics nobody reads would look like quiet: refuse instead.
        raise ConfigurationError(
            "metrics_enabled needs otlp_endpoint, or a meter_provider passed to install()"
        )
    return build_meter_provider(
        settings.service_name,
        otlp_endpoint=settings.otlp_endpoint,
        export_interval_seconds=settings.metrics_export_interval_seconds,
    )


def _wrap_lifespan(app: FastAPI, kit: Kit) -> None:
    inner: Callable[[Any], Any] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        cover_mounted_apps(app)  # mounts added after install()
        kit.startup()
        try:
            async with inner(app_) as state:
                yield state
        finally:
            kit.shutdown()

    app.router.lifespan_context = lifespan
