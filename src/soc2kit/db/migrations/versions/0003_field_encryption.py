"""soc2kit field encryption: wrapped data keys and job checkpoints.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

A frozen copy of the definitions in soc2kit/db/schema.py (a test compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "soc2kit_data_keys",
        sa.Column("key_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("purpose", sa.String(8), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("active_scope", sa.String(270), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("kek_ref", sa.String(512), nullable=True),
        sa.Column("check_value", sa.LargeBinary(), nullable=True),
        sa.Column("encryptions", sa.BigInteger(), nullable=False),
        _ts("created_at"),
        sa.Column("created_by", sa.String(256), nullable=True),
        _ts("activated_at", nullable=True),
        _ts("deactivated_at", nullable=True),
        _ts("retired_at", nullable=True),
        _ts("destroyed_at", nullable=True),
        sa.Column("destroyed_by", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_soc2kit_data_keys"),
        sa.UniqueConstraint("active_scope", name="uq_soc2kit_data_keys_active_scope"),
    )
    op.create_index("ix_soc2kit_data_keys_scope", "soc2kit_data_keys", ["scope"])
    op.create_table(
        "soc2kit_encryption_jobs",
        sa.Column("job_id", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("last_pk", sa.Text(), nullable=True),
        sa.Column("rows_scanned", sa.BigInteger(), nullable=False),
        sa.Column("rows_changed", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("started_at"),
        _ts("updated_at"),
        _ts("finished_at", nullable=True),
        sa.Column("remaining_after", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_soc2kit_encryption_jobs"),
    )


def downgrade() -> None:
    op.drop_table("soc2kit_encryption_jobs")
    op.drop_index("ix_soc2kit_data_keys_scope", table_name="soc2kit_data_keys")
    op.drop_table("soc2kit_data_keys")
