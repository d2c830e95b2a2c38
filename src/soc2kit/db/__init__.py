"""Database access: engines, sessions and soc2kit's own schema.

soc2kit's tables live beside the application's, prefixed ``soc2kit_``, and come
with their own Alembic migrations (version table ``soc2kit_alembic_version``) so
they never collide with the application's migration history.
"""

from soc2kit.db.engine import create_engine, is_sqlite, normalize_url, ping, session_factory
from soc2kit.db.migrations_api import current_revision, head_revision, upgrade
from soc2kit.db.schema import metadata

__all__ = [
    "create_engine",
    "current_revision",
    "head_revision",
    "is_sqlite",
    "metadata",
    "normalize_url",
    "ping",
    "session_factory",
    "upgrade",
]
