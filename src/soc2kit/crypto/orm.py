"""SQLAlchemy integration: ``Encrypted`` and ``BlindIndex`` column types.

A ``TypeDecorator`` sees one value and no row, but a soc2kit ciphertext is bound
to its row (tenant, table, column, primary key). So the work is split the
documented way:

* mapper events (``before_insert`` / ``before_update``) seal each changed value
  with its row's context and keep the plaintext beside it; ``after_insert`` /
  ``after_update`` put the plaintext back, so the object never shows ciphertext;
* instance events (``load`` / ``refresh``) open stored values with the loaded
  row's context, so entities come back decrypted and typed;
* the types themselves only pass sealed values through: a plaintext reaching the
  database any other way (Core, bulk ``insert()``/``update()``) is refused, and
  comparing, searching or ordering by an encrypted column raises at once.

Keys come from the :class:`~soc2kit.crypto.keyring.Keyring` attached to the
engine the session uses (``install()`` attaches the kit's engine;
``kit.encryption.attach(engine)`` any other one). An engine without a keyring
refuses to read or write encrypted columns: it never falls back to plaintext.
"""

from __future__ import annotations

import importlib
import json
import logging
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.orm import Mapper, Session, attributes
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, ColumnElement, Over
from sqlalchemy.types import TypeDecorator, TypeEngine

from soc2kit.crypto import aead
from soc2kit.crypto.blind import NORMALIZERS, blind_index
from soc2kit.crypto.codec import decode_value, encode_value
from soc2kit.crypto.errors import (
    CryptoError,
    DecryptionError,
    KeyDestroyedError,
    QueryGuardError,
)
from soc2kit.crypto.keyring import GLOBAL_SCOPE, Keyring
from soc2kit.errors import ConfigurationError

log = logging.getLogger("soc2kit.crypto")

_SPEC = "soc2kit.fle.spec"
_SEALED = "soc2kit.fle.sealed"
_KEYRING = "soc2kit.fle.keyring"
Storage = Literal["binary", "text"]

# Dialect -> keyring, filled only by attach() (install() calls it). Weak: an
# engine that is disposed and dropped takes its entry with it.
_keyrings: weakref.WeakKeyDictionary[Dialect, Keyring] = weakref.WeakKeyDictionary()


