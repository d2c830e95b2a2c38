from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from fastapi import FastAPI
from tests.crypto.fle_models import Base, Customer

import soc2kit


def test_smoke(make_settings, database_url):
    settings = make_settings(database_url=database_url)
    kit = soc2kit.install(FastAPI(), settings)
    Base.metadata.create_all(kit.engine)
    kit.keys.load(create=True)
    with kit.sessions() as s:
        c = Customer(email="Ann@Example.com", birth_date=date(1990, 1, 2), phone="+1 555")
        s.add(c)
        s.commit()
        assert c.email == "Ann@Example.com"
        cid = c.id
    with kit.sessions() as s:
        got = s.get(Customer, cid)
        assert got.email == "Ann@Example.com"
        assert got.birth_date == date(1990, 1, 2)
        found = s.scalars(
            sa.select(Customer).where(Customer.email.bidx_eq("ann@example.com", tenant="acme"))
        ).all()
        assert [f.id for f in found] == [cid]
        got.email = "b@example.com"
        s.commit()
    with kit.sessions() as s:
        got = s.get(Customer, cid)
        assert got.email == "b@example.com"
    with kit.engine.connect() as conn:
        raw = conn.execute(sa.text("select email from customers")).scalar_one()
        assert b"example" not in bytes(raw)
    kit.shutdown()
