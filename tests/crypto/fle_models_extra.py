"""Extra models for the field-encryption ORM tests (own registries, created per database).

``ExtraBase`` holds the tables created up front. The alias models read a table
that a test renames (``people_v1`` -> ``people_v2``), so each lives in a
registry of its own and is never passed to ``create_all``.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from soc2kit.crypto import Encrypted, uuid7


class ExtraBase(DeclarativeBase):
    pass


class Contact(ExtraBase):
    """Same column name, tenant and row id as a Customer can have: only the table differs."""

    __tablename__ = "contacts"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), default="acme")
    email: Mapped[str | None] = mapped_column(Encrypted(sa.String(320)), nullable=True)


class AutoPk(ExtraBase):
    """Server-generated primary key with row binding left on: refused at INSERT."""

    __tablename__ = "auto_pk"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    secret: Mapped[str | None] = mapped_column(Encrypted(sa.String(50)), nullable=True)


def unbound_model() -> tuple[type[DeclarativeBase], type]:
    """A new registry with a fresh ``soc2kit_bind_row=False`` model (table ``auto_pk_fresh``).

    soc2kit builds a model's encryption plan (and warns about the missing row
    binding) once per class: a fresh class lets a test observe that warning. Not
    a module-level model, so that other tests' start-ups never see (and warn
    about) it; call ``registry.dispose()`` on the returned base when done.
    """

    class FreshBase(DeclarativeBase):
        pass

    class AutoPkFresh(FreshBase):
        __tablename__ = "auto_pk_fresh"
        __table_args__ = ({"info": {"soc2kit_bind_row": False}},)
        id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
        secret: Mapped[str | None] = mapped_column(Encrypted(sa.String(50)), nullable=True)

    return FreshBase, AutoPkFresh


class PersonV1(ExtraBase):
    """Physical table ``people_v1`` under the logical name ``people``."""

    __tablename__ = "people_v1"
    __table_args__ = ({"info": {"soc2kit_table": "people"}},)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    secret: Mapped[str | None] = mapped_column(Encrypted(sa.String(50)), nullable=True)


class RenamedBase(DeclarativeBase):
    pass


class PersonRenamed(RenamedBase):
    """``people_v1`` renamed to ``people_v2``; the logical name is kept."""

    __tablename__ = "people_v2"
    __table_args__ = ({"info": {"soc2kit_table": "people"}},)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    secret: Mapped[str | None] = mapped_column(Encrypted(sa.String(50)), nullable=True)


class OtherAliasBase(DeclarativeBase):
    pass


class PersonOtherAlias(OtherAliasBase):
    """The same physical table as PersonRenamed under another logical name."""

    __tablename__ = "people_v2"
    __table_args__ = ({"info": {"soc2kit_table": "persons"}},)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    secret: Mapped[str | None] = mapped_column(Encrypted(sa.String(50)), nullable=True)
