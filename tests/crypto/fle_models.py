"""Models shared by the field-encryption tests (one registry, created per database)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from soc2kit.crypto import BlindIndex, Encrypted, uuid7


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), default="acme")
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    email: Mapped[str | None] = mapped_column(Encrypted(sa.String(320)), nullable=True)
    email_bidx: Mapped[bytes | None] = mapped_column(
        BlindIndex("email", normalize="casefold"), nullable=True, index=True
    )
    birth_date: Mapped[date | None] = mapped_column(Encrypted(sa.Date), nullable=True)
    phone: Mapped[str | None] = mapped_column(
        Encrypted(sa.String(40), key_scope="id"), nullable=True
    )


class Record(Base):
    """Every supported type, no tenant."""

    __tablename__ = "records"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    text: Mapped[str | None] = mapped_column(Encrypted(sa.Text), nullable=True)
    blob: Mapped[bytes | None] = mapped_column(Encrypted(sa.LargeBinary), nullable=True)
    count: Mapped[int | None] = mapped_column(Encrypted(sa.BigInteger), nullable=True)
    amount: Mapped[Decimal | None] = mapped_column(Encrypted(sa.Numeric(12, 2)), nullable=True)
    ratio: Mapped[float | None] = mapped_column(Encrypted(sa.Float), nullable=True)
    flag: Mapped[bool | None] = mapped_column(Encrypted(sa.Boolean), nullable=True)
    day: Mapped[date | None] = mapped_column(Encrypted(sa.Date), nullable=True)
    moment: Mapped[datetime | None] = mapped_column(
        Encrypted(sa.DateTime(timezone=True)), nullable=True
    )
    ref: Mapped[uuid.UUID | None] = mapped_column(Encrypted(sa.Uuid), nullable=True)
    doc: Mapped[Any] = mapped_column(Encrypted(sa.JSON), nullable=True)
    note: Mapped[str | None] = mapped_column(
        Encrypted(sa.String(200), storage="text"), nullable=True
    )


class Order(Base):
    """Data of a customer under the customer's own key (crypto-shredding)."""

    __tablename__ = "orders"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    customer_id: Mapped[str] = mapped_column(sa.String(64))
    address: Mapped[str | None] = mapped_column(
        Encrypted(sa.String(200), key_scope="customer_id", on_destroyed="none"), nullable=True
    )
    notes: Mapped[str | None] = mapped_column(
        Encrypted(sa.String(200), key_scope="customer_id"), nullable=True
    )


class Legacy(Base):
    """A column being migrated from plaintext (text storage, window open until 2099)."""

    __tablename__ = "legacy"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    ssn: Mapped[str | None] = mapped_column(
        Encrypted(sa.String(20), storage="text", allow_plaintext_until="2099-12-31"),
        nullable=True,
    )
    ssn_bidx: Mapped[bytes | None] = mapped_column(BlindIndex("ssn"), nullable=True)
