"""The schema changes only through alembic: the models must describe exactly what the
migrations build, on PostgreSQL and on the embedded SQLite."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from stripe_bridge import models  # noqa: F401  (registers the tables)
from stripe_bridge.db import Base, make_engine
from stripe_bridge.migrate import current_revision, head_revision, upgrade


def drift(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_postgresql_at_head_matches_the_models(admin_engine: Engine) -> None:
    assert current_revision(admin_engine) == head_revision()
    assert drift(admin_engine) == []


def test_sqlite_embedded_default_migrates_to_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'bridge.db'}")
    try:
        upgrade(engine)
        upgrade(engine)  # idempotent
        assert current_revision(engine) == head_revision()
        assert drift(engine) == []
    finally:
        engine.dispose()
