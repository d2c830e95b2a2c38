"""SQLAlchemy CLIENT spans that never hold SQL text or bound values.

Hand-written rather than ``opentelemetry-instrumentation-sqlalchemy``: that
library always puts the statement into ``db.statement``/``db.query.text`` (no
option turns it off), and statements may hold literals: ``text()`` with inlined
values, ``literal_binds``, an e-mail address in a WHERE clause. It also pins
``opentelemetry-instrumentation``/``-semantic-conventions`` 0.66b1 (the SDK here
needs 0.66b2) and SQLAlchemy < 2.1 for its instrumentor.

A span is made only inside an existing trace (a request's server span or a
span of the application), so the audit writer, the sealer and other background
work add no root spans. What a span holds: ``db.system.name``,
``db.operation.name`` (the statement's first keyword, from a fixed list) and
``db.collection.name`` (the one table of a Core or ORM statement, from the
statement object, never parsed from its text); on failure, ``error.type`` (the
exception class only: driver messages can quote values).
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import Engine

from soc2kit._version import __version__

_SPAN_ATTR = "_soc2kit_db_span"  # on the execution context: the statement's open span
_ENGINE_ATTR = "_soc2kit_engine_tracer"  # on the engine: instrumented once
_LEADING_COMMENTS = re.compile(r"\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*", re.DOTALL)
_OPERATIONS = frozenset(
    {
        "ALTER",
        "BEGIN",
        "CALL",
        "COMMIT",
        "COPY",
        "CREATE",
        "DELETE",
        "DROP",
        "EXPLAIN",
        "INSERT",
        "MERGE",
        "PRAGMA",
        "RELEASE",
        "ROLLBACK",
        "SAVEPOINT",
        "SELECT",
        "SET",
        "SHOW",
        "TRUNCATE",
        "UPDATE",
        "UPSERT",
        "VACUUM",
        "WITH",
    }
)
# OpenTelemetry's db.system.name values for SQLAlchemy's dialect names.
_SYSTEMS = {
    "postgresql": "postgresql",
    "sqlite": "sqlite",
    "mysql": "mysql",
    "mssql": "microsoft.sql_server",
    "oracle": "oracle.db",
}


class _EngineTracer:
    """The listeners of one engine; holds the tracer they make spans with."""

    def __init__(self, engine: Engine, tracer_provider: trace.TracerProvider) -> None:
        self.tracer = tracer_provider.get_tracer("soc2kit.sqlalchemy", __version__)
        self.system = _SYSTEMS.get(engine.dialect.name, "other_sql")

    def before(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if context is None or not trace.get_current_span().get_span_context().is_valid:
            return
        operation = _operation(statement)
        table = _collection(context)
        attributes: dict[str, str] = {"db.system.name": self.system}
        if operation is not None:
            attributes["db.operation.name"] = operation
        if table is not None:
            attributes["db.collection.name"] = table
        name = " ".join(p for p in (operation, table) if p) or self.system
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        setattr(context, _SPAN_ATTR, span)

    def after(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        span = getattr(context, _SPAN_ATTR, None)
        if span is not None:
            setattr(context, _SPAN_ATTR, None)
            span.end()

    def error(self, exception_context: Any) -> None:
        context = exception_context.execution_context
        span = getattr(context, _SPAN_ATTR, None) if context is not None else None
        if span is None:
            return
        setattr(context, _SPAN_ATTR, None)
        original = exception_context.original_exception
        span.set_attribute("error.type", type(original).__qualname__)
        span.set_status(Status(StatusCode.ERROR))
        span.end()


def _operation(statement: str) -> str | None:
    text = _LEADING_COMMENTS.sub("", statement[:4096], count=1)
    word = text.split(None, 1)[0].upper() if text.strip() else ""
    return word if word in _OPERATIONS else None


def _collection(context: Any) -> str | None:
    """The single table a compiled statement works on, from the statement object."""
    compiled = getattr(context, "compiled", None)
    statement = getattr(compiled, "statement", None)
    if statement is None:
        return None
    table = getattr(statement, "table", None)  # INSERT, UPDATE, DELETE
    if isinstance(table, sa.Table):
        return table.name
    if isinstance(statement, sa.Select):
        froms = statement.get_final_froms()
        if len(froms) == 1 and isinstance(froms[0], sa.Table):
            return froms[0].name
    return None


def instrument_engine(engine: Any, tracer_provider: trace.TracerProvider) -> None:
    """Make a CLIENT span for each statement on ``engine`` (sync or async) inside a trace.

    Calling it again for the same engine changes nothing.
    """
    sync: Engine = getattr(engine, "sync_engine", engine)
    if getattr(sync, _ENGINE_ATTR, None) is not None:
        return
    listeners = _EngineTracer(sync, tracer_provider)
    setattr(sync, _ENGINE_ATTR, listeners)
    event.listen(sync, "before_cursor_execute", listeners.before)
    event.listen(sync, "after_cursor_execute", listeners.after)
    event.listen(sync, "handle_error", listeners.error)
