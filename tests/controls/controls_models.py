"""Models with encrypted columns for the in-process generations.

SQLAlchemy mappers are global to the process, so these (and other tests'
models) appear in every in-process generation once imported: tests assert
that their own model is present, never on exact column counts.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from soc2kit.crypto import Encrypted, uuid7


class CtlBase(DeclarativeBase):
    pass


class CtlPatient(CtlBase):
    """One column under the service-wide key, one under the patient's own key."""

    __tablename__ = "ctl_patients"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    patient_id: Mapped[str] = mapped_column(sa.String(64))
    insurer_ref: Mapped[str | None] = mapped_column(Encrypted(sa.String(64)), nullable=True)
    diagnosis: Mapped[str | None] = mapped_column(
        Encrypted(sa.String(200), key_scope="patient_id"), nullable=True
    )
