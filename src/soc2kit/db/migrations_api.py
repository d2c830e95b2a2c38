"""Run soc2kit's Alembic migrations from Python or the CLI."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from soc2kit.db.engine import create_engine

VERSION_TABLE = "soc2kit_alembic_version"
_SCRIPT_LOCATION = str(Path(__file__).with_name("migrations"))


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", _SCRIPT_LOCATION)
    cfg.attributes["connection_engine"] = engine
    return cfg


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Bring soc2kit's tables to ``revision`` (default: the newest)."""
    engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        command.upgrade(_config(engine), revision)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def head_revision() -> str:
    """The newest soc2kit revision shipped with this version."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config_paths_only()).get_current_head()
    assert head is not None
    return head


def _config_paths_only() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", _SCRIPT_LOCATION)
    return cfg


def current_revision(engine: Engine) -> str | None:
    """The applied soc2kit revision, or None when the schema was never created."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()
