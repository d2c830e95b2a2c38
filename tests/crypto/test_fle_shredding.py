"""Crypto-shredding: destroying a data subject's keys erases its values everywhere, for good."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import load_only
from tests.conftest import audit_rows
from tests.crypto.fle_models import Customer, Order

import soc2kit
from soc2kit.crypto import CryptoError, KeyDestroyedError

KEYS = "soc2kit_data_keys"


def add_orders(kit: soc2kit.Kit, customer: str, n: int) -> dict[uuid.UUID, tuple[str, str]]:
    """n orders of ``customer``; returns id -> (address, notes)."""
    with kit.sessions() as s:
        orders = [
            Order(customer_id=customer, address=f"{i} {customer} street", notes=f"note {i}")
            for i in range(n)
        ]
        s.add_all(orders)
        s.commit()
        return {o.id: (o.address, o.notes) for o in orders}


def addresses(kit: soc2kit.Kit, customer: str) -> dict[uuid.UUID, str | None]:
    with kit.sessions() as s:
        query = (
            sa.select(Order)
            .options(load_only(Order.customer_id, Order.address))
            .where(Order.customer_id == customer)
        )
        return {o.id: o.address for o in s.scalars(query)}


def read_orders(kit: soc2kit.Kit, customer: str) -> dict[uuid.UUID, tuple[str, str]]:
    with kit.sessions() as s:
        query = sa.select(Order).where(Order.customer_id == customer)
        return {o.id: (o.address, o.notes) for o in s.scalars(query)}


def key_rows(kit: soc2kit.Kit, scope: str) -> list[dict[str, Any]]:
    with kit.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {KEYS} WHERE scope = :s"), {"s": scope})
        return [dict(r._mapping) for r in rows]


def write_order(kit: soc2kit.Kit, customer: str) -> None:
    with kit.sessions() as s:
        s.add(Order(customer_id=customer, address="new address"))
        s.commit()


def raw_orders(kit: soc2kit.Kit) -> dict[uuid.UUID, tuple[bytes | None, bytes | None]]:
    with kit.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, address, notes FROM orders")).all()
    return {
        uuid.UUID(str(r[0])): (
            None if r[1] is None else bytes(r[1]),
            None if r[2] is None else bytes(r[2]),
        )
        for r in rows
    }


def test_destroyed_subject_reads_as_none_or_raises_per_column(kit):
    shredded = add_orders(kit, "cust-1", 3)

    assert kit.keys.destroy_subject("cust-1", actor="dpo") == 1

    assert addresses(kit, "cust-1") == dict.fromkeys(shredded)  # on_destroyed="none"
    with kit.sessions() as s:
        order = s.scalars(
            sa.select(Order)
            .options(load_only(Order.customer_id, Order.address))
            .where(Order.customer_id == "cust-1")
            .limit(1)
        ).one()
        with pytest.raises(KeyDestroyedError):
            _ = order.notes  # on_destroyed="raise" (the default)
    with kit.sessions() as s, pytest.raises(KeyDestroyedError):
        s.get(Order, next(iter(shredded)))


def test_destroying_a_subject_leaves_other_subjects_and_service_keys_readable(make_kit):
    kit = make_kit()
    add_orders(kit, "cust-1", 2)
    kept = add_orders(kit, "cust-2", 2)
    with kit.sessions() as s:
        customer = Customer(email="ann@example.com", birth_date=date(1990, 5, 6))
        s.add(customer)
        s.commit()

    kit.keys.destroy_subject("cust-1", actor="dpo")

    assert read_orders(kit, "cust-2") == kept
    assert read_orders(make_kit(), "cust-2") == kept
    with kit.sessions() as s:
        got = s.get(Customer, customer.id)
        assert (got.email, got.birth_date) == ("ann@example.com", date(1990, 5, 6))
    assert {r["state"] for r in key_rows(kit, "cust-2")} == {"ACTIVE"}
    assert {r["state"] for r in key_rows(kit, "")} == {"ACTIVE"}


def test_destroy_subject_is_audited(kit):
    add_orders(kit, "cust-1", 1)

    kit.keys.destroy_subject("cust-1", actor="dpo", reason="erasure request 42")

    (event,) = [e for e in audit_rows(kit) if e["event_type"] == "crypto.key.destroyed"]
    assert event["resource_id"] == "cust-1"
    assert event["actor_id"] == "dpo"
    assert event["reason"] == "erasure request 42"
    assert event["extra"]["keys_destroyed"] == 1


def test_writes_for_a_destroyed_subject_are_refused(make_kit):
    kit = make_kit()
    add_orders(kit, "cust-1", 1)
    kit.keys.destroy_subject("cust-1", actor="dpo")

    with pytest.raises(KeyDestroyedError):
        write_order(kit, "cust-1")
    with pytest.raises(KeyDestroyedError):
        write_order(make_kit(), "cust-1")  # a process that never knew the subject
    write_order(kit, "cust-2")  # other subjects still write
    assert [r["state"] for r in key_rows(kit, "cust-1")] == ["DESTROYED"]


def test_destroying_a_subject_that_never_had_data_leaves_a_tombstone(make_kit):
    kit = make_kit()

    assert kit.keys.destroy_subject("never-seen", actor="dpo") == 0

    (tombstone,) = key_rows(kit, "never-seen")
    assert tombstone["state"] == "DESTROYED"
    assert tombstone["wrapped_key"] is None and tombstone["active_scope"] is None
    with pytest.raises(KeyDestroyedError):
        write_order(kit, "never-seen")
    with pytest.raises(KeyDestroyedError):
        write_order(make_kit(), "never-seen")  # the tombstone, not this process's memory
    assert len(key_rows(kit, "never-seen")) == 1


def test_destroying_the_service_scope_is_refused(kit):
    with kit.sessions() as s:
        s.add(Customer(email="ann@example.com"))
        s.commit()

    with pytest.raises(CryptoError, match="service-wide"):
        kit.keys.destroy_subject("", actor="dpo")

    assert {r["state"] for r in key_rows(kit, "")} == {"ACTIVE"}
    assert all(r["wrapped_key"] is not None for r in key_rows(kit, ""))
    assert not [e for e in audit_rows(kit) if e["event_type"] == "crypto.key.destroyed"]


def test_replica_with_the_key_cached_stops_decrypting_after_refresh(make_kit):
    first = make_kit()
    orders = add_orders(first, "cust-1", 2)
    replica = make_kit()
    assert read_orders(replica, "cust-1") == orders  # the replica now caches cust-1's key

    first.keys.destroy_subject("cust-1", actor="dpo")
    replica.keys.refresh()

    assert addresses(replica, "cust-1") == dict.fromkeys(orders)
    with pytest.raises(KeyDestroyedError):
        read_orders(replica, "cust-1")
    with pytest.raises(KeyDestroyedError):
        write_order(replica, "cust-1")


def test_destroyed_key_rows_keep_no_key_material(kit):
    add_orders(kit, "cust-1", 1)
    kit.keys.rotate(scope="cust-1", actor="ops")  # two keys: DECRYPT_ONLY and ACTIVE
    add_orders(kit, "cust-1", 1)

    assert kit.keys.destroy_subject("cust-1", actor="dpo") == 2

    rows = key_rows(kit, "cust-1")
    assert len(rows) == 2
    for row in rows:
        assert row["state"] == "DESTROYED"
        assert row["wrapped_key"] is None
        assert row["check_value"] is None
        assert row["active_scope"] is None
        assert row["destroyed_at"] is not None and row["destroyed_by"] == "dpo"


# regressions (found while writing these tests) -------------------------------------------


def test_reencrypt_skips_shredded_rows_and_moves_the_others(kit):
    add_orders(kit, "cust-1", 2)
    kept = add_orders(kit, "cust-2", 3)
    kit.keys.destroy_subject("cust-1", actor="dpo")
    new = kit.keys.rotate(scope="cust-2")
    shredded_before = {k: v for k, v in raw_orders(kit).items() if k not in kept}

    result = kit.encryption.reencrypt(Order)

    assert result.finished
    raw = raw_orders(kit)
    assert {int.from_bytes(raw[k][0][1:5], "big") for k in kept} == {new}
    assert {k: v for k, v in raw.items() if k not in kept} == shredded_before
    assert read_orders(kit, "cust-2") == kept


def test_rotating_a_destroyed_subject_is_refused(kit):
    add_orders(kit, "cust-1", 1)
    kit.keys.destroy_subject("cust-1", actor="dpo")

    with pytest.raises(CryptoError):
        kit.keys.rotate(scope="cust-1", actor="ops")

    assert {r["state"] for r in key_rows(kit, "cust-1")} == {"DESTROYED"}
    with pytest.raises(KeyDestroyedError):
        write_order(kit, "cust-1")


def test_new_subject_key_inside_a_transaction_that_already_wrote(kit):
    """On SQLite the key is written in the session's own transaction (no self-deadlock)."""
    with kit.sessions() as s:
        s.add(Order(customer_id="first", address="a"))
        s.flush()  # the transaction now holds SQLite's write lock
        s.add(Order(customer_id="second", address="b"))  # a subject never seen: new key
        s.commit()
    assert {o for o, _ in read_orders(kit, "second").values()} == {"b"}


def test_a_subject_key_made_in_a_rolled_back_transaction_leaves_nothing(kit):
    with kit.sessions() as s:
        s.add(Order(customer_id="first", address="a"))
        s.flush()
        s.add(Order(customer_id="ghost", address="g"))
        s.flush()
        s.rollback()
    # Rolled back with its data (SQLite) or unused (PostgreSQL): either way a later write works.
    with kit.sessions() as s:
        s.add(Order(customer_id="ghost", address="again"))
        s.commit()
    assert {o for o, _ in read_orders(kit, "ghost").values()} == {"again"}
