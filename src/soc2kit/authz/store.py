"""SQL persistence of the access policy (soc2kit's own tables, see db/schema.py).

soc2kit keeps its own tables rather than pycasbin's SQLAlchemy adapter because
a decision record needs columns casbin lines lack (who granted, who approved,
why, until when) and because values must round-trip any string: casbin's
line format splits on commas.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from soc2kit.authz.index import Assignment, Grant, Snapshot
from soc2kit.db.schema import (
    api_keys,
    policy_grants,
    policy_revision,
    revoked_principals,
    role_assignments,
    role_inheritance,
    sod_conflicts,
    subject_activity,
)

NOTIFY_CHANNEL = "soc2kit_policy"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone-aware columns; they are UTC."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def load_snapshot(engine: Engine) -> Snapshot:
    """Read the whole policy in one transaction (a consistent revision)."""
    with engine.begin() as conn:
        revision = current_revision(conn)
        # Positional tuples of the needed columns only: at a million rows,
        # attribute access and unused columns cost seconds.
        g = policy_grants.c
        grants = [
            Grant(role, resource, action, tenant)
            for role, resource, action, tenant in conn.execute(
                sa.select(g.role, g.resource, g.action, g.tenant)
            )
        ]
        a = role_assignments.c
        rows = conn.execute(
            sa.select(
                a.subject,
                a.role,
                a.tenant,
                a.source,
                a.expires_at,
                a.granted_by,
                a.approved_by,
                a.reason,
                a.ticket,
                a.created_at,
            )
        )
        assignments = [_assignment(tuple(row)) for row in rows]
        inheritance = [(r.role, r.parent) for r in conn.execute(sa.select(role_inheritance))]
        conflicts = [(r.role_a, r.role_b) for r in conn.execute(sa.select(sod_conflicts))]
        revoked = {r.subject for r in conn.execute(sa.select(revoked_principals.c.subject))}
    return Snapshot(revision, grants, assignments, inheritance, conflicts, revoked)


def _assignment(row: tuple[Any, ...]) -> Assignment:
    subject, role, tenant, source, expires, granted_by, approved_by, reason, ticket, created = row
    return Assignment(
        subject,
        role,
        tenant,
        source,
        as_utc(expires),
        granted_by,
        approved_by,
        reason,
        ticket,
        as_utc(created),
    )


def current_revision(conn: Connection) -> int:
    value = conn.execute(
        sa.select(policy_revision.c.revision).where(policy_revision.c.id == 1)
    ).scalar()
    return int(value or 0)


def bump_revision(conn: Connection) -> int:
    """Increment the revision inside the caller's transaction (row lock serialises writers)."""
    conn.execute(
        sa.update(policy_revision)
        .where(policy_revision.c.id == 1)
        .values(revision=policy_revision.c.revision + 1, updated_at=utcnow())
    )
    revision = current_revision(conn)
    if conn.dialect.name == "postgresql":
        # Delivered at commit: a hint for other replicas, the poll stays the truth.
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": str(revision)},
        )
    return revision


def note_activity(engine: Engine, subject: str, auth_method: str, roles: list[str]) -> None:
    """Upsert the subject's last sighting (for access reviews)."""
    now = utcnow()
    values: dict[str, Any] = {
        "auth_method": auth_method,
        "token_roles": json.dumps(sorted(roles)),
        "last_seen_at": now,
    }
    with engine.begin() as conn:
        updated = conn.execute(
            sa.update(subject_activity).where(subject_activity.c.subject == subject).values(values)
        ).rowcount
        if not updated:
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(subject_activity).values(
                            subject=subject, first_seen_at=now, **values
                        )
                    )
            except sa.exc.IntegrityError:  # another replica inserted first
                conn.execute(
                    sa.update(subject_activity)
                    .where(subject_activity.c.subject == subject)
                    .values(values)
                )


def activity(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {
            r.subject: {
                "auth_method": r.auth_method,
                "token_roles": json.loads(r.token_roles or "[]"),
                "first_seen_at": as_utc(r.first_seen_at),
                "last_seen_at": as_utc(r.last_seen_at),
            }
            for r in conn.execute(sa.select(subject_activity))
        }


def api_key_rows(engine: Engine) -> list[dict[str, Any]]:
    """API keys that are not revoked, for access reviews (never the hash)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(api_keys).where(api_keys.c.revoked_at.is_(None)))
        return [
            {
                "key_id": r.key_id,
                "subject": r.subject,
                "roles": json.loads(r.roles or "[]"),
                "tenant": r.tenant,
                "created_by": r.created_by,
                "created_at": as_utc(r.created_at),
                "expires_at": as_utc(r.expires_at),
                "last_used_at": as_utc(r.last_used_at),
            }
            for r in rows
        ]
