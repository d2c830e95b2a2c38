"""Automatic audit records of ORM changes, in the transaction that makes them.

For sessions on an engine attached with ``kit.attach(engine)`` (``install()``
attaches the kit's own), every flush records one ``data.create``,
``data.update`` or ``data.delete`` event per object, written with
:meth:`AuditTrail.record_in` on the flush's connection: the change and its
record commit together, or neither does. ORM bulk ``update()`` / ``delete()``
statements (which Django and Rails audit libraries miss) are recorded too, with
the statement kind, the criteria without their values, the row count and the
primary keys they matched.

A model chooses what its records show with ``__audit__``::

    class Customer(Base):
        __audit__ = {"exclude": ["notes"], "mask": ["phone"]}   # or False: not audited

``include`` limits values to the listed fields; ``mask`` records "changed"
without values. Encrypted columns and secret-looking names (password, token,
secret, key, hash) are always recorded as changed, never with values.
"""

from __future__ import annotations

import json
import logging
import uuid
import weakref
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import Mapper, ORMExecuteState, Session
from sqlalchemy.orm.base import PASSIVE_NO_INITIALIZE
from sqlalchemy.orm.state import InstanceState

from soc2kit.audit.trail import AuditTrail

log = logging.getLogger("soc2kit.audit")

_SECRET_WORDS = ("password", "passwd", "secret", "token", "apikey", "api_key", "hash", "pepper")
_MAX_BULK_KEYS = 1000

# Dialect -> trail, filled only by attach() (install() calls it for the kit's engine).
_trails: weakref.WeakKeyDictionary[Dialect, AuditTrail] = weakref.WeakKeyDictionary()


def attach(engine: Any, trail: AuditTrail) -> None:
    """Record ORM changes made through sessions on ``engine`` into ``trail``."""
    sync: Engine = getattr(engine, "sync_engine", engine)
    _trails[sync.dialect] = trail
    for name, fn in (("after_flush", _after_flush), ("do_orm_execute", _bulk)):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


def _trail_for(session: Session) -> AuditTrail | None:
    try:
        bind = session.get_bind()
    except sa.exc.UnboundExecutionError:
        return None
    return _trails.get(bind.dialect)


# per-object changes ---------------------------------------------------------------------


def _after_flush(session: Session, flush_context: Any) -> None:
    trail = _trail_for(session)
    if trail is None:
        return
    conn = session.connection()
    for op, objects in (
        ("create", session.new),
        ("update", session.dirty),
        ("delete", session.deleted),
    ):
        for obj in list(objects):
            state: InstanceState[Any] = sa.inspect(obj)
            options = _options(state.mapper)
            if options is None:
                continue
            changes = _changes(state, options, op)
            if op == "update" and not changes:
                continue  # touched but not changed
            trail.record_in(
                conn,
                f"data.{op}",
                action=op,
                outcome="success",
                resource_type=_resource(state.mapper, options),
                resource_id=_identity(state),
                changes=changes,
            )


def _options(mapper: Mapper[Any]) -> dict[str, Any] | None:
    options = getattr(mapper.class_, "__audit__", {})
    if options is False:
        return None
    if _table_name(mapper).startswith("soc2kit_"):
        return None  # soc2kit's own tables record their changes themselves
    return dict(options) if isinstance(options, dict) else {}


def _table_name(mapper: Mapper[Any]) -> str:
    return str(getattr(mapper.local_table, "name", mapper.class_.__name__))


def _resource(mapper: Mapper[Any], options: dict[str, Any]) -> str:
    return str(options.get("resource", _table_name(mapper)))


def _identity(state: InstanceState[Any]) -> str | None:
    key = state.identity or tuple(
        state.dict.get(state.mapper.get_property_by_column(c).key) for c in state.mapper.primary_key
    )
    values = list(key)
    if not values or any(v is None for v in values):
        return None
    return str(values[0]) if len(values) == 1 else json.dumps([str(v) for v in values])


def _changes(state: InstanceState[Any], options: dict[str, Any], op: str) -> dict[str, Any]:
    from soc2kit.crypto.orm import BlindIndex, Encrypted  # soc2kit.crypto imports audit

    include = set(options.get("include", ())) or None
    exclude = set(options.get("exclude", ()))
    mask = set(options.get("mask", ()))
    changes: dict[str, Any] = {}
    for prop in state.mapper.column_attrs:
        key = prop.key
        if key in exclude:
            continue
        column_type = prop.columns[0].type
        if isinstance(column_type, BlindIndex):
            continue
        history = state.get_history(key, PASSIVE_NO_INITIALIZE)
        if op == "update" and not history.has_changes():
            continue
        if op == "create" and not history.added:
            continue
        hidden = (
            isinstance(column_type, Encrypted)
            or key in mask
            or (include is not None and key not in include)
            or any(word in key.lower() for word in _SECRET_WORDS)
        )
        if hidden:
            changes[key] = {"changed": True}
        elif op == "create":
            added: Any = history.added
            changes[key] = {"new": _jsonable(added[0])}
        elif op == "update":
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
            changes[key] = {"old": _jsonable(old), "new": _jsonable(new)}
        else:  # delete: what the row held
            value = history.unchanged[0] if history.unchanged else None
            changes[key] = {"old": _jsonable(value)}
    return changes


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, dict | list):
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            return f"<{type(value).__name__}>"
        return value
    return f"<{type(value).__name__}>"


# bulk statements ---------------------------------------------------------------------------


def _bulk(state: ORMExecuteState) -> Any:
    if not (state.is_update or state.is_delete):
        return None
    session = state.session
    trail = _trail_for(session)
    mapper = state.bind_mapper
    if trail is None or mapper is None or _options(mapper) is None:
        return None
    statement = state.statement
    kind = "update" if state.is_update else "delete"
    criteria = getattr(statement, "whereclause", None)
    conn = session.connection(bind_arguments={"mapper": mapper})
    # The keys the statement will match, read just before it in the same transaction.
    probe = sa.select(*mapper.primary_key)
    if criteria is not None:
        probe = probe.where(criteria)
    keys = [
        row[0] if len(row) == 1 else [str(v) for v in row]
        for row in conn.execute(probe.limit(_MAX_BULK_KEYS + 1))
    ]
    result = state.invoke_statement()
    values = getattr(statement, "_values", None) or {}
    trail.record_in(
        conn,
        f"data.bulk_{kind}",
        action=kind,
        outcome="success",
        resource_type=_resource(mapper, _options(mapper) or {}),
        statement=kind,
        # Column names and bind parameter names only: never the values.
        criteria=None if criteria is None else str(criteria.compile(dialect=conn.dialect)),
        columns=sorted(getattr(c, "key", str(c)) for c in values),
        row_count=getattr(result, "rowcount", None),
        primary_keys=[_jsonable(k) for k in keys[:_MAX_BULK_KEYS]],
        primary_keys_truncated=len(keys) > _MAX_BULK_KEYS,
    )
    return result
