"""ORM changes record themselves in the transaction that makes them (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from tests.conftest import audit_rows

import soc2kit
from soc2kit.crypto import Encrypted, uuid7
from soc2kit.errors import AuditWriteError


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "capture_accounts"
    __audit__: ClassVar[dict[str, list[str]]] = {"mask": ["phone"], "exclude": ["notes"]}
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    name: Mapped[str] = mapped_column(sa.String(50))
    phone: Mapped[str] = mapped_column(sa.String(50), default="")
    notes: Mapped[str] = mapped_column(sa.String(50), default="")
    email: Mapped[str | None] = mapped_column(Encrypted(sa.String(80)), nullable=True)
    api_token: Mapped[str] = mapped_column(sa.String(80), default="")


class Scratch(Base):
    __tablename__ = "capture_scratch"
    __audit__ = False
    id: Mapped[int] = mapped_column(primary_key=True)


@pytest.fixture
def kit(make_settings: Callable[..., soc2kit.Settings], database_url: str) -> Iterator[soc2kit.Kit]:
    kit = soc2kit.install(FastAPI(), make_settings(database_url=database_url))
    Base.metadata.create_all(kit.engine)
    kit.keys.load(create=True)
    yield kit
    kit.shutdown()


def data_events(kit: soc2kit.Kit) -> list[dict[str, Any]]:
    return [e for e in audit_rows(kit) if e["event_type"].startswith("data.")]


def test_create_update_delete_are_recorded_with_allowed_values_only(kit: soc2kit.Kit) -> None:
    with kit.sessions() as s:
        account = Account(
            name="ann", phone="555-0100", notes="vip", email="ann@example.com", api_token="t0k"
        )
        s.add(account)
        s.commit()
        account.name, account.phone, account.email = "anna", "555-0199", "anna@example.com"
        s.commit()
        s.delete(account)
        s.commit()
        ident = str(account.id)
    created, updated, deleted = data_events(kit)
    assert [e["event_type"] for e in (created, updated, deleted)] == [
        "data.create",
        "data.update",
        "data.delete",
    ]
    assert {e["resource_type"] for e in (created, updated, deleted)} == {"capture_accounts"}
    assert {e["resource_id"] for e in (created, updated, deleted)} == {ident}
    assert created["changes"]["name"] == {"new": "ann"}
    assert created["changes"]["phone"] == {"changed": True}  # masked
    assert created["changes"]["email"] == {"changed": True}  # encrypted
    assert "notes" not in created["changes"]  # excluded
    assert updated["changes"] == {
        "name": {"old": "ann", "new": "anna"},
        "phone": {"changed": True},
        "email": {"changed": True},
    }
    text = str(audit_rows(kit))
    for secret in ("555-01", "ann@example.com", "anna@example.com", "t0k", "vip"):
        assert secret not in text


def test_unchanged_objects_and_opted_out_models_record_nothing(kit: soc2kit.Kit) -> None:
    with kit.sessions() as s:
        s.add(Scratch(id=1))
        account = Account(name="bob")
        s.add(account)
        s.commit()
        account.name = "bob"  # set to the same value: no change
        s.commit()
    assert [e["event_type"] for e in data_events(kit)] == ["data.create"]


def test_a_rolled_back_change_leaves_no_record(kit: soc2kit.Kit) -> None:
    with kit.sessions() as s:
        s.add(Account(name="ghost"))
        s.flush()
        s.rollback()
    assert data_events(kit) == []


def test_no_change_commits_without_its_record(kit: soc2kit.Kit) -> None:
    kit.audit.flush()
    with kit.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE soc2kit_audit_inbox RENAME TO parked"))
    try:
        with kit.sessions() as s:
            s.add(Account(name="unaudited"))
            with pytest.raises(AuditWriteError):
                s.commit()
    finally:
        with kit.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE parked RENAME TO soc2kit_audit_inbox"))
    with kit.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM capture_accounts")).scalar() == 0


def test_bulk_update_and_delete_are_recorded_without_their_values(kit: soc2kit.Kit) -> None:
    with kit.sessions() as s:
        s.add_all(
            [
                Account(name="bulk-secret-name"),
                Account(name="bulk-secret-name"),
                Account(name="other"),
            ]
        )
        s.commit()
        ids = {
            str(i)
            for i in s.scalars(sa.select(Account.id).where(Account.name == "bulk-secret-name"))
        }
        s.execute(sa.update(Account).where(Account.name == "bulk-secret-name").values(notes="x"))
        s.execute(sa.delete(Account).where(Account.name == "other"))
        s.commit()
    bulk = [e for e in data_events(kit) if e["event_type"].startswith("data.bulk_")]
    update, delete = bulk
    assert update["event_type"] == "data.bulk_update"
    assert update["extra"]["row_count"] == 2
    assert set(update["extra"]["primary_keys"]) == ids
    assert update["extra"]["columns"] == ["notes"]
    assert "bulk-secret-name" not in str(update)  # criteria without their values
    assert "name" in update["extra"]["criteria"]
    assert delete["event_type"] == "data.bulk_delete" and delete["extra"]["row_count"] == 1


def test_a_bulk_change_rolled_back_leaves_no_record(kit: soc2kit.Kit) -> None:
    with kit.sessions() as s:
        s.add(Account(name="keep"))
        s.commit()
        s.execute(sa.delete(Account))
        s.rollback()
    assert [e["event_type"] for e in data_events(kit)] == ["data.create"]
