{%- set multi = cookiecutter.tenancy == "multi" -%}
"""customers: the example resource, with encrypted personal fields and a blind index.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Uuid(), primary_key=True),
{%- if multi %}
        sa.Column("tenant_id", sa.String(64), nullable=False),
{%- endif %}
        # Encrypted(...) and BlindIndex(...) columns are stored as binary.
        sa.Column("full_name", sa.LargeBinary(), nullable=False),
        sa.Column("email", sa.LargeBinary(), nullable=False),
        sa.Column("email_bidx", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_customers_email_bidx", "customers", ["email_bidx"])
{%- if multi %}
    op.create_index("ix_customers_tenant_id", "customers", ["tenant_id"])
{%- endif %}


def downgrade() -> None:
    op.drop_table("customers")
