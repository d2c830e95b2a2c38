import sqlalchemy as sa

from soc2kit.db import create_engine, current_revision, upgrade


def test_migrations_run_on_each_database(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade(engine)
        assert current_revision(engine) == "0001"
        upgrade(engine)  # idempotent
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM soc2kit_audit_events")).scalar() == 0
    finally:
        engine.dispose()
