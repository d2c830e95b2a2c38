"""Alembic environment for soc2kit's own tables (run via soc2kit.db.upgrade)."""

from __future__ import annotations

from alembic import context

from soc2kit.db.migrations_api import VERSION_TABLE
from soc2kit.db.schema import metadata

config = context.config
engine = config.attributes["connection_engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
