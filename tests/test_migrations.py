"""The migrations create exactly the tables the models declare (on both backends)."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from kit.db import Base
from migrations import import_models


def test_migrations_match_models(engine: Engine) -> None:
    import_models()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models changed without a migration: {diff}"
