"""Migrations: soc2kit's tables first, then the service's own (Alembic).

``make migrate`` (this module run with ``python -m``) brings soc2kit's tables to
their newest revision (soc2kit keeps them in its own version table,
``soc2kit_alembic_version``), then applies this service's revisions
(``alembic_version``, in migrations/versions). Outside production the app does
the same at start-up; in production it refuses to start until this has run as
a reviewed deploy step. ``alembic revision --autogenerate -m ...`` writes new
revisions (soc2kit's tables are left out of the comparison).
"""

from __future__ import annotations

import sys
from pathlib import Path

import soc2kit
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from soc2kit import db as soc2kit_db
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaOutOfDateError(RuntimeError):
    """The service's tables are not at the newest revision."""


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic's configuration; with ``engine``, migrations run on it (else on the settings)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    soc2kit_db.upgrade(engine)  # soc2kit's tables first: the service's audit events need them
    command.upgrade(alembic_config(engine), revision)


def ensure_current(engine: Engine, *, apply: bool) -> None:
    """Apply the migrations (``apply``), or refuse to run on an outdated schema."""
    if apply:
        upgrade(engine)
        return
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDateError(
            f"the service's tables are at revision {current or 'none'}, not {head}: "
            "run `make migrate` before starting"
        )


def main() -> int:
    """Migrate the database of SOC2KIT_DATABASE_URL to the newest revisions."""
    engine = soc2kit_db.create_engine(soc2kit.Settings().database_url)
    try:
        upgrade(engine)
        sys.stdout.write(f"service tables at revision {current_revision(engine)}\n")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