class Stored:
    """A value as read from the database, not yet opened (shown masked)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes | str) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return "<encrypted>"


class Sealed:
    """A ciphertext ready for the database, with the plaintext it replaces (shown masked)."""

    __slots__ = ("plaintext", "stored")

    def __init__(self, stored: bytes | str, plaintext: Any) -> None:
        self.stored = stored
        self.plaintext = plaintext

    def __repr__(self) -> str:
        return "<encrypted>"


# kinds of plaintext an Encrypted column accepts --------------------------------------


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    types: tuple[type, ...]
    from_text: Callable[[str], Any] | None  # plaintext-window conversion of legacy values


def _aware_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _kind_of(inner: TypeEngine[Any]) -> _Kind:
    if isinstance(inner, sa.Enum | sa.Interval | sa.ARRAY | sa.PickleType):
        raise ConfigurationError(f"Encrypted cannot wrap {type(inner).__name__}")
    if isinstance(inner, sa.String):
        return _Kind("str", (str,), str)
    if isinstance(inner, sa.LargeBinary):
        return _Kind("bytes", (bytes,), lambda t: t.encode())
    if isinstance(inner, sa.Boolean):
        return _Kind("bool", (bool,), lambda t: t.strip().lower() in ("1", "t", "true"))
    if isinstance(inner, sa.Integer):
        return _Kind("int", (int,), int)
    if isinstance(inner, sa.Float):
        return _Kind("float", (float, int), float)
    if isinstance(inner, sa.Numeric):
        return _Kind("Decimal", (Decimal, int), Decimal)
    if isinstance(inner, sa.DateTime):
        if not inner.timezone:
            raise ConfigurationError(
                "Encrypted(DateTime) needs DateTime(timezone=True): naive datetimes are refused"
            )
        return _Kind("datetime", (datetime,), _aware_datetime)
    if isinstance(inner, sa.Date):
        return _Kind("date", (date,), date.fromisoformat)
    if isinstance(inner, sa.Uuid):
        return _Kind("UUID", (uuid.UUID,), uuid.UUID)
    if isinstance(inner, sa.JSON):
        return _Kind("JSON", (dict, list), json.loads)
    raise ConfigurationError(f"Encrypted cannot wrap {type(inner).__name__}")


class Encrypted(TypeDecorator[Any]):
    """A column stored as an AES-256-GCM ciphertext bound to its row.

    ``Encrypted(String(320))``, ``Encrypted(Date)``, ``Encrypted(JSON)``...

    * ``name``: the logical column name bound into the ciphertext (defaults to
      the column name; set it before renaming a column).
    * ``key_scope``: an attribute naming the data subject whose key encrypts
      the value (for crypto-shredding), e.g. ``"customer_id"``.
    * ``storage``: ``"binary"`` (default; BLOB/bytea) or ``"text"`` (``e1:``
      base64url, for converting an existing text column in place).
    * ``allow_plaintext_until``: accept legacy plaintext on read until this
      date (counted); the app refuses to start after it.
    * ``on_destroyed``: ``"raise"`` (default, ``KeyDestroyedError``) or
      ``"none"`` to read a shredded value as ``None``.
    """

    impl = sa.LargeBinary
    cache_ok = True

    def __init__(
        self,
        type_: TypeEngine[Any] | type[TypeEngine[Any]],
        *,
        name: str | None = None,
        key_scope: str | None = None,
        storage: Storage = "binary",
        allow_plaintext_until: date | str | None = None,
        on_destroyed: Literal["raise", "none"] = "raise",
    ) -> None:
        super().__init__()
        self.type_ = type_() if isinstance(type_, type) else type_
        self.kind = _kind_of(self.type_)
        if storage not in ("binary", "text"):
            raise ConfigurationError("storage is 'binary' or 'text'")
        if on_destroyed not in ("raise", "none"):
            raise ConfigurationError("on_destroyed is 'raise' or 'none'")
        self.name = name
        self.key_scope = key_scope
        self.storage = storage
        if isinstance(allow_plaintext_until, str):
            allow_plaintext_until = date.fromisoformat(allow_plaintext_until)
        self.allow_plaintext_until = allow_plaintext_until
        self.on_destroyed = on_destroyed
        self.max_length: int | None = getattr(self.type_, "length", None)

    def __repr__(self) -> str:
        return f"Encrypted({self.type_!r})"

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(sa.Text() if self.storage == "text" else sa.LargeBinary())

    @property
    def python_type(self) -> type:
        return self.kind.types[0]

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.stored
        # Fail closed: only the ORM unit of work knows the row a value is bound to.
        raise CryptoError(
            "an Encrypted column was written outside the ORM unit of work (Core or bulk "
            "insert()/update()): add or change objects through a Session instead"
        )

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else Stored(value)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        # The per-row hot path: wrap the driver's value without TypeDecorator's layers.
        inner = self.load_dialect_impl(dialect).result_processor(dialect, coltype)
        if inner is None:
            return lambda value: None if value is None else Stored(value)
        convert: Callable[[Any], Any] = inner
        return lambda value: None if value is None else Stored(convert(value))

    def process_literal_param(self, value: Any, dialect: Dialect) -> str:
        raise CryptoError("encrypted values cannot be rendered as SQL literals")

    def validate(self, value: Any) -> Any:
        """Check ``value`` against the wrapped type (a clear error, with no value in it)."""
        kind = self.kind
        if not isinstance(value, kind.types) or (isinstance(value, bool) and kind.name != "bool"):
            raise CryptoError(
                f"Encrypted({type(self.type_).__name__}) expects {kind.name}, "
                f"not {type(value).__name__}"
            )
        if kind.name == "date" and isinstance(value, datetime):
            raise CryptoError("Encrypted(Date) expects a date, not a datetime")
        if isinstance(value, datetime) and value.tzinfo is None:
            raise CryptoError("naive datetimes are refused: give a timezone")
        if kind.name == "Decimal" and isinstance(value, int):
            value = Decimal(value)
        if kind.name == "float" and isinstance(value, int):
            value = float(value)
        if self.max_length is not None and len(value) > self.max_length:
            raise CryptoError(f"value longer than the column's {self.max_length} characters")
        return value

    class Comparator(TypeDecorator.Comparator[Any]):
        """Refuses every SQL operator but IS [NOT] NULL: ciphertexts compare as noise."""

        def operate(self, op: Any, *other: Any, **kwargs: Any) -> ColumnElement[Any]:
            if _null_test(op, other):
                return super().operate(op, *other, **kwargs)
            raise _guard_error(self.expr, op)

        def reverse_operate(self, op: Any, other: Any, **kwargs: Any) -> ColumnElement[Any]:
            raise _guard_error(self.expr, op)

        def bidx_eq(self, value: str, *, tenant: str | None = None) -> ColumnElement[bool]:
            """``<blind index> IN (index under the current key, under the previous key)``."""
            column = _column_of(self.expr)
            bidx = _blind_column_for(column)
            if bidx is None:
                raise QueryGuardError(f"{column.table.name}.{column.name} has no BlindIndex")
            clause: ColumnElement[bool] = bidx == blind_index_of(column, value, tenant=tenant)
            return clause

    comparator_factory = Comparator


class BlindIndex(TypeDecorator[bytes]):
    """A companion column holding the blind index of an ``Encrypted`` string attribute.

    Kept up to date at flush from the plaintext of ``source``; queried with
    ``Model.col == blind_index_of(Model.source, value)`` or
    ``Model.source.bidx_eq(value)``, which match the current and the previous
    index key, so rotating it needs no schema change.
    """

    impl = sa.LargeBinary
    cache_ok = True

    def __init__(
        self,
        source: str,
        normalize: str | Callable[[str], str] = "none",
        length: int = 16,
    ) -> None:
        super().__init__()
        if isinstance(normalize, str) and normalize not in NORMALIZERS:
            raise ConfigurationError(
                f"unknown normalizer {normalize!r} (one of {', '.join(sorted(NORMALIZERS))}, "
                "or a callable)"
            )
        if not 8 <= length <= 32:
            raise ConfigurationError("blind index length is 8..32 bytes")
        self.source = source
        self.normalize = normalize
        self.length = length

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None or isinstance(value, bytes):
            return value
        if isinstance(value, _Probe):
            return value.compute(keyring_for(dialect), self)
        raise CryptoError("blind index columns hold computed bytes: use blind_index_of()")

    def compute(self, keyring: Keyring, value: Any, context: aead.FieldContext) -> bytes:
        if not isinstance(value, str):
            raise CryptoError(f"blind indexes cover str values, not {type(value).__name__}")
        key = keyring.blind_keys()[0]
        return blind_index(key, value, context, self.normalize, self.length)

    class Comparator(TypeDecorator.Comparator[bytes]):
        def operate(self, op: Any, *other: Any, **kwargs: Any) -> ColumnElement[Any]:
            if op is operators.eq and other and isinstance(other[0], _Probe):
                probe = other[0]
                return self.expr.in_([probe.slot(0), probe.slot(1)])
            return super().operate(op, *other, **kwargs)

    comparator_factory = Comparator


@dataclass(frozen=True, slots=True)
class _Probe:
    """A lookup value for a blind index: computed at bind time under key slot 0 or 1."""

    table: str
    column: str
    tenant: str | None
    value: str
    index: int = 0

    def slot(self, index: int) -> _Probe:
        return _Probe(self.table, self.column, self.tenant, self.value, index)

    def compute(self, keyring: Keyring, bidx: BlindIndex) -> bytes:
        key = keyring.blind_keys()[self.index]
        context = aead.FieldContext(self.table, self.column, self.tenant)
        return blind_index(key, self.value, context, bidx.normalize, bidx.length)


def blind_index_of(column: Any, value: str, *, tenant: str | None = None) -> Any:
    """The lookup value for ``BlindIndexColumn == blind_index_of(Model.attr, value)``."""
    col = _column_of(column)
    if not isinstance(col.type, Encrypted):
        raise CryptoError(f"{col.name} is not an Encrypted column")
    table_info = _table_info(col.table)
    if table_info.tenant_column is not None and tenant is None:
        raise CryptoError(f"{col.table.name} is bound to a tenant: pass tenant=")
    if not isinstance(value, str):
        raise CryptoError("blind index lookups take a str")
    return _Probe(table_info.logical, col.type.name or col.name, tenant, value)


# table-level options ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TableInfo:
    logical: str
    tenant_column: str | None
    bind_row: bool


def _table_info(table: Any) -> _TableInfo:
    """Options from ``__table_args__ = {"info": {...}}``.

    ``soc2kit_table`` (logical name, default the table name), ``soc2kit_tenant``
    (tenant column, default ``tenant_id`` when present; None for none) and
    ``soc2kit_bind_row`` (default True).
    """
    info = getattr(table, "info", {})
    default_tenant = "tenant_id" if "tenant_id" in table.c else None
    tenant = info.get("soc2kit_tenant", default_tenant)
    if tenant is not None and tenant not in table.c:
        raise ConfigurationError(f"{table.name}: soc2kit_tenant column {tenant!r} does not exist")
    return _TableInfo(
        logical=str(info.get("soc2kit_table", table.name)),
        tenant_column=tenant,
        bind_row=bool(info.get("soc2kit_bind_row", True)),
    )


def _column_of(expr: Any) -> sa.Column[Any]:
    element = expr.__clause_element__() if hasattr(expr, "__clause_element__") else expr
    for candidate in (element, *getattr(element, "proxy_set", ())):
        if isinstance(candidate, sa.Column) and candidate.table is not None:
            return candidate
    raise CryptoError("expected a mapped column")


def _blind_column_for(column: sa.Column[Any]) -> sa.Column[Any] | None:
    for candidate in column.table.c:
        if isinstance(candidate.type, BlindIndex) and candidate.type.source in (
            column.key,
            column.name,
        ):
            return candidate
    return None


def _null_test(op: Any, other: tuple[Any, ...]) -> bool:
    if op in (operators.is_, operators.is_not):
        return True
    return op in (operators.eq, operators.ne) and len(other) == 1 and other[0] is None


def _guard_error(expr: Any, op: Any) -> QueryGuardError:
    name = op if isinstance(op, str) else getattr(op, "__name__", str(op)).removesuffix("_op")
    try:
        column = _column_of(expr)
        where = f"{column.table.name}.{column.name}"
        bidx = _blind_column_for(column)
    except CryptoError:
        where, bidx = "an encrypted column", None
    hint = (
        f"use its blind index: {bidx.name} == blind_index_of(...) or .bidx_eq(value)"
        if bidx is not None
        else "add a BlindIndex column to search it by equality"
    )
    return QueryGuardError(
        f"{where} is encrypted and cannot be used with {name} in SQL "
        f"(only IS NULL / IS NOT NULL); {hint}"
    )


# per-mapper plan ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _EncAttr:
    key: str
    type: Encrypted
    table: str
    column: str


@dataclass(frozen=True, slots=True)
class _BidxAttr:
    key: str
    type: BlindIndex
    source: str
    table: str
    column: str


@dataclass(frozen=True, slots=True)
class _Spec:
    encrypted: tuple[_EncAttr, ...]
    blind: tuple[_BidxAttr, ...]
    encrypted_keys: frozenset[str]
    pk: tuple[str, ...]
    tenant: str | None
    bind_row: bool
    bound: frozenset[str]  # attributes whose change re-binds every encrypted value
    defaults: dict[str, Callable[[], Any]]  # Python-side defaults of bound attributes


def _spec(mapper: Mapper[Any]) -> _Spec | None:
    cached = mapper.class_manager.info.get(_SPEC, False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    spec = _build_spec(mapper)
    mapper.class_manager.info[_SPEC] = spec
    return spec


def _build_spec(mapper: Mapper[Any]) -> _Spec | None:
    encrypted: list[_EncAttr] = []
    blind: list[tuple[str, BlindIndex, Any]] = []
    by_key: dict[str, _EncAttr] = {}
    tables: set[Any] = set()
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if isinstance(column.type, Encrypted):
            table = _table_info(column.table)
            tables.add(column.table)
            entry = _EncAttr(prop.key, column.type, table.logical, column.type.name or column.name)
            encrypted.append(entry)
            by_key[prop.key] = entry
        elif isinstance(column.type, BlindIndex):
            blind.append((prop.key, column.type, column))
    if not encrypted:
        if blind:
            raise ConfigurationError(f"{mapper.class_.__name__}: BlindIndex without Encrypted")
        return None
    blind_attrs = []
    for key, btype, _column in blind:
        source = by_key.get(btype.source)
        if source is None:
            raise ConfigurationError(
                f"{mapper.class_.__name__}.{key}: BlindIndex source {btype.source!r} is not "
                "an Encrypted attribute"
            )
        blind_attrs.append(_BidxAttr(key, btype, source.key, source.table, source.column))
    info = _table_info(mapper.local_table)
    tenant_key = None
    if info.tenant_column is not None:
        tenant_key = mapper.get_property_by_column(mapper.local_table.c[info.tenant_column]).key
    pk = tuple(mapper.get_property_by_column(c).key for c in mapper.primary_key)
    if not info.bind_row:
        message = (
            f"{mapper.class_.__name__}: encrypted values are not bound to their row "
            "(soc2kit_bind_row=False): a ciphertext could be copied between rows of this table"
        )
        warnings.warn(message, stacklevel=2)
        log.warning("%s", message)
    scopes = {e.type.key_scope for e in encrypted if e.type.key_scope}
    for scope in scopes:
        if scope not in mapper.attrs:
            raise ConfigurationError(f"{mapper.class_.__name__}: key_scope {scope!r} is unmapped")
    bound = set(scopes) | ({tenant_key} if tenant_key else set())
    if info.bind_row:
        bound |= set(pk)
    defaults: dict[str, Callable[[], Any]] = {}
    for key in bound:
        fn = _python_default(mapper.get_property(key).columns[0])
        if fn is not None:
            defaults[key] = fn
    return _Spec(
        encrypted=tuple(encrypted),
        blind=tuple(blind_attrs),
        encrypted_keys=frozenset(by_key),
        pk=pk,
        tenant=tenant_key,
        bind_row=info.bind_row,
        bound=frozenset(bound),
        defaults=defaults,
    )


def _python_default(column: sa.Column[Any]) -> Callable[[], Any] | None:
    default = column.default
    if default is None:
        return None
    if getattr(default, "is_scalar", False):
        value = default.arg  # type: ignore[attr-defined]
        return lambda: value
    if not getattr(default, "is_callable", False):
        return None
    fn = default.arg  # type: ignore[attr-defined]  # wrapped to take an execution context
    return lambda: fn(None)


# keyring lookup ------------------------------------------------------------------------


def attach(engine: Any, keyring: Keyring) -> None:
    """Let sessions on ``engine`` read and write encrypted columns with ``keyring``."""
    sync: Engine = getattr(engine, "sync_engine", engine)  # an AsyncEngine wraps one
    _keyrings[sync.dialect] = keyring
    enable()
    if not event.contains(sync, "before_execute", _guard_statement):
        event.listen(sync, "before_execute", _guard_statement)


def detach(engine: Any) -> None:
    sync: Engine = getattr(engine, "sync_engine", engine)  # an AsyncEngine wraps one
    _keyrings.pop(sync.dialect, None)


def keyring_for(dialect: Dialect) -> Keyring:
    keyring = _keyrings.get(dialect)
    if keyring is None:
        raise CryptoError(
            "this engine has no soc2kit keyring: use kit.engine / kit.sessions, or call "
            "kit.encryption.attach(engine)"
        )
    return keyring


def _session_keyring(session: Session | None, mapper: Mapper[Any]) -> Keyring:
    if session is None:
        raise CryptoError("encrypted objects are read and written through a Session")
    cache: dict[Mapper[Any], Keyring] = session.info.setdefault(_KEYRING, {})
    keyring = cache.get(mapper)
    if keyring is None:
        keyring = cache[mapper] = keyring_for(session.get_bind(mapper=mapper).dialect)
    return keyring


def enable() -> None:
    """Register soc2kit's ORM listeners once (idempotent; called by attach())."""
    for target, name, fn in _LISTENERS:
        if not event.contains(target, name, fn):
            event.listen(target, name, fn, **({"raw": True} if target is Mapper else {}))


