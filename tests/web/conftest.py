"""A live server per database backend for the whole test session, on its own fresh
database (SQLite file or PostgreSQL database), with real keys under a temp data dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from migrations import upgrade
from tests.conftest import _drop_pg_database, _fresh_pg_database
from tests.web.live import LiveServer, Receiver, start_receiver, start_server


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir: Path = tmp_path_factory.mktemp(f"live-{request.param}")
    if request.param == "sqlite":
        url, name = f"sqlite:///{data_dir / 'tongban.db'}", None
    else:
        name, url = _fresh_pg_database()
    upgrade(url)
    server = start_server(url, data_dir)
    try:
        yield server
    finally:
        server.stop()
        server.runtime.engine.dispose()
        if name:
            _drop_pg_database(name)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec, server = start_receiver()
    yield rec
    server.shutdown()
