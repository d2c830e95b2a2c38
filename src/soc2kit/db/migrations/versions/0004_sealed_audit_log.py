"""soc2kit sealed audit log: inbox, Merkle tree, state, signed checkpoints, append-only triggers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Events already in soc2kit_audit_events (written before this revision) are moved
to the inbox, so the sealer gives them contiguous sequence numbers and seals
them like any new event. A frozen copy of soc2kit/db/schema.py (a test compares).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

APPEND_ONLY = ("soc2kit_audit_events", "soc2kit_audit_tree", "soc2kit_audit_checkpoints")
_COLUMNS = (
    "event_id, occurred_at, event_type, action, outcome, actor_id, request_id, "
    "resource_type, resource_id, event"
)


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id() -> sa.Column[object]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def upgrade() -> None:
    op.create_table(
        "soc2kit_audit_inbox",
        _id(),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(256), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("resource_type", sa.String(100), nullable=True),
        sa.Column("resource_id", sa.String(256), nullable=True),
        sa.Column("event", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_soc2kit_audit_inbox"),
        sa.UniqueConstraint("event_id", name="uq_soc2kit_audit_inbox_event_id"),
    )
    op.execute(
        f"INSERT INTO soc2kit_audit_inbox ({_COLUMNS}) "  # noqa: S608 - constant names
        f"SELECT {_COLUMNS} FROM soc2kit_audit_events ORDER BY seq"
    )
    op.execute("DELETE FROM soc2kit_audit_events")
    with op.batch_alter_table("soc2kit_audit_events") as batch:
        batch.add_column(_ts("sealed_at", nullable=True))
    op.create_table(
        "soc2kit_audit_tree",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_soc2kit_audit_tree"),
    )
    state = op.create_table(
        "soc2kit_audit_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_soc2kit_audit_state"),
    )
    op.bulk_insert(
        state,
        [
            {
                "id": 1,
                "size": 0,
                "root": hashlib.sha256(b"").digest(),
                "frontier": b"",
                "updated_at": datetime.now(UTC),
            }
        ],
    )
    op.create_table(
        "soc2kit_audit_checkpoints",
        _id(),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_soc2kit_audit_checkpoints"),
    )
    op.create_index("ix_soc2kit_audit_checkpoints_size", "soc2kit_audit_checkpoints", ["size"])
    _append_only()


def _append_only() -> None:
    """UPDATE, DELETE and TRUNCATE of the sealed tables raise, whoever runs them."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION soc2kit_audit_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'soc2kit audit tables are append-only (% on %)',
                    TG_OP, TG_TABLE_NAME;
            END;
            $$
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION soc2kit_audit_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION soc2kit_audit_append_only()"
            )
        return
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'soc2kit audit tables are append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS soc2kit_audit_append_only()")
    else:
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    op.drop_index("ix_soc2kit_audit_checkpoints_size", table_name="soc2kit_audit_checkpoints")
    op.drop_table("soc2kit_audit_checkpoints")
    op.drop_table("soc2kit_audit_state")
    op.drop_table("soc2kit_audit_tree")
    with op.batch_alter_table("soc2kit_audit_events") as batch:
        batch.drop_column("sealed_at")
    op.drop_table("soc2kit_audit_inbox")