# write path ---------------------------------------------------------------------------


def _fill_defaults(spec: _Spec, state: InstanceState[Any]) -> None:
    """Apply Python-side defaults of bound attributes now: they are bound into the ciphertext."""
    d = state.dict
    for key, default in spec.defaults.items():
        if d.get(key) is None:
            d[key] = default()  # pending object: the INSERT reads the dict


def _row_identity(spec: _Spec, state: InstanceState[Any], mapper: Mapper[Any]) -> str | None:
    if not spec.bind_row:
        return None
    if len(spec.pk) == 1:
        value = state.dict.get(spec.pk[0])
        if value is not None:
            return str(value)
    values = [state.dict.get(key) for key in spec.pk]
    if any(v is None for v in values):
        raise CryptoError(
            f"{mapper.class_.__name__}: row binding needs the primary key before INSERT "
            "(give it a client-side default such as uuid7, or set soc2kit_bind_row=False)"
        )
    if len(values) == 1:
        return str(values[0])
    return json.dumps([str(v) for v in values])


def _tenant(spec: _Spec, state: InstanceState[Any]) -> str | None:
    if spec.tenant is None:
        return None
    if spec.tenant not in state.dict:
        raise CryptoError(f"the tenant attribute {spec.tenant!r} must be loaded to open rows")
    value = state.dict[spec.tenant]
    return None if value is None else str(value)


