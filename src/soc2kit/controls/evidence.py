"""Evidence gathered by introspecting a running soc2kit app, never typed in.

Each collector returns one :class:`EvidenceItem`. What is true of the code and
the configuration (routes, grants, headers, encrypted columns) goes in
``facts``; what changes from one run to the next (key ages, counts of events,
verify figures) goes in ``observed``. ``soc2kit controls --check`` compares
facts only, so a committed document goes stale when the code or configuration
changes, not when the clock moves.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import sqlalchemy as sa

from soc2kit.authn.apikeys import MAX_LIFETIME as API_KEY_MAX_LIFETIME
from soc2kit.controls.probe import ProbeResponse, call
from soc2kit.crypto.keyring import GLOBAL_SCOPE
from soc2kit.errors import ConfigurationError
from soc2kit.http import headers as security_headers

if TYPE_CHECKING:
    from soc2kit.kit import Kit


Result = Literal["pass", "warn", "fail", "not-implemented", "not-collected"]
Method = Literal["EXAMINE", "TEST"]


@dataclass(slots=True)
class EvidenceItem:
    """One piece of evidence: what was looked at, how, and what was found."""

    id: str
    title: str
    method: Method
    source: str
    """The call, query or probe that produced it (so an auditor can repeat it)."""
    result: Result
    summary: str
    details: list[tuple[str, str]] = field(default_factory=list)
    """Stable (label, value) pairs shown in the documents."""
    observations: list[tuple[str, str]] = field(default_factory=list)
    """Volatile (label, value) pairs: shown, but ignored by --check."""
    facts: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    collected: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "method": self.method,
            "source": self.source,
            "result": self.result,
            "summary": self.summary,
            "collected": self.collected,
            "facts": self.facts,
            "observed": self.observed,
        }


@dataclass(slots=True)
class Inputs:
    app: Any
    kit: Kit
    now: datetime
    junit: Path | None = None
    pip_audit: Path | None = None
    period_days: int = 90


def _age_days(moment: datetime | None, now: datetime) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0, (now - moment).days)


def _yn(value: bool) -> str:
    return "yes" if value else "no"


# routes ---------------------------------------------------------------------------------


def collect_routes(inputs: Inputs) -> EvidenceItem:
    from soc2kit.authz.inventory import build_inventory

    entries = build_inventory(inputs.app)
    rows = [
        {
            "methods": list(e.methods) or ["*"],
            "path": e.path,
            "kind": e.kind,
            "access": e.describe(),
        }
        for e in entries
    ]
    undeclared = [r for r in rows if r["access"] == "UNDECLARED"]
    public = [r for r in rows if str(r["access"]).startswith("public:")]
    protected = len(rows) - len(undeclared) - len(public)
    result: Result = "fail" if undeclared or not rows else "pass"
    details = [(f"{','.join(r['methods'])} {r['path']}", str(r["access"])) for r in rows]
    return EvidenceItem(
        id="routes",
        title="Route inventory and access declarations",
        method="EXAMINE",
        source="soc2kit.authz.inventory.build_inventory(app) (same walk as `soc2kit routes`)",
        result=result,
        summary=(
            f"{len(rows)} route(s): {protected} require a permission, {len(public)} public "
            f"with a stated reason, {len(undeclared)} undeclared"
        ),
        details=details,
        facts={"routes": rows, "undeclared": len(undeclared)},
    )


# identity -------------------------------------------------------------------------------


def collect_identity(inputs: Inputs) -> EvidenceItem:
    s = inputs.kit.settings
    if s.jwks_url:
        source = "JWKS URL"
    elif s.oidc_discovery:
        source = "OIDC discovery"
    elif s.jwks_file is not None:
        source = "JWKS file"
    elif s.jwks is not None:
        source = "inline JWKS"
    else:
        source = "generated development key (refused in production)"
    algorithms = sorted(s.jwt_algorithms)
    facts: dict[str, Any] = {
        "issuer": s.oidc_issuer,
        "audience": s.oidc_audience,
        "algorithms": algorithms,
        "signing_keys": source,
        "required_claims": ["iss", "aud", "exp", "sub"],
        # soc2kit requires an expiry but does not cap a token's lifetime: the identity
        # provider sets it. API keys are capped at creation.
        "token_lifetime": "exp required; the lifetime is the identity provider's",
        "api_key_max_lifetime_days": API_KEY_MAX_LIFETIME.days,
        "leeway_seconds": s.jwt_leeway_seconds,
        "max_token_bytes": s.jwt_max_bytes,
        "required_typ": s.require_typ,
        "roles_claim": s.roles_claim,
        "tenant_claim": s.tenant_claim,
        "api_key_pepper_configured": s.api_key_pepper is not None,
    }
    keys = inputs.kit.api_keys.list()
    live = [k for k in keys if k.revoked_at is None and k.expires_at > inputs.now]
    oldest = min((k.created_at for k in live), default=None)
    soonest = min((k.expires_at for k in live), default=None)
    longest = max(((k.expires_at - k.created_at).days for k in live), default=None)
    observed: dict[str, Any] = {
        "api_keys_active": len(live),
        "api_keys_revoked": sum(1 for k in keys if k.revoked_at is not None),
        "api_keys_expired": sum(
            1 for k in keys if k.revoked_at is None and k.expires_at <= inputs.now
        ),
        "oldest_active_key_age_days": _age_days(oldest, inputs.now),
        "next_expiry": soonest.isoformat() if soonest else None,
        "longest_key_lifetime_days": longest,
    }
    development = s.oidc_issuer is None or source.startswith("generated")
    return EvidenceItem(
        id="identity",
        title="Authentication: token verification and API keys",
        method="EXAMINE",
        source="Settings (SOC2KIT_OIDC_*, SOC2KIT_JWT_*) and kit.api_keys.list()",
        result="warn" if development else "pass",
        summary=(
            f"tokens from {s.oidc_issuer or 'the development issuer'} "
            f"(audience {s.oidc_audience or 'unset'}), algorithms "
            f"{', '.join(algorithms)}, keys from {source}; iss/aud/exp/sub required"
            + (" [development identity: production refuses it]" if development else "")
        ),
        details=[
            ("issuer", str(s.oidc_issuer or "unset (development)")),
            ("audience", str(s.oidc_audience or "unset")),
            ("allowed algorithms", ", ".join(algorithms)),
            ("signing keys", source),
            ("token lifetime", "exp required (the identity provider sets the lifetime)"),
            ("clock leeway", f"{s.jwt_leeway_seconds} s"),
            ("maximum token size", f"{s.jwt_max_bytes} bytes"),
            (
                "API keys stored",
                f"hashed (HMAC with a pepper), expiring within {API_KEY_MAX_LIFETIME.days} days",
            ),
            ("API key pepper configured", _yn(s.api_key_pepper is not None)),
        ],
        observations=[
            ("active API keys", str(observed["api_keys_active"])),
            ("oldest active API key", f"{observed['oldest_active_key_age_days']} day(s)")
            if oldest
            else ("oldest active API key", "none"),
            ("next API key expiry", str(observed["next_expiry"] or "none")),
            (
                "revoked / expired API keys",
                f"{observed['api_keys_revoked']} / {observed['api_keys_expired']}",
            ),
        ],
        facts=facts,
        observed=observed,
    )


# access ---------------------------------------------------------------------------------


def _events(
    kit: Kit, event_types: tuple[str, ...], since: datetime, limit: int = 1000
) -> list[dict[str, Any]]:
    from soc2kit.db.schema import audit_events

    query = (
        sa.select(audit_events.c.event)
        .where(audit_events.c.event_type.in_(event_types))
        .where(audit_events.c.occurred_at >= since)
        .order_by(audit_events.c.seq.desc())
        .limit(limit)
    )
    with kit.engine.connect() as conn:
        return [json.loads(row[0]) for row in conn.execute(query)]


def collect_access(inputs: Inputs) -> EvidenceItem:
    policy = inputs.kit.policy
    grants = policy.grants()
    roles = sorted({g.role for g in grants})
    conflicts = policy.conflicts()
    inheritance = policy.inheritance()
    facts = {
        "roles": roles,
        "grants": [
            {"role": g.role, "resource": g.resource, "action": g.action, "tenant": g.tenant}
            for g in grants
        ],
        "separation_of_duties": [list(pair) for pair in conflicts],
        "inheritance": [list(edge) for edge in inheritance],
        "break_glass_max_ttl_seconds": inputs.kit.settings.break_glass_max_ttl_seconds,
        "object_denied_status": inputs.kit.settings.object_denied_status,
    }
    since = inputs.now - timedelta(days=inputs.period_days)
    assignments = policy.assignments()
    break_glass = _events(inputs.kit, ("authz.break_glass.grant",), since)
    reviews = _events(inputs.kit, ("access_review.attest",), datetime(1970, 1, 1, tzinfo=UTC), 1)
    last_review = reviews[0] if reviews else None
    observed = {
        "assignments": len(assignments),
        "break_glass_assignments_active": sum(1 for a in assignments if a.source == "break_glass"),
        "period_days": inputs.period_days,
        "break_glass_grants_in_period": len(break_glass),
        "last_access_review": (
            {
                "occurred_at": last_review.get("occurred_at"),
                "attested_by": last_review.get("actor_id"),
                "reason": last_review.get("reason"),
            }
            if last_review
            else None
        ),
    }
    grant_lines = [
        (g.role, f"{g.resource}:{g.action}" + ("" if g.tenant == "*" else f" (tenant {g.tenant})"))
        for g in grants
    ]
    return EvidenceItem(
        id="access",
        title="Roles, grants, separation of duties, break-glass and reviews",
        method="EXAMINE",
        source="kit.policy.grants(), .conflicts(), .inheritance(), .assignments(); audit events "
        "authz.break_glass.grant and access_review.attest",
        result="pass" if grants else "warn",
        summary=(
            f"{len(roles)} role(s) ({', '.join(roles) or 'none'}) with {len(grants)} grant(s); "
            f"{len(conflicts)} separation-of-duties rule(s); break-glass grants expire within "
            f"{inputs.kit.settings.break_glass_max_ttl_seconds // 3600} h"
        ),
        details=[
            *[(f"grant to {role}", perm) for role, perm in grant_lines],
            *[(f"conflict {a} / {b}", "may not be held together") for a, b in conflicts],
            *[(f"{role} inherits", parent) for role, parent in inheritance],
            ("denied object answers", str(inputs.kit.settings.object_denied_status)),
        ],
        observations=[
            ("role assignments in soc2kit's store", str(len(assignments))),
            (f"break-glass grants in the last {inputs.period_days} days", str(len(break_glass))),
            (
                "last access review attestation",
                f"{last_review.get('occurred_at')} by {last_review.get('actor_id')}"
                if last_review
                else "none recorded",
            ),
        ],
        facts=facts,
        observed=observed,
    )


# HTTP -----------------------------------------------------------------------------------


def _probe_host(kit: Kit) -> str:
    for host in kit.settings.allowed_hosts:
        if "*" not in host:
            return host
    return "localhost"


async def collect_http(inputs: Inputs) -> EvidenceItem:
    s = inputs.kit.settings
    host = _probe_host(inputs.kit)
    probes: list[dict[str, Any]] = []
    problems: list[str] = []

    async def probe(
        name: str, method: str, path: str, expect: Callable[[ProbeResponse], bool], **kw: Any
    ) -> ProbeResponse:
        response = await call(inputs.app, method, path, **{"host": host, **kw})
        ok = expect(response)
        probes.append(
            {
                "probe": name,
                "request": f"{method} {kw.get('scheme', 'https')}://{kw.get('host', host)}{path}",
                "status": response.status,
                "as_expected": ok,
            }
        )
        if not ok:
            problems.append(f"{name}: answered {response.status}")
        return response

    missing_path = "/soc2kit-evidence-probe-missing"
    error = await probe("unknown route", "GET", missing_path, lambda r: r.status in (403, 404))
    # What this configuration should send (defaults plus overrides) against what came back.
    expected = {name.decode("latin-1") for name, _ in security_headers.build(s)}
    removed = sorted(
        k.lower() for k in security_headers.default_headers(s) if k.lower() not in expected
    )
    headers = {k: v for k, v in error.headers.items() if k in expected}
    missing = sorted(expected - set(headers))
    if missing:
        problems.append(f"missing security headers: {', '.join(missing)}")
    try:
        body_keys = sorted(json.loads(error.body))
    except ValueError:
        body_keys = []
    if body_keys != ["error", "request_id"]:
        problems.append("error body is not the sanitised {error, request_id} shape")
    await probe(
        "foreign Host header",
        "GET",
        missing_path,
        lambda r: r.status == 400,
        host="probe.invalid",
    )
    if s.https_required:
        await probe("plain HTTP GET", "GET", missing_path, lambda r: r.status == 308, scheme="http")
        await probe(
            "plain HTTP POST", "POST", missing_path, lambda r: r.status == 403, scheme="http"
        )
    await probe(
        "CORS preflight from a foreign origin",
        "OPTIONS",
        missing_path,
        lambda r: "access-control-allow-origin" not in r.headers,
        headers={"origin": "https://probe.invalid", "access-control-request-method": "POST"},
    )
    await probe(
        "oversized request body",
        "POST",
        missing_path,
        lambda r: r.status in (413, 404, 403),
        body=b"x" * (s.max_body_bytes + 1),
    )
    docs = await probe(
        "API docs",
        "GET",
        inputs.app.docs_url or "/docs",
        lambda r: (r.status == 200) == s.docs_active or not inputs.app.docs_url,
    )
    facts = {
        "probe_host": host,
        "security_headers": dict(sorted(headers.items())),
        "default_headers_removed_by_configuration": removed,
        "error_body_fields": body_keys,
        "https_enforced": s.https_required,
        "hsts_max_age": s.hsts_max_age if s.https_required else None,
        "allowed_hosts": list(s.allowed_hosts),
        "cors_origins": list(s.cors_origins),
        "cors_allow_credentials": s.cors_allow_credentials,
        "max_body_bytes": s.max_body_bytes,
        "rate_limit": s.rate_limit if s.rate_limit_enabled else None,
        "rate_limit_storage": s.rate_limit_storage_url.split(":", 1)[0],
        "trusted_proxies": list(s.trusted_proxies),
        "docs_served": s.docs_active,
        "docs_status": docs.status,
        "probes": probes,
        "problems": problems,
    }
    if problems:
        result: Result = "fail"
    elif not s.https_required:
        result = "warn"
    else:
        result = "pass"
    details: list[tuple[str, str]] = [
        *[(name, value) for name, value in sorted(headers.items())],
        *[(name, "REMOVED by SOC2KIT_SECURITY_HEADERS") for name in removed],
        ("HTTPS enforced", _yn(s.https_required)),
        ("allowed hosts", ", ".join(s.allowed_hosts)),
        ("CORS origins", ", ".join(s.cors_origins) or "none (no cross-origin access)"),
        ("request body limit", f"{s.max_body_bytes} bytes"),
        ("rate limit", f"{s.rate_limit} per client" if s.rate_limit_enabled else "off"),
        ("API docs served", _yn(s.docs_active)),
        *[
            (
                f"probe: {p['probe']}",
                f"{p['status']}" + ("" if p["as_expected"] else " (UNEXPECTED)"),
            )
            for p in probes
        ],
    ]
    return EvidenceItem(
        id="http",
        title="Boundary protections probed in-process",
        method="TEST",
        source=f"in-process ASGI requests to the app (Host {host}): unknown route, foreign "
        "Host, plain HTTP, foreign-origin CORS preflight, oversized body, docs",
        result=result,
        summary=(
            f"{len(probes)} probe(s), {len(problems)} problem(s); {len(headers)} security "
            "headers on error responses; HTTPS "
            + ("enforced" if s.https_required else "NOT enforced")
        ),
        details=details,
        facts=facts,
    )


# configuration --------------------------------------------------------------------------


def collect_configuration(inputs: Inputs) -> EvidenceItem:
    from soc2kit.settings import production_problems

    s = inputs.kit.settings
    problems = production_problems(s, inputs.app)
    if not problems:
        result: Result = "pass"
    else:
        result = "fail" if s.is_production else "warn"
    return EvidenceItem(
        id="configuration",
        title="Production configuration guard verdict",
        method="TEST",
        source="soc2kit.production_problems(settings, app) (same checks as `soc2kit check`)",
        result=result,
        summary=(
            f"environment {s.environment}: "
            + (
                "the configuration passes the production guard"
                if not problems
                else f"{len(problems)} problem(s) the production guard would refuse"
            )
        ),
        details=[("environment", s.environment)] + [("problem", p) for p in problems],
        facts={"environment": s.environment, "problems": problems},
    )


# encryption -----------------------------------------------------------------------------


def _encrypted_columns() -> list[tuple[Any, list[dict[str, Any]]]]:
    from soc2kit.crypto.orm import _spec, encrypted_mappers

    found = []
    for mapper in sorted(encrypted_mappers(), key=lambda m: m.class_.__qualname__):
        spec = _spec(mapper)
        if spec is None:
            continue
        blind = {b.source: b for b in spec.blind}
        columns = []
        for e in spec.encrypted:
            index = blind.get(e.key)
            columns.append(
                {
                    "model": mapper.class_.__name__,
                    "table": mapper.local_table.name,  # type: ignore[attr-defined]
                    "attribute": e.key,
                    "column": e.column,
                    "type": type(e.type.type_).__name__,
                    "algorithm": "AES-256-GCM, bound to tenant/table/column/row",
                    "key_scope": e.type.key_scope or "global",
                    "storage": e.type.storage,
                    "blind_index": (
                        f"{index.key} (HMAC-SHA256, {index.type.length} bytes)" if index else None
                    ),
                    "plaintext_window_until": (
                        e.type.allow_plaintext_until.isoformat()
                        if e.type.allow_plaintext_until
                        else None
                    ),
                }
            )
        found.append((mapper.class_, columns))
    return found


def collect_encryption(inputs: Inputs) -> tuple[EvidenceItem, EvidenceItem]:
    kit = inputs.kit
    models = _encrypted_columns()
    columns = [c for _, cols in models for c in cols]
    describe = kit.keys.describe()
    keys = kit.keys.list_keys()
    key_rows = [
        {
            "key_id": k.hex_id,
            "purpose": k.purpose,
            "scope": "service",
            "state": str(k.state.value if hasattr(k.state, "value") else k.state),
            "age_days": _age_days(k.created_at, inputs.now),
            "encryptions": k.encryptions,
        }
        for k in keys
        if k.scope == GLOBAL_SCOPE  # per-subject keys are counted, never listed by subject
    ]
    status_rows: list[dict[str, Any]] = []
    for model, _ in models:
        try:
            for st in kit.encryption.status(model):
                status_rows.append(
                    {
                        "column": f"{st.model}.{st.attribute}",
                        "rows_by_key": st.rows_by_key,
                        "rows_on_inactive_keys": st.on_inactive_keys,
                        "plaintext_rows": st.plaintext,
                        "stale_blind_index": st.stale_blind_index,
                    }
                )
        except sa.exc.SQLAlchemyError as exc:
            status_rows.append({"column": model.__name__, "error": type(exc).__name__})
    observed = {
        "kek": describe.get("kek"),
        "keys": key_rows,
        "subject_keys": sum(1 for k in keys if k.scope != GLOBAL_SCOPE),
        "columns": status_rows,
    }
    # The KEK reference changes on rotation (and per machine in development): observed.
    provider = {k: v for k, v in describe.items() if k != "kek"}
    facts: dict[str, Any] = {
        "kek_provider": provider,
        "columns": columns,
        "max_encryptions_per_key": kit.settings.encryption_max_encryptions_per_key,
        "key_max_age_days": kit.settings.encryption_key_max_age_days,
    }
    old = sum(int(r.get("rows_on_inactive_keys", 0)) for r in status_rows)
    plain = sum(int(r.get("plaintext_rows", 0)) for r in status_rows)
    details = [
        (
            f"{c['model']}.{c['attribute']}",
            f"{c['type']} in {c['table']}.{c['column']}, key scope {c['key_scope']}"
            + (f", blind index {c['blind_index']}" if c["blind_index"] else ""),
        )
        for c in columns
    ]
    details += [(f"KEK provider: {k}", str(v)) for k, v in sorted(provider.items())]
    details.append(
        (
            "rotation",
            f"data keys roll over after {kit.settings.encryption_max_encryptions_per_key} "
            f"encryptions or {kit.settings.encryption_key_max_age_days} days",
        )
    )
    observations = [
        (f"key {k['key_id']} ({k['purpose']}, {k['state']})", f"{k['age_days']} day(s) old")
        for k in key_rows
    ]
    observations += [
        ("key-encryption key", str(describe.get("kek"))),
        ("subject keys (crypto-shredding scopes)", str(observed["subject_keys"])),
        ("values on keys no longer active", str(old)),
        ("values still stored as plaintext", str(plain)),
    ]
    encryption = EvidenceItem(
        id="encryption",
        title="Field-level encryption and keys",
        method="EXAMINE",
        source="SQLAlchemy mappers with Encrypted columns; kit.keys.list_keys(); "
        "kit.encryption.status(model) for each model",
        result="pass" if columns else "not-implemented",
        summary=(
            f"{len(columns)} encrypted column(s) in {len(models)} model(s); keys wrapped by "
            f"{describe.get('provider', 'the KEK provider')}"
            if columns
            else "no encrypted column is declared in this application"
        ),
        details=details,
        observations=observations,
        facts=facts,
        observed=observed,
    )
    scoped = [c for c in columns if c["key_scope"] != "global"]
    shredding = EvidenceItem(
        id="encryption-shredding",
        title="Crypto-shredding by subject key",
        method="EXAMINE",
        source="Encrypted(key_scope=...) columns; `soc2kit keys destroy --subject`",
        result="pass" if scoped else "not-implemented",
        summary=(
            f"{len(scoped)} column(s) encrypted under per-subject keys "
            f"({', '.join(str(c['model']) + '.' + str(c['attribute']) for c in scoped)})"
            if scoped
            else "no column uses a per-subject key scope"
        ),
        details=[(f"{c['model']}.{c['attribute']}", f"scope {c['key_scope']}") for c in scoped],
        observations=[("subject keys", str(observed["subject_keys"]))] if scoped else [],
        facts={"columns": [f"{c['model']}.{c['attribute']}" for c in scoped]},
        observed={"subject_keys": observed["subject_keys"]} if scoped else {},
    )
    return encryption, shredding


# audit ----------------------------------------------------------------------------------


def collect_audit_capture(inputs: Inputs) -> EvidenceItem:
    s = inputs.kit.settings
    facts: dict[str, str | int | bool] = {
        "store": "soc2kit_audit_inbox -> soc2kit_audit_events (same database as the app)",
        "critical": "every write, every authentication/authorization failure, admin, key, "
        "policy and export event: written in the business transaction or before the "
        "response; the request fails with 503 when it cannot be written",
        "informational": "successful reads: buffered, bounded queue with back-pressure",
        "queue_size": s.audit_queue_size,
        "orm_changes": "insert/update/delete with per-field diffs; bulk update/delete",
        "client_ip": s.audit_client_ip,
        "max_field_chars": s.audit_max_field_chars,
        "json_log_lines": s.audit_log_events,
    }
    since = inputs.now - timedelta(days=inputs.period_days)
    from soc2kit.db.schema import audit_events

    with inputs.kit.engine.connect() as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                sa.select(audit_events.c.outcome, sa.func.count())
                .where(audit_events.c.occurred_at >= since)
                .group_by(audit_events.c.outcome)
            ).all()
        )
    return EvidenceItem(
        id="audit-capture",
        title="Audit capture and durability classes",
        method="EXAMINE",
        source="Settings (SOC2KIT_AUDIT_*); event counts from soc2kit_audit_events",
        result="pass",
        summary="critical events are transactional and fail closed; reads are buffered "
        f"(queue {s.audit_queue_size}); client IPs stored {s.audit_client_ip}",
        details=[
            ("critical", str(facts["critical"])),
            ("informational", str(facts["informational"])),
            ("ORM changes", str(facts["orm_changes"])),
            ("client IP policy", s.audit_client_ip),
            ("JSON log line per event", _yn(s.audit_log_events)),
        ],
        observations=[
            (f"events in the last {inputs.period_days} days ({k})", str(v))
            for k, v in sorted(counts.items())
        ],
        facts=facts,
        observed={"events_by_outcome": {str(k): int(v) for k, v in counts.items()}},
    )


def collect_audit_integrity(inputs: Inputs) -> EvidenceItem:
    kit = inputs.kit
    s = kit.settings
    sealer = kit.audit.sealer
    if sealer is None:
        return EvidenceItem(
            id="audit-integrity",
            title="Tamper-evident audit log",
            method="TEST",
            source="kit.audit.verify()",
            result="not-implemented",
            summary="this app's audit trail has no sealed log",
        )
    kit.audit.flush()
    report = kit.audit.verify()
    anchor = sealer.anchor
    anchor_kind = type(anchor).__name__ if anchor is not None else "none"
    with kit.engine.connect() as conn:
        latest = sealer.latest_checkpoint(conn)
    facts = {
        "origin": sealer.origin,
        "tree": "RFC 9162 Merkle tree over canonical JSON events",
        "signature": "Ed25519 signed notes (C2SP)",
        "anchor": anchor_kind,
        "seal_interval_seconds": s.audit_seal_interval_seconds,
        "checkpoint_interval_seconds": s.audit_checkpoint_interval_seconds,
        "checkpoint_every_events": s.audit_checkpoint_every,
        "heartbeat_seconds": s.audit_heartbeat_seconds,
        "max_checkpoint_age_seconds": s.audit_max_checkpoint_age_seconds,
        "append_only": "database triggers refuse UPDATE/DELETE on sealed tables",
        "verify_status": report.status,
    }
    observed = {
        "verify": report.to_dict(),
        "public_key": sealer.signer.vkey,
        "latest_checkpoint": (
            {
                "size": latest.size,
                "root": latest.root.hex(),
                "timestamp": datetime.fromtimestamp(latest.timestamp, UTC).isoformat(),
            }
            if latest is not None
            else None
        ),
    }
    results: dict[str, Result] = {"pass": "pass", "fail": "fail", "incomplete": "warn"}
    result = results[report.status]
    return EvidenceItem(
        id="audit-integrity",
        title="Tamper-evident audit log: verify result",
        method="TEST",
        source="kit.audit.flush(); kit.audit.verify() (same as `soc2kit audit verify`)",
        result=result,
        summary=(
            f"verify {report.status}; sealed every {s.audit_seal_interval_seconds} s, signed "
            f"checkpoints every {s.audit_checkpoint_interval_seconds} s or "
            f"{s.audit_checkpoint_every} events, anchored in {anchor_kind}"
        ),
        details=[
            ("log origin", sealer.origin),
            ("anchor store", anchor_kind),
            ("seal interval", f"{s.audit_seal_interval_seconds} s"),
            (
                "checkpoint interval",
                f"{s.audit_checkpoint_interval_seconds} s or "
                f"{s.audit_checkpoint_every} events; heartbeat {s.audit_heartbeat_seconds} s",
            ),
            ("stale after", f"{s.audit_max_checkpoint_age_seconds} s"),
            ("verify result", report.status),
        ],
        observations=[
            ("events checked", str(report.checked)),
            ("first failing seq", str(report.first_failure) if report.first_failure else "none"),
            (
                "latest checkpoint",
                f"size {latest.size}, root {latest.root.hex()[:16]}..." if latest else "none",
            ),
            ("verifier key", sealer.signer.vkey),
        ],
        facts=facts,
        observed=observed,
    )


# monitoring -----------------------------------------------------------------------------


def collect_monitoring(inputs: Inputs, routes: EvidenceItem) -> EvidenceItem:
    s = inputs.kit.settings
    paths = {r["path"] for r in routes.facts["routes"]}
    probes = sorted(p for p in ("/healthz", "/readyz") if p in paths)
    checks = sorted(inputs.kit.readiness())
    otlp = None
    if s.otlp_endpoint:  # scheme and host only: a URL may carry credentials or a token
        url = urlsplit(s.otlp_endpoint)
        otlp = f"{url.scheme}://{url.hostname}" + (f":{url.port}" if url.port else "")
    facts = {
        "health_routes": probes,
        "readiness_checks": checks,
        "tracing_enabled": s.tracing_enabled,
        "otlp_endpoint": otlp,
        "enduser": s.tracing_enduser,
        "excluded_paths": list(s.tracing_exclude_paths),
        "record_path": s.tracing_record_path,
        "audit_log_lines": s.audit_log_events,
    }
    return EvidenceItem(
        id="monitoring",
        title="Health, readiness, tracing and logs",
        method="EXAMINE",
        source="route inventory; kit.readiness(); Settings (SOC2KIT_TRACING_*, SOC2KIT_OTLP_*)",
        result="pass" if len(probes) == 2 else "warn",
        summary=(
            f"probes {', '.join(probes) or 'not mounted'}; readiness checks "
            f"{', '.join(checks)}; tracing {'on' if s.tracing_enabled else 'off'}"
        ),
        details=[
            ("health routes", ", ".join(probes) or "not mounted (include kit.health_router())"),
            ("readiness checks", ", ".join(checks)),
            ("tracing", "on" if s.tracing_enabled else "off"),
            ("OTLP export", otlp or "none"),
            ("end-user attribute", s.tracing_enduser),
            ("URL path recorded", _yn(s.tracing_record_path)),
            ("JSON audit log lines (logger soc2kit.audit)", _yn(s.audit_log_events)),
        ],
        facts=facts,
    )


# schemas --------------------------------------------------------------------------------


def collect_schemas(inputs: Inputs) -> EvidenceItem:
    spec = inputs.app.openapi()
    operations = 0
    with_body = typed_body = typed_response = 0
    for item in spec.get("paths", {}).values():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            operations += 1
            body = op.get("requestBody")
            if body is not None:
                with_body += 1
                content = body.get("content", {})
                if any(c.get("schema") for c in content.values()):
                    typed_body += 1
            responses = op.get("responses", {})
            ok = [v for k, v in responses.items() if str(k).startswith("2")]
            if any(
                c.get("schema") not in (None, {}) for r in ok for c in r.get("content", {}).values()
            ) or any(str(k) == "204" for k in responses):
                typed_response += 1
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(canonical).hexdigest()
    facts = {
        "openapi_version": spec.get("openapi"),
        "operations": operations,
        "request_bodies": with_body,
        "typed_request_bodies": typed_body,
        "typed_responses": typed_response,
        "openapi_sha256": digest,
        "invalid_input": "422 {error, request_id} without echoing the input",
    }
    return EvidenceItem(
        id="schemas",
        title="Input validation and published schemas",
        method="EXAMINE",
        source="app.openapi() (FastAPI); canonical JSON SHA-256",
        result="pass" if typed_body == with_body else "warn",
        summary=(
            f"{operations} operation(s); {typed_body}/{with_body} request bodies and "
            f"{typed_response}/{operations} responses have a schema"
        ),
        details=[
            ("operations", str(operations)),
            ("request bodies with a schema", f"{typed_body}/{with_body}"),
            ("responses with a schema", f"{typed_response}/{operations}"),
            ("invalid input", facts["invalid_input"]),
            ("OpenAPI document SHA-256", digest),
        ],
        facts=facts,
    )


# migrations -----------------------------------------------------------------------------


def collect_migrations(inputs: Inputs) -> EvidenceItem:
    from soc2kit import db

    head = db.head_revision()
    current = db.current_revision(inputs.kit.engine)
    return EvidenceItem(
        id="migrations",
        title="soc2kit's tables at the migration head",
        method="TEST",
        source="alembic current vs head for soc2kit's migrations (`soc2kit db upgrade`)",
        result="pass" if current == head else "fail",
        summary=f"head revision {head}; database at {current or 'none'}",
        details=[("expected revision", str(head)), ("database revision", str(current))],
        facts={"head": head, "current": current},
    )


# tests and dependency scan (attached files) --------------------------------------------


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def collect_tests(inputs: Inputs) -> EvidenceItem:
    path = inputs.junit
    if path is None:
        return EvidenceItem(
            id="tests",
            title="Automated test results",
            method="TEST",
            source="--junit FILE (not given)",
            result="not-collected",
            summary="no test results attached (pass --junit FILE from pytest --junitxml)",
        )
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - the caller's own pytest output
    except (ET.ParseError, OSError) as exc:
        raise ConfigurationError(f"--junit {path} is not a JUnit XML file ({exc})") from None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, "0") or 0)
    failed = totals["failures"] + totals["errors"]
    digest = _sha256_file(path)
    return EvidenceItem(
        id="tests",
        title="Automated test results",
        method="TEST",
        source=f"JUnit XML {path.name} (sha256 {digest[:16]}...)",
        result="fail" if failed or not totals["tests"] else "pass",
        summary="test results attached",
        observations=[(k, str(v)) for k, v in totals.items()],
        facts={"attached": True},
        observed={**totals, "sha256": digest},
    )


def collect_dependency_scan(inputs: Inputs) -> EvidenceItem:
    path = inputs.pip_audit
    if path is None:
        return EvidenceItem(
            id="dependency-scan",
            title="Dependency vulnerability scan",
            method="TEST",
            source="--pip-audit FILE (not given)",
            result="not-collected",
            summary="no scan attached (pass --pip-audit FILE from pip-audit --format json)",
        )
    try:
        data = json.loads(path.read_text("utf-8"))
    except (ValueError, OSError) as exc:
        raise ConfigurationError(f"--pip-audit {path} is not pip-audit JSON ({exc})") from None
    # `pip-audit --format json` writes {"dependencies": [...]}; older versions a bare list.
    deps = data.get("dependencies") if isinstance(data, dict) else data
    if not isinstance(deps, list) or not all(isinstance(d, dict) for d in deps):
        raise ConfigurationError(f"--pip-audit {path} is not pip-audit JSON (no dependency list)")
    digest = _sha256_file(path)
    findings = [
        {
            "package": d.get("name"),
            "version": d.get("version"),
            "id": v.get("id"),
            "fix_versions": v.get("fix_versions", []),
        }
        for d in deps
        for v in d.get("vulns", [])
    ]
    return EvidenceItem(
        id="dependency-scan",
        title="Dependency vulnerability scan",
        method="TEST",
        source=f"pip-audit JSON {path.name} (sha256 {digest[:16]}...)",
        result="fail" if findings else "pass",
        summary="pip-audit results attached",
        observations=[
            ("dependencies scanned", str(len(deps))),
            ("known vulnerabilities", str(len(findings))),
        ]
        + [(f"{f['package']} {f['version']}", str(f["id"])) for f in findings],
        facts={"attached": True},
        observed={
            "dependencies": len(deps),
            "vulnerabilities": findings,
            "sha256": digest,
        },
    )


# inventory ------------------------------------------------------------------------------


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and len(text) >= 40 else None


def collect_inventory(
    inputs: Inputs, routes: EvidenceItem, encryption: EvidenceItem
) -> EvidenceItem:
    from soc2kit import db

    s = inputs.kit.settings
    backend = db.normalize_url(s.database_url).get_backend_name()
    distributions = sorted(
        {
            f"{d.metadata['Name']}=={d.version}"
            for d in metadata.distributions()
            if d.metadata["Name"]
        },
        key=str.lower,
    )
    facts = {
        "service": s.service_name,
        "database": backend,
        "routes": len(routes.facts["routes"]),
        "encrypted_columns": len(encryption.facts.get("columns", [])),
        "documents": "controls.md, controls.html, component-definition.json, catalog.json, "
        "evidence/, manifest.json",
    }
    return EvidenceItem(
        id="inventory",
        title="System inventory",
        method="EXAMINE",
        source="introspection of the app and its settings; importlib.metadata.distributions()",
        result="pass",
        summary=(
            f"service {s.service_name} on {backend}: {facts['routes']} route(s), "
            f"{facts['encrypted_columns']} encrypted column(s)"
        ),
        details=[
            ("service", s.service_name),
            ("database", backend),
            ("routes", str(facts["routes"])),
            ("encrypted columns", str(facts["encrypted_columns"])),
        ],
        observations=[
            ("Python", platform.python_version()),
            ("installed distributions", str(len(distributions))),
        ],
        facts=facts,
        observed={"python": platform.python_version(), "distributions": distributions},
    )


async def collect_all(inputs: Inputs) -> list[EvidenceItem]:
    """Every evidence item, in document order (run inside the app's lifespan)."""
    stamp = inputs.now.isoformat()
    routes = collect_routes(inputs)
    encryption, shredding = collect_encryption(inputs)
    items = [
        routes,
        collect_identity(inputs),
        collect_access(inputs),
        await collect_http(inputs),
        collect_configuration(inputs),
        encryption,
        shredding,
        collect_audit_capture(inputs),
        collect_monitoring(inputs, routes),
        collect_schemas(inputs),
        collect_migrations(inputs),
        collect_tests(inputs),
        collect_dependency_scan(inputs),
        collect_inventory(inputs, routes, encryption),
    ]
    # Last: the probes above are audit events too, and verify must cover them.
    items.insert(8, collect_audit_integrity(inputs))
    for item in items:
        item.collected = stamp
    return items
