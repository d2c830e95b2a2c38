"""Field encryption through the ORM: round trips, validation, storage, binding, tampering.

Every test runs on SQLite and PostgreSQL (``database_url``) unless its
docstring or section comment says why one database is enough.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from tests.conftest import audit_rows
from tests.crypto.fle_models import Customer, Record
from tests.crypto.fle_models_extra import (
    AutoPk,
    Contact,
    PersonOtherAlias,
    PersonRenamed,
    PersonV1,
    unbound_model,
)

import soc2kit
from soc2kit.crypto import CryptoError, DecryptionError, Encrypted
from soc2kit.crypto.orm import Sealed, Stored
from soc2kit.db import normalize_url
from soc2kit.errors import ConfigurationError

# helpers ------------------------------------------------------------------------------


def add(kit: soc2kit.Kit, obj: Any) -> Any:
    """Insert ``obj`` in its own session and return its primary key."""
    with kit.sessions() as s:
        s.add(obj)
        s.commit()
        return obj.id


def load(kit: soc2kit.Kit, model: type, row_id: Any) -> Any:
    """The entity ``row_id``, loaded (and decrypted) in a fresh session."""
    with kit.sessions() as s:
        obj = s.get(model, row_id)
        assert obj is not None
        return obj


def opens(kit: soc2kit.Kit, model: type, row_id: Any) -> bool:
    """True when the entity loads; False when opening it raises DecryptionError."""
    try:
        load(kit, model, row_id)
    except DecryptionError:
        return False
    return True


def _raw_table(table: str, column: str, type_: Any) -> sa.TableClause:
    return sa.table(table, sa.column("id", sa.Uuid), sa.column(column, type_))


def read_raw(
    kit: soc2kit.Kit, table: str, column: str, row_id: Any, type_: Any = sa.LargeBinary
) -> Any:
    """The stored value itself, through a lightweight table (no Encrypted type on it)."""
    t = _raw_table(table, column, type_)
    with kit.engine.connect() as conn:
        value = conn.execute(sa.select(t.c[column]).where(t.c.id == row_id)).scalar_one()
    return bytes(value) if isinstance(value, bytes | memoryview) else value


def write_raw(
    kit: soc2kit.Kit,
    table: str,
    column: str,
    row_id: Any,
    value: Any,
    type_: Any = sa.LargeBinary,
) -> None:
    """Overwrite a stored value with raw SQL, as an attacker with database access would."""
    t = _raw_table(table, column, type_)
    with kit.engine.begin() as conn:
        changed = conn.execute(sa.update(t).where(t.c.id == row_id).values({column: value}))
        assert changed.rowcount == 1


def flip_bit(blob: bytes, offset: int) -> bytes:
    data = bytearray(blob)
    data[offset] ^= 0x01
    return bytes(data)


IST = timezone(timedelta(hours=5, minutes=30))

ROUND_TRIP_CASES: dict[str, dict[str, Any]] = {
    "typical": {
        "text": "héllo wörld ✓ 日本語 🎉🔐",
        "blob": bytes(range(256)),
        "count": -(2**100) - 7,
        "amount": Decimal("1234567890.12"),
        "ratio": 0.1 + 0.2,
        "flag": True,
        "day": date(1999, 12, 31),
        "moment": datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=IST),
        "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "doc": {"name": "Zoë", "tags": ["a", "b"], "n": 3, "nested": {"ok": True, "x": None}},
        "note": "text storage ünïcode 🎉",
    },
    "edge": {
        "text": "",
        "blob": b"",
        "count": 0,
        "amount": Decimal("-0.01"),
        "ratio": -1.5e-300,
        "flag": False,
        "day": date(1, 1, 1),
        "moment": datetime(2000, 1, 1, tzinfo=UTC),
        "ref": uuid.UUID(int=0),
        "doc": [1, "two", [3], {"four": 4}],
        "note": "",
    },
}

ENCRYPTED_RECORD_FIELDS = tuple(ROUND_TRIP_CASES["typical"])


# round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(ROUND_TRIP_CASES))
def test_every_supported_type_round_trips(kit: soc2kit.Kit, case: str) -> None:
    """Equal values of the very same type (``True == 1`` and ``Decimal(1) == 1`` do not pass)."""
    values = ROUND_TRIP_CASES[case]
    row_id = add(kit, Record(**values))
    got = load(kit, Record, row_id)
    assert {k: (type(getattr(got, k)), getattr(got, k)) for k in values} == {
        k: (type(v), v) for k, v in values.items()
    }


def test_aware_datetime_keeps_its_offset(sqlite_kit: soc2kit.Kit) -> None:
    """The offset travels inside the ciphertext: SQLite is enough."""
    moment = datetime(2024, 6, 1, 8, 30, tzinfo=IST)
    row_id = add(sqlite_kit, Record(moment=moment))
    got = load(sqlite_kit, Record, row_id).moment
    assert got == moment
    assert got.utcoffset() == timedelta(hours=5, minutes=30)


def test_none_stays_none(kit: soc2kit.Kit) -> None:
    row_id = add(kit, Record())
    got = load(kit, Record, row_id)
    assert all(getattr(got, k) is None for k in ENCRYPTED_RECORD_FIELDS)
    with kit.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT text, blob, note, doc FROM records")).one()
    assert tuple(row) == (None, None, None, None)  # NULL stays NULL, not a sealed None


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.text(), blob=st.binary(), count=st.integers())
def test_str_bytes_int_round_trip_property(
    sqlite_kit: soc2kit.Kit, text: str, blob: bytes, count: int
) -> None:
    """Property test on SQLite only (speed): the codec and AEAD do not depend on the database."""
    row_id = add(sqlite_kit, Record(text=text, blob=blob, count=count))
    got = load(sqlite_kit, Record, row_id)
    assert (got.text, got.blob, got.count) == (text, blob, count)


# validation (runs before any SQL is sent: SQLite is enough) ----------------------------

WRONG_TYPES: dict[str, tuple[str, Any]] = {
    "int into str": ("text", 424242),
    "str into bytes": ("blob", "not-bytes-424242"),
    "str into int": ("count", "424242"),
    "bool into int": ("count", True),
    "float into Decimal": ("amount", 4242.42),
    "int into bool": ("flag", 1),
    "datetime into date": ("day", datetime(2020, 2, 2, 4, 24, tzinfo=UTC)),
    "str into UUID": ("ref", "12345678-1234-5678-1234-567812345678"),
    "str into JSON": ("doc", "json-string-424242"),
    "bytes into text storage": ("note", b"bytes-424242"),
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_wrong_type_is_refused_without_the_value(sqlite_kit: soc2kit.Kit, case: str) -> None:
    attr, value = WRONG_TYPES[case]
    with sqlite_kit.sessions() as s:
        s.add(Record(**{attr: value}))
        with pytest.raises(CryptoError) as info:
            s.commit()
    message = str(info.value)
    assert str(value) not in message
    assert repr(value) not in message
    assert "424242" not in message and "12345678" not in message


def test_nothing_is_written_when_validation_fails(sqlite_kit: soc2kit.Kit) -> None:
    kit = sqlite_kit
    with kit.sessions() as s:
        s.add(Record(text="fine", count="not an int"))
        with pytest.raises(CryptoError):
            s.commit()
    with kit.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM records")).scalar_one() == 0


def test_naive_datetime_is_refused(sqlite_kit: soc2kit.Kit) -> None:
    with sqlite_kit.sessions() as s:
        s.add(Record(moment=datetime(2024, 1, 1, 12, 0)))
        with pytest.raises(CryptoError, match="naive"):
            s.commit()


def test_string_length_is_enforced(sqlite_kit: soc2kit.Kit) -> None:
    kit = sqlite_kit
    ok = "a" * 308 + "@example.com"  # exactly 320 characters
    assert len(ok) == 320
    row_id = add(kit, Customer(email=ok))
    assert load(kit, Customer, row_id).email == ok
    with kit.sessions() as s:
        s.add(Customer(email="b" + ok))
        with pytest.raises(CryptoError, match="320") as info:
            s.commit()
    assert "bbbb" not in str(info.value)


def test_length_counts_characters_not_bytes(sqlite_kit: soc2kit.Kit) -> None:
    """String(320) means 320 characters, as for a plaintext column (emoji are 4 bytes)."""
    kit = sqlite_kit
    email = "🎉" * 320
    row_id = add(kit, Customer(email=email))
    assert load(kit, Customer, row_id).email == email


def test_datetime_without_timezone_is_refused_at_declaration() -> None:
    """Declaration time: no database involved."""
    with pytest.raises(ConfigurationError, match="timezone=True"):
        Encrypted(sa.DateTime)
    with pytest.raises(ConfigurationError, match="timezone=True"):
        Encrypted(sa.DateTime(timezone=False))


def test_json_with_unserialisable_content_raises_crypto_error(sqlite_kit: soc2kit.Kit) -> None:
    """Validation runs before any SQL: SQLite is enough."""
    with sqlite_kit.sessions() as s:
        s.add(Record(doc={"when": datetime(2024, 1, 1, tzinfo=UTC)}))
        with pytest.raises(CryptoError):
            s.commit()


# what the database holds -----------------------------------------------------------------


def test_stored_values_are_ciphertexts(kit: soc2kit.Kit) -> None:
    add(kit, Record(text="PLAINTEXT-MARKER-text", blob=b"PLAINTEXT-MARKER-blob", count=987654321))
    add(kit, Record(note="PLAINTEXT-MARKER-note"))
    add(kit, Customer(email="PLAINTEXT-MARKER@example.com", phone="+1 555 0100"))
    with kit.engine.connect() as conn:
        records = sa.text("SELECT text, blob, count FROM records WHERE note IS NULL")
        customers = sa.text("SELECT email, phone FROM customers")
        binary = [*conn.execute(records).one(), *conn.execute(customers).one()]
        text = conn.execute(sa.text("SELECT note FROM records WHERE note IS NOT NULL")).scalar_one()
    for raw in binary:
        blob = bytes(raw)
        assert blob[0] == 0xE1
        assert b"PLAINTEXT-MARKER" not in blob
        assert b"987654321" not in blob
        assert b"555 0100" not in blob
    assert isinstance(text, str)
    assert text.startswith("e1:")
    assert "PLAINTEXT-MARKER" not in text


def test_equal_plaintexts_give_different_ciphertexts(sqlite_kit: soc2kit.Kit) -> None:
    """Random nonces: a property of the cipher, not of the database (SQLite is enough)."""
    kit = sqlite_kit
    a = add(kit, Record(text="same"))
    b = add(kit, Record(text="same"))
    assert read_raw(kit, "records", "text", a) != read_raw(kit, "records", "text", b)


# moved or altered ciphertexts ------------------------------------------------------------


def test_ciphertext_copied_to_another_row_fails(kit: soc2kit.Kit) -> None:
    a = add(kit, Customer(email="ann@example.com"))
    b = add(kit, Customer(email="bob@example.com"))
    write_raw(kit, "customers", "email", b, read_raw(kit, "customers", "email", a))
    assert load(kit, Customer, a).email == "ann@example.com"  # the bytes are valid where they were
    with kit.sessions() as s, pytest.raises(DecryptionError):
        s.get(Customer, b)


def test_ciphertext_copied_to_another_column_fails(kit: soc2kit.Kit) -> None:
    """email -> birth_date: same row, tenant, key scope and storage; only the column differs."""
    a = add(kit, Customer(email="ann@example.com"))
    write_raw(kit, "customers", "birth_date", a, read_raw(kit, "customers", "email", a))
    with kit.sessions() as s, pytest.raises(DecryptionError):
        s.get(Customer, a)


def test_ciphertext_copied_to_another_table_fails(kit: soc2kit.Kit) -> None:
    """customers.email -> contacts.email: same column name, row id and tenant."""
    a = add(kit, Customer(email="ann@example.com"))
    add(kit, Contact(id=a, email="other@example.com"))
    write_raw(kit, "contacts", "email", a, read_raw(kit, "customers", "email", a))
    with kit.sessions() as s, pytest.raises(DecryptionError):
        s.get(Contact, a)


def test_tenant_swap_fails(kit: soc2kit.Kit) -> None:
    a = add(kit, Customer(tenant_id="acme", email="ann@example.com"))
    write_raw(kit, "customers", "tenant_id", a, "globex", type_=sa.String)
    with kit.sessions() as s, pytest.raises(DecryptionError):
        s.get(Customer, a)


# offsets into the v1 layout: 0xE1 | key id (4) | nonce (12) | body | tag (16)
BIT_FLIPS = {
    "format byte": 0,
    "key id": 3,
    "nonce": 5 + 6,
    "body": 17,
    "tag": -1,
}


def test_flipped_bit_anywhere_fails(kit: soc2kit.Kit) -> None:
    rows = {region: add(kit, Customer(email="ann@example.com")) for region in BIT_FLIPS}
    for region, row_id in rows.items():
        raw = read_raw(kit, "customers", "email", row_id)
        write_raw(kit, "customers", "email", row_id, flip_bit(raw, BIT_FLIPS[region]))
    undetected = [region for region, row_id in rows.items() if opens(kit, Customer, row_id)]
    assert undetected == []


def test_flipped_bit_in_text_storage_fails(kit: soc2kit.Kit) -> None:
    a = add(kit, Record(note="a note"))
    stored = read_raw(kit, "records", "note", a, type_=sa.Text)
    blob = soc2kit.crypto.from_text(stored)
    tampered = soc2kit.crypto.to_text(flip_bit(blob, 20))
    write_raw(kit, "records", "note", a, tampered, type_=sa.Text)
    with kit.sessions() as s, pytest.raises(DecryptionError):
        s.get(Record, a)


def test_decrypt_failure_is_audited_without_plaintext(kit: soc2kit.Kit) -> None:
    a = add(kit, Customer(email="ann.secret@example.com"))
    b = add(kit, Customer(email="bob.secret@example.com"))
    write_raw(kit, "customers", "email", b, read_raw(kit, "customers", "email", a))
    with kit.sessions() as s, pytest.raises(DecryptionError):
        s.get(Customer, b)
    failures = [e for e in audit_rows(kit) if e["event_type"] == "crypto.decrypt.failed"]
    assert len(failures) == 1
    text = json.dumps(failures[0])
    assert "secret" not in text
    assert str(b) in text  # names the row it refused to open


# re-sealing on update ----------------------------------------------------------------------


def test_updating_encrypted_attribute_reseals_it(kit: soc2kit.Kit) -> None:
    a = add(kit, Customer(email="ann@example.com"))
    before = read_raw(kit, "customers", "email", a)
    with kit.sessions() as s:
        s.get(Customer, a).email = "new@example.com"
        s.commit()
    assert read_raw(kit, "customers", "email", a) != before
    assert load(kit, Customer, a).email == "new@example.com"


def test_updating_plain_attribute_keeps_ciphertext(kit: soc2kit.Kit) -> None:
    a = add(kit, Customer(email="ann@example.com", birth_date=date(1990, 1, 2)))
    email = read_raw(kit, "customers", "email", a)
    birth = read_raw(kit, "customers", "birth_date", a)
    with kit.sessions() as s:
        s.get(Customer, a).name = "Ann"
        s.commit()
    assert read_raw(kit, "customers", "email", a) == email
    assert read_raw(kit, "customers", "birth_date", a) == birth
    assert load(kit, Customer, a).name == "Ann"


def test_changing_tenant_rebinds_encrypted_values(kit: soc2kit.Kit) -> None:
    a = add(kit, Customer(tenant_id="acme", email="ann@example.com", birth_date=date(1990, 1, 2)))
    before = read_raw(kit, "customers", "email", a)
    with kit.sessions() as s:
        s.get(Customer, a).tenant_id = "globex"
        s.commit()
    assert read_raw(kit, "customers", "email", a) != before
    got = load(kit, Customer, a)
    assert (got.tenant_id, got.email, got.birth_date) == (
        "globex",
        "ann@example.com",
        date(1990, 1, 2),
    )


# objects in memory ----------------------------------------------------------------------


def test_object_shows_plaintext_after_commit(kit: soc2kit.Kit) -> None:
    with kit.sessions() as s:
        c = Customer(email="ann@example.com", birth_date=date(1990, 1, 2))
        s.add(c)
        s.commit()
        assert c.email == "ann@example.com"
        assert c.birth_date == date(1990, 1, 2)
        c.email = "new@example.com"
        s.commit()
        assert c.email == "new@example.com"
        assert not isinstance(c.__dict__["email"], Sealed | Stored)


def test_expired_object_reloads_as_plaintext(kit: soc2kit.Kit) -> None:
    with Session(kit.engine) as s:  # expire_on_commit=True: the next access reloads
        c = Customer(email="ann@example.com")
        s.add(c)
        s.commit()
        assert c.email == "ann@example.com"
        s.expire(c, ["email"])
        assert c.email == "ann@example.com"


def test_failed_flush_and_rollback_leave_plaintext(kit: soc2kit.Kit) -> None:
    a = add(kit, Customer(email="ann@example.com"))
    with kit.sessions() as s:
        dup = Customer(id=a, email="dup@example.com", birth_date=date(2000, 1, 1))
        s.add(dup)
        with pytest.raises(sa.exc.IntegrityError):
            s.commit()
        s.rollback()
        assert dup.email == "dup@example.com"
        assert dup.birth_date == date(2000, 1, 1)


def test_failed_validation_and_rollback_leave_plaintext(sqlite_kit: soc2kit.Kit) -> None:
    """Fails before any SQL: SQLite is enough."""
    with sqlite_kit.sessions() as s:
        c = Customer(email="ann@example.com", birth_date="1990-01-02")  # wrong type: str
        s.add(c)
        with pytest.raises(CryptoError):
            s.commit()
        s.rollback()
        assert c.email == "ann@example.com"


# row binding ------------------------------------------------------------------------------


def test_server_generated_key_needs_row_binding_opt_out(sqlite_kit: soc2kit.Kit) -> None:
    """Refused before the INSERT is sent: SQLite is enough."""
    with sqlite_kit.sessions() as s:
        s.add(AutoPk(secret="s3cret"))
        with pytest.raises(CryptoError, match="row binding"):
            s.commit()


def test_unbound_model_works_and_warns(kit: soc2kit.Kit) -> None:
    fresh_base, model = unbound_model()
    try:
        fresh_base.metadata.create_all(kit.engine)
        with kit.sessions() as s:
            obj = model(secret="s3cret")
            s.add(obj)
            with pytest.warns(UserWarning, match="not bound to their row"):
                s.commit()
            row_id = obj.id
        assert isinstance(row_id, int)
        with kit.sessions() as s:
            assert s.get(model, row_id).secret == "s3cret"
    finally:
        fresh_base.registry.dispose()


# logical table names ----------------------------------------------------------------------


def _write_and_rename(kit: soc2kit.Kit) -> uuid.UUID:
    row_id = add(kit, PersonV1(secret="s3cret"))
    with kit.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE people_v1 RENAME TO people_v2"))
    return row_id


def test_renamed_table_with_same_alias_decrypts(kit: soc2kit.Kit) -> None:
    row_id = _write_and_rename(kit)
    assert load(kit, PersonRenamed, row_id).secret == "s3cret"


def test_same_table_under_other_alias_fails(kit: soc2kit.Kit) -> None:
    row_id = _write_and_rename(kit)
    with kit.sessions() as s, pytest.raises(DecryptionError):
        s.get(PersonOtherAlias, row_id)


# masking ------------------------------------------------------------------------------------


def test_stored_and_sealed_repr_is_masked() -> None:
    """Plain objects: no database involved."""
    assert repr(Stored(b"raw-secret")) == "<encrypted>"
    assert repr(Stored("e1:raw-secret")) == "<encrypted>"
    assert repr(Sealed(b"\xe1blob", "plain-secret")) == "<encrypted>"
    assert str(Sealed(b"\xe1blob", "plain-secret")) == "<encrypted>"


def test_column_select_returns_masked_value(kit: soc2kit.Kit) -> None:
    add(kit, Customer(email="ann.secret@example.com"))
    with kit.sessions() as s:
        value = s.execute(sa.select(Customer.email)).scalar()
    assert isinstance(value, Stored)
    assert "secret" not in repr(value) and "secret" not in str(value)


# engines without a keyring ----------------------------------------------------------------


@pytest.fixture
def other_engine(kit: soc2kit.Kit, database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(normalize_url(database_url))
    yield engine
    engine.dispose()


def test_engine_without_keyring_refuses_to_load(kit: soc2kit.Kit, other_engine: sa.Engine) -> None:
    a = add(kit, Customer(email="ann@example.com"))
    with Session(other_engine) as s, pytest.raises(CryptoError, match="keyring"):
        s.get(Customer, a)


def test_engine_without_keyring_refuses_to_write(sqlite_kit: soc2kit.Kit, sqlite_url: str) -> None:
    """Refused while sealing, before the INSERT is sent: SQLite is enough."""
    engine = sa.create_engine(sqlite_url)
    try:
        with Session(engine) as s:
            s.add(Customer(email="ann@example.com"))
            with pytest.raises(CryptoError, match="keyring"):
                s.commit()
    finally:
        engine.dispose()
    with sqlite_kit.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM customers")).scalar_one() == 0


def test_attached_engine_reads_and_writes(kit: soc2kit.Kit, other_engine: sa.Engine) -> None:
    a = add(kit, Customer(email="ann@example.com"))
    kit.encryption.attach(other_engine)
    with Session(other_engine) as s:
        assert s.get(Customer, a).email == "ann@example.com"
        b = Customer(email="bob@example.com")
        s.add(b)
        s.commit()
        b_id = b.id
    assert load(kit, Customer, b_id).email == "bob@example.com"
