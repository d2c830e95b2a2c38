"""insert_rows: COPY on psycopg, executemany elsewhere; same rows, same errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from soc2kit.db import create_engine
from soc2kit.db.bulk import insert_rows


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "insert"])
def test_rows_arrive_intact_and_a_duplicate_is_an_integrity_error(
    database_url: str, copy: bool
) -> None:
    engine = create_engine(database_url)
    table = f"soc2kit_test_bulk_{int(copy)}"
    meta = sa.MetaData()
    t = sa.Table(
        table,
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True)),
        sa.Column("text", sa.Text),
        sa.Column("blob", sa.LargeBinary),
    )
    meta.drop_all(engine)
    meta.create_all(engine)
    try:
        at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
        sqlite = engine.dialect.name == "sqlite"
        stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at
        awkward = 'tab\there, newline\nhere, backslash \\ quote " comma , é ∑'
        rows = [(i, stamp, awkward if i == 1 else None, bytes([0, i, 255])) for i in range(1, 4)]
        with engine.begin() as conn:
            insert_rows(conn, table, ("id", "at", "text", "blob"), rows, copy=copy)
            insert_rows(conn, table, ("id",), [])  # nothing to do
        with engine.connect() as conn:
            got = conn.execute(sa.select(t).order_by(t.c.id)).all()
        assert [r.id for r in got] == [1, 2, 3]
        assert got[0].text == awkward and got[1].text is None
        assert [bytes(r.blob) for r in got] == [bytes([0, i, 255]) for i in range(1, 4)]
        assert got[0].at.replace(tzinfo=UTC) == at

        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            insert_rows(conn, table, ("id", "text"), [(4, "new"), (2, "duplicate")], copy=copy)
        with engine.connect() as conn:  # the failed batch left nothing behind
            assert conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 3
    finally:
        meta.drop_all(engine)
        engine.dispose()
