"""Query guards on encrypted columns, refused Core/bulk writes, blind-index lookups.

Every test runs on SQLite and PostgreSQL (``database_url``) unless its
docstring or section comment says why one database is enough.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from tests.crypto.fle_models import Customer

import soc2kit
from soc2kit.crypto import CryptoError, QueryGuardError, blind_index_of, uuid7


def add(kit: soc2kit.Kit, **values: Any) -> Any:
    with kit.sessions() as s:
        customer = Customer(**values)
        s.add(customer)
        s.commit()
        return customer.id


def ids(kit: soc2kit.Kit, where: Any) -> set[Any]:
    with kit.sessions() as s:
        return set(s.scalars(sa.select(Customer.id).where(where)))


@pytest.fixture
def statements(kit: soc2kit.Kit) -> Iterator[list[str]]:
    """Every SQL statement sent to the database while the test runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(kit.engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(kit.engine, "before_cursor_execute", record)


# refused at expression-build time (no database involved) -----------------------------------

REFUSED_EXPRESSIONS: dict[str, Callable[[], Any]] = {
    "==": lambda: Customer.email == "s3cr3t@example.com",
    "!=": lambda: Customer.email != "s3cr3t@example.com",
    "<": lambda: Customer.email < "s3cr3t",
    ">=": lambda: Customer.email >= "s3cr3t",
    "like": lambda: Customer.email.like("%s3cr3t%"),
    "ilike": lambda: Customer.email.ilike("%S3CR3T%"),
    "in_": lambda: Customer.email.in_(["s3cr3t@example.com", "b@example.com"]),
    "not_in": lambda: Customer.email.not_in(["s3cr3t@example.com"]),
    "startswith": lambda: Customer.email.startswith("s3cr3t"),
    "endswith": lambda: Customer.email.endswith("s3cr3t"),
    "contains": lambda: Customer.email.contains("s3cr3t"),
    "asc": lambda: Customer.email.asc(),
    "desc": lambda: Customer.email.desc(),
    "between": lambda: Customer.email.between("s3cr3t-a", "s3cr3t-b"),
    "reflected ==": lambda: "s3cr3t@example.com" == Customer.email,  # noqa: SIM300
}


@pytest.mark.parametrize("op", list(REFUSED_EXPRESSIONS))
def test_operator_on_encrypted_column_is_refused(op: str) -> None:
    """Raised while building the expression: no database involved."""
    with pytest.raises(QueryGuardError) as info:
        REFUSED_EXPRESSIONS[op]()
    assert "email_bidx" in str(info.value)  # points at the way to search it
    assert "s3cr3t" not in str(info.value).lower()


def test_null_tests_are_allowed(kit: soc2kit.Kit) -> None:
    with_email = add(kit, email="ann@example.com")
    without = add(kit, email=None)
    assert ids(kit, Customer.email.is_(None)) == {without}
    assert ids(kit, Customer.email == None) == {without}  # noqa: E711
    assert ids(kit, Customer.email.is_not(None)) == {with_email}
    assert ids(kit, Customer.email != None) == {with_email}  # noqa: E711


@pytest.mark.parametrize("clause", ["order_by", "group_by"])
def test_order_and_group_by_are_refused_before_sql(
    kit: soc2kit.Kit, statements: list[str], clause: str
) -> None:
    add(kit, email="ann@example.com")
    query = sa.select(Customer.id)
    query = getattr(query, clause)(Customer.email)  # building it is allowed
    statements.clear()
    with kit.sessions() as s, pytest.raises(QueryGuardError, match="email_bidx"):
        s.execute(query)
    assert not any("customers" in sql for sql in statements)


def test_order_by_label_name_is_refused(sqlite_kit: soc2kit.Kit) -> None:
    """The guard runs before SQL is sent: SQLite is enough."""
    add(sqlite_kit, email="ann@example.com")
    with sqlite_kit.sessions() as s, pytest.raises(QueryGuardError):
        s.execute(sa.select(Customer).order_by("email"))


def test_order_by_in_subquery_is_refused(sqlite_kit: soc2kit.Kit) -> None:
    """The guard runs before SQL is sent: SQLite is enough."""
    add(sqlite_kit, email="ann@example.com")
    inner = sa.select(Customer.id).order_by(Customer.email).limit(10).subquery()
    with sqlite_kit.sessions() as s, pytest.raises(QueryGuardError):
        s.execute(sa.select(inner.c.id))


def test_comparison_with_encrypted_column_on_the_right_is_refused(
    sqlite_kit: soc2kit.Kit,
) -> None:
    """``literal == column`` never reaches the column's operators: refused before SQL is sent."""
    add(sqlite_kit, email="ann@example.com")
    query = sa.select(Customer).where(sa.literal("ann@example.com") == Customer.email)
    with sqlite_kit.sessions() as s, pytest.raises(QueryGuardError, match="email_bidx"):
        s.execute(query)


# plaintext writes outside the unit of work ----------------------------------------------------


def _orm_bulk_insert(kit: soc2kit.Kit) -> None:
    with kit.sessions() as s:
        s.execute(
            sa.insert(Customer), [{"id": uuid7(), "tenant_id": "acme", "email": "x@example.com"}]
        )
        s.commit()


def _orm_update(kit: soc2kit.Kit) -> None:
    with kit.sessions() as s:
        s.execute(sa.update(Customer).values(email="x@example.com"))
        s.commit()


def _orm_bulk_update_by_pk(kit: soc2kit.Kit) -> None:
    with kit.sessions() as s:
        row_id = s.scalars(sa.select(Customer.id)).first()
        s.execute(sa.update(Customer), [{"id": row_id, "email": "x@example.com"}])
        s.commit()


def _bulk_save_objects(kit: soc2kit.Kit) -> None:
    with kit.sessions() as s:
        s.bulk_save_objects([Customer(id=uuid7(), email="x@example.com")])
        s.commit()


def _core_insert(kit: soc2kit.Kit) -> None:
    with kit.engine.connect() as conn:
        conn.execute(Customer.__table__.insert().values(id=uuid7(), email="x@example.com"))
        conn.commit()


PLAINTEXT_WRITES: dict[str, Callable[[soc2kit.Kit], None]] = {
    "orm bulk insert": _orm_bulk_insert,
    "orm update": _orm_update,
    "core insert": _core_insert,
}
MORE_PLAINTEXT_WRITES: dict[str, Callable[[soc2kit.Kit], None]] = {
    "orm bulk update by pk": _orm_bulk_update_by_pk,
    "bulk_save_objects": _bulk_save_objects,
}


def _raw_emails(kit: soc2kit.Kit) -> list[bytes]:
    with kit.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT email FROM customers ORDER BY id")).scalars()
        return [bytes(r) for r in rows]


def _assert_refused(kit: soc2kit.Kit, write: Callable[[soc2kit.Kit], None]) -> None:
    add(kit, email="ann@example.com")
    before = _raw_emails(kit)
    with pytest.raises((CryptoError, sa.exc.StatementError)) as info:
        write(kit)
    error = info.value.orig if isinstance(info.value, sa.exc.StatementError) else info.value
    assert isinstance(error, CryptoError)
    assert _raw_emails(kit) == before  # nothing written, nothing changed


@pytest.mark.parametrize("write", list(PLAINTEXT_WRITES))
def test_plaintext_write_outside_unit_of_work_is_refused(kit: soc2kit.Kit, write: str) -> None:
    _assert_refused(kit, PLAINTEXT_WRITES[write])


@pytest.mark.parametrize("write", list(MORE_PLAINTEXT_WRITES))
def test_other_bulk_plaintext_writes_are_refused(sqlite_kit: soc2kit.Kit, write: str) -> None:
    """Refused while binding parameters, before SQL is sent: SQLite is enough."""
    _assert_refused(sqlite_kit, MORE_PLAINTEXT_WRITES[write])


@pytest.mark.parametrize("write", ["orm bulk insert", "orm update", "core insert"])
def test_plaintext_write_raises_crypto_error_itself(sqlite_kit: soc2kit.Kit, write: str) -> None:
    """SQLAlchemy's engine wraps the error the same way on every dialect: SQLite is enough."""
    add(sqlite_kit, email="ann@example.com")
    with pytest.raises(CryptoError):
        PLAINTEXT_WRITES[write](sqlite_kit)


# blind-index lookups -------------------------------------------------------------------------


def test_casefold_lookup_finds_mixed_case(kit: soc2kit.Kit) -> None:
    ann = add(kit, email="Ann@Example.COM")
    add(kit, email="bob@example.com")
    assert ids(kit, Customer.email.bidx_eq("aNN@eXample.com", tenant="acme")) == {ann}


def test_casefold_keeps_whitespace_significant(sqlite_kit: soc2kit.Kit) -> None:
    """``casefold`` does not strip (``casefold_strip`` does): a trailing space is another value.

    Normalisation happens before the HMAC, in Python: SQLite is enough.
    """
    kit = sqlite_kit
    add(kit, email="ann@example.com")
    assert ids(kit, Customer.email.bidx_eq("ANN@example.com ", tenant="acme")) == set()


def test_blind_index_of_comparison_finds_row(kit: soc2kit.Kit) -> None:
    ann = add(kit, email="ann@example.com")
    add(kit, email="bob@example.com")
    probe = blind_index_of(Customer.email, "ANN@example.com", tenant="acme")
    assert ids(kit, Customer.email_bidx == probe) == {ann}


def test_lookup_is_per_tenant(kit: soc2kit.Kit) -> None:
    acme = add(kit, tenant_id="acme", email="ann@example.com")
    globex = add(kit, tenant_id="globex", email="ann@example.com")
    assert ids(kit, Customer.email.bidx_eq("ann@example.com", tenant="acme")) == {acme}
    assert ids(kit, Customer.email.bidx_eq("ann@example.com", tenant="globex")) == {globex}
    assert ids(kit, Customer.email.bidx_eq("ann@example.com", tenant="initech")) == set()


def test_lookup_without_tenant_is_refused() -> None:
    """Raised while building the expression: no database involved."""
    with pytest.raises(CryptoError, match="tenant"):
        Customer.email.bidx_eq("ann@example.com")
    with pytest.raises(CryptoError, match="tenant"):
        blind_index_of(Customer.email, "ann@example.com")


def test_stored_blind_index_is_versioned_17_bytes(kit: soc2kit.Kit) -> None:
    add(kit, email="ann@example.com")
    with kit.engine.connect() as conn:
        stored = bytes(conn.execute(sa.text("SELECT email_bidx FROM customers")).scalar_one())
    assert len(stored) == 17
    assert stored[0] == kit.keys.blind_keys()[0].version


def test_blind_index_follows_email_update(kit: soc2kit.Kit) -> None:
    ann = add(kit, email="ann@example.com")
    with kit.sessions() as s:
        s.get(Customer, ann).email = "ann.new@example.com"
        s.commit()
    assert ids(kit, Customer.email.bidx_eq("ann.new@example.com", tenant="acme")) == {ann}
    assert ids(kit, Customer.email.bidx_eq("ann@example.com", tenant="acme")) == set()


def test_blind_index_follows_tenant_change(kit: soc2kit.Kit) -> None:
    ann = add(kit, tenant_id="acme", email="ann@example.com")
    with kit.sessions() as s:
        s.get(Customer, ann).tenant_id = "globex"
        s.commit()
    assert ids(kit, Customer.email.bidx_eq("ann@example.com", tenant="globex")) == {ann}
    assert ids(kit, Customer.email.bidx_eq("ann@example.com", tenant="acme")) == set()


def test_lookups_survive_blind_index_rotation(kit: soc2kit.Kit) -> None:
    old = add(kit, email="ann@example.com")
    old_version = kit.keys.blind_keys()[0].version
    kit.keys.rotate(purpose="bidx")
    new = add(kit, email="ann@example.com")
    with kit.engine.connect() as conn:
        versions = {
            bytes(r.email_bidx)[0]
            for r in conn.execute(sa.text("SELECT email_bidx FROM customers"))
        }
    assert versions == {old_version, old_version + 1}  # one row under each index key
    assert ids(kit, Customer.email.bidx_eq("ANN@example.com", tenant="acme")) == {old, new}
    probe = blind_index_of(Customer.email, "ann@example.com", tenant="acme")
    assert ids(kit, Customer.email_bidx == probe) == {old, new}