def _scope(entry: _EncAttr, state: InstanceState[Any]) -> str:
    attr = entry.type.key_scope
    if attr is None:
        return GLOBAL_SCOPE
    value = state.dict.get(attr)
    if value is None:
        raise CryptoError(f"{entry.key}: its key scope {attr!r} is empty")
    return str(value)


def _plain(value: Any) -> Any:
    return value.plaintext if isinstance(value, Sealed) else value


def _seal_state(mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]) -> None:
    _seal(mapper, connection, state, insert=True)


def _seal_update(mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]) -> None:
    _seal(mapper, connection, state, insert=False)


def _seal(
    mapper: Mapper[Any], connection: Connection, state: InstanceState[Any], *, insert: bool
) -> None:
    spec = _spec(mapper)
    if spec is None:
        return
    keyring = keyring_for(connection.dialect)
    d = state.dict
    committed = state.committed_state
    rebind = not insert and any(key in committed for key in spec.bound)
    if insert:
        _fill_defaults(spec, state)
    row = _row_identity(spec, state, mapper)
    tenant = _tenant(spec, state)
    for b in spec.blind:
        if insert or rebind or b.source in committed:
            source = _plain(d.get(b.source))
            if source is not None:
                source = _source_type(spec, b.source).validate(source)
            context = aead.FieldContext(b.table, b.column, tenant)
            d[b.key] = None if source is None else b.type.compute(keyring, source, context)
            if not insert:
                attributes.flag_modified(state.obj(), b.key)
    session = state.session
    if session is not None:
        # Recorded first: a later attribute failing must not leave earlier ones sealed.
        session.info.setdefault(_SEALED, []).append(state)
    for e in spec.encrypted:
        if not (insert or rebind or e.key in committed):
            continue
        if e.key not in d:
            if insert:
                continue
            raise CryptoError(
                f"{e.key}: load every encrypted attribute before changing the row's key, "
                "tenant or key scope"
            )
        value = d[e.key]
        if value is None:
            continue
        if isinstance(value, Stored):
            raise CryptoError(f"{e.key}: a stored value cannot be re-bound without opening it")
        plaintext = e.type.validate(_plain(value))
        key = keyring.encryption_key(_scope(e, state), connection)
        blob = aead.seal_at(key, encode_value(plaintext), e.table, e.column, tenant, row)
        if not insert and e.key not in committed:
            attributes.flag_modified(state.obj(), e.key)  # include it in the UPDATE
        d[e.key] = Sealed(aead.to_text(blob) if e.type.storage == "text" else blob, plaintext)


