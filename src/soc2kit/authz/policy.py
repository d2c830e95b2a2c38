"""``kit.policy``: the access policy, its administration and its decisions.

Grants (role -> permission per tenant), assignments (subject -> role per
tenant, optionally expiring), role inheritance, separation-of-duties conflicts,
break-glass grants and principal revocations live in SQL. Every change commits
together with its audit event and a new policy revision; decisions come from a
compiled in-memory index (see index.py) that follows the revision: this
process's changes apply at once, other replicas' through PostgreSQL
LISTEN/NOTIFY (a hint) and a periodic revision poll (the truth).
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from soc2kit.authn.principal import Principal
from soc2kit.authz import store
from soc2kit.authz.index import Assignment, CompiledPolicy, Decision, Grant
from soc2kit.authz.model import ROLE_PREFIX, SUBJECT_PREFIX, WILDCARD, check_name
from soc2kit.context import current_request
from soc2kit.db.schema import (
    policy_grants,
    revoked_principals,
    role_assignments,
    role_inheritance,
    sod_conflicts,
)
from soc2kit.errors import PolicyError, PolicyUnavailableError, SegregationOfDutiesError
from soc2kit.settings import Settings

if TYPE_CHECKING:
    from soc2kit.audit.trail import AuditTrail

log = logging.getLogger("soc2kit.authz")

Actor = Principal | str | None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a decision came out as it did (for administrators and logs, never clients)."""

    allowed: bool
    subject: str
    resource: str
    action: str
    tenant: str
    reason: str
    role: str | None = None
    via: str | None = None
    source: str | None = None
    grant_tenant: str | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class ReviewRow:
    """One line of an access review: a subject holding a role, and how."""

    subject: str
    role: str
    tenant: str
    source: str  # "token", "store", "break_glass" or "api_key"
    granted_by: str | None
    approved_by: str | None
    reason: str | None
    granted_at: datetime | None
    expires_at: datetime | None
    last_seen_at: datetime | None
    revoked: bool = False


