{%- set multi = cookiecutter.tenancy == "multi" -%}
"""The service's tables. Their schema changes go through Alembic (migrations/versions).

``Customer`` holds personal data: the name and e-mail address are stored
encrypted (AES-256-GCM, each value bound to its {% if multi %}tenant, {% endif %}table, column and row),
and the address is searchable by equality through a blind index.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from soc2kit.crypto import BlindIndex, Encrypted, uuid7
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    # Client-generated, so each encrypted value is bound to its row before the INSERT.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
{%- if multi %}
    # Found by name: soc2kit binds every encrypted value to its row's tenant.
    tenant_id: Mapped[str] = mapped_column(sa.String(64), index=True)
{%- endif %}
    full_name: Mapped[str] = mapped_column(Encrypted(sa.String(200)))
    email: Mapped[str] = mapped_column(Encrypted(sa.String(320)))
    email_bidx: Mapped[bytes] = mapped_column(
        BlindIndex("email", normalize="casefold_strip"), index=True
    )
    created_by: Mapped[str] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