def _source_type(spec: _Spec, key: str) -> Encrypted:
    for e in spec.encrypted:
        if e.key == key:
            return e.type
    raise CryptoError(f"{key} is not encrypted")  # pragma: no cover - checked at mapping


def _unseal_all(session: Session, *_: Any) -> None:
    """Put plaintext back into the objects sealed by the flush (after it, or after a rollback).

    After a successful flush the objects show plaintext again; after a failed
    one, objects that stay in memory must not keep ciphertext either.
    """
    sealed = session.info.pop(_SEALED, None)
    for state in sealed or ():
        d = state.dict
        for key, value in list(d.items()):
            if value.__class__ is Sealed:
                d[key] = value.plaintext


# read path ----------------------------------------------------------------------------


def _on_load(state: InstanceState[Any], context: Any) -> None:
    spec = _spec(state.mapper)
    if spec is not None:
        _open_state(spec, state, context.session, None)


def _on_refresh(state: InstanceState[Any], context: Any, attrs: Any) -> None:
    spec = _spec(state.mapper)
    if spec is not None:
        # context is None when a bulk update's "evaluate" sync refreshes the object.
        session = context.session if context is not None else state.session
        _open_state(spec, state, session, attrs)


def _open_state(
    spec: _Spec, state: InstanceState[Any], session: Session | None, attrs: Any
) -> None:
    d = state.dict
    keyring = None
    row = tenant = None
    for e in spec.encrypted:
        value = d.get(e.key)
        if value.__class__ is not Stored or (attrs is not None and e.key not in attrs):
            continue
        if keyring is None:
            keyring = _session_keyring(session, state.mapper)
            row = _row_identity_loaded(spec, state)
            tenant = _tenant(spec, state)
        d[e.key] = open_value(keyring, e.type, value.raw, e.table, e.column, tenant, row)


