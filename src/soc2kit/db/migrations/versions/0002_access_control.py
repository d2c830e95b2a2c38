"""soc2kit access control: policy, assignments, conflicts, revocations, API keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "soc2kit_policy_grants",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("role", sa.String(256), nullable=False),
        sa.Column("tenant", sa.String(256), nullable=False),
        sa.Column("resource", sa.String(256), nullable=False),
        sa.Column("action", sa.String(256), nullable=False),
        _ts("created_at"),
        sa.Column("created_by", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_soc2kit_policy_grants"),
        sa.UniqueConstraint(
            "role",
            "tenant",
            "resource",
            "action",
            name="uq_soc2kit_policy_grants_role_tenant_resource_action",
        ),
    )
    op.create_table(
        "soc2kit_role_assignments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("role", sa.String(256), nullable=False),
        sa.Column("tenant", sa.String(256), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("granted_by", sa.String(256), nullable=True),
        sa.Column("approved_by", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("ticket", sa.String(256), nullable=True),
        _ts("created_at"),
        _ts("expires_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_soc2kit_role_assignments"),
        sa.UniqueConstraint(
            "subject",
            "role",
            "tenant",
            "source",
            name="uq_soc2kit_role_assignments_subject_role_tenant_source",
        ),
    )
    op.create_index("ix_soc2kit_role_assignments_subject", "soc2kit_role_assignments", ["subject"])
    op.create_table(
        "soc2kit_role_inheritance",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("role", sa.String(256), nullable=False),
        sa.Column("parent", sa.String(256), nullable=False),
        _ts("created_at"),
        sa.Column("created_by", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_soc2kit_role_inheritance"),
        sa.UniqueConstraint("role", "parent", name="uq_soc2kit_role_inheritance_role_parent"),
    )
    op.create_table(
        "soc2kit_sod_conflicts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("role_a", sa.String(256), nullable=False),
        sa.Column("role_b", sa.String(256), nullable=False),
        _ts("created_at"),
        sa.Column("created_by", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_soc2kit_sod_conflicts"),
        sa.UniqueConstraint("role_a", "role_b", name="uq_soc2kit_sod_conflicts_role_a_role_b"),
    )
    op.create_table(
        "soc2kit_revoked_principals",
        sa.Column("subject", sa.String(256), nullable=False),
        _ts("revoked_at"),
        sa.Column("revoked_by", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("subject", name="pk_soc2kit_revoked_principals"),
    )
    revision_table = op.create_table(
        "soc2kit_policy_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_soc2kit_policy_revision"),
    )
    # One row, created here so that every writer can UPDATE it (a row lock
    # that serialises policy writers and keeps revisions strictly increasing).
    op.bulk_insert(
        revision_table,
        [{"id": 1, "revision": 0, "updated_at": datetime(2026, 1, 1, tzinfo=UTC)}],
    )
    op.create_table(
        "soc2kit_subject_activity",
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("auth_method", sa.String(16), nullable=False),
        sa.Column("token_roles", sa.Text(), nullable=True),
        _ts("first_seen_at"),
        _ts("last_seen_at"),
        sa.PrimaryKeyConstraint("subject", name="pk_soc2kit_subject_activity"),
    )
    op.create_table(
        "soc2kit_api_keys",
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("tenant", sa.String(256), nullable=True),
        sa.Column("key_hash", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        _ts("created_at"),
        sa.Column("created_by", sa.String(256), nullable=True),
        _ts("expires_at"),
        _ts("revoked_at", nullable=True),
        sa.Column("revoked_by", sa.String(256), nullable=True),
        _ts("last_used_at", nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_soc2kit_api_keys"),
    )
    op.create_index("ix_soc2kit_api_keys_subject", "soc2kit_api_keys", ["subject"])


def downgrade() -> None:
    for table in (
        "soc2kit_api_keys",
        "soc2kit_subject_activity",
        "soc2kit_policy_revision",
        "soc2kit_revoked_principals",
        "soc2kit_sod_conflicts",
        "soc2kit_role_inheritance",
        "soc2kit_role_assignments",
        "soc2kit_policy_grants",
    ):
        op.drop_table(table)
