"""Alembic environment for the service's own tables (soc2kit migrates its own: database.py).

Used by ``make migrate`` and the app's start-up (through database.py, with an
engine) and by the ``alembic`` command (database from SOC2KIT_DATABASE_URL).
"""

from __future__ import annotations

from typing import Any

import soc2kit
from alembic import context
from soc2kit import db as soc2kit_db
from sqlalchemy.engine import Engine

from {{ cookiecutter.package_name }}.models import Base

config = context.config


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Leave soc2kit's tables to soc2kit's migrations (autogenerate would drop them)."""
    return not (type_ == "table" and name is not None and name.startswith("soc2kit_"))


def run(engine: Engine) -> None:
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_name=include_name,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


given = config.attributes.get("engine")
if isinstance(given, Engine):
    run(given)
else:
    owned = soc2kit_db.create_engine(soc2kit.Settings().database_url)
    try:
        run(owned)
    finally:
        owned.dispose()