class Policy:
    """Grants, assignments and decisions. See the module docstring."""

    def __init__(self, engine: Engine, audit: AuditTrail, settings: Settings) -> None:
        self._engine = engine
        self._audit = audit
        self._settings = settings
        self._compiled: CompiledPolicy | None = None
        self._confirmed_at = time.monotonic()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, float] = {}
        self._expired_noted: set[tuple[str, str, str]] = set()

    @property
    def _index(self) -> CompiledPolicy:
        # Loaded on first use, not at install(): `soc2kit check` must be able to
        # import a production app whose database is not reachable from CI.
        compiled = self._compiled
        if compiled is None:
            with self._refresh_lock:
                if self._compiled is None:
                    self._compiled = CompiledPolicy(store.load_snapshot(self._engine))
                    self._confirmed_at = time.monotonic()
                compiled = self._compiled
        return compiled

    # decisions ------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._index.revision

    def check(
        self, principal: Principal, resource: str, action: str, tenant: str | None = None
    ) -> Decision:
        """The decision for ``principal`` (raises PolicyUnavailableError when stale)."""
        self._ensure_fresh()
        if principal.subject in self._index.revoked:
            return Decision(False, reason="principal revoked")
        requested = tenant if tenant is not None else (principal.tenant or WILDCARD)
        carried = principal.token_roles if principal.token_roles is not None else principal.roles
        return self._index.decide(
            principal.subject, carried, requested, resource, action, store.utcnow()
        )

    def allowed(
        self, principal: Principal, resource: str, action: str, tenant: str | None = None
    ) -> bool:
        return self.check(principal, resource, action, tenant).allowed

    def is_revoked(self, subject: str) -> bool:
        return subject in self._index.revoked

    def roles_for(self, subject: str, tenant: str = WILDCARD) -> frozenset[str]:
        """Live roles assigned to ``subject`` in soc2kit's store (break-glass included)."""
        return frozenset(self._index.subject_roles(subject, tenant, store.utcnow()))

    def grants(self) -> list[Grant]:
        return sorted(self._index.grants(), key=lambda g: (g.role, g.resource, g.action, g.tenant))

    def conflicts(self) -> list[tuple[str, str]]:
        """Declared separation-of-duties conflicts, as sorted role pairs."""
        return sorted(self._index.conflicts)

    def inheritance(self) -> list[tuple[str, str]]:
        """(role, parent) edges: ``role`` has every permission of ``parent``."""
        return self._index.inheritance()

    def assignments(self, subject: str | None = None) -> list[Assignment]:
        items = self._index.assignments(subject) if subject else self._index.all_assignments()
        return sorted(items, key=lambda a: (a.subject, a.role, a.tenant, a.source))

    def explain(
        self,
        subject: str,
        resource: str,
        action: str,
        tenant: str = WILDCARD,
        roles: frozenset[str] | set[str] | tuple[str, ...] = (),
    ) -> Explanation:
        """Which rule allowed the request, or why it was denied."""
        principal = Principal(
            subject=subject,
            issuer="explain",
            token_roles=frozenset(roles),
            tenant=None if tenant == WILDCARD else tenant,
        )
        d = self.check(principal, resource, action, tenant)
        return Explanation(
            d.allowed,
            subject,
            resource,
            action,
            tenant,
            d.reason,
            d.role,
            d.via,
            d.source,
            d.grant_tenant,
            self.revision,
        )

    # administration -----------------------------------------------------------
    def grant(
        self,
        role: str,
        resource: str,
        action: str,
        tenant: str = WILDCARD,
        *,
        actor: Actor = None,
        reason: str | None = None,
    ) -> bool:
        """Allow ``role`` to perform ``action`` on ``resource`` in ``tenant``. True when new."""
        g, row = _grant(role, resource, action, tenant)
        with self._change() as conn:
            if conn.execute(sa.select(policy_grants.c.id).filter_by(**row)).first():
                return False
            conn.execute(
                sa.insert(policy_grants).values(
                    **row,
                    created_at=store.utcnow(),
                    created_by=self._actor_id(actor),
                    reason=reason,
                )
            )
            revision = self._record(
                conn,
                "authz.policy.grant",
                "grant",
                actor,
                "permission",
                f"{g.resource}:{g.action}",
                reason,
                {"grant": {"old": None, "new": row}},
            )
        self._index.add_grant(g)
        self._advance(revision)
        return True

    def revoke(
        self,
        role: str,
        resource: str,
        action: str,
        tenant: str = WILDCARD,
        *,
        actor: Actor = None,
        reason: str | None = None,
    ) -> bool:
        g, row = _grant(role, resource, action, tenant)
        with self._change() as conn:
            if not conn.execute(sa.delete(policy_grants).filter_by(**row)).rowcount:
                return False
            revision = self._record(
                conn,
                "authz.policy.revoke",
                "revoke",
                actor,
                "permission",
                f"{g.resource}:{g.action}",
                reason,
                {"grant": {"old": row, "new": None}},
            )
        self._index.remove_grant(g)
        self._advance(revision)
        return True

    def assign(
        self,
        subject: str,
        role: str,
        tenant: str = WILDCARD,
        expires_at: datetime | None = None,
        *,
        reason: str | None = None,
        approved_by: str | None = None,
        actor: Actor = None,
    ) -> bool:
        """Give ``subject`` (a token's ``sub``) ``role`` in ``tenant``. True when new.

        Refused with SegregationOfDutiesError (and audited) when the subject
        would hold two conflicting roles.
        """
        a = Assignment(
            check_name(subject, "subject"),
            check_name(role, "role"),
            check_name(tenant, "tenant", tenant=True),
            "store",
            _future(expires_at),
            self._actor_id(actor),
            approved_by,
            reason,
        )
        return self._put_assignment(a, actor, "authz.role.assign", "assign")

    def unassign(
        self,
        subject: str,
        role: str,
        tenant: str = WILDCARD,
        *,
        actor: Actor = None,
        reason: str | None = None,
    ) -> bool:
        return self._drop_assignment(
            subject, role, tenant, "store", actor, reason, "authz.role.unassign", "unassign"
        )

    def inherit(
        self, role: str, parent: str, *, actor: Actor = None, reason: str | None = None
    ) -> bool:
        """Make ``role`` include every permission of ``parent`` (cycles are refused)."""
        check_name(role, "role"), check_name(parent, "role")
        if self._index.would_cycle(role, parent):
            raise PolicyError(f"role {role!r} inheriting from {parent!r} would form a cycle")
        for a in self._index.all_assignments():
            conflict = self._violation(a.subject, a.tenant, extra=None, edge=(role, parent))
            if conflict:
                self._audit.record(
                    "authz.role.inherit",
                    action="inherit",
                    outcome="denied",
                    actor=self._actor(actor),
                    resource_type="role",
                    resource_id=role,
                    reason=f"separation of duties: "
                    f"{a.subject} would hold {conflict[0]} and {conflict[1]}",
                    parent=parent,
                )
                raise SegregationOfDutiesError(
                    f"{a.subject!r} would hold conflicting roles {conflict[0]!r} and "
                    f"{conflict[1]!r} through {role!r} -> {parent!r}"
                )
        with self._change() as conn:
            row = {"role": role, "parent": parent}
            if conn.execute(sa.select(role_inheritance.c.id).filter_by(**row)).first():
                return False
            conn.execute(
                sa.insert(role_inheritance).values(
                    **row, created_at=store.utcnow(), created_by=self._actor_id(actor)
                )
            )
            revision = self._record(
                conn,
                "authz.role.inherit",
                "inherit",
                actor,
                "role",
                role,
                reason,
                {
                    "parents": {
                        "old": sorted(self._index.ancestors(role) - {role}),
                        "new": sorted(self._index.ancestors(role) - {role} | {parent}),
                    }
                },
            )
        self._index.set_inheritance(role, parent, present=True)
        self._advance(revision)
        return True

    def disinherit(
        self, role: str, parent: str, *, actor: Actor = None, reason: str | None = None
    ) -> bool:
        with self._change() as conn:
            deleted = conn.execute(
                sa.delete(role_inheritance).filter_by(role=role, parent=parent)
            ).rowcount
            if not deleted:
                return False
            revision = self._record(
                conn,
                "authz.role.disinherit",
                "disinherit",
                actor,
                "role",
                role,
                reason,
                {"parent": {"old": parent, "new": None}},
            )
        self._index.set_inheritance(role, parent, present=False)
        self._advance(revision)
        return True

    def declare_conflict(
        self, role_a: str, role_b: str, *, actor: Actor = None, reason: str | None = None
    ) -> list[str]:
        """Forbid any subject from holding both roles. Returns subjects already holding both."""
        check_name(role_a, "role"), check_name(role_b, "role")
        if role_a == role_b:
            raise PolicyError("a role cannot conflict with itself")
        a, b = sorted((role_a, role_b))
        violators = sorted(
            {
                x.subject
                for x in self._index.all_assignments()
                if self._violation(x.subject, x.tenant, extra=None, pairs={(a, b)})
            }
        )
        with self._change() as conn:
            if conn.execute(sa.select(sod_conflicts.c.id).filter_by(role_a=a, role_b=b)).first():
                return violators
            conn.execute(
                sa.insert(sod_conflicts).values(
                    role_a=a,
                    role_b=b,
                    created_at=store.utcnow(),
                    created_by=self._actor_id(actor),
                    reason=reason,
                )
            )
            revision = self._record(
                conn,
                "authz.sod.declare",
                "declare",
                actor,
                "role_conflict",
                f"{a}|{b}",
                reason,
                {"conflict": {"old": None, "new": [a, b]}},
                existing_violations=violators,
            )
        self._index.add_conflict(a, b)
        self._advance(revision)
        return violators

    def break_glass(
        self,
        subject: str,
        role: str,
        ttl: timedelta | int,
        reason: str,
        ticket: str,
        approver: str,
        *,
        tenant: str = WILDCARD,
    ) -> Assignment:
        """Emergency access: expires by itself, audited at grant, every use, and expiry."""
        seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
        limit = self._settings.break_glass_max_ttl_seconds
        if not 0 < seconds <= limit:
            raise PolicyError(f"break-glass ttl must be between 1 and {limit} seconds")
        for value, what in ((reason, "reason"), (ticket, "ticket"), (approver, "approver")):
            if not isinstance(value, str) or not value.strip():
                raise PolicyError(f"break-glass needs a {what}")
        if approver.strip().casefold() == subject.strip().casefold():
            self._audit.record(
                "authz.break_glass.grant",
                action="break_glass",
                outcome="denied",
                actor=approver,
                resource_type="subject",
                resource_id=subject,
                reason="approver is the subject",
                role=role,
                ticket=ticket,
            )
            raise PolicyError("the approver of a break-glass grant must not be its subject")
        now = store.utcnow()
        a = Assignment(
            check_name(subject, "subject"),
            check_name(role, "role"),
            check_name(tenant, "tenant", tenant=True),
            "break_glass",
            now + timedelta(seconds=seconds),
            approver,
            approver,
            reason,
            ticket,
            now,
        )
        self._put_assignment(a, approver, "authz.break_glass.grant", "break_glass")
        return a

    def revoke_principal(self, subject: str, *, reason: str, actor: Actor = None) -> bool:
        """Make every credential of ``subject`` fail from now on (caches included)."""
        check_name(subject, "subject")
        _need(reason, "reason")
        with self._change() as conn:
            if conn.execute(
                sa.select(revoked_principals.c.subject).filter_by(subject=subject)
            ).first():
                return False
            conn.execute(
                sa.insert(revoked_principals).values(
                    subject=subject,
                    revoked_at=store.utcnow(),
                    revoked_by=self._actor_id(actor),
                    reason=reason,
                )
            )
            revision = self._record(
                conn,
                "authz.principal.revoke",
                "revoke",
                actor,
                "subject",
                subject,
                reason,
                {"revoked": {"old": False, "new": True}},
            )
        self._index.set_revoked(subject, True)
        self._advance(revision)
        return True

    def reinstate_principal(self, subject: str, *, reason: str, actor: Actor = None) -> bool:
        check_name(subject, "subject")
        _need(reason, "reason")
        with self._change() as conn:
            if not conn.execute(sa.delete(revoked_principals).filter_by(subject=subject)).rowcount:
                return False
            revision = self._record(
                conn,
                "authz.principal.reinstate",
                "reinstate",
                actor,
                "subject",
                subject,
                reason,
                {"revoked": {"old": True, "new": False}},
            )
        self._index.set_revoked(subject, False)
        self._advance(revision)
        return True

    # CSV (casbin line format, RFC 4180 quoting) -------------------------------
    def export_csv(self) -> str:
        """``p, role:R, tenant, resource, action`` and ``g, user:S|role:R, role:P, tenant``.

        Loading these lines into pycasbin with soc2kit's DEFAULT_MODEL gives the
        same decisions (for values without commas: pycasbin's own CSV reader
        does not understand quoting; soc2kit's import_csv does).
        """
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for g in self.grants():
            writer.writerow(["p", ROLE_PREFIX + g.role, g.tenant, g.resource, g.action])
        for a in self.assignments():
            if a.source == "store" and a.expires_at is None:
                writer.writerow(["g", SUBJECT_PREFIX + a.subject, ROLE_PREFIX + a.role, a.tenant])
        for role in sorted(self._index_roles_with_parents()):
            for parent in sorted(self._index._parents.get(role, ())):
                writer.writerow(["g", ROLE_PREFIX + role, ROLE_PREFIX + parent, WILDCARD])
        return out.getvalue()

    def import_csv(self, text: str, *, actor: Actor = None, reason: str | None = None) -> int:
        """Apply every line of ``text`` (see export_csv); returns how many were new."""
        rows: list[tuple[int, list[str]]] = []
        for lineno, row in enumerate(csv.reader(io.StringIO(text), skipinitialspace=True), 1):
            cells = [c.strip() for c in row]
            if cells and cells[0] and not cells[0].startswith("#"):
                rows.append((lineno, cells))
        for lineno, cells in rows:  # every line checked before any is applied
            try:
                self._import_row(cells, actor, reason, apply=False)
            except (ValueError, PolicyError) as exc:
                raise PolicyError(f"line {lineno}: {exc}") from None
        added = 0
        for lineno, cells in rows:
            try:
                added += self._import_row(cells, actor, reason)
            except (ValueError, PolicyError) as exc:
                # Format and names were checked up front; a refusal here (a
                # separation-of-duties conflict, a cycle) leaves earlier lines applied.
                raise PolicyError(f"line {lineno}: {exc} ({added} earlier lines applied)") from None
        return added

    def _import_row(
        self, cells: list[str], actor: Actor, reason: str | None, apply: bool = True
    ) -> int:
        kind, rest = cells[0], cells[1:]
        if kind == "p" and len(rest) == 4 and rest[0].startswith(ROLE_PREFIX):
            role, tenant, resource, action = rest[0][len(ROLE_PREFIX) :], *rest[1:]
            if not apply:
                _grant(role, resource, action, tenant)
                return 0
            return int(self.grant(role, resource, action, tenant, actor=actor, reason=reason))
        if kind == "g" and len(rest) == 3 and rest[1].startswith(ROLE_PREFIX):
            source, target, tenant = rest[0], rest[1][len(ROLE_PREFIX) :], rest[2]
            check_name(target, "role"), check_name(tenant, "tenant", tenant=True)
            if source.startswith(SUBJECT_PREFIX):
                subject = check_name(source[len(SUBJECT_PREFIX) :], "subject")
                if not apply:
                    return 0
                return int(self.assign(subject, target, tenant, actor=actor, reason=reason))
            if source.startswith(ROLE_PREFIX) and tenant == WILDCARD:
                child = check_name(source[len(ROLE_PREFIX) :], "role")
                if not apply:
                    return 0
                return int(self.inherit(child, target, actor=actor, reason=reason))
        raise PolicyError(
            "expected 'p, role:R, tenant, resource, action' or 'g, user:S|role:R, role:P, tenant'"
        )

    # access review --------------------------------------------------------------
    def access_review(self) -> list[ReviewRow]:
        """Every subject with every role it holds or was seen with, and how it got it.

        Sources: standing and break-glass assignments from the store, API keys
        (used or not), and roles carried by the last token seen for a subject.
        Revoked subjects are listed and marked.
        """
        seen = store.activity(self._engine)
        revoked = self._index.revoked
        rows: list[ReviewRow] = []
        now = store.utcnow()
        for a in self.assignments():
            if a.expires_at is not None and a.expires_at <= now:
                continue
            last = seen.get(a.subject, {}).get("last_seen_at")
            rows.append(
                ReviewRow(
                    a.subject,
                    a.role,
                    a.tenant,
                    a.source,
                    a.granted_by,
                    a.approved_by,
                    a.reason,
                    a.created_at,
                    a.expires_at,
                    last,
                    a.subject in revoked,
                )
            )
        for key in store.api_key_rows(self._engine):
            if key["expires_at"] is not None and key["expires_at"] <= now:
                continue
            for role in key["roles"]:
                rows.append(
                    ReviewRow(
                        key["subject"],
                        role,
                        key["tenant"] or WILDCARD,
                        "api_key",
                        key["created_by"],
                        None,
                        f"API key {key['key_id']}",
                        key["created_at"],
                        key["expires_at"],
                        key["last_used_at"],
                        key["subject"] in revoked,
                    )
                )
        for subject, info in sorted(seen.items()):
            if info["auth_method"] == "api_key":
                continue  # listed from the key itself above
            for role in info["token_roles"]:
                rows.append(
                    ReviewRow(
                        subject,
                        role,
                        WILDCARD,
                        "token",
                        None,
                        None,
                        None,
                        info["first_seen_at"],
                        None,
                        info["last_seen_at"],
                        subject in revoked,
                    )
                )
        return sorted(rows, key=lambda r: (r.subject, r.role, r.tenant, r.source))

    def note_use(self, principal: Principal, interval: float = 300.0) -> bool:
        """Record that ``principal`` was seen (at most once per interval per subject).

        Returns True when a write is due; the caller runs :meth:`write_use` off
        the event loop. Keeps the hot path free of database writes.
        """
        now = time.monotonic()
        last = self._seen.get(principal.subject)
        if last is not None and now - last < interval:
            return False
        if len(self._seen) > 100_000:
            self._seen.clear()
        self._seen[principal.subject] = now
        return True

    def write_use(self, principal: Principal) -> None:
        carried = principal.token_roles if principal.token_roles is not None else principal.roles
        store.note_activity(self._engine, principal.subject, principal.auth_method, sorted(carried))

    # freshness and replication ---------------------------------------------------
    def staleness(self) -> float:
        return time.monotonic() - self._confirmed_at

    def readiness(self) -> str | None:
        limit = self._settings.policy_max_staleness_seconds
        if self.staleness() > limit:
            return f"policy not confirmed for over {int(limit)}s"
        return None

    def refresh(self) -> bool:
        """Reload when the store's revision moved; sweep expired break-glass. True if reloaded."""
        index = self._index
        with self._refresh_lock:
            with self._engine.connect() as conn:
                revision = store.current_revision(conn)
            reloaded = False
            if revision != index.revision:
                index.load(store.load_snapshot(self._engine))
                reloaded = True
            self._confirmed_at = time.monotonic()
        self.sweep_expired()
        return reloaded

    def sweep_expired(self) -> int:
        """Remove expired assignments (break-glass and standing), auditing each expiry once.

        Decisions already ignore them (expiry is checked at decision time); the
        sweep makes the expiry visible in the audit trail and in the store.
        """
        now = store.utcnow()
        expired = [
            a
            for a in self._index.all_assignments()
            if a.expires_at is not None and a.expires_at <= now
        ]
        count = 0
        for a in expired:
            event = "authz.break_glass.expire" if a.source == "break_glass" else "authz.role.expire"
            with self._change() as conn:
                deleted = conn.execute(
                    sa.delete(role_assignments).filter_by(
                        subject=a.subject, role=a.role, tenant=a.tenant, source=a.source
                    )
                ).rowcount
                if not deleted:
                    continue  # another replica swept it; its reload removes ours
                revision = self._record(
                    conn,
                    event,
                    "expire",
                    "system",
                    "subject",
                    a.subject,
                    f"{a.source} assignment expired",
                    {"role": {"old": a.role, "new": None}},
                    ticket=a.ticket,
                    tenant=a.tenant,
                    expired_at=a.expires_at,
                )
            self._index.remove_assignment(a.subject, a.role, a.tenant, a.source)
            self._advance(revision)
            count += 1
        return count

    def end_break_glass(
        self, subject: str, role: str, *, reason: str, tenant: str = WILDCARD, actor: Actor = None
    ) -> bool:
        """End an emergency grant before its expiry."""
        _need(reason, "reason")
        return self._drop_assignment(
            subject, role, tenant, "break_glass", actor, reason, "authz.break_glass.end", "end"
        )

    def start_sync(self) -> None:
        """Follow other replicas' changes (LISTEN/NOTIFY hint plus revision poll)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._sync_loop, name="soc2kit-policy-sync", daemon=True
        )
        self._thread.start()

    def stop_sync(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _sync_loop(self) -> None:
        poll = self._settings.policy_poll_seconds
        listen = self._engine.dialect.name == "postgresql"
        while not self._stop.is_set():
            try:
                if listen:
                    self._listen_until_stopped(poll)
                else:
                    self._safe_refresh()
                    self._stop.wait(poll)
            except Exception as exc:  # reconnect after any failure; the poll is the truth
                log.warning("policy sync interrupted (%s); retrying", type(exc).__name__)
                self._stop.wait(min(poll, 1.0))

    def _listen_until_stopped(self, poll: float) -> None:
        import psycopg

        url = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {store.NOTIFY_CHANNEL}")
            self._safe_refresh()  # after every (re)connect: nothing missed while away
            while not self._stop.is_set():
                for _ in conn.notifies(timeout=poll, stop_after=1):
                    break
                self._safe_refresh()

    def _safe_refresh(self) -> None:
        try:
            self.refresh()
        except Exception as exc:
            log.warning("policy refresh failed (%s)", type(exc).__name__)

    def _ensure_fresh(self) -> None:
        self._index  # noqa: B018 - loads on first use
        limit = self._settings.policy_max_staleness_seconds
        if self.staleness() <= limit:
            return
        if self._thread is None:  # not following replicas: confirm inline
            try:
                self.refresh()
                return
            except Exception as exc:
                log.warning("policy refresh failed (%s)", type(exc).__name__)
        raise PolicyUnavailableError("policy could not be confirmed fresh")

    # internals -------------------------------------------------------------------
    def _index_roles_with_parents(self) -> list[str]:
        return list(self._index._parents)

    def _put_assignment(self, a: Assignment, actor: Actor, event: str, verb: str) -> bool:
        conflict = self._violation(a.subject, a.tenant, extra=a.role)
        if conflict:
            self._audit.record(
                event,
                action=verb,
                outcome="denied",
                actor=self._actor(actor),
                resource_type="subject",
                resource_id=a.subject,
                reason=f"separation of duties: {conflict[0]} and {conflict[1]}",
                role=a.role,
                tenant=a.tenant,
            )
            raise SegregationOfDutiesError(
                f"{a.subject!r} would hold conflicting roles {conflict[0]!r} and {conflict[1]!r}"
            )
        before = sorted(self.roles_for(a.subject, a.tenant))
        with self._change() as conn:
            key = {"subject": a.subject, "role": a.role, "tenant": a.tenant, "source": a.source}
            existing = conn.execute(sa.select(role_assignments.c.id).filter_by(**key)).first()
            if existing and a.source == "store":
                return False
            if existing:  # a renewed break-glass grant replaces the old one
                conn.execute(sa.delete(role_assignments).filter_by(**key))
            conn.execute(
                sa.insert(role_assignments).values(
                    **key,
                    granted_by=a.granted_by,
                    approved_by=a.approved_by,
                    reason=a.reason,
                    ticket=a.ticket,
                    created_at=a.created_at or store.utcnow(),
                    expires_at=a.expires_at,
                )
            )
            revision = self._record(
                conn,
                event,
                verb,
                actor,
                "subject",
                a.subject,
                a.reason,
                {"roles": {"old": before, "new": sorted({*before, a.role})}},
                role=a.role,
                tenant=a.tenant,
                approved_by=a.approved_by,
                expires_at=a.expires_at,
                ticket=a.ticket,
                source=a.source,
            )
        self._index.put_assignment(a if a.created_at else _with_created(a))
        self._advance(revision)
        return True

    def _drop_assignment(
        self,
        subject: str,
        role: str,
        tenant: str,
        source: str,
        actor: Actor,
        reason: str | None,
        event: str,
        verb: str,
    ) -> bool:
        before = sorted(self.roles_for(subject, tenant))
        with self._change() as conn:
            deleted = conn.execute(
                sa.delete(role_assignments).filter_by(
                    subject=subject, role=role, tenant=tenant, source=source
                )
            ).rowcount
            if not deleted:
                return False
            revision = self._record(
                conn,
                event,
                verb,
                actor,
                "subject",
                subject,
                reason,
                {"roles": {"old": before, "new": sorted(set(before) - {role})}},
                role=role,
                tenant=tenant,
            )
        self._index.remove_assignment(subject, role, tenant, source)
        self._advance(revision)
        return True

    def _violation(
        self,
        subject: str,
        tenant: str,
        extra: str | None,
        pairs: set[tuple[str, str]] | None = None,
        edge: tuple[str, str] | None = None,
    ) -> tuple[str, str] | None:
        """A conflicting pair the subject would hold in ``tenant``.

        ``extra`` is a role about to be assigned, ``edge`` an inheritance
        (role, parent) about to be added.
        """
        pairs = pairs if pairs is not None else set(self._index.conflicts)
        if not pairs:
            return None
        now = store.utcnow()
        roles = {
            a.role
            for a in self._index.assignments(subject)
            if (a.expires_at is None or a.expires_at > now)
            and (a.tenant == tenant or WILDCARD in (a.tenant, tenant))
        }
        if extra is not None:
            roles.add(extra)
        reach: set[str] = set()
        for role in roles:
            reach |= self._index.ancestors(role)
        if edge is not None and edge[0] in reach:
            reach |= self._index.ancestors(edge[1])
        for a, b in sorted(pairs):
            if a in reach and b in reach:
                return a, b
        return None

    def _change(self) -> Any:
        return self._audit.transaction(self._engine)

    def _advance(self, revision: int) -> None:
        # Our own write is confirmed: the local index now equals the store at
        # ``revision`` unless another replica wrote in between, which the next
        # refresh detects because the stored revision will be ahead.
        if revision == self._index.revision + 1:
            self._index.revision = revision
        self._confirmed_at = time.monotonic()

    def _actor_id(self, actor: Actor) -> str:
        resolved = self._actor(actor)
        return resolved.subject if isinstance(resolved, Principal) else resolved

    def _actor(self, actor: Actor) -> Principal | str:
        if actor is not None:
            return actor
        ctx = current_request()
        if ctx is not None and ctx.principal is not None:
            return ctx.principal
        return "system"

    def _record(
        self,
        conn: Connection,
        event: str,
        verb: str,
        actor: Actor,
        resource_type: str,
        resource_id: str,
        reason: str | None,
        changes: dict[str, Any],
        **extra: Any,
    ) -> int:
        """Finish a change: new revision, then its audit event, in the change's transaction."""
        revision = store.bump_revision(conn)
        self._audit.record_in(
            conn,
            event,
            action=verb,
            outcome="success",
            actor=self._actor(actor),
            resource_type=resource_type,
            resource_id=resource_id,
            reason=reason,
            changes=changes,
            revision=revision,
            **extra,
        )
        return revision


def _grant(role: str, resource: str, action: str, tenant: str) -> tuple[Grant, dict[str, str]]:
    g = Grant(
        check_name(role, "role"),
        check_name(resource, "resource"),
        check_name(action, "action"),
        check_name(tenant, "tenant", tenant=True),
    )
    return g, {"role": g.role, "resource": g.resource, "action": g.action, "tenant": g.tenant}


def _need(value: object, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"a {what} is required")


def _future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise PolicyError("expires_at must be timezone-aware (UTC)")
    if value <= store.utcnow():
        raise PolicyError("expires_at is in the past")
    return value


def _with_created(a: Assignment) -> Assignment:
    from dataclasses import replace

    return replace(a, created_at=store.utcnow())
