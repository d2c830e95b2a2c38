"""soc2kit's own tables (SQLAlchemy Core, so applications may use any ORM base).

The Alembic migrations in ``soc2kit/db/migrations`` create exactly these; a test
compares the migrated schema with this metadata so they cannot drift.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

audit_events = sa.Table(
    "soc2kit_audit_events",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("actor_id", sa.String(256), nullable=True),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("resource_type", sa.String(100), nullable=True),
    sa.Column("resource_id", sa.String(256), nullable=True),
    sa.Column("event", sa.Text(), nullable=False),
    sa.Index(None, "occurred_at"),
    sa.Index(None, "event_type"),
    sa.Index(None, "actor_id"),
    sa.Index(None, "request_id"),
)