def _row_identity_loaded(spec: _Spec, state: InstanceState[Any]) -> str | None:
    if not spec.bind_row:
        return None
    if len(spec.pk) == 1:
        return str(state.dict.get(spec.pk[0]))
    return json.dumps([str(state.dict.get(key)) for key in spec.pk])


def open_value(
    keyring: Keyring,
    column_type: Encrypted,
    raw: bytes | str,
    table: str,
    column: str,
    tenant: str | None,
    row: str | None,
) -> Any:
    """Decrypt one stored value for its place (also used by the re-encryption jobs)."""
    try:
        blob = _ciphertext(raw)
        if blob is None:
            until = column_type.allow_plaintext_until
            if until is not None and datetime.now(UTC).date() <= until:
                keyring.count_plaintext_read(table, column)
                return _legacy(column_type, raw)
    except DecryptionError as exc:
        # A truncated or malformed stored value is refused like a forged one, and recorded.
        # The messages raised above are fixed strings: no stored bytes reach the record.
        _decrypt_failed(keyring, aead.FieldContext(table, column, tenant, row), None, str(exc))
        raise
    if blob is None:
        context = aead.FieldContext(table, column, tenant, row)
        _decrypt_failed(keyring, context, None, "value is not a soc2kit ciphertext")
        raise DecryptionError(f"{table}.{column} holds a value that is not a soc2kit ciphertext")
    key_id = int.from_bytes(blob[1:5], "big")
    try:
        key = keyring.decryption_key(key_id)
        return decode_value(aead.open_at(key, blob, table, column, tenant, row))
    except KeyDestroyedError:
        if column_type.on_destroyed == "none":
            return None
        raise
    except DecryptionError as exc:
        context = aead.FieldContext(table, column, tenant, row)
        _decrypt_failed(keyring, context, key_id, type(exc).__name__)
        raise


