from __future__ import annotations

import os

from alembic import context

from kit.db import Base, make_engine
from migrations import import_models

# TONGBAN_MIGRATION_MODELS=keys.models,idp.models limits autogenerate to one branch.
_only = os.environ.get("TONGBAN_MIGRATION_MODELS")
import_models(tuple(_only.split(",")) if _only else None)
target_metadata = Base.metadata


def run() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url
    connectable = context.config.attributes.get("connection")
    if connectable is not None:
        context.configure(
            connection=connectable, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
