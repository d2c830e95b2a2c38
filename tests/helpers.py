"""Helpers shared by several test packages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

import soc2kit
from soc2kit.db import normalize_url


@contextmanager
def database_outage(kit: soc2kit.Kit, url: str, tmp_path: Path) -> Iterator[None]:
    """Make the database really unreachable, then bring it back."""
    if url.startswith("sqlite"):
        # The volume disappears; pooled connections (open file handles) go with it.
        (tmp_path / "db").rename(tmp_path / "db-gone")
        kit.engine.dispose()
        try:
            yield
        finally:
            (tmp_path / "db-gone").rename(tmp_path / "db")
            kit.engine.dispose()
        return
    name = normalize_url(url).database
    admin = sa.create_engine(
        normalize_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            # The server refuses the database and drops every open session on it.
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        try:
            yield
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    finally:
        admin.dispose()
