"""Field encryption through AsyncSession (aiosqlite on SQLite, psycopg async on PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from tests.crypto.fle_models import Customer, Order

import soc2kit
from soc2kit.crypto import DecryptionError
from soc2kit.db import normalize_url

T = TypeVar("T")
Sessions = async_sessionmaker[AsyncSession]


def async_url(database_url: str) -> URL:
    url = normalize_url(database_url)
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    return url.set(
        drivername="postgresql+psycopg"
    )  # create_async_engine picks psycopg's async side


def run_async(
    kit: soc2kit.Kit, database_url: str, scenario: Callable[[Sessions], Awaitable[T]]
) -> T:
    """Run ``scenario`` on an async engine attached to the kit's keyring."""

    async def main() -> T:
        engine = create_async_engine(async_url(database_url))
        kit.encryption.attach(engine)
        try:
            return await scenario(async_sessionmaker(engine, expire_on_commit=False))
        finally:
            await engine.dispose()

    return asyncio.run(main())


async def add(sessions: Sessions, obj: Any) -> Any:
    async with sessions() as s:
        s.add(obj)
        await s.commit()
        return obj.id


def test_async_round_trip(kit: soc2kit.Kit, database_url: str) -> None:
    async def scenario(sessions: Sessions) -> tuple[Any, str | None, str | None]:
        row_id = await add(sessions, Customer(email="ann@example.com", phone="+1 555 0100"))
        async with sessions() as s:
            got = await s.get(Customer, row_id)
            assert got is not None
            return row_id, got.email, got.phone

    row_id, email, phone = run_async(kit, database_url, scenario)
    assert (email, phone) == ("ann@example.com", "+1 555 0100")
    with kit.engine.connect() as conn:  # sealed in the database, readable by the sync side
        raw = bytes(conn.execute(sa.text("SELECT email FROM customers")).scalar_one())
    assert raw[0] == 0xE1 and b"example" not in raw
    with kit.sessions() as s:
        assert s.get(Customer, row_id).email == "ann@example.com"


def test_async_blind_index_lookup(kit: soc2kit.Kit, database_url: str) -> None:
    async def scenario(sessions: Sessions) -> tuple[Any, list[Any]]:
        ann = await add(sessions, Customer(email="Ann@Example.com"))
        await add(sessions, Customer(email="bob@example.com"))
        async with sessions() as s:
            found = await s.scalars(
                sa.select(Customer).where(Customer.email.bidx_eq("ann@example.com", tenant="acme"))
            )
            return ann, [(c.id, c.email) for c in found]

    ann, found = run_async(kit, database_url, scenario)
    assert found == [(ann, "Ann@Example.com")]


def test_async_tampered_row_raises(kit: soc2kit.Kit, database_url: str) -> None:
    with kit.sessions() as s:
        a, b = Customer(email="ann@example.com"), Customer(email="bob@example.com")
        s.add_all([a, b])
        s.commit()
        a_id, b_id = a.id, b.id
    with kit.engine.begin() as conn:  # move ann's ciphertext onto bob's row
        t = sa.table("customers", sa.column("id", sa.Uuid), sa.column("email", sa.LargeBinary))
        stolen = conn.execute(sa.select(t.c.email).where(t.c.id == a_id)).scalar_one()
        conn.execute(sa.update(t).where(t.c.id == b_id).values(email=stolen))

    async def scenario(sessions: Sessions) -> None:
        async with sessions() as s:
            await s.get(Customer, b_id)

    with pytest.raises(DecryptionError):
        run_async(kit, database_url, scenario)


def _aprefetch_warnings(caplog: pytest.LogCaptureFixture, scope: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "soc2kit.crypto"
        and r.levelno == logging.WARNING
        and "aprefetch" in r.getMessage()
        and scope in r.getMessage()
    ]


def test_cold_key_scope_in_async_session_warns(
    kit: soc2kit.Kit, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(sessions: Sessions) -> str | None:
        row_id = await add(sessions, Order(customer_id="cust-1", address="1 Main St"))
        async with sessions() as s:
            got = await s.get(Order, row_id)
            return None if got is None else got.address

    with caplog.at_level(logging.WARNING, logger="soc2kit.crypto"):
        assert run_async(kit, database_url, scenario) == "1 Main St"
    assert _aprefetch_warnings(caplog, "cust-1")


def test_prefetched_key_scope_does_not_warn(
    kit: soc2kit.Kit, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(sessions: Sessions) -> str | None:
        await kit.keys.aprefetch(["cust-2"])
        row_id = await add(sessions, Order(customer_id="cust-2", address="2 Main St"))
        async with sessions() as s:
            got = await s.get(Order, row_id)
            return None if got is None else got.address

    with caplog.at_level(logging.WARNING, logger="soc2kit.crypto"):
        assert run_async(kit, database_url, scenario) == "2 Main St"
    assert not [r for r in caplog.records if "aprefetch" in r.getMessage()]
