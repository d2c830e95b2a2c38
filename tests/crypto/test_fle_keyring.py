"""The keyring: creating and sharing keys, wrapping, rotation, rollover, cache, rewrap, retire."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import audit_rows
from tests.crypto.fle_models import Customer

import soc2kit
from soc2kit.crypto import (
    CryptoError,
    KeyInfo,
    Keyring,
    KeyState,
    KeyUnavailableError,
    UnknownKeyError,
)
from soc2kit.crypto.providers import generate_kek_spec
from soc2kit.errors import ConfigurationError

KEYS = "soc2kit_data_keys"


def key_rows(kit: soc2kit.Kit) -> list[dict[str, Any]]:
    with kit.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {KEYS}"))]


def key_row(kit: soc2kit.Kit, key_id: int) -> dict[str, Any]:
    (row,) = [r for r in key_rows(kit) if int(r["key_id"]) == key_id]
    return row


def active_ids(kit: soc2kit.Kit, purpose: str = "enc", scope: str = "") -> list[int]:
    return [
        int(r["key_id"])
        for r in key_rows(kit)
        if r["purpose"] == purpose and r["scope"] == scope and r["state"] == "ACTIVE"
    ]


def raw_column(kit: soc2kit.Kit, column: str, table: str = "customers") -> dict[Any, bytes]:
    with kit.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, {column} FROM {table}")).all()
    # SQLite hands the UUID key back as hex text: normalise to the ORM's uuid.UUID.
    return {uuid.UUID(str(r[0])): None if r[1] is None else bytes(r[1]) for r in rows}


def header_key(raw: bytes) -> int:
    return int.from_bytes(raw[1:5], "big")


def add_customers(kit: soc2kit.Kit, n: int, *, prefix: str = "c") -> dict[Any, str]:
    """n customers (global keys only: email, birth date); returns id -> email."""
    with kit.sessions() as s:
        people = [
            Customer(email=f"{prefix}{i}@example.com", birth_date=date(1990, 1, 1 + i % 28))
            for i in range(n)
        ]
        s.add_all(people)
        s.commit()
        return {c.id: c.email for c in people}


def read_emails(kit: soc2kit.Kit) -> dict[Any, str]:
    with kit.sessions() as s:
        return {c.id: c.email for c in s.scalars(sa.select(Customer))}


def fresh_keyring(kit: soc2kit.Kit) -> Keyring:
    """A keyring with a cold cache on the same table and provider (a restarted process)."""
    return Keyring(kit.engine, kit.keys.provider, kit.settings, kit.audit)


def count_unwraps(kit: soc2kit.Kit) -> list[int]:
    """Count provider.unwrap calls (instance attribute shadows the method)."""
    calls = [0]
    provider = kit.keys.provider
    original = provider.unwrap

    def counting(blob: bytes, context: Any) -> bytes:
        calls[0] += 1
        return original(blob, context)

    provider.unwrap = counting  # type: ignore[method-assign]
    return calls


# load -------------------------------------------------------------------------------


def test_load_creates_one_active_enc_and_one_active_bidx_key(make_kit):
    kit = make_kit()
    rows = key_rows(kit)
    assert sorted((r["purpose"], r["scope"], r["state"]) for r in rows) == [
        ("bidx", "", "ACTIVE"),
        ("enc", "", "ACTIVE"),
    ]
    assert {r["active_scope"] for r in rows} == {"enc:", "bidx:"}


def test_second_kit_reuses_the_keys_and_reads_the_first_kits_rows(make_kit):
    first = make_kit()
    written = add_customers(first, 5)
    before = sorted(int(r["key_id"]) for r in key_rows(first))

    second = make_kit()  # load(create=True) on a database that already has keys

    assert sorted(int(r["key_id"]) for r in key_rows(second)) == before
    assert second.keys.active_key_id() == first.keys.active_key_id()
    assert read_emails(second) == written


def test_production_load_without_keys_refuses_to_start(make_kit, make_settings, database_url):
    kit = make_kit(load=False)  # tables, no keys
    production = make_settings(environment="production", database_url=database_url)
    keyring = Keyring(kit.engine, kit.keys.provider, production, kit.audit)

    with pytest.raises(ConfigurationError, match="soc2kit keys generate"):
        keyring.load(create=False)
    assert key_rows(kit) == []


def test_production_keyring_never_creates_service_keys_on_first_use(
    make_kit, make_settings, database_url
):
    kit = make_kit(load=False)
    production = make_settings(environment="production", database_url=database_url)
    keyring = Keyring(kit.engine, kit.keys.provider, production, kit.audit)

    with pytest.raises(KeyUnavailableError, match="soc2kit keys generate"):
        keyring.encryption_key()
    with pytest.raises(KeyUnavailableError, match="soc2kit keys generate"):
        keyring.blind_keys()
    assert key_rows(kit) == []


# wrapping ---------------------------------------------------------------------------


def test_wrapped_key_never_contains_the_raw_key(make_kit):
    kit = make_kit()
    for row in key_rows(kit):
        material = kit.keys.decryption_key(int(row["key_id"])).material
        wrapped = bytes(row["wrapped_key"])
        assert wrapped != material
        assert material not in wrapped
        assert material[:16] not in wrapped and material[16:] not in wrapped
        assert bytes(row["check_value"]) not in material  # the check value is no key slice


def test_wrapped_key_copied_onto_another_key_row_fails_to_unwrap(make_kit):
    kit = make_kit()
    enc_id, bidx_id = active_ids(kit, "enc")[0], active_ids(kit, "bidx")[0]
    enc = key_row(kit, enc_id)
    with kit.engine.begin() as conn:
        # Copy the check value too: only the wrap context can tell the rows apart.
        conn.execute(
            sa.text(f"UPDATE {KEYS} SET wrapped_key = :w, check_value = :c WHERE key_id = :k"),
            {"w": enc["wrapped_key"], "c": enc["check_value"], "k": bidx_id},
        )
    keyring = fresh_keyring(kit)

    with pytest.raises(KeyUnavailableError):
        keyring.decryption_key(bidx_id)
    assert keyring.decryption_key(enc_id).key_id == enc_id  # the original row still unwraps


def test_tampered_check_value_fails_unwrap(make_kit):
    kit = make_kit()
    enc_id = active_ids(kit, "enc")[0]
    check = bytearray(key_row(kit, enc_id)["check_value"])
    check[0] ^= 0x01
    with kit.engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {KEYS} SET check_value = :c WHERE key_id = :k"),
            {"c": bytes(check), "k": enc_id},
        )

    with pytest.raises(KeyUnavailableError, match="check value"):
        fresh_keyring(kit).decryption_key(enc_id)


def test_kit_with_another_kek_cannot_read_the_data(make_kit):
    writer = make_kit(encryption_kek=generate_kek_spec("main"))
    add_customers(writer, 3)

    # Same KEK id, other material: the wrapped keys fail to authenticate.
    intruder = make_kit(load=False, encryption_kek=generate_kek_spec("main"))
    with pytest.raises(KeyUnavailableError):
        read_emails(intruder)
    with pytest.raises(KeyUnavailableError):
        intruder.keys.load(create=True)


# rotation ---------------------------------------------------------------------------


def test_rotate_demotes_the_old_key_and_new_writes_use_the_new_key(make_kit):
    kit = make_kit()
    old = kit.keys.active_key_id()

    new = kit.keys.rotate(actor="ops")

    assert new != old
    assert key_row(kit, old)["state"] == "DECRYPT_ONLY"
    assert key_row(kit, old)["active_scope"] is None
    assert key_row(kit, new)["state"] == "ACTIVE"
    assert kit.keys.active_key_id() == new
    written = add_customers(kit, 3, prefix="after")
    raw = raw_column(kit, "email")
    assert {header_key(raw[cid]) for cid in written} == {new}


def test_rows_written_before_rotate_still_read(make_kit):
    kit = make_kit()
    written = add_customers(kit, 4)
    old = kit.keys.active_key_id()

    kit.keys.rotate()

    assert {header_key(v) for v in raw_column(kit, "email").values()} == {old}
    assert read_emails(kit) == written
    assert read_emails(make_kit()) == written  # and in a process that never cached it


def test_at_most_one_active_key_per_scope(make_kit):
    kit = make_kit()
    old = kit.keys.active_key_id()
    kit.keys.rotate()
    kit.keys.rotate()

    assert len(active_ids(kit, "enc")) == 1
    with pytest.raises(sa.exc.IntegrityError), kit.engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {KEYS} SET state = 'ACTIVE', active_scope = 'enc:' WHERE key_id = :k"),
            {"k": old},
        )
    assert len(active_ids(kit, "enc")) == 1


def test_key_creation_and_rotation_are_audited(make_kit):
    kit = make_kit()
    created = {e["resource_id"] for e in audit_rows(kit) if e["event_type"] == "crypto.key.created"}
    assert {f"{int(r['key_id']):08x}" for r in key_rows(kit)} <= created

    old = kit.keys.active_key_id()
    new = kit.keys.rotate(actor="ops", reason="scheduled")

    events = audit_rows(kit)
    assert any(
        e["event_type"] == "crypto.key.created" and e["resource_id"] == f"{new:08x}" for e in events
    )
    (rotated,) = [e for e in events if e["event_type"] == "crypto.key.rotated"]
    assert rotated["resource_id"] == f"{new:08x}"
    assert rotated["actor_id"] == "ops"
    assert rotated["extra"]["previous"] == f"{old:08x}"
    assert rotated["reason"] == "scheduled"


def test_rollover_at_the_encryption_limit(make_kit):
    kit = make_kit(encryption_max_encryptions_per_key=5)
    first = kit.keys.active_key_id()
    written: dict[Any, str] = {}
    for i in range(8):  # 8 customers x 2 global values = 16 encryptions
        written.update(add_customers(kit, 1, prefix=f"r{i}-"))
        # Rollover runs in the background (the writer may hold a transaction): let it land.
        wait_until(lambda: not kit.keys._rolling)

    assert kit.keys.active_key_id() != first
    enc_keys = [r for r in key_rows(kit) if r["purpose"] == "enc" and r["scope"] == ""]
    assert len(enc_keys) >= 3
    assert len(active_ids(kit, "enc")) == 1
    used = {header_key(v) for v in raw_column(kit, "email").values()}
    assert len(used) >= 3
    assert read_emails(kit) == written
    assert read_emails(make_kit()) == written


# cache ------------------------------------------------------------------------------


def test_tiny_cache_ttl_unwraps_again_and_values_still_read(make_kit):
    kit = make_kit(encryption_key_cache_ttl_seconds=0.001)
    written = add_customers(kit, 5)
    calls = count_unwraps(kit)

    got = {}
    for cid in written:
        time.sleep(0.003)
        with kit.sessions() as s:
            got[cid] = s.get(Customer, cid).email

    assert got == written
    assert calls[0] >= len(written)


def test_cache_use_limit_unwraps_again_and_values_still_read(make_kit):
    kit = make_kit(encryption_key_cache_max_uses=1)
    calls = count_unwraps(kit)

    written: dict[Any, str] = {}
    for i in range(6):
        written.update(add_customers(kit, 1, prefix=f"u{i}-"))  # 2 encryptions each

    assert calls[0] >= 10
    assert read_emails(kit) == written


def test_default_cache_makes_no_provider_call_per_value(make_kit):
    writer = make_kit()
    writer_calls = count_unwraps(writer)
    written = add_customers(writer, 100)
    assert writer_calls[0] <= 2

    reader = make_kit()  # cold process: load() unwraps the service keys once
    calls = count_unwraps(reader)
    assert read_emails(reader) == written
    with reader.sessions() as s:
        assert len({c.birth_date for c in s.scalars(sa.select(Customer))}) > 1
    assert calls[0] <= 2


# KEK rewrap -------------------------------------------------------------------------


def _rewrapped(make_kit) -> tuple[soc2kit.Kit, dict[Any, str], dict[Any, bytes], str]:
    old_spec, new_spec = generate_kek_spec("old"), generate_kek_spec("new")
    first = make_kit(encryption_kek=old_spec)
    written = add_customers(first, 6)
    first.keys.rotate()  # a DECRYPT_ONLY key must move too
    written.update(add_customers(first, 3, prefix="late"))
    before = raw_column(first, "email") | {
        ("b", k): v for k, v in raw_column(first, "birth_date").items()
    }

    both = make_kit(encryption_kek=f"{new_spec},{old_spec}")
    assert both.keys.rewrap_all(actor="ops") == len(key_rows(both))
    return first, written, before, new_spec


def test_rewrap_all_moves_every_key_under_the_new_kek(make_kit):
    _first, written, _before, new_spec = _rewrapped(make_kit)

    only_new = make_kit(encryption_kek=new_spec)  # load() checks every active key

    assert {r["kek_ref"] for r in key_rows(only_new)} == {"local:new"}
    assert read_emails(only_new) == written
    for row in key_rows(only_new):  # DECRYPT_ONLY keys included
        only_new.keys.decryption_key(int(row["key_id"]))


def test_rewrap_all_rewrites_no_data_row(make_kit):
    first, _written, before, _new_spec = _rewrapped(make_kit)

    after = raw_column(first, "email") | {
        ("b", k): v for k, v in raw_column(first, "birth_date").items()
    }
    assert after == before


# retire -----------------------------------------------------------------------------


def test_retire_is_refused_while_rows_use_the_key(make_kit):
    kit = make_kit()
    add_customers(kit, 3)
    old = kit.keys.active_key_id()
    kit.keys.rotate()

    with pytest.raises(CryptoError, match="still use key"):
        kit.encryption.retire(old, [Customer])
    assert key_row(kit, old)["state"] == "DECRYPT_ONLY"
    kit.keys.decryption_key(old)  # still usable


def test_retire_after_reencrypt_makes_the_key_unknown(make_kit):
    kit = make_kit()
    written = add_customers(kit, 3)
    old = kit.keys.active_key_id()
    kit.keys.rotate()
    assert kit.encryption.reencrypt(Customer).remaining == 0

    kit.encryption.retire(old, [Customer], actor="ops")

    assert key_row(kit, old)["state"] == KeyState.RETIRED.value
    with pytest.raises(UnknownKeyError):
        kit.keys.decryption_key(old)
    with pytest.raises(UnknownKeyError):
        fresh_keyring(kit).decryption_key(old)
    assert read_emails(kit) == written
    assert any(e["event_type"] == "crypto.key.retired" for e in audit_rows(kit))


def test_retire_refuses_the_active_key(make_kit):
    kit = make_kit()
    with pytest.raises(CryptoError, match="not DECRYPT_ONLY"):
        kit.encryption.retire(kit.keys.active_key_id(), [Customer])
    assert len(active_ids(kit, "enc")) == 1


# listing ----------------------------------------------------------------------------


def test_list_keys_shows_no_key_material(make_kit):
    kit = make_kit()
    kit.keys.rotate()
    infos = kit.keys.list_keys()
    assert len(infos) == len(key_rows(kit)) == 3
    fields = {f.name for f in dataclasses.fields(KeyInfo)}
    assert not fields & {"wrapped_key", "check_value", "material", "key"}
    for info in infos:
        row = key_row(kit, info.key_id)
        material = kit.keys.decryption_key(info.key_id).material
        for text in (repr(info), str(info)):
            for secret in (bytes(row["wrapped_key"]), bytes(row["check_value"]), material):
                assert repr(secret) not in text
                assert secret.hex() not in text
    assert "material" not in repr(kit.keys.decryption_key(infos[0].key_id))


def test_encryption_counts_grow_after_flush_counts(make_kit):
    kit = make_kit()
    active = kit.keys.active_key_id()
    kit.keys.flush_counts()
    before = int(key_row(kit, active)["encryptions"])

    add_customers(kit, 3)  # 6 service-key encryptions
    kit.keys.flush_counts()

    assert int(key_row(kit, active)["encryptions"]) == before + 6
    (info,) = [k for k in kit.keys.list_keys() if k.key_id == active]
    assert info.encryptions == before + 6


def test_rollover_inside_a_transaction_that_already_wrote(make_kit):
    """The rollover waits for the writer's transaction instead of deadlocking on it."""
    kit = make_kit(encryption_max_encryptions_per_key=3)
    first = kit.keys.active_key_id()
    with kit.sessions() as s:
        for i in range(4):
            s.add(Customer(email=f"t{i}@example.com"))
            s.flush()  # from the first flush on, the transaction holds SQLite's write lock
        s.commit()
    wait_until(lambda: kit.keys.active_key_id() != first)
    assert len(read_emails(kit)) == 4


def wait_until(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