def _ciphertext(raw: bytes | str) -> bytes | None:
    """The binary ciphertext in ``raw``, or None when it does not carry the v1 header."""
    if isinstance(raw, str):
        if not raw.startswith(aead.TEXT_PREFIX):
            return None
        blob = aead.from_text(raw)
    else:
        blob = bytes(raw)
        if not blob or blob[0] != aead.FORMAT_V1:
            return None
    if len(blob) < aead.MIN_LEN:
        raise DecryptionError("truncated ciphertext")
    return blob


def _legacy(column_type: Encrypted, raw: bytes | str) -> Any:
    if column_type.kind.name == "bytes":
        return raw if isinstance(raw, bytes) else raw.encode()
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    convert = column_type.kind.from_text
    try:
        return convert(text) if convert is not None else text
    except (ValueError, ArithmeticError):
        raise DecryptionError("legacy plaintext does not parse as the column's type") from None


def _decrypt_failed(
    keyring: Keyring, context: aead.FieldContext, key_id: int | None, reason: str
) -> None:
    """An authentication failure may be tampering or a swapped value: record it (no values)."""
    try:
        keyring._audit.record(
            "crypto.decrypt.failed",
            action="decrypt",
            outcome="failure",
            actor="system",
            resource_type=context.table,
            resource_id=context.row,
            column=context.column,
            key_id=None if key_id is None else f"{key_id:08x}",
            reason=reason,
        )
    except Exception as exc:  # the DecryptionError is what the caller must see
        log.error("could not audit a decryption failure: %s", type(exc).__name__)


# query guard for ORDER BY / GROUP BY (they apply no operator to the column) ----------------


def _guard_statement(
    conn: Connection, clauseelement: Any, multiparams: Any, params: Any, options: Any
) -> None:
    """Refuse statements that compare, order or group by an encrypted column anywhere.

    Operators on the column itself raise when the expression is built; this
    catches what bypasses them: ORDER BY / GROUP BY (plain, by name, inside a
    function or a subquery, in a window) and comparisons with the encrypted
    column on the right-hand side.
    """
    if not isinstance(clauseelement, sa.sql.ClauseElement):
        return
    for element in visitors.iterate(clauseelement):
        if isinstance(element, BinaryExpression):
            if element.operator in (operators.is_, operators.is_not):
                continue
            for side in (element.left, element.right):
                if isinstance(getattr(side, "type", None), Encrypted):
                    raise _guard_error(side, element.operator)
        elif isinstance(element, sa.Select):
            # Private attributes, stable since 1.4: Select has no public accessor for them.
            for clause in (
                *getattr(element, "_order_by_clauses", ()),
                *getattr(element, "_group_by_clauses", ()),
            ):
                _refuse_ordering(clause, element)
        elif isinstance(element, Over):
            for part in (element.order_by, element.partition_by):
                if part is not None:
                    _refuse_ordering(part, None)


def _refuse_ordering(clause: Any, select: Any) -> None:
    text = getattr(clause, "element", None)
    if isinstance(text, str) and select is not None:  # order_by("email")
        for column in select.selected_columns:
            if column.key == text and isinstance(column.type, Encrypted):
                raise _guard_error(column, "ORDER BY / GROUP BY")
    for part in visitors.iterate(clause):
        if isinstance(getattr(part, "type", None), Encrypted) and not isinstance(
            part, sa.sql.elements.TypeCoerce
        ):
            raise _guard_error(part, "ORDER BY / GROUP BY")


# model discovery -----------------------------------------------------------------------------


def encrypted_mappers() -> Iterator[Mapper[Any]]:
    """Every configured mapper that has an Encrypted column."""
    # SQLAlchemy keeps no public list of registries; this weak map is stable since 1.4.
    registries = getattr(importlib.import_module("sqlalchemy.orm.mapper"), "_mapper_registries", {})
    for registry in list(registries):
        for mapper in list(registry.mappers):
            if _spec(mapper) is not None:
                yield mapper


def expired_plaintext_windows(today: date | None = None) -> list[str]:
    """Columns whose ``allow_plaintext_until`` has passed (start-up refuses them)."""
    today = today or datetime.now(UTC).date()
    found = []
    for mapper in encrypted_mappers():
        spec = _spec(mapper)
        assert spec is not None
        for e in spec.encrypted:
            until = e.type.allow_plaintext_until
            if until is not None and until < today:
                found.append(f"{mapper.class_.__name__}.{e.key} (allow_plaintext_until {until})")
    return found


_LISTENERS: tuple[tuple[Any, str, Callable[..., None]], ...] = (
    (Mapper, "before_insert", _seal_state),
    (Mapper, "before_update", _seal_update),
    (Mapper, "load", _on_load),
    (Mapper, "refresh", _on_refresh),
    (Session, "after_soft_rollback", _unseal_all),
    (Session, "after_flush_postexec", _unseal_all),
)
